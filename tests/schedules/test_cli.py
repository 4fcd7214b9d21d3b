"""`gradesync schedules ...` as an admin on the server runs it (in-process through typer's
runner, with the environment a real invocation reads: starting a Python per command would
cost seconds each)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradesync.adapters.db.database import Database
from gradesync.cli import app
from gradesync.testing import TEST_SECRET
from tests.schedules.conftest import seed_tenant
from tests.support.schedules import save_old_schedules


@dataclass
class Proc:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def gs(
    tmp_path: Path, _sqlite_template: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Proc]:
    """`gradesync schedules ARGS` on a tenant t1 with a course c1; `code` is the exit code
    expected."""
    path = tmp_path / "gradesync.db"
    path.write_bytes(_sqlite_template.read_bytes())
    db = Database(f"sqlite:///{path}", TEST_SECRET)
    seed_tenant(db, "t1")
    db.dispose()
    for key, value in dict(
        GRADESYNC_DATABASE_URL=f"sqlite:///{path}",
        GRADESYNC_SECRET_KEY=TEST_SECRET,
        GRADESYNC_DATA_DIR=str(tmp_path / "data"),
        GRADESYNC_TENANT="t1",
        COLUMNS="250",
        NO_COLOR="1",
    ).items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()

    def gs(*args: str, code: int = 0) -> Proc:
        result = runner.invoke(app, ["schedules", *args], catch_exceptions=False)
        proc = Proc(result.exit_code, result.stdout, result.stderr)
        assert proc.returncode == code, (args, proc.stdout, proc.stderr)
        return proc

    return gs


def test_admin_runs_schedules_from_the_command_line(gs: Callable[..., Proc]) -> None:
    runner = CliRunner()
    added = json.loads(
        gs(
            "add",
            "--kind",
            "weekly",
            "--spec",
            "mon,thu 6:00",
            "--course",
            "c1",
            "--destination",
            "sis",
            "--by",
            "alice",
            "--json",
        ).stdout
    )
    sid = added["id"]
    assert added["spec"] == "mon,thu 06:00" and added["time_zone"] == "America/New_York"
    assert added["posted_by"] == "alice" and len(added["upcoming"]) == 3

    listing = gs("list").stdout
    assert sid in listing and "weekly on Mon, Thu at 06:00" in listing and "alice" in listing

    assert "paused at" in gs("pause", sid, "--by", "bob").stdout
    assert "paused" in gs("list").stdout
    assert "resumed; next run" in gs("resume", sid, "--by", "bob").stdout

    edited = json.loads(gs("edit", sid, "--spec", "fri 18:00", "--json").stdout)
    assert edited["spec"] == "fri 18:00"

    run = json.loads(gs("run-now", sid, "--by", "carol", "--json").stdout)
    assert run["trigger"] == "manual" and run["actor"] == "carol" and run["joined"] is False
    assert "joined the run already going" in gs("run-now", sid, "--by", "dave").stdout

    history = json.loads(gs("history", sid, "--json").stdout)
    assert [(h["action"], h["actor"]) for h in history][:3] == [
        ("run_now", "dave"),
        ("run_now", "carol"),
        ("edited", history[2]["actor"]),
    ]
    assert history[0]["run"]["id"] == run["id"]

    bad = gs("add", "--kind", "daily", "--spec", "7pm", "--tz", "UTC", code=2)
    assert "--spec:" in bad.stderr and "[time_format]" in bad.stderr
    assert "not found" in gs("pause", "sch_nope", code=3).stderr

    assert "paused 1 schedule(s)" in gs("pause-all").stdout
    # deleting asks first, as `destinations delete` does; --json asks nothing: --yes needed
    assert "not found" in gs("delete", "sch_nope", "--yes", code=3).stderr
    refused = json.loads(gs("delete", sid, "--json", code=2).stdout)["error"]
    assert [p["field"] for p in refused["problems"]] == ["--yes"]
    declined = runner.invoke(app, ["schedules", "delete", sid], input="n\n")
    assert declined.exit_code == 1 and f"Delete schedule {sid}?" in declined.stderr
    assert sid in gs("list").stdout
    assert "deleted" in gs("delete", sid, "--yes").stdout
    assert sid not in gs("list").stdout
    preview = gs(
        "preview",
        "--kind",
        "daily",
        "--spec",
        "02:30",
        "--tz",
        "America/New_York",
        "--first-run",
        "2031-03-08T12:00",
        "--count",
        "2",
    ).stdout
    assert "2031-03-09 03:00 EDT" in preview and "2031-03-10 02:30 EDT" in preview


def test_every_problem_of_an_edit_is_named_by_its_option(gs: Callable[..., Proc]) -> None:
    """A new spec alone is checked against the stored kind, with the zone: both reported,
    as `schedules add` reports them, and nothing changes."""
    sid = json.loads(
        gs("add", "--kind", "daily", "--spec", "01:00", "--tz", "UTC", "--json").stdout
    )["id"]
    bad = gs("edit", sid, "--tz", "Mars/Base", "--spec", "99:99", code=2)
    assert "--tz:" in bad.stderr and "[iana_time_zone]" in bad.stderr
    assert "--spec:" in bad.stderr and "[time_format]" in bad.stderr
    shown = json.loads(gs("show", sid, "--json").stdout)
    assert (shown["spec"], shown["time_zone"]) == ("01:00", "UTC")


def test_an_edit_that_both_narrows_and_widens_is_refused(gs: Callable[..., Proc]) -> None:
    """`--destination lms --all-destinations` was taken, `--all-destinations` winning."""
    sid = json.loads(gs("add", "--kind", "interval", "--spec", "1h", "--json").stdout)["id"]
    bad = gs("edit", sid, "--destination", "sis", "--all-destinations", code=2)
    assert "--destination" in bad.stderr and "--all-destinations" in bad.stderr
    assert "[exclusive]" in bad.stderr
    bad = gs("edit", sid, "--course", "c1", "--all-courses", "--json", code=2)
    [refused] = json.loads(bad.stdout)["error"]["problems"]
    assert refused["field"] == "--course" and "--all-courses" in refused["message"]
    shown = json.loads(gs("show", sid, "--json").stdout)
    assert (shown["destination_id"], shown["course_id"]) == (None, None)


def test_history_names_a_bad_time_by_its_option(gs: Callable[..., Proc]) -> None:
    bad = gs("history", "--until", "yesterday", code=2)
    assert bad.stderr.startswith("error: --until: ") and "[datetime]" in bad.stderr
    bad = gs("history", "--since", "2025-09-02", "--until", "2025-09-01", code=2)
    assert bad.stderr.startswith("error: --until: ") and "[after_since]" in bad.stderr


def test_list_shows_schedules_an_earlier_version_stored(
    gs: Callable[..., Proc], tmp_path: Path
) -> None:
    """One at the end of year 9999 and one whose rule no longer parses: listed beside the
    others (`schedules list` once stopped with an OverflowError traceback)."""
    sid = json.loads(gs("add", "--kind", "interval", "--spec", "1h", "--json").stdout)["id"]
    db = Database(f"sqlite:///{tmp_path / 'gradesync.db'}", TEST_SECRET)
    save_old_schedules(db, "t1", "cli:old")
    db.dispose()
    table = gs("list").stdout
    for shown in (sid, "sch_lastrun", "every 744 hours", "9999-12-31 23:00 UTC", "daily 7pm"):
        assert shown in table, table
    listed = {s["id"]: s for s in json.loads(gs("list", "--json").stdout)}
    assert listed["sch_lastrun"]["upcoming"] == ["9999-12-31T23:00:00Z"]
    assert listed["sch_oldrule"]["upcoming"] == []
    assert "every 744 hours" in gs("show", "sch_lastrun").stdout


def test_a_time_the_schedules_zone_cannot_show_is_printed_in_utc(gs: Callable[..., Proc]) -> None:
    """9999-12-31T23:00Z is already year 10000 in Kiritimati (+14): printed in UTC (the
    command once stopped with an OverflowError traceback)."""
    args = ("--kind", "interval", "--spec", "744h", "--tz", "Pacific/Kiritimati")
    added = gs("add", *args, "--first-run", "9999-12-31T23:00:00Z")
    assert "first run: 9999-12-31 23:00 UTC" in added.stdout, added.stdout
    assert "9999-12-31 23:00 UTC" in gs("list").stdout


def test_add_names_every_problem_at_once(gs: Callable[..., Proc]) -> None:
    """An unknown course or destination was named only once the spec and the zone were
    right; the API names all four problems of such a request at once, and so does the CLI."""
    bad = gs(
        "add",
        "--kind",
        "weekly",
        "--spec",
        "funday 07:00",
        "--tz",
        "Mars/Base",
        "--course",
        "nope",
        "--destination",
        "zz",
        "--json",
        code=2,
    )
    fields = {p["field"] for p in json.loads(bad.stdout)["error"]["problems"]}
    assert fields == {"--spec", "--tz", "--course", "--destination"}, bad.stdout
    assert gs("list", "--json").stdout.strip() == "[]"


def test_history_reads_at_80_columns(
    gs: Callable[..., Proc], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`schedules history` at 80 columns: each entry's schedule, action, run, outcome,
    counts and note in lines of the table's second column. Before, eight columns left the
    counts a few characters wide, one word a line down the screen."""
    import os
    from dataclasses import replace
    from datetime import UTC, datetime

    from gradesync.domain.model import RunOutcome, RunStage

    sid = json.loads(
        gs("add", "--kind", "daily", "--spec", "06:00", "--course", "c1", "--json").stdout
    )["id"]
    run_id = json.loads(gs("run-now", sid, "--by", "carol", "--json").stdout)["id"]
    db = Database(os.environ["GRADESYNC_DATABASE_URL"], TEST_SECRET)
    counts = {"sent": 40, "delivered": 38, "rejected": {"unknown_user": 1, "line_item_gone": 1}}
    with db.uow() as uow:
        run = uow.runs.get(run_id, "t1")
        assert run is not None
        done = datetime.now(UTC)
        uow.runs.update(
            replace(
                run,
                stage=RunStage.FINISHED,
                outcome=RunOutcome.PARTLY_FAILED,
                counts=counts,
                started_at=done,
                finished_at=done,
            )
        )
        uow.commit()
    db.dispose()

    monkeypatch.setenv("COLUMNS", "80")
    out = gs("history", sid).stdout
    assert max(len(line) for line in out.splitlines()) <= 80, out
    said = " ".join(line.split("│")[2].strip() for line in out.splitlines() if "│" in line)
    assert f"{sid}: run_now, by carol" in said, out
    assert f"{run_id}: partly_failed" in said, out
    assert "rejected 2 (line_item_gone 1, unknown_user 1)" in said, out
    # no cell narrower than a count: no line of the table holds a lone word fragment
    assert len(out.splitlines()) < 20, out
