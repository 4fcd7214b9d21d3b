"""`gradesync sync --wait` against a running `gradesync serve`, whose worker runs the run."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from gradesync.adapters.db.database import Database
from gradesync.cli._common import flat_counts
from gradesync.domain.model import Destination, DestinationKind
from tests.cli.test_admin_cli import _roster, _tenant
from tests.support.cli import GRADESYNC, Run, free_port, serving


@pytest.fixture
def server(cli_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    with serving(cli_env, tmp_path / "serve.log") as (_, url):
        yield url


def test_sync_wait_follows_the_run_to_the_end(
    gradesync: Run, cli_db: Database, server: str
) -> None:
    _tenant(cli_db, "northwind")
    _roster(cli_db)
    r = gradesync(
        "sync", "-t", "northwind", "-c", "c1", "--trigger", "resync", "--wait", "--timeout", "60"
    )
    assert "queued run run_" in r.stdout
    assert "finished: succeeded" in r.stdout
    runs = json.loads(gradesync("runs", "list", "-t", "northwind", "--json").stdout)
    assert len(runs) == 1 and runs[0]["stage"] == "finished"
    assert runs[0]["trigger"] == "resync" and runs[0]["actor"].startswith("cli")

    bad = gradesync("sync", "-t", "northwind", "-c", "c1", "-a", "nope", ok=False)
    assert bad.returncode == 3 and "unknown_activity" in bad.stderr  # not found
    bad = gradesync("sync", "-t", "northwind", "--trigger", "auto", ok=False)
    assert bad.returncode == 2 and "one_of" in bad.stderr
    assert bad.stderr.startswith("error: --trigger:"), bad.stderr  # the option, not `trigger`


def _on_a_terminal(env: dict[str, str], *args: str) -> str:
    """The command with its stdout on a terminal (a pseudo-terminal), as a person runs it:
    what it printed there, its control sequences as line ends."""
    main, sub = pty.openpty()
    proc = subprocess.Popen(
        [GRADESYNC, *args], env=env, stdout=sub, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    )
    os.close(sub)
    said = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the command ended, and the terminal with it
            break
        if not chunk:
            break
        said += chunk
    os.close(main)
    assert proc.wait(timeout=60) == 0, said
    plain = re.sub(r"\x1b\[[0-9;]*m", "", said.decode())  # bold
    # each redraw of the bar (after the cursor is moved back) on a line of its own
    return re.sub(r"(\x1b\[[0-9;?]*[A-Za-z]|\r)+", "\n", plain)


def test_sync_waits_progress_line_wraps_at_80_columns_and_cuts_nothing(
    gradesync: Run, cli_db: Database, cli_env: dict[str, str], server: str
) -> None:
    """The progress line gave the run's id, the bar, the stage with its counts and the time a
    column each, all on one line: at 80 columns the id and the counts were cut (`…`) and the
    bar and the time left out. The stage and its counts now wrap between words."""
    _tenant(cli_db, "northwind")
    _roster(cli_db)
    cli_env["COLUMNS"] = "80"
    args = ("sync", "-t", "northwind", "-c", "c1", "--trigger", "resync", "--wait")
    out = _on_a_terminal(cli_env, *args, "--timeout", "60")
    assert "…" not in out, out
    assert max(len(line) for line in out.splitlines()) <= 80, out
    [run] = json.loads(gradesync("runs", "list", "-t", "northwind", "--json").stdout)
    assert f"queued run {run['id']} (resync)" in out, out
    assert f"run {run['id']} finished: succeeded" in out, out
    counts = flat_counts(run["counts"])
    assert len(f"finished ({counts})") > 50, counts  # more than its share of 80 columns
    assert f" finished ({counts})" in " ".join(out.split()), out  # whole, wrapped
    assert "━" * 20 in out and "0:00:" in out, out  # the bar and the time elapsed


def test_sync_wait_into_a_pipe_prints_plain_lines_in_words(
    gradesync: Run, cli_db: Database, server: str
) -> None:
    """Piped (a log, `| tee`), --wait printed the terminal's bar with its control characters,
    and the counts by their keys (`sent_so_far`): it prints a plain line per change."""
    _tenant(cli_db, "northwind")
    _roster(cli_db)
    args = ("sync", "-t", "northwind", "-c", "c1", "--trigger", "resync", "--wait")
    out = gradesync(*args, "--timeout", "60").stdout
    assert "━" not in out and "\x1b" not in out and "\r" not in out, repr(out)
    [run] = json.loads(gradesync("runs", "list", "-t", "northwind", "--json").stdout)
    lines = out.splitlines()
    assert lines[0] == f"queued run {run['id']} (resync)", out
    assert lines[-2:] == [
        f"finished ({flat_counts(run['counts'])})",
        f"run {run['id']} finished: succeeded",
    ], out
    assert len(lines) == len(set(lines)), out  # a line when something changed, not per poll
    # the counts in words, while a run sends as after
    assert flat_counts({"not_synced": 1, "sent_so_far": 3}) == "sent so far 3, not synced 1"
    assert flat_counts({"rejected": {"unknown_user": 2}}) == "rejected 2 (unknown_user 2)"


def test_a_second_serve_on_the_same_sqlite_file_refuses_to_start(
    cli_env: dict[str, str], server: str
) -> None:
    second = subprocess.run(
        [GRADESYNC, "serve", "--port", str(free_port())],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    # one line (docs/operations.md), not alembic's plugin and migration chatter before it
    [last] = second.stderr.strip().splitlines()
    assert last.startswith("error: another gradesync serve (pid"), second.stderr
    assert "gradesync.db" in last and "Traceback" not in second.stderr
    assert httpx.get(f"{server}/readyz", timeout=5).status_code == 200  # the first goes on


def test_a_second_sync_of_a_scope_joins_the_first_and_says_so(
    gradesync: Run, cli_db: Database
) -> None:
    """No worker runs here: the first run stays queued, and the second request joins it."""
    _tenant(cli_db, "northwind")
    _roster(cli_db)
    first = json.loads(gradesync("sync", "-t", "northwind", "-c", "c1", "--json").stdout)
    assert first["joined"] is False
    second = json.loads(gradesync("sync", "-t", "northwind", "-c", "c1", "--json").stdout)
    assert second["joined"] is True and second["id"] == first["id"]
    said = gradesync("sync", "-t", "northwind", "-c", "c1").stdout
    assert f"joined run {first['id']} (manual, queued), already going" in said, said


@pytest.mark.parametrize("timeout", ["-5", "0", "nan"])
def test_a_wait_of_no_time_is_refused_before_a_run_is_queued(
    gradesync: Run, cli_db: Database, timeout: str
) -> None:
    """`--timeout -5` queued the run, then gave up on it at once (exit 124)."""
    _tenant(cli_db, "northwind")
    _roster(cli_db)
    r = gradesync("sync", "-t", "northwind", "-c", "c1", "--wait", "--timeout", timeout, ok=False)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"error: --timeout: must be above 0 seconds, not {timeout}")
    assert json.loads(gradesync("runs", "list", "-t", "northwind", "--json").stdout) == []


def test_a_sync_into_a_destination_the_course_is_not_linked_to_is_refused(
    gradesync: Run, cli_db: Database
) -> None:
    _tenant(cli_db, "northwind")
    _roster(cli_db)
    with cli_db.uow() as uow:
        uow.destinations.upsert(
            Destination("northwind", "sis", DestinationKind.ONEROSTER_CSV, "District SIS"),
            datetime.now(UTC),
        )
        uow.commit()
    bad = gradesync("sync", "-t", "northwind", "-c", "c1", "-d", "sis", ok=False)
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.startswith("error: --destination: "), bad.stderr
    assert "[not_linked]" in bad.stderr and "gradesync sis map-class sis c1" in bad.stderr
    assert json.loads(gradesync("runs", "list", "-t", "northwind", "--json").stdout) == []
