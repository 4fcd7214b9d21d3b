"""What the CLI prints: tables that fit 80 columns, `none` for nothing, JSON on request, the
tenant from GRADESYNC_TENANT for every command, help that names the real commands."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import typer
import yaml
from typer.core import TyperGroup, TyperOption
from typer.testing import CliRunner

from gradesync.adapters.db.database import Database
from gradesync.cli import app
from gradesync.domain.model import (
    Destination,
    DestinationKind,
    RunOutcome,
    RunScope,
    RunStage,
    SyncRun,
    Tenant,
    Trigger,
)
from gradesync.lti.routes import build_router
from gradesync.sandbox.config import TOOL_SCOPES
from gradesync.testing import wait_for
from tests.support.cli import GRADESYNC, Run, free_port


def _seed(db: Database) -> None:
    now = datetime(2025, 3, 1, 12, tzinfo=UTC)
    with db.uow() as uow:
        for tenant in ("northwind", "empty"):
            uow.tenants.upsert(Tenant(tenant, tenant.title()), now)
        scope = RunScope("northwind", "canvas-production", "chemistry-101", ("a1", "a2"))
        finished = SyncRun(
            "run_0123456789abcdef0123456789abcdef",
            scope,
            Trigger.RESYNC,
            "api-key:courseware production",
            RunStage.FINISHED,
            RunOutcome.PARTLY_FAILED,
            {"sent": 40, "delivered": 38, "rejected": {"unknown_user": 1, "line_item_gone": 1}},
            "2 results refused",
            now,
            now,
            now.replace(second=42),
        )
        uow.runs.add(finished)
        uow.runs.update(finished)
        uow.commit()


def test_runs_list_fits_80_columns_and_says_none(
    gradesync: Run, cli_db: Database, cli_env: dict[str, str]
) -> None:
    _seed(cli_db)
    cli_env["COLUMNS"] = "80"
    out = gradesync("runs", "list", "-t", "northwind").stdout
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert "run_0123456789abcdef0123456789abcdef" in out  # whole: `runs show` takes it
    # the summary column, its wrapped lines joined again
    summary = " ".join(
        line.split("│")[2].strip() for line in out.splitlines() if line.count("│") == 3
    )
    assert "rejected 2 (line_item_gone 1, unknown_user 1)" in summary and "{" not in out
    assert "chemistry-101 -> canvas-production" in summary and "took 42.0 s" in summary
    assert "by api-key:courseware production" in summary
    # a trigger filter is one of the triggers: a typo is refused, not answered "none"
    resync = gradesync("runs", "list", "-t", "northwind", "--trigger", "resync").stdout
    assert "run_0123456789abcdef0123456789abcdef" in resync
    typo = gradesync("runs", "list", "-t", "northwind", "--trigger", "manaul", ok=False)
    assert typo.returncode == 2 and "--trigger" in typo.stderr, typo.stderr
    assert typo.stderr.startswith("error: --trigger: 'manaul' is not one of 'auto', "), typo.stderr
    # by date, as the API's since and until (the run was asked for on 1 March 2025)
    dated = ("runs", "list", "-t", "northwind", "--json")
    assert len(json.loads(gradesync(*dated, "--since", "2025-03-01").stdout)) == 1
    assert json.loads(gradesync(*dated, "--since", "2025-03-02T00:00:00Z").stdout) == []
    assert json.loads(gradesync(*dated, "--until", "2025-03-01").stdout) == []
    bad = gradesync("runs", "list", "-t", "northwind", "--since", "yesterday", ok=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --since: 'yesterday'"), bad.stderr
    no_day = gradesync("runs", "list", "-t", "northwind", "--until", "2025-02-31", ok=False)
    assert "[calendar]" in no_day.stderr, no_day.stderr
    assert gradesync("runs", "list", "-t", "empty").stdout.strip() == "none"
    assert json.loads(gradesync("runs", "list", "-t", "empty", "--json").stdout) == []
    for listing in (("destinations", "list"), ("keys", "list"), ("schedules", "list")):
        assert gradesync(*listing, "-t", "empty").stdout.strip() == "none", listing


def test_every_command_takes_the_tenant_from_the_environment(
    gradesync: Run, cli_db: Database, cli_env: dict[str, str]
) -> None:
    _seed(cli_db)
    cli_env["GRADESYNC_TENANT"] = "northwind"
    assert "run_0123456789abcdef" in gradesync("runs", "list").stdout
    # sis commands too: the tenant is taken, and the unknown connection is what is refused
    cli_env["GRADESYNC_TENANT"] = "empty"
    for listing in (("users", "list"), ("lti11", "list"), ("platforms", "list")):
        assert json.loads(gradesync(*listing, "--json").stdout) == [], listing
    assert gradesync("users", "list").stdout.strip() == "none"
    r = gradesync("sis", "validate", "no-such-sis", "chemistry-101", ok=False)
    assert "destination 'no-such-sis' not found" in r.stdout + r.stderr
    assert "--tenant" not in r.stderr, r.stderr


def _help(*args: str) -> str:
    return subprocess.run(
        [GRADESYNC, *args, "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100", "NO_COLOR": "1"},
    ).stdout


def test_schedules_list_at_80_columns_shows_whole_ids(
    gradesync: Run, cli_db: Database, cli_env: dict[str, str]
) -> None:
    gradesync("tenants", "create", "northwind", "--no-key")
    add = ("schedules", "add", "-t", "northwind", "--json", "-k", "daily", "-s", "07:00")
    made = json.loads(gradesync(*add, "--tz", "America/New_York").stdout)
    cli_env["COLUMNS"] = "80"
    out = gradesync("schedules", "list", "-t", "northwind").stdout
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert made["id"] in out, out  # whole: `schedules show|pause|edit` take it
    for word in ("interval", "posted", "status"):  # headers fold between words only
        assert word in out, out
    shown = gradesync("schedules", "show", made["id"], "-t", "northwind").stdout
    assert "first run: " in shown and "time zone: America/New_York" in shown, shown


def test_lists_at_80_columns_show_whole_ids(
    gradesync: Run, cli_db: Database, cli_env: dict[str, str]
) -> None:
    """Every list's first column is what the next command takes: never cut to `…`."""
    tenant = "northwind-regional-school-district-of-the-lakes"
    gradesync("tenants", "create", tenant, "--name", "Northwind", "--no-key")
    made = json.loads(
        gradesync(
            "keys", "create", "-t", tenant, "--name", "courseware production " * 3,
            "-s", "ingest", "-s", "sync", "--json",
        ).stdout
    )  # fmt: skip
    cli_env["COLUMNS"] = "80"
    for args in (("tenants", "list"), ("keys", "list", "-t", tenant)):
        out = gradesync(*args).stdout
        assert max(len(line) for line in out.splitlines()) <= 80, out
        assert "…" not in out, out
        assert tenant in out if args[0] == "tenants" else made["id"] in out, out


def test_help_names_the_real_commands() -> None:
    assert "add-consumer" in _help("lti11")
    assert "--log-level" in _help("sandbox")


def _commands(group: TyperGroup, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, cmd in sorted(group.commands.items()):
        yield (*prefix, name)
        if isinstance(cmd, TyperGroup):
            yield from _commands(cmd, (*prefix, name))


def test_every_commands_help_at_80_columns_shows_every_option_name_whole() -> None:
    """rich's help table gave each name, type and help a column: at 80 columns `sis add`'s
    longer names were cut (`--default-token…`), and no one could type them from it."""
    root = typer.main.get_group(app)
    runner = CliRunner()
    paths = [(), *_commands(root)]
    assert len(paths) > 60
    for path in paths:
        command: Any = root
        for name in path:
            command = command.commands[name]
        said = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80", "NO_COLOR": "1"})
        assert said.exit_code == 0, (path, said.output)
        out = said.output
        assert "…" not in out, (path, out)
        assert max(len(line) for line in out.splitlines()) <= 80, (path, out)
        names = [
            opt
            for param in command.params
            if isinstance(param, TyperOption) and not param.hidden
            for opt in (*param.opts, *param.secondary_opts)
        ]
        for opt in [*names, "--help"]:
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", out), (path, opt, out)


@pytest.mark.parametrize("level", ["loud"])
def test_sandbox_refuses_an_unknown_log_level(gradesync: Run, level: str) -> None:
    r = gradesync("sandbox", "--port", "0", "--log-level", level, ok=False)
    assert r.returncode == 2 and "--log-level" in r.stderr


def _doc_seed_file() -> str:
    """The seed file docs/sandbox.md shows, as written."""
    doc = (Path(__file__).parents[2] / "docs" / "sandbox.md").read_text()
    start = doc.index("```yaml\n", doc.index("## Seed file")) + len("```yaml\n")
    return doc[start : doc.index("```", start)]


def test_the_documented_seed_file_runs_and_a_bad_one_is_one_line_per_field(
    gradesync: Run, cli_env: dict[str, str], tmp_path: Path
) -> None:
    example = _doc_seed_file()
    bad = tmp_path / "bad.yaml"
    # a misspelt key, and the doc's old `...` in a list of scopes
    bad.write_text(
        example.replace("{sub: u1, name:", "{sub: u1, nmae:").replace(
            "scope/score\n", "scope/score\n      - ...\n", 1
        )
    )
    r = gradesync("sandbox", "--port", "0", "--seed-file", str(bad), ok=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.splitlines() == [
        f"error: users[0].nmae: Extra inputs are not permitted (in {bad}) [extra_forbidden]",
        f"error: tools[0].scopes: unknown LTI scope(s) ['...']; allowed: {list(TOOL_SCOPES)} "
        f"(in {bad}) [value_error]",
    ]
    r = gradesync("sandbox", "--port", "0", "--faults", '{"scorez": {}}', ok=False)
    assert r.returncode == 2 and r.stderr.startswith("error: --faults: unknown fault group")

    good = tmp_path / "sandbox.yaml"
    good.write_text(example)
    port = free_port()
    log_path = tmp_path / "sandbox.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [GRADESYNC, "sandbox", "--port", str(port), "--seed-file", str(good)],
            env=cli_env,
            stdout=log,
            stderr=log,
        )
        try:

            def inspect() -> dict[str, object] | None:
                assert proc.poll() is None, log_path.read_text()
                try:
                    url = f"http://127.0.0.1:{port}/_sandbox/inspect"
                    return httpx.get(url, timeout=1).json()  # type: ignore[no-any-return]
                except httpx.TransportError:
                    return None

            seeded = wait_for(inspect, "the sandbox to serve", explain=log_path.read_text)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    assert "c1" in json.dumps(seeded)
    # the tool URLs it registers are gradesync's own
    [tool] = yaml.safe_load(example)["tools"]
    urls = [tool[k] for k in ("jwks_url", "oidc_login_url", "target_link_uri", "deep_link_url")]
    paths = {getattr(r, "path", "") for r in build_router(lambda *a: None).routes}
    assert {urlsplit(u).path for u in urls + tool["redirect_uris"]} <= paths


def test_a_port_in_use_is_one_clear_line(gradesync: Run) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        r = gradesync("serve", "--port", port, ok=False)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert f"cannot listen on 127.0.0.1:{port}: in use" in r.stderr
        assert "--port" in r.stderr
        # the demo's sandbox port is checked as well, before anything starts
        r = gradesync("serve", "--demo", "--port", "0", "--sandbox-port", port, ok=False)
        assert r.returncode == 1 and "--sandbox-port" in r.stderr and "Traceback" not in r.stderr


def test_demo_options_without_demo_are_refused_before_anything_starts(gradesync: Run) -> None:
    """`--sandbox-port` and the demo's other options were ignored without `--demo`: the
    server ran as if they applied. Refused, every one, before the port is even tried (it
    is taken here: a server that went on would say so, exit 1)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        r = gradesync("serve", "--port", port, "--sandbox-port", "9216", ok=False)
        assert r.returncode == 2, r.stderr
        assert r.stderr == (
            "error: --demo: --sandbox-port needs --demo (the port of the demo's sandbox) "
            "[required]\n"
        )
        given = ("--sandbox-port", "0", "--demo-attempts", "3", "--no-demo-exit")
        r = gradesync("serve", "--port", port, *given, ok=False)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.splitlines()
        assert [line.split(" needs ")[0] for line in lines] == [
            "error: --demo: --sandbox-port",
            "error: --demo: --demo-attempts",
            "error: --demo: --no-demo-exit",
        ], r.stderr
        assert all(line.endswith("[required]") for line in lines), r.stderr
        r = gradesync("serve", "--port", port, "--demo-exit", ok=False)
        assert r.returncode == 2 and "error: --demo: --demo-exit needs --demo" in r.stderr


def _python_m_sandbox(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m gradesync.sandbox`, the standalone way docs/sandbox.md shows."""
    return subprocess.run(
        [sys.executable, "-m", "gradesync.sandbox", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_sandbox_on_a_port_in_use_says_so_in_one_line_from_either_entry_point(
    gradesync: Run, cli_env: dict[str, str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        said = [
            f"error: cannot listen on 127.0.0.1:{port}: in use. Choose another port with "
            "--port (or stop what uses it)."
        ]
        r = gradesync("sandbox", "--port", port, ok=False)
        # as `gradesync serve` refuses it: exit 1, one line, no banner, no uvicorn log
        assert r.returncode == 1 and r.stderr.splitlines() == said, r.stderr
        assert r.stdout == ""
        m = _python_m_sandbox(cli_env, "--port", port)
        assert m.returncode == 1 and m.stderr.splitlines() == said, m.stderr
        assert m.stdout == ""


def test_a_bad_seed_file_is_told_alike_by_both_entry_points_every_reference_with_its_path(
    gradesync: Run, cli_env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(_doc_seed_file().replace("{sub: u1, name:", "{sub: u1, nmae:"))
    said = [f"error: users[0].nmae: Extra inputs are not permitted (in {bad}) [extra_forbidden]"]
    r = gradesync("sandbox", "--port", "0", "--seed-file", str(bad), ok=False)
    m = _python_m_sandbox(cli_env, "--port", "0", "--seed-file", str(bad))
    assert (r.returncode, r.stderr.splitlines()) == (2, said), r.stderr
    assert (m.returncode, m.stderr.splitlines()) == (2, said), m.stderr

    refs = tmp_path / "refs.yaml"
    refs.write_text(
        _doc_seed_file()
        .replace("school: sch1, term: t2024,", "school: sch1, term: nope,")
        .replace("classes: [cls1]}]", "classes: [cls1, cls-nope]}]")
    )
    said = [
        f"error: sis.classes[0].term: SIS term 'nope' is not one of sis.terms (in {refs}) "
        "[unknown_term]",
        f"error: sis.categories[0].classes[1]: SIS class 'cls-nope' is not one of sis.classes "
        f"(in {refs}) [unknown_class]",
    ]
    r = gradesync("sandbox", "--port", "0", "--seed-file", str(refs), ok=False)
    m = _python_m_sandbox(cli_env, "--port", "0", "--seed-file", str(refs))
    assert (r.returncode, r.stderr.splitlines()) == (2, said), r.stderr
    assert (m.returncode, m.stderr.splitlines()) == (2, said), m.stderr


def test_bad_settings_are_named_every_one(gradesync: Run, cli_env: dict[str, str]) -> None:
    cli_env.update(GRADESYNC_LOG_FORMAT="xml", GRADESYNC_WORKER_POLL_SECONDS="often")
    r = gradesync("runs", "list", "-t", "northwind", ok=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "GRADESYNC_LOG_FORMAT" in r.stderr and "'xml'" in r.stderr
    assert "GRADESYNC_WORKER_POLL_SECONDS" in r.stderr and "'often'" in r.stderr


def test_another_secret_key_is_one_line_saying_which_key(
    gradesync: Run, cli_env: dict[str, str]
) -> None:
    """A shell set up for another data directory (another secret.key): the LMS's stored
    secret cannot be decrypted. One line and what to do, not a traceback."""
    gradesync("tenants", "create", "northwind", "--no-key")
    gradesync(
        "sis", "add", "sis", "-t", "northwind", "--base-url", "https://sis.example.edu",
        "--client-id", "c", "--client-secret", "s", "--no-check",
    )  # fmt: skip
    cli_env["GRADESYNC_SECRET_KEY"] = "not-the-key-it-was-stored-with"
    for argv in (
        ("destinations", "list", "-t", "northwind"),
        ("sis", "categories", "sis", "-t", "northwind"),
    ):
        r = gradesync(*argv, ok=False)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith("error: a stored secret cannot be decrypted"), r.stderr
        assert "GRADESYNC_DATA_DIR" in r.stderr


def test_previews_and_tool_keys_print_json(gradesync: Run) -> None:
    runs = json.loads(
        gradesync(
            "schedules", "preview", "--kind", "interval", "--spec", "2h", "--count", "2", "--json"
        ).stdout
    )["runs"]  # as POST /schedules/preview
    assert len(runs) == 2 and all(datetime.fromisoformat(r).tzinfo for r in runs)
    assert isinstance(json.loads(gradesync("keys", "list-tool-keys", "--json").stdout), list)


def test_keys_and_pauses_print_json(gradesync: Run, cli_db: Database) -> None:
    _seed(cli_db)
    with cli_db.uow() as uow:
        uow.destinations.upsert(
            Destination("northwind", "canvas", DestinationKind.LTI13_AGS, "Canvas"),
            datetime(2025, 3, 1, tzinfo=UTC),
        )
        uow.commit()
    key = json.loads(
        gradesync(
            "keys", "create", "-t", "northwind", "--name", "ops", "-s", "sync", "--json"
        ).stdout
    )
    assert key["token"].startswith("gs_") and key["scopes"] == ["sync"]
    paused = json.loads(
        gradesync(
            "destinations", "pause", "canvas", "-t", "northwind", "--reason", "exams", "--json"
        ).stdout
    )
    assert paused["enabled"] is False and paused["pause_reason"] == "exams"
    resumed = json.loads(
        gradesync("destinations", "resume", "canvas", "-t", "northwind", "--json").stdout
    )
    assert resumed["enabled"] is True and resumed["pause_reason"] is None


def test_a_runs_nested_counts_read_as_words_not_as_python() -> None:
    from gradesync.cli.sync import _describe
    from gradesync.domain.model import RunScope, RunStage, SyncRun, Trigger

    run = SyncRun(
        "run_1",
        RunScope("t"),
        Trigger.MANUAL,
        "admin",
        stage=RunStage.SENDING,
        counts={"columns": {"written": 0, "unchanged": 6}, "sent": 3},
    )
    assert _describe(run) == "sending (sent 3, columns 6 (written 0, unchanged 6))"
    assert _describe(SyncRun("run_2", RunScope("t"), Trigger.MANUAL, "admin")) == "queued"


def test_roster_match_shows_the_tenants_setting_when_given_none(
    gradesync: Run, cli_db: Database
) -> None:
    gradesync("tenants", "create", "northwind", "--no-key")
    shown = ("tenants", "roster-match", "-t", "northwind", "--json")
    assert json.loads(gradesync(*shown).stdout) == {"id": "northwind", "roster_match": "sis_id"}
    gradesync("tenants", "roster-match", "email", "-t", "northwind")
    assert json.loads(gradesync(*shown).stdout)["roster_match"] == "email"
    assert "matched by email" in gradesync("tenants", "roster-match", "-t", "northwind").stdout
    bad = gradesync("tenants", "roster-match", "name", "-t", "northwind", ok=False)
    assert bad.returncode == 2 and "roster_match" in bad.stderr
    assert json.loads(gradesync(*shown).stdout)["roster_match"] == "email"  # unchanged
    missing = gradesync("tenants", "roster-match", "-t", "ghost", ok=False)
    assert missing.returncode == 3 and "ghost" in missing.stderr


def test_show_commands_print_settings_in_words_not_python_reprs(
    gradesync: Run, cli_db: Database, cli_env: dict[str, str]
) -> None:
    """`sis show` and `destinations show` printed `True`, `None`, `['a', 'b']` and
    `{'Quizzes': 'cat-1'}`; --json keeps the values as JSON."""
    now = datetime(2025, 3, 1, 12, tzinfo=UTC)
    config: dict[str, Any] = {
        "base_url": "https://sis.example.edu/ims/oneroster",
        "due_date_required": True,
        "due_date_inside_term": False,
        "default_category": None,
        "scopes": ["https://a.example/s1", "https://a.example/s2"],
        "category_map": {"Quizzes": "cat-1", "Labs": "cat-2"},
    }
    with cli_db.uow() as uow:
        uow.tenants.upsert(Tenant("northwind", "Northwind"), now)
        uow.destinations.upsert(
            Destination("northwind", "sis", DestinationKind.ONEROSTER_REST, "SIS", config=config),
            now,
        )
        uow.commit()
    cli_env["COLUMNS"] = "80"
    sis = gradesync("sis", "show", "sis", "-t", "northwind").stdout
    dest = gradesync("destinations", "show", "sis", "-t", "northwind").stdout
    for out in (sis, dest):
        for repr_ in ("True", "False", "None", "[", "{", "'"):
            assert repr_ not in out, (repr_, out)
        # a list on one line, whole however narrow the terminal
        assert "https://a.example/s1, https://a.example/s2\n" in out, out
        assert "Quizzes=cat-1, Labs=cat-2" in out or "Labs=cat-2, Quizzes=cat-1" in out, out
    assert "  due-date-required: yes\n" in sis and "  due-date-inside-term: no\n" in sis, sis
    assert "  default-category: -\n" in sis, sis
    assert "  due_date_required: yes\n" in dest and "  default_category: -\n" in dest, dest
    shown = json.loads(gradesync("destinations", "show", "sis", "-t", "northwind", "--json").stdout)
    assert shown["config"]["due_date_required"] is True
    assert shown["config"]["scopes"] == config["scopes"]
    shown = json.loads(gradesync("sis", "show", "sis", "-t", "northwind", "--json").stdout)
    assert shown["config"]["due_date_required"] is True, shown


def test_an_argument_has_one_name_in_the_help_and_in_every_error(
    gradesync: Run, cli_db: Database
) -> None:
    """The help said `{destination_id}` while an unknown destination was refused as
    `DESTINATION_ID`: every argument is named in upper case, as docs/ write it, everywhere."""
    root = typer.main.get_group(app)
    runner = CliRunner()
    arguments = 0
    for path in _commands(root):
        command: Any = root
        for name in path:
            command = command.commands[name]
        if isinstance(command, TyperGroup):
            continue
        said = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80", "NO_COLOR": "1"})
        usage, _, rest = said.output.partition("\n\n")  # the usage may wrap
        for param in command.params:
            if param.param_type_name != "argument":
                continue
            arguments += 1
            name = param.name.upper()
            assert param.metavar == name, (path, param.name)
            assert re.search(rf"[{{\[]{name}[}}\]]", " ".join(usage.split())), (path, usage)
            assert f"\n  {name} <" in rest, (path, rest)
    assert arguments > 40
    _seed(cli_db)
    missing = gradesync("destinations", "show", "-t", "northwind", "--json", ok=False)
    unknown = gradesync("destinations", "show", "nope", "-t", "northwind", "--json", ok=False)
    for r, rule in ((missing, "required"), (unknown, "unknown_destination")):
        [problem] = json.loads(r.stdout)["error"]["problems"]
        assert (problem["field"], problem["rule"]) == ("DESTINATION_ID", rule), problem
        assert r.stderr.startswith("error: DESTINATION_ID: "), r.stderr
    assert "'DESTINATION_ID'" in missing.stderr, missing.stderr  # click's words as well
    bad = gradesync("policy", "set", "oops", "-t", "northwind", ok=False)
    assert bad.stderr.startswith("error: SETTINGS: 'oops': write name=value"), bad.stderr


def test_every_option_has_help_and_no_name_in_a_help_is_broken_at_its_hyphen() -> None:
    """At 80 columns `sis add --help` listed `--clear`'s settings as `name-max-` / `length`,
    `schedules --help` had `run-` / `now` and a flag's default `no-` / `offline`; and `sis
    add`'s three yes/no options, `--limit`, `--count` and `--destination` had no help."""
    root = typer.main.get_group(app)
    runner = CliRunner()
    for path in _commands(root):
        command: Any = root
        for name in path:
            command = command.commands[name]
        for param in command.params:
            if isinstance(param, TyperOption) and not param.hidden:
                assert param.help, (path, param.opts)
        for columns in ("80", "60"):
            env = {"COLUMNS": columns, "NO_COLOR": "1"}
            out = runner.invoke(app, [*path, "--help"], env=env).output
            broken = [line for line in out.splitlines() if re.search(r"\w-$", line)]
            assert not broken, (path, columns, broken)
    out = runner.invoke(app, ["sis", "add", "--help"], env={"COLUMNS": "80"}).output
    for setting in ("name-max-length", "due-date-inside-term", "may-create-categories"):
        assert re.search(rf"(?<![\w-]){setting}(?![\w-])", out), (setting, out)
