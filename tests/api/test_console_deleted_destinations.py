"""A destination deleted while a run ran is named in the console as on the command line: by
the name it had, counted as one destination with what the run sent it before, in the list
of runs, on the run's page and its live panel, and on the course's page. The console listed
its id and added up what was sent ("2 (moodle 2)")."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

from gradesync.domain.model import RunOutcome, RunScope, RunStage, SyncRun, Trigger
from tests.support.api import ROSTER, ApiEnv, Caller

SAID = "1 (Moodle (moodle): 2 sent before)"


def _words(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_console_names_a_destination_deleted_under_a_run(api: ApiEnv) -> None:
    admin = Caller(api.client, api.tenant("t1", "admin"))
    assert admin.post("/ingest", json=ROSTER).status_code == 202
    api.destination("t1", "lms")
    moodle = api.destination("t1", "moodle")
    with api.db.uow() as uow:
        uow.destinations.upsert(replace(moodle, name="Moodle"), api.runtime.clock.now())
        uow.commit()
    at = api.runtime.clock.now()
    run = SyncRun(
        "run-1",
        RunScope("t1", None, "c1"),
        Trigger.MANUAL,
        "ops",
        stage=RunStage.FINISHED,
        outcome=RunOutcome.PARTLY_FAILED,
        counts={"sent": 3, "destinations_deleted": {"moodle": 2}},
        created_at=at,
        started_at=at,
        finished_at=at + timedelta(minutes=1),
    )
    with api.db.uow() as uow:
        uow.runs.add(run)
        uow.runs.update(run, worker_id="w1", heartbeat_at=at)
        uow.destinations.delete("t1", "moodle", at + timedelta(seconds=30))
        uow.commit()
    api.console_admin("t1")

    pages = {
        "runs": "/console/runs",
        "run": "/console/runs/run-1",
        "course": "/console/courses/c1",
        "history": "/console/courses/c1/history",
    }
    for page, url in pages.items():
        got = api.client.get(url)
        assert got.status_code == 200, (page, got.text)
        text = _words(got.text)
        assert f"destinations deleted {SAID}" in text, (page, text)
        assert "(moodle 2)" not in text, (page, text)
    progress = api.client.get("/console/runs/run-1/progress").json()
    assert ["destinations deleted", SAID] in [list(item) for item in progress["count_items"]], (
        progress["count_items"]
    )
