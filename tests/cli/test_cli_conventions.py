"""The CLI's conventions, checked on every command: `--json` on each command that prints a
result, the tenant from GRADESYNC_TENANT, and one way to report an error (`error: field:
message [rule]` lines on stderr, exit 2 bad input / 3 not found / 4 conflict / 1 failed, and
with --json the error as one JSON object on stdout)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.core import TyperCommand, TyperGroup

from gradesync.adapters.db.database import Database
from gradesync.cli import app, main
from gradesync.cli._common import WRITES
from gradesync.domain.model import Tenant
from tests.support.cli import Run

# Commands that run a server until stopped: they print no result to put in JSON.
NO_JSON = {
    "serve": "runs the API and console until stopped",
    "worker": "runs a delivery worker until stopped",
    "sandbox": "runs the sandbox LMS/SIS until stopped",
}
# Commands whose tenant is not taken from GRADESYNC_TENANT.
OWN_TENANT = {
    "tenants create": "names the tenant it creates (an argument, never a default)",
}


Command = TyperCommand | TyperGroup


def _leaves(group: TyperGroup, prefix: str = "") -> Iterator[tuple[str, Command]]:
    for name, cmd in sorted(group.commands.items()):
        assert isinstance(cmd, TyperCommand | TyperGroup), cmd
        path = f"{prefix}{name}"
        if isinstance(cmd, TyperGroup):
            yield from _leaves(cmd, path + " ")
        else:
            yield path, cmd


def _is_option(p: object) -> bool:
    return getattr(p, "param_type_name", None) == "option"


LEAVES = dict(_leaves(typer.main.get_group(app)))


# Commands that do not always change what is stored: each reads, runs until stopped, checks
# a remote or writes only when an option says so (calling `will_write` then). Every other
# command is in WRITES, refused before it reads on a schema a newer release upgraded.
NOT_ALWAYS_WRITING = {
    "serve": "runs until stopped; refuses a newer schema as it starts",
    "worker": "runs until stopped; refuses a newer schema as it starts",
    "sandbox": "runs the sandbox, no database",
    "db upgrade": "says itself that the schema is newer than the release",
    "db current": "reads",
    "doctor": "reads, and asks the destination with its check",
    "overrides": "reads",
    "users list": "reads",
    "lti11 list": "reads",
    "sis categories": "reads; --align/--unalign write",
    "sis validate": "reads, and asks the SIS",
    "sis show": "reads",
    "platforms list": "reads",
    "platforms show": "reads",
    "keys list": "reads",
    "keys list-tool-keys": "reads",
    "tenants list": "reads",
    "tenants roster-match": "reads; a KEY given writes",
    "policy show": "reads",
    "runs list": "reads",
    "runs show": "reads",
    "schedules list": "reads",
    "schedules show": "reads",
    "schedules history": "reads",
    "schedules preview": "reads",
    "destinations list": "reads",
    "destinations show": "reads",
    "destinations check": "reads, and asks the destination",
}


def test_every_command_says_whether_it_writes() -> None:
    """A command left out of both would read, and ask remotes, before a newer schema
    refused its commit."""
    assert set(LEAVES) - WRITES == set(NOT_ALWAYS_WRITING)
    assert set(LEAVES) >= WRITES  # no name there but a command's


def test_the_walk_finds_every_group() -> None:
    groups = {path.split()[0] for path in LEAVES}
    assert {"sis", "schedules", "keys", "platforms", "db", "import", "users"} <= groups
    assert len(LEAVES) > 50


@pytest.mark.parametrize("path", sorted(LEAVES))
def test_every_command_that_prints_a_result_takes_json(path: str) -> None:
    options = {o for p in LEAVES[path].params if _is_option(p) for o in p.opts}
    if path in NO_JSON:
        assert "--json" not in options, f"{path} is listed as having no --json"
        return
    assert "--json" in options, f"`gradesync {path}` has no --json"


@pytest.mark.parametrize("path", sorted(LEAVES))
def test_every_command_takes_the_tenant_from_gradesync_tenant(path: str) -> None:
    tenants = [p for p in LEAVES[path].params if p.name in ("tenant", "tenant_id")]
    if path in OWN_TENANT:
        assert tenants and all(p.envvar is None for p in tenants)
        return
    for p in tenants:
        assert p.envvar == "GRADESYNC_TENANT", f"`gradesync {path}`: {p.name} ignores it"
        assert _is_option(p) and "--tenant" in p.opts and "-t" in p.opts, path


# What a command needs beyond its required parameters to run without a prompt.
EXTRA = {
    "destinations delete": ["--yes"],
    "lti11 add-consumer": ["--generate-secret"],
    "sis add": ["--no-check"],
}


def _args(path: str, cmd: Command, tmp_path: Path) -> list[str]:
    """`path` with a made-up value for each required parameter."""
    args = path.split()
    for p in cmd.params:
        if not p.required or p.name in ("tenant", "tenant_id"):
            continue
        value = str(tmp_path / "x.csv") if p.name == "file" else "x"
        if _is_option(p):
            args += [p.opts[0], value]
        else:
            args.append(value)
    return [*args, *EXTRA.get(path, []), "--json"]


def _main(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "argv", ["gradesync", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    return int(stop.value.code or 0)


def test_with_json_stdout_is_one_json_document_whatever_happens(
    cli_db: Database,
    cli_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Every command with --json, run with made-up values against a tenant without data:
    whether it works or is refused, stdout parses as JSON, an error is an `error` object
    with its exit code, and the human line is on stderr."""
    with cli_db.uow() as uow:
        from datetime import UTC, datetime

        uow.tenants.upsert(Tenant("bare", "Bare"), datetime(2025, 3, 1, tzinfo=UTC))
        uow.commit()
    (tmp_path / "x.csv").write_text("person_id,activity_id,score_given\n")
    for key, value in cli_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GRADESYNC_TENANT", "bare")
    monkeypatch.setenv("GRADESYNC_NEW_PASSWORD", "a long enough password")
    outcomes = {}
    for path, cmd in sorted(LEAVES.items()):
        if path in NO_JSON:
            continue
        code = _main(_args(path, cmd, tmp_path), monkeypatch)
        out, err = capsys.readouterr()
        try:
            doc = json.loads(out)
        except ValueError:
            pytest.fail(f"`gradesync {path}` printed no JSON (exit {code}): {out!r} {err!r}")
        if isinstance(doc, dict) and "error" in doc:
            e = doc["error"]
            assert code == e["exit_code"] and code in (1, 2, 3, 4), (path, doc)
            assert err.startswith("error: "), (path, err)
            for p in e["problems"]:
                assert f"{p['field']}: {p['message']} [{p['rule']}]" in err, (path, err)
        outcomes[path] = code
    # the made-up values are refused in every way there is, and some commands just work
    assert {0, 2, 3} <= set(outcomes.values()), outcomes


def test_every_bad_field_is_reported_on_its_own_line(
    gradesync: Run, cli_db: Database, tmp_path: Path
) -> None:
    gradesync("tenants", "create", "northwind")
    # API keys: a bad scope and an empty name
    r = gradesync("keys", "create", "-t", "northwind", "--name", "", "-s", "root", ok=False)
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and len(lines) >= 2, r.stderr
    assert all(line.startswith("error: ") and line.endswith("]") for line in lines), lines
    # named by the options typed, not the API's fields (`scopes`, `name`)
    assert {line.split(":")[1].strip() for line in lines} == {"--scope", "--name"}, lines
    # an LTI 1.3 platform with two bad URLs
    r = gradesync(
        "platforms",
        "add",
        "-t",
        "northwind",
        "--id",
        "canvas",
        "--issuer",
        "https://canvas.example",
        "--client-id",
        "1",
        "--deployment-id",
        "d",
        "--auth-login-url",
        "not a url",
        "--auth-token-url",
        "ftp://nope",
        "--key-set-url",
        "https://canvas.example/jwks",
        "--json",
        ok=False,
    )
    assert r.returncode == 2
    problems = json.loads(r.stdout)["error"]["problems"]
    fields = {p["field"] for p in problems}
    assert {"auth_login_url", "auth_token_url"} <= fields, problems
    assert len(r.stderr.splitlines()) == len(problems), r.stderr
    # a schedule: an unknown kind and a first run that is no date
    r = gradesync(
        "schedules",
        "add",
        "-t",
        "northwind",
        "--kind",
        "sometimes",
        "--spec",
        "2h",
        "--first-run",
        "tomorrow",
        ok=False,
    )
    assert r.returncode == 2
    # named by the options typed, not by the service's fields (first_run_at)
    assert "error: --first-run: " in r.stderr and "error: --kind: " in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 2, r.stderr
    # an LTI 1.1 consumer: named by the options typed, not by its fields (allowed_hosts[0])
    r = gradesync(
        "lti11",
        "add-consumer",
        "-t",
        "northwind",
        "--id",
        "canvas11",
        "--key",
        "k1",
        "--allowed-host",
        "bad host!",
        "--secret",
        "short",
        ok=False,
    )
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 2, r.stderr
    assert "error: --allowed-host: 'bad host!'" in r.stderr, r.stderr
    assert "error: --secret: At least 16 characters" in r.stderr, r.stderr
    # a key another consumer of the tenant has: a conflict with what is stored, exit 4
    lti11 = ("lti11", "add-consumer", "-t", "northwind", "--allowed-host", "lms.example.edu")
    gradesync(*lti11, "--id", "canvas11", "--key", "gradesync-canvas", "--secret", "s" * 16)
    r = gradesync(
        *lti11, "--id", "canvas12", "--key", "gradesync-canvas", "--secret", "s" * 16, ok=False
    )
    assert r.returncode == 4, r.stderr
    assert r.stderr == (
        "error: --key: The consumer key 'gradesync-canvas' is already the key of consumer "
        "'canvas11' of this tenant; every consumer needs its own key. [taken]\n"
    )
    r = gradesync(
        "schedules",
        "add",
        "-t",
        "northwind",
        "-k",
        "daily",
        "-s",
        "07:00",
        "--tz",
        "UTC",
        "--course",
        "nope",
        ok=False,
    )
    assert r.returncode == 2 and r.stderr.startswith("error: --course: "), r.stderr
    # grade policy: two malformed settings
    r = gradesync("policy", "set", "on", "=off", "-t", "northwind", ok=False)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 2, r.stderr


def test_errors_are_one_line_each_with_the_documented_exit_codes(
    gradesync: Run, cli_db: Database
) -> None:
    # a tenant that does not exist, for a list too (not "none", as if all were well)
    r = gradesync("runs", "list", "-t", "nobody", "--json", ok=False)
    assert r.returncode == 3
    assert r.stderr == "error: --tenant: tenant 'nobody' not found [not_found]\n"
    assert json.loads(r.stdout)["error"]["code"] == "not_found"
    r = gradesync("runs", "list", "-t", "", ok=False)
    assert r.returncode == 3 and r.stderr == "error: --tenant: tenant '' not found [not_found]\n"
    gradesync("tenants", "create", "northwind", "--no-key")
    r = gradesync("runs", "show", "run-x", "-t", "northwind", "--json", ok=False)
    assert r.returncode == 3 and r.stderr == "error: RUN_ID: run 'run-x' not found [not_found]\n"
    assert json.loads(r.stdout)["error"]["code"] == "not_found"
    r = gradesync("tenants", "create", "northwind", "--json", ok=False)
    assert r.returncode == 4 and json.loads(r.stdout)["error"]["code"] == "conflict"
    # the command line itself: the option named, the rule, where to look
    r = gradesync("runs", "list", "-t", "northwind", "--limit", "0", "--json", ok=False)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: --limit: ") and r.stderr.rstrip().endswith("[invalid]")
    assert "gradesync runs list --help" in r.stderr
    assert json.loads(r.stdout)["error"]["problems"][0]["field"] == "--limit"
    window = ("--since", "2025-02-01", "--until", "2025-01-01")
    r = gradesync("runs", "list", "-t", "northwind", *window, ok=False)
    assert r.returncode == 2 and r.stderr.startswith("error: --until: "), r.stderr
    assert r.stderr.rstrip().endswith("[after_since]"), r.stderr
    # a filter naming nothing of the tenant is not found (it listed no runs, as if none had run)
    r = gradesync("runs", "list", "-t", "northwind", "--course", "nope", "--json", ok=False)
    assert r.returncode == 3 and r.stderr.startswith("error: --course: "), r.stderr
    assert r.stderr.rstrip().endswith("[unknown_course]"), r.stderr
    assert json.loads(r.stdout)["error"]["problems"][0]["field"] == "--course"
    r = gradesync("runs", "list", "-t", "northwind", "--destination", "gone", ok=False)
    assert r.returncode == 3 and r.stderr.startswith("error: --destination: "), r.stderr
    r = gradesync("runs", "list", ok=False)
    assert r.returncode == 2 and r.stderr.startswith("error: --tenant: ")
    assert "[required]" in r.stderr and "GRADESYNC_TENANT" in r.stderr


def test_not_found_names_what_was_typed_and_the_rule_and_exits_3_everywhere(
    gradesync: Run, cli_db: Database
) -> None:
    from tests.cli.test_admin_cli import _roster, _tenant

    _tenant(cli_db, "northwind")
    _roster(cli_db)
    T = ("-t", "northwind")
    gradesync("sis", "add", "files", *T, "--file-based")
    # an activity the tenant does not have: the same mistake, the same answer, whichever
    # command it is typed in (sync said it as bad input, exit 2; sis select gave no field)
    for args, said in [
        (("sync", *T, "-c", "c1", "-a", "nope"), "error: --activity: No activity 'nope'. "),
        (("sis", "select", "files", "q1", "nope", *T), "error: ACTIVITY_IDS: No activity 'nope'."),
        (("sis", "post", "files", "c1", "--activity", "nope", *T), "error: --activity: "),
    ]:
        r = gradesync(*args, ok=False)
        assert r.returncode == 3, r.stderr
        [line] = r.stderr.splitlines()
        assert line.startswith(said) and line.endswith("[unknown_activity]"), line
    r = gradesync("sis", "select", "nosis", "q1", *T, "--json", ok=False)
    assert r.returncode == 3
    assert r.stderr == (
        "error: DESTINATION_ID: destination 'nosis' not found [unknown_destination]\n"
    )
    [problem] = json.loads(r.stdout)["error"]["problems"]
    assert problem["field"] == "DESTINATION_ID" and problem["rule"] == "unknown_destination"


def test_a_setting_outside_its_choices_is_refused_by_name(
    gradesync: Run, cli_env: dict[str, str]
) -> None:
    """A mistyped worker mode would have run the embedded worker beside the distributed
    ones without a word: refused, naming the variable and its choices."""
    gradesync("tenants", "create", "northwind", "--no-key")
    cli_env["GRADESYNC_WORKER_MODE"] = "distribute"
    r = gradesync("runs", "list", "-t", "northwind", ok=False)
    assert r.returncode != 0 and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: GRADESYNC_WORKER_MODE: "), r.stderr
    assert "'embedded' or 'distributed'" in r.stderr, r.stderr
    cli_env["GRADESYNC_WORKER_MODE"] = "Distributed"  # the case does not matter
    gradesync("runs", "list", "-t", "northwind")


def test_settings_checked_only_where_used_are_refused_at_start_by_name(
    gradesync: Run, cli_env: dict[str, str]
) -> None:
    """A bad SQLite `synchronous` was a traceback from the engine; a zero poll or a base URL
    without its scheme went through to do harm later. Each is one line naming the variable."""
    gradesync("tenants", "create", "northwind", "--no-key")
    cli_env["GRADESYNC_SQLITE_SYNCHRONOUS"] = "banana"
    cli_env["GRADESYNC_WORKER_POLL_SECONDS"] = "0"
    cli_env["GRADESYNC_BASE_URL"] = "grades.example.edu"
    r = gradesync("runs", "list", "-t", "northwind", ok=False)
    lines = r.stderr.splitlines()
    assert r.returncode == 1 and len(lines) == 3, r.stderr
    assert lines[0].startswith("error: GRADESYNC_BASE_URL: "), r.stderr
    assert "must be an http(s) URL" in lines[0], r.stderr
    assert lines[1].startswith("error: GRADESYNC_SQLITE_SYNCHRONOUS: "), r.stderr
    assert "'OFF', 'NORMAL', 'FULL' or 'EXTRA'" in lines[1], r.stderr
    assert lines[2].startswith("error: GRADESYNC_WORKER_POLL_SECONDS: "), r.stderr
    assert "greater than 0" in lines[2], r.stderr
    cli_env.update(
        GRADESYNC_SQLITE_SYNCHRONOUS="normal",  # the case does not matter
        GRADESYNC_WORKER_POLL_SECONDS="0.5",
        GRADESYNC_BASE_URL="https://grades.example.edu",
    )
    gradesync("runs", "list", "-t", "northwind")


def test_a_config_file_that_cannot_be_read_or_holds_no_setting_is_refused_by_name(
    gradesync: Run, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A mistyped GRADESYNC_CONFIG_FILE was skipped: the command went on with a fresh
    database and a new secret key. A mistyped key in it was ignored the same way."""
    data = Path(cli_env["GRADESYNC_DATA_DIR"])
    del cli_env["GRADESYNC_DATABASE_URL"], cli_env["GRADESYNC_SECRET_KEY"]
    cli_env["GRADESYNC_CONFIG_FILE"] = str(tmp_path / "nonexist.env")
    r = gradesync("tenants", "list", ok=False)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: GRADESYNC_CONFIG_FILE: cannot read it: "), r.stderr
    assert "nonexist.env" in r.stderr
    assert not data.exists()  # no database, no key: nothing was started
    r = gradesync("serve", "--port", "0", ok=False)
    assert r.returncode == 1 and r.stderr.startswith("error: GRADESYNC_CONFIG_FILE: "), r.stderr
    # every key that is no setting, one line each, without its value (it may be a secret)
    named = tmp_path / "gradesync.env"
    named.write_text(
        "GRADESYNC_SECRETKEY=s3cr3t\nDATABASE_URL=sqlite:///x.db\nGRADESYNC_LOG_LEVEL=info\n"
    )
    cli_env["GRADESYNC_CONFIG_FILE"] = str(named)
    r = gradesync("tenants", "list", "--json", ok=False)
    lines = r.stderr.splitlines()
    assert r.returncode == 1 and len(lines) == 2 and "s3cr3t" not in r.stderr, r.stderr
    assert lines[0].startswith("error: GRADESYNC_SECRETKEY: not a gradesync setting"), lines
    assert lines[1].startswith("error: DATABASE_URL: not a gradesync setting"), lines
    assert "did you mean GRADESYNC_DATABASE_URL?" in lines[1]
    problems = json.loads(r.stdout)["error"]["problems"]
    assert [p["rule"] for p in problems] == ["unknown_setting"] * 2
    assert not data.exists()
    named.write_text(f"GRADESYNC_SECRET_KEY=k\nGRADESYNC_DATA_DIR={data}\n")
    assert gradesync("tenants", "list").stdout.strip() == "none"


def test_allowing_every_address_is_warned_of_at_start(
    gradesync: Run, cli_env: dict[str, str]
) -> None:
    """docs/security.md: never 0.0.0.0/0. It is accepted (the operator decides) but said."""
    gradesync("tenants", "create", "northwind", "--no-key")
    cli_env["GRADESYNC_OUTBOUND_ALLOWED_NETWORKS"] = "10.20.0.0/16,0.0.0.0/0"
    r = gradesync("runs", "list", "-t", "northwind")
    assert "GRADESYNC_OUTBOUND_ALLOWED_NETWORKS allows 0.0.0.0/0: every address" in r.stderr
    assert "10.20.0.0/16" not in r.stderr, r.stderr
    cli_env["GRADESYNC_OUTBOUND_ALLOWED_NETWORKS"] = "169.254.0.0/16"
    r = gradesync("runs", "list", "-t", "northwind")
    assert "allows 169.254.0.0/16, which holds a cloud metadata address" in r.stderr, r.stderr
    cli_env["GRADESYNC_OUTBOUND_ALLOWED_NETWORKS"] = "10.20.0.0/16,127.0.0.1/32"
    assert "GRADESYNC_OUTBOUND" not in gradesync("runs", "list", "-t", "northwind").stderr


def test_a_worker_name_that_would_not_fit_its_id_is_refused(gradesync: Run) -> None:
    for name in ("a b", "w" * 101):
        r = gradesync("worker", "--name", name, ok=False)
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith("error: --name: Up to 100 characters"), r.stderr
        assert r.stderr.rstrip().endswith("[worker_name]"), r.stderr


def test_the_cli_uses_typer_s_public_api_only() -> None:
    """typer carries its own copy of click in a private module (`typer._click`) its
    maintainers may change in any release; the CLI imported it for its errors, its context
    and its help formatter. Nothing of gradesync imports a private module of typer."""
    import ast

    import gradesync

    private = []
    for path in sorted(Path(gradesync.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                # `from typer import _click` as `typer._click`, `from typer.x import y` too
                else [f"{node.module}.{a.name}" for a in node.names]
                if isinstance(node, ast.ImportFrom) and node.module
                else []
            )
            private += [
                f"{path.name}: {n}"
                for n in names
                if n.startswith("typer.") and any(p.startswith("_") for p in n.split(".")[1:])
            ]
    assert private == []
