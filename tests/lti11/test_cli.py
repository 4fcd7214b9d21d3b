"""`gradesync lti11 add-consumer` / `list`, as an admin runs them."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.database import Database
from gradesync.cli import app
from gradesync.domain.model import Destination, DestinationKind
from gradesync.domain.pauses import PauseCause
from gradesync.services.clock import SystemClock
from gradesync.services.destination_admin import set_limits
from gradesync.testing import TEST_SECRET, add_tenant


@pytest.fixture
def run(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GRADESYNC_DATABASE_URL", db.url)
    monkeypatch.setenv("GRADESYNC_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("GRADESYNC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GRADESYNC_BASE_URL", "https://grades.example.com")
    monkeypatch.delenv("GRADESYNC_LTI11_SECRET", raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: table cells are not wrapped
    add_tenant(db.uow, "t1")
    add_tenant(db.uow, "t2")
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        return runner.invoke(app, ["lti11", *args], env=env)

    return invoke


def test_add_consumer_with_generated_secret_stores_it_encrypted(run, db: Database) -> None:  # type: ignore[no-untyped-def]
    result = run(
        "add-consumer",
        "--tenant", "t1", "--id", "canvas11", "--key", "gradesync-canvas",
        "--allowed-host", "canvas.example.edu", "--allowed-host", "*.instructure.com",
        "--generate-secret", "--profile", "canvas",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "https://grades.example.com/lti11/launch" in result.output
    printed = re.search(r"secret:\s+(\S+)", result.output)
    assert printed is not None
    secret = printed.group(1)
    with db.uow() as uow:
        dest = uow.destinations.get("t1", "canvas11")
    assert dest is not None and dest.kind is DestinationKind.LTI11_OUTCOMES
    assert dest.config == {
        "consumer_key": "gradesync-canvas",
        "allowed_hosts": ["canvas.example.edu", "*.instructure.com"],
        "comments": False,
    }
    assert dest.secret == {"consumer_secret": secret}
    with db.engine.connect() as conn:
        raw = conn.execute(
            select(t.destinations.c.secret_ciphertext, t.destinations.c.config).where(
                t.destinations.c.id == "canvas11"
            )
        ).one()
    assert secret not in raw.secret_ciphertext and secret not in str(raw.config)

    listing = run("list", "--tenant", "t1")
    assert listing.exit_code == 0 and "gradesync-canvas" in listing.output
    assert secret not in listing.output
    # the LMS family is a label, shown with the consumer
    listing = run("list", "--tenant", "t1", "--json")
    assert [(c["id"], c["profile"]) for c in json.loads(listing.output)] == [("canvas11", "canvas")]
    lines = run("list", "--tenant", "t1").output.splitlines()
    [header] = [[c.strip() for c in x.split("┃")[1:-1]] for x in lines if x.startswith("┃")]
    [row] = [[c.strip() for c in x.split("│")[1:-1]] for x in lines if x.startswith("│")]
    assert dict(zip(header, row, strict=True))["lms"] == "canvas"


def test_secret_from_environment_and_update_keeps_one_consumer(run, db: Database) -> None:  # type: ignore[no-untyped-def]
    args = ["add-consumer", "--tenant", "t1", "--id", "moodle11", "--key", "k-moodle"]
    first = run(*args, "--allowed-host", "moodle.example.edu", "--name", "Moodle",
                "--profile", "moodle", "--comments",
                env={"GRADESYNC_LTI11_SECRET": "first-secret-0123456789"})  # fmt: skip
    set_limits(db.uow, SystemClock(), "t1", "moodle11", {"rate_per_second": 3})
    second = run(*args, "--allowed-host", "moodle.example.edu:8443",
                 env={"GRADESYNC_LTI11_SECRET": "second-secret-0123456789"})  # fmt: skip

    assert first.exit_code == 0 and second.exit_code == 0, second.output
    assert "second-secret" not in second.output
    with db.uow() as uow:
        dest = uow.destinations.get("t1", "moodle11")
    assert dest is not None
    assert dest.secret["consumer_secret"] == "second-secret-0123456789"
    assert dest.config["allowed_hosts"] == ["moodle.example.edu:8443"]
    assert dest.config["rate_per_second"] == 3  # limits are set apart and kept
    # what the update was not given is kept, not reset to the defaults
    assert (dest.name, dest.profile, dest.config["comments"]) == ("Moodle", "moodle", True)


@pytest.mark.parametrize(
    ("extra", "env_secret", "field"),
    [
        (["--allowed-host", "https://lms.example.edu/"], "long-enough-secret-123",
         "error: --allowed-host: "),
        (["--allowed-host", "lms.example.edu"], "short", "error: --secret: "),
        (["--allowed-host", "lms.example.edu", "--profile", "sakai"], "long-enough-secret-123",
         "error: --profile: "),
    ],
)  # fmt: skip
def test_bad_input_names_the_option_and_changes_nothing(  # type: ignore[no-untyped-def]
    run, db: Database, extra: list[str], env_secret: str, field: str
) -> None:
    result = run(
        "add-consumer", "--tenant", "t1", "--id", "bad11", "--key", "k-bad", *extra,
        env={"GRADESYNC_LTI11_SECRET": env_secret},
    )  # fmt: skip

    assert result.exit_code == 2
    assert field in result.output
    with db.uow() as uow:
        assert uow.destinations.get("t1", "bad11") is None


def test_a_consumer_key_is_registered_once(run, db: Database) -> None:  # type: ignore[no-untyped-def]
    env = {"GRADESYNC_LTI11_SECRET": "long-enough-secret-123"}
    ok = run("add-consumer", "--tenant", "t1", "--id", "a11", "--key", "shared",
             "--allowed-host", "lms.example.edu", env=env)  # fmt: skip
    clash = run("add-consumer", "--tenant", "t2", "--id", "b11", "--key", "shared",
                "--allowed-host", "lms.example.edu", env=env)  # fmt: skip

    assert ok.exit_code == 0
    # a conflict with what is stored (docs/operations.md): exit 4
    assert clash.exit_code == 4 and "consumer key 'shared'" in clash.output
    # named by its option and rule, as every refusal is
    assert "error: --key: The consumer key 'shared'" in clash.output
    assert "[taken]" in clash.output
    assert "another registration" in clash.output
    assert "t1" not in clash.output and "a11" not in clash.output  # another tenant's: unnamed
    with db.uow() as uow:
        assert uow.destinations.get("t2", "b11") is None


def test_an_id_of_another_kind_of_destination_is_refused_by_its_option_and_rule(  # type: ignore[no-untyped-def]
    run, db: Database
) -> None:
    """An id already an LTI 1.3 platform's or a SIS's was refused with a bare sentence: no
    field, no rule."""
    with db.uow() as uow:
        uow.destinations.upsert(
            Destination("t1", "sis", DestinationKind.ONEROSTER_CSV, "District SIS"),
            datetime.now(UTC),
        )
        uow.commit()
    env = {"GRADESYNC_LTI11_SECRET": "long-enough-secret-123"}
    args = ("add-consumer", "--tenant", "t1", "--id", "sis", "--key", "k1",
            "--allowed-host", "lms.example.edu")  # fmt: skip
    clash = run(*args, env=env)
    assert clash.exit_code == 4, clash.output  # a conflict with what is stored
    assert clash.output.splitlines() == [
        "error: --id: destination 'sis' exists and is a oneroster_csv destination, not an LTI "
        "1.1 consumer: give the consumer an id of its own [kind]"
    ], clash.output
    said = json.loads(run(*args, "--json", env=env).stdout)["error"]
    assert said["problems"] == [
        {"field": "--id", "rule": "kind", "message": said["problems"][0]["message"]}
    ], said
    with db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
    assert dest is not None and dest.kind is DestinationKind.ONEROSTER_CSV  # unchanged


def test_an_update_without_a_secret_keeps_the_stored_one_and_asks_nothing(  # type: ignore[no-untyped-def]
    run, db: Database
) -> None:
    args = ["add-consumer", "--tenant", "t1", "--id", "gen11", "--key", "k-gen"]
    first = run(*args, "--allowed-host", "lms.example.edu",
                env={"GRADESYNC_LTI11_SECRET": "first-secret-0123456789"})  # fmt: skip
    # no secret, and no terminal to type one on (stdin is not a tty under the runner)
    hosts = run(*args, "--allowed-host", "lms.example.edu", "--allowed-host", "lms2.example.edu")

    assert first.exit_code == 0, first.output
    assert hosts.exit_code == 0, hosts.output
    assert "Consumer secret" not in hosts.output and "Warning" not in hosts.output
    with db.uow() as uow:
        dest = uow.destinations.get("t1", "gen11")
    assert dest is not None
    assert dest.secret["consumer_secret"] == "first-secret-0123456789"
    assert dest.config["allowed_hosts"] == ["lms.example.edu", "lms2.example.edu"]


def test_a_new_consumer_without_a_secret_and_no_terminal_is_refused_in_one_line(  # type: ignore[no-untyped-def]
    run, db: Database
) -> None:
    result = run("add-consumer", "--tenant", "t1", "--id", "new11", "--key", "k-new",
                 "--allowed-host", "lms.example.edu")  # fmt: skip

    assert result.exit_code == 2, result.output
    assert "Consumer secret" not in result.output
    [line] = [x for x in result.output.splitlines() if x.strip()]
    assert line.startswith("error: --secret: ") and line.endswith("[required]")
    with db.uow() as uow:
        assert uow.destinations.get("t1", "new11") is None


@pytest.mark.parametrize(
    ("key", "said"),
    [("k" * 301, "[too_long]"), (" k-spaced", "[pattern]"), ("", "[required]")],
)
def test_a_bad_key_says_which_rule_it_breaks(run, db: Database, key: str, said: str) -> None:  # type: ignore[no-untyped-def]
    result = run("add-consumer", "--tenant", "t1", "--id", "key11", "--key", key,
                 "--allowed-host", "lms.example.edu",
                 env={"GRADESYNC_LTI11_SECRET": "long-enough-secret-123"})  # fmt: skip

    assert result.exit_code == 2, result.output
    [line] = [x for x in result.output.splitlines() if "--key" in x]
    assert line.startswith("error: --key: ") and line.endswith(said)
    with db.uow() as uow:
        assert uow.destinations.get("t1", "key11") is None


@pytest.mark.parametrize(
    ("host", "said"),
    [
        # a sentence, not "covers metadata.google.internal is a cloud metadata host"
        ("*.google.internal", "'*.google.internal' is refused: it covers "
         "metadata.google.internal, a cloud metadata host. List the LMS's own host names"),
        ("169.254.169.254", "169.254.169.254 is a cloud metadata address. That is a cloud's "
         "instance metadata service, where no LMS or SIS runs: correct the URL or host."),
        ("10.0.0.5", "10.0.0.5 is a private address. gradesync sends requests only to public "
         "addresses over https. If this address is genuinely where the service runs"),
    ],
)  # fmt: skip
def test_a_refused_allowed_host_says_why_and_what_to_do(  # type: ignore[no-untyped-def]
    run, db: Database, host: str, said: str
) -> None:
    result = run(
        "add-consumer", "--tenant", "t1", "--id", "in11", "--key", "k-in", "--allowed-host",
        host, env={"GRADESYNC_LTI11_SECRET": "long-enough-secret-123"},
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert line.startswith("error: --allowed-host: ") and line.endswith("[address]"), line
    assert said in line, line
    # a metadata service is never to be allowed: the remedy does not suggest it
    assert ("with GRADESYNC_OUTBOUND_ALLOWED_NETWORKS" in line) == (host == "10.0.0.5"), line
    with db.uow() as uow:
        assert uow.destinations.get("t1", "in11") is None


def test_list_shows_a_consumer_the_engine_paused(run, db: Database) -> None:  # type: ignore[no-untyped-def]
    """A consumer paused after the LMS refused its signature is shown paused until the time
    `destinations list` shows, with the reason; it was listed `enabled`."""
    added = run("add-consumer", "--tenant", "t1", "--id", "lms11", "--key", "k-lms",
                "--allowed-host", "lms.example.edu",
                env={"GRADESYNC_LTI11_SECRET": "long-enough-secret-123"})  # fmt: skip
    assert added.exit_code == 0, added.output
    until = datetime.now(UTC) + timedelta(hours=1)
    with db.uow() as uow:
        uow.destinations.set_pause(
            "t1", "lms11", until, "the LMS refused the signature", PauseCause.MISCONFIGURED
        )
        uow.commit()
    listed = run("list", "--tenant", "t1")
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if "lms11" in line)
    assert f"paused until {until:%Y-%m-%d %H:%M:%S} UTC" in row, listed.output
    assert "refused the signature" in row and "enabled" not in row
    data = json.loads(run("list", "--tenant", "t1", "--json").output)
    assert data[0]["enabled"] is True and data[0]["paused_until"].startswith(f"{until:%Y-%m-%d}")
