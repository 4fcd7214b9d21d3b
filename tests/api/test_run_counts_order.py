"""A run's counts listed in words read in the order a person expects, what arrived first and the
problems after, on the command line and in the console. They were listed as stored (the
read-back's `differs`, "read back different", before `sent`) or by name (`differs` first)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from typer.testing import CliRunner

from gradesync.cli import app
from gradesync.domain.model import RunOutcome, RunScope, RunStage, SyncRun, Trigger
from tests.support.api import ApiEnv

AT = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
# as a run's stages store them: computing's, provisioning's, verifying's, then sending's
STORED = {
    "computed": 21,
    "changed": 11,
    "retried": 0,
    "columns": {"failed": 1, "not_synced": 0, "unchanged": 0, "written": 2},
    "verified": 10,
    "differs": 1,
    "unverifiable": 0,
    "overridden": 0,
    "uncounted": 0,
    "keys": 22,
    "sent": 11,
    "unchanged": 0,
    "pending": 0,
    "retrying": 0,
    "skipped": {"no_attempt_yet": 10},
    "rejected": {"unknown_user": 1},
}


def _finished_run(api: ApiEnv) -> None:
    api.tenant("t1", "admin")
    run = SyncRun(
        "run-1",
        RunScope("t1"),
        Trigger.MANUAL,
        "ops",
        stage=RunStage.FINISHED,
        outcome=RunOutcome.PARTLY_FAILED,
        counts=STORED,
        created_at=AT,
        started_at=AT,
        finished_at=AT,
    )
    with api.db.uow() as uow:
        uow.runs.add(run)
        uow.runs.update(run, worker_id="w1", heartbeat_at=AT)
        uow.commit()


def _order(text: str, *words: str) -> list[str]:
    """`words` in the order `text` says them (each found once)."""
    at = {w: text.index(w) for w in words}
    return sorted(words, key=at.__getitem__)


def test_the_command_line_lists_what_arrived_first_and_the_problems_after(
    api: ApiEnv, api_cli: CliRunner
) -> None:
    _finished_run(api)
    listed = api_cli.invoke(app, ["runs", "list", "-t", "t1"])
    assert listed.exit_code == 0, listed.output
    brief = " ".join(listed.output.replace("│", " ").split())  # the table's cell, unwrapped
    said = "partly_failed: sent 11, skipped 10 (no_attempt_yet 10), rejected 1 (unknown_user 1)"
    assert f"{said}, differs 1 " in brief, brief
    shown = api_cli.invoke(app, ["runs", "show", "run-1", "-t", "t1"])
    assert shown.exit_code == 0, shown.output
    line = " ".join(shown.output.split("outcome:", 1)[1].split())  # wrapped at 80 columns
    assert line.startswith("partly_failed; sent 11, unchanged 0, verified 10, keys 22,"), line
    # the columns written first, the one that failed last
    assert "columns 3 (written 2, unchanged 0, not_synced 0, failed 1)" in line
    assert _order(line, "verified", "pending", "skipped", "rejected", "differs") == [
        "verified",
        "pending",
        "skipped",
        "rejected",
        "differs",
    ]


def test_the_console_lists_what_arrived_first_and_the_problems_after(api: ApiEnv) -> None:
    _finished_run(api)
    api.console_admin("t1")
    history = re.sub(r"<[^>]+>", " ", api.client.get("/console/runs").text)
    brief = ["sent 11", "not sent 10", "rejected 1", "read back different 1"]
    assert _order(history, *brief) == brief
    page = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", api.client.get("/console/runs/run-1").text))
    every = page.split("All counts", 1)[1]
    said = ["sent 11", "read back as sent 10", "grades in scope 22", "pending 0", "rejected 1"]
    assert _order(every, *said, "read back different 1") == [*said, "read back different 1"]
    assert "(written 2, unchanged 0, not synced 0, failed 1)" in every
    progress = api.client.get("/console/runs/run-1/progress").json()
    assert [label for label, _ in progress["count_items"]] == [
        "sent",
        "unchanged",
        "pending",
        "retrying",
        "not sent",
        "rejected",
        "read back different",
    ]
