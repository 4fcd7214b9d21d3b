"""A run whose worker stopped and that another resumed: its history says the resume once and
its stages once per attempt, in the API, the CLI's JSON and the console's run page, instead
of the stored lines that seemed to run every stage twice for no reason."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from gradesync.domain.model import RunOutcome, RunScope, RunStage, SyncRun, Trigger
from gradesync.services.carry import Carry
from tests.support.api import ROSTER, ApiEnv, Caller

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
STOPPED = "worker w-dead stopped (last heard 10:00:06 UTC); requeued by w-live"


def _stopped_and_resumed(api: ApiEnv, *, stopped_in: RunStage, noted: str | None = None) -> Caller:
    """Run run-1 goes as far as `stopped_in` on w-dead, which then stops; w-live requeues
    it, resumes it (noting `noted` in its current stage) and finishes it."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    assert admin.post("/ingest", json=ROSTER).status_code == 202
    at = [T0 + timedelta(seconds=s) for s in range(20)]
    with api.db.uow() as uow:
        run = SyncRun("run-1", RunScope("t1", None, "c1"), Trigger.MANUAL, "ops", created_at=at[0])
        uow.runs.add(run)
        claimed = uow.runs.claim_next("w-dead", at[1], at[0])
        assert claimed is not None
        if stopped_in is not RunStage.COMPUTING:
            uow.runs.update(replace(claimed, stage=RunStage.PROVISIONING), worker_id="w-dead",
                            heartbeat_at=at[2])  # fmt: skip
            uow.runs.update(replace(claimed, stage=RunStage.SENDING), worker_id="w-dead",
                            heartbeat_at=at[6])  # fmt: skip
        else:
            uow.runs.heartbeat("run-1", "w-dead", at[6])
        assert uow.runs.requeue_stale(at[10], at[10], keep_worker="w-live") == ["run-1"]
        resumed = uow.runs.claim_next("w-live", at[11], at[10])
        assert resumed is not None
        if noted is not None:
            uow.runs.note("run-1", noted)
        for n, stage in enumerate(
            (RunStage.PROVISIONING, RunStage.SENDING, RunStage.VERIFYING), 12
        ):
            uow.runs.update(replace(resumed, stage=stage), worker_id="w-live", heartbeat_at=at[n])
        done = replace(
            resumed, stage=RunStage.FINISHED, outcome=RunOutcome.SUCCEEDED, finished_at=at[15]
        )
        uow.runs.update(done, worker_id="w-live", heartbeat_at=at[15])
        uow.commit()
    return admin


def _said(stages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(s["attempt"], s["stage"], s["at"][11:19], s.get("note")) for s in stages]


def test_the_api_says_a_resume_once_and_each_attempts_stages_once(api: ApiEnv) -> None:
    admin = _stopped_and_resumed(api, stopped_in=RunStage.SENDING)
    run = admin.get("/runs/run-1").json()
    assert _said(run["stages"]) == [
        (1, "queued", "10:00:00", None),
        (1, "computing", "10:00:01", None),
        (1, "provisioning", "10:00:02", None),
        (1, "sending", "10:00:06", None),
        # the requeue and the claim that took it up again: one line, when it resumed
        (2, "resumed", "10:00:11", f"{STOPPED}; resumed by w-live"),
        # it had computed: what it computed stands, it does not compute again
        (2, "provisioning", "10:00:12", None),
        (2, "sending", "10:00:13", None),
        (2, "verifying", "10:00:14", None),
        (2, "finished", "10:00:15", None),
    ]
    # the run history lists it alike
    [listed] = admin.get("/runs").json()
    assert listed["stages"] == run["stages"]


def test_a_run_stopped_while_computing_says_it_computes_again(api: ApiEnv) -> None:
    admin = _stopped_and_resumed(api, stopped_in=RunStage.COMPUTING)
    said = _said(admin.get("/runs/run-1").json()["stages"])
    assert said[:4] == [
        (1, "queued", "10:00:00", None),
        (1, "computing", "10:00:01", None),
        (2, "resumed", "10:00:11", f"{STOPPED}; resumed by w-live"),
        (2, "computing", "10:00:11", None),
    ]
    assert [s[1] for s in said[4:]] == ["provisioning", "sending", "verifying", "finished"]


def test_what_a_resume_computing_again_notes_is_said_on_its_computing_line(api: ApiEnv) -> None:
    """A run stopped while computing computes again once resumed; the results it carries
    from a remaster are noted then, and said on that computing line, not on the resume's."""
    carries = Carry("run-0", results={("d1", "c1", "a1"): ["p1", "p2"]}).describe()
    admin = _stopped_and_resumed(api, stopped_in=RunStage.COMPUTING, noted=carries)
    said = _said(admin.get("/runs/run-1").json()["stages"])
    assert said[2:4] == [
        (2, "resumed", "10:00:11", f"{STOPPED}; resumed by w-live"),
        (2, "computing", "10:00:11", carries),
    ]


def test_a_run_waiting_to_resume_says_why_it_waits(api: ApiEnv) -> None:
    admin = Caller(api.client, api.tenant("t1", "admin"))
    assert admin.post("/ingest", json=ROSTER).status_code == 202
    with api.db.uow() as uow:
        uow.runs.add(SyncRun("run-1", RunScope("t1", None, "c1"), Trigger.MANUAL, "ops",
                             created_at=T0))  # fmt: skip
        assert uow.runs.claim_next("w-dead", T0, T0) is not None
        later = T0 + timedelta(seconds=10)
        assert uow.runs.requeue_stale(later, later, keep_worker="w-live") == ["run-1"]
        uow.commit()
    said = _said(admin.get("/runs/run-1").json()["stages"])
    assert said[-1] == (
        2,
        "queued",
        "10:00:10",
        "worker w-dead stopped (last heard 10:00:00 UTC); requeued by w-live",
    )


def test_the_run_page_shows_the_resume_once_and_the_second_attempt(api: ApiEnv) -> None:
    _stopped_and_resumed(api, stopped_in=RunStage.SENDING)
    api.console_admin("t1")
    page = api.client.get("/console/runs/run-1").text
    history = page.split('id="stages-h"', 1)[1]
    assert history.count("Working out grades") == 1
    assert history.count("Waiting to start") == 1
    assert history.count("Resumed: attempt 2") == 1
    assert f"{STOPPED}; resumed by w-live" in history
    listed = api.client.get("/console/runs").text
    assert listed.count("Working out grades") == 1
    assert "Sending grades → Resumed → Preparing gradebook columns" in listed
