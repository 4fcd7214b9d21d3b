"""Sync runs: stages, counts, one run per scope, resync, remaster, repair, dead workers."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.config import Settings
from gradesync.domain.errors import InvalidInput, NotFound
from gradesync.domain.model import (
    DeliveryState,
    LedgerKey,
    RunOutcome,
    RunScope,
    RunStage,
    Trigger,
)
from gradesync.runtime import Runtime
from gradesync.services.clock import SystemClock
from gradesync.services.runs import get_run, get_run_stages, request_run
from gradesync.services.worker import Engine
from gradesync.testing import DEADLINE, TEST_SECRET
from gradesync.testing.double import not_synced, unknown_user
from tests.engine.conftest import COURSE, DEST, FAST, Harness, T, learner, ledger, post, seed

SCOPE = RunScope(T, DEST, COURSE)
ITEM = "https://lms/courses/1/items/a1"


def _request(db: Database, harness: Harness, trigger: Trigger, scope: RunScope = SCOPE):  # type: ignore[no-untyped-def]
    return request_run(db.uow, harness.waker, SystemClock(), scope, trigger, "ada@school")


async def test_run_goes_through_its_stages_with_counts(harness: Harness, db: Database) -> None:
    seed(db, learners=4, linked=3)
    harness.remote.fail_person("sub-p002", unknown_user())
    post(db, None, [("a1", learner(i), 5.0 + i) for i in range(4)])
    run, joined = _request(db, harness, Trigger.MANUAL)
    assert not joined and run.stage is RunStage.QUEUED
    done = await harness.engine.execute_run(run.id)
    assert done is not None
    assert done.stage is RunStage.FINISHED
    # one learner the LMS does not know is a known, accepted rejection: the run did its job
    assert done.outcome is RunOutcome.SUCCEEDED
    c = done.counts
    assert c["sent"] == 2
    assert c["skipped"] == {"no_person_link": 1}
    assert c["rejected"] == {"unknown_user": 1}
    assert c["retrying"] == 0 and c["pending"] == 0
    assert c["verified"] == 2 and c["differs"] == 0
    assert c["columns"]["written"] == 1
    assert done.message is not None and "1 rejected (unknown user: 1)" in done.message
    assert done.message.startswith("Succeeded; 1 learner the LMS does not know: 2 sent")
    stored = get_run(db.uow, T, run.id)
    assert stored is not None and stored.outcome is RunOutcome.SUCCEEDED
    assert stored.trigger is Trigger.MANUAL and stored.actor == "ada@school"
    assert stored.started_at is not None and stored.finished_at is not None
    stages = [s["stage"] for s in get_run_stages(db.uow, T, run.id)]
    assert stages == ["queued", "computing", "provisioning", "sending", "verifying", "finished"]
    assert get_run(db.uow, "other-tenant", run.id) is None


async def test_a_second_request_joins_the_queued_run(harness: Harness, db: Database) -> None:
    seed(db, learners=1)
    post(db, None, [("a1", learner(0), 5.0)])
    harness.remote.hold = asyncio.Event()  # runs stay in their sending stage until released
    first, joined1 = _request(db, harness, Trigger.MANUAL)
    second, joined2 = _request(db, harness, Trigger.RESYNC)
    assert not joined1 and joined2 and second.id == first.id
    # a stronger request upgrades the queued run instead of queueing a second one
    third, joined3 = _request(db, harness, Trigger.REMASTER)
    assert joined3 and third.id == first.id and third.trigger is Trigger.REMASTER
    other, joined4 = _request(db, harness, Trigger.MANUAL, RunScope(T, DEST, COURSE, ("a1",)))
    assert not joined4 and other.id != first.id
    with db.uow() as uow:
        assert len(uow.runs.active_for_scope(SCOPE.key)) == 1
    started = await harness.engine.start_queued_runs()
    assert sorted(started) == sorted([first.id, other.id])
    # while a run of the scope runs, a request that it covers joins it
    await asyncio.wait_for(harness.remote.arrived.wait(), DEADLINE)
    waiting, joined5 = _request(db, harness, Trigger.REMASTER)
    assert joined5 and waiting.id == first.id
    harness.remote.hold.set()
    for run_id in started:
        await harness.engine.run_finished(run_id)


async def test_one_run_per_scope_at_a_time(harness: Harness, db: Database) -> None:
    seed(db, learners=1)
    running, _ = _request(db, harness, Trigger.SCHEDULE)
    with db.uow() as uow:
        now = datetime.now(UTC)
        claimed = uow.runs.claim_next("w-a", now, now - timedelta(seconds=60))
        uow.commit()
    assert claimed is not None and claimed.id == running.id
    queued, joined = _request(db, harness, Trigger.MANUAL)  # stronger: queued behind it
    assert not joined and queued.id != running.id
    assert await harness.engine.execute_run(queued.id) is None  # the scope is busy
    with db.uow() as uow:
        assert uow.runs.get(queued.id).stage is RunStage.QUEUED  # type: ignore[union-attr]


async def test_runs_at_once_over_the_same_results_each_count_them_and_say_so(
    harness: Harness, db: Database
) -> None:
    """A run's `sent` is its scope's results delivered while it ran, whoever sent them
    (docs/operations.md): a course's run at its LMS and one at every destination, at once,
    each count the three results delivered once, so their figures add up to six. Each run's
    message says so and names the other; a run that finished before they started is not
    named, nor does it name them."""
    seed(db, learners=3)
    earlier, _ = _request(db, harness, Trigger.MANUAL)
    assert await harness.engine.execute_run(earlier.id) is not None
    post(db, None, [("a1", learner(i), 5.0 + i) for i in range(3)])
    harness.remote.hold = asyncio.Event()  # both runs have started before anything is sent
    at_lms, _ = _request(db, harness, Trigger.MANUAL)
    everywhere, _ = _request(db, harness, Trigger.MANUAL, RunScope(T, None, COURSE))
    started = await harness.engine.start_queued_runs()
    assert sorted(started) == sorted([at_lms.id, everywhere.id])
    await asyncio.wait_for(harness.remote.arrived.wait(), DEADLINE)
    harness.remote.hold.set()
    done = {run_id: await harness.engine.run_finished(run_id) for run_id in started}
    assert harness.remote.sends == 3
    with db.uow() as uow:
        for i in range(3):
            lines = uow.deliveries.for_key(LedgerKey(T, DEST, "a1", learner(i)))
            # one send, which one run's history names
            assert [line["run_id"] in started for line in lines] == [True]
    for run_id, other in ((at_lms.id, everywhere.id), (everywhere.id, at_lms.id)):
        run = done[run_id]
        assert run.counts["sent"] == 3, run.counts
        assert run.message is not None and run.message.startswith("3 sent; 0 unchanged."), (
            run.message
        )
        assert (
            f"Ran alongside {other}, whose scope overlaps this one's: a result of both "
            "delivered while both ran is counted as sent by each." in run.message
        )
        assert earlier.id not in run.message
    first = get_run(db.uow, T, earlier.id)
    assert first is not None and "Ran alongside" not in (first.message or "")


async def test_noop_resync_sends_nothing(harness: Harness, db: Database) -> None:
    seed(db, learners=3)
    post(db, None, [("a1", learner(i), 5.0) for i in range(3)])
    run, _ = _request(db, harness, Trigger.MANUAL)
    first = await harness.engine.execute_run(run.id)
    assert first is not None and first.counts["sent"] == 3
    sends = harness.remote.sends
    again, _ = _request(db, harness, Trigger.RESYNC)
    second = await harness.engine.execute_run(again.id)
    assert second is not None and second.outcome is RunOutcome.SUCCEEDED
    assert harness.remote.sends == sends
    assert second.counts["sent"] == 0 and second.counts["unchanged"] == 3
    assert second.counts["columns"] == {"written": 0, "unchanged": 1, "not_synced": 0, "failed": 0}


async def test_a_column_not_synced_by_design_counts_as_not_synced(
    harness: Harness, db: Database
) -> None:
    seed(db, learners=2, activities=("a1", "a2"))
    harness.remote.column_failures["a2"] = not_synced()
    post(db, None, [(a, learner(i), 5.0) for i in range(2) for a in ("a1", "a2")])
    run, _ = _request(db, harness, Trigger.MANUAL)
    done = await harness.engine.execute_run(run.id)
    assert done is not None and done.outcome is RunOutcome.SUCCEEDED, done.message
    c = done.counts
    assert c["columns"] == {"written": 1, "unchanged": 0, "not_synced": 1, "failed": 0}
    assert c["sent"] == 2 and c["skipped"] == {"not_selected_for_sis": 2}
    assert c["rejected"] == {} and c["retrying"] == 0 and c["pending"] == 0
    assert done.message is not None and "rejected" not in done.message


async def test_remaster_resends_everything_with_column_details(
    harness: Harness, db: Database
) -> None:
    seed(db, learners=3, activities=("a1", "a2"))
    post(db, None, [(a, learner(i), 5.0) for i in range(3) for a in ("a1", "a2")])
    run, _ = _request(db, harness, Trigger.MANUAL)
    await harness.engine.execute_run(run.id)
    sends, columns = harness.remote.sends, harness.remote.column_writes
    first_ts = harness.remote.results[(ITEM, "sub-p000")].timestamp
    remaster, _ = _request(db, harness, Trigger.REMASTER)
    done = await harness.engine.execute_run(remaster.id)
    assert done is not None and done.outcome is RunOutcome.SUCCEEDED
    assert harness.remote.sends == sends + 6
    assert harness.remote.column_writes == columns + 2
    assert done.counts["sent"] == 6 and done.counts["columns"]["written"] == 2
    assert harness.remote.results[(ITEM, "sub-p000")].timestamp > first_ts


async def test_repair_resends_selected_activity_only(harness: Harness, db: Database) -> None:
    seed(db, learners=2, activities=("a1", "a2"))
    post(db, None, [(a, learner(i), 5.0) for i in range(2) for a in ("a1", "a2")])
    run, _ = _request(db, harness, Trigger.MANUAL)
    await harness.engine.execute_run(run.id)
    sends, columns = harness.remote.sends, harness.remote.column_writes
    repair, _ = _request(db, harness, Trigger.REPAIR, RunScope(T, DEST, COURSE, ("a2",)))
    done = await harness.engine.execute_run(repair.id)
    assert done is not None and done.counts["sent"] == 2 and done.counts["keys"] == 2
    assert harness.remote.sends == sends + 2
    assert harness.remote.column_writes == columns  # repair leaves column details alone


async def test_other_rejections_still_make_a_run_partly_failed(
    harness: Harness, db: Database
) -> None:
    from gradesync.services.destination import FailureClass, RemoteFailure

    seed(db, learners=2)
    refused = RemoteFailure(FailureClass.REJECTED, "attempts_exceeded", "No attempts left.")
    harness.remote.fail_person("sub-p001", refused)
    post(db, None, [("a1", learner(i), 5.0) for i in range(2)])
    run, _ = _request(db, harness, Trigger.MANUAL)
    done = await harness.engine.execute_run(run.id)
    assert done is not None and done.outcome is RunOutcome.PARTLY_FAILED
    assert done.message is not None and not done.message.startswith("Succeeded")


async def test_manual_run_tries_rejected_results_again(harness: Harness, db: Database) -> None:
    seed(db, learners=1)
    remote = harness.remote
    remote.fail_person("sub-p000", unknown_user())
    post(db, None, [("a1", learner(0), 5.0)])
    await harness.engine.process_dirty()
    await harness.engine.deliver_due()
    assert ledger(db)[("a1", learner(0))].state is DeliveryState.REJECTED
    remote.failures.clear()  # the learner was fixed in the LMS
    # a scheduled run does not retry rejections (no retried-forever rejections) ...
    scheduled, _ = _request(db, harness, Trigger.SCHEDULE)
    done = await harness.engine.execute_run(scheduled.id)
    assert done is not None and done.outcome is RunOutcome.FAILED
    assert done.counts["rejected"] == {"unknown_user": 1}
    # ... a person pressing "Sync now" does
    manual, _ = _request(db, harness, Trigger.MANUAL)
    done = await harness.engine.execute_run(manual.id)
    assert done is not None and done.outcome is RunOutcome.SUCCEEDED
    assert done.counts["retried"] == 1 and done.counts["sent"] == 1


async def test_past_due_zeros_are_computed_by_a_run(harness: Harness, db: Database) -> None:
    from gradesync.domain.model import PastDueZeros, PolicySettings

    seed(db, learners=2)
    with db.uow() as uow:
        act = uow.activities.get(T, "a1")
        assert act is not None
        uow.activities.upsert(
            replace(
                act,
                due_at=datetime.now(UTC) - timedelta(days=1),
                policy=PolicySettings(past_due_zeros=PastDueZeros.ON),
            )
        )
        uow.commit()
    post(db, None, [("a1", learner(0), 8.0)])
    run, _ = _request(db, harness, Trigger.MANUAL)
    done = await harness.engine.execute_run(run.id)
    assert done is not None and done.counts["sent"] == 2
    assert harness.remote.score_of(ITEM, "sub-p001") == 0.0


async def test_bad_requests_change_nothing(harness: Harness, db: Database) -> None:
    seed(db, learners=1)
    with pytest.raises(InvalidInput) as e:
        _request(db, harness, Trigger.MANUAL, RunScope(T, DEST, None, ("a1",)))
    assert e.value.problems[0].field == "course_id"
    with pytest.raises(InvalidInput) as e:
        _request(db, harness, Trigger.MANUAL, RunScope(T, DEST, COURSE, ("nope",)))
    assert e.value.problems[0].field == "activity_ids[0]"
    with pytest.raises(InvalidInput) as e:
        _request(db, harness, Trigger.AUTO)
    assert e.value.problems[0].field == "trigger"
    with pytest.raises(NotFound):
        _request(db, harness, Trigger.MANUAL, RunScope("ghost"))
    with db.uow() as uow:
        assert uow.runs.history(T) == []


async def test_a_run_whose_worker_died_is_requeued_and_finished(
    harness: Harness, db: Database
) -> None:
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    # its destination made before the run first started: one made since is not the run's
    seed(db, learners=2, at=long_ago - timedelta(minutes=1))
    post(db, None, [("a1", learner(i), 5.0) for i in range(2)])
    run, _ = _request(db, harness, Trigger.MANUAL)
    with db.uow() as uow:  # a worker claimed it, then stopped proving it was alive
        claimed = uow.runs.claim_next("dead-worker", long_ago, long_ago - timedelta(minutes=1))
        uow.commit()
    assert claimed is not None and claimed.stage is RunStage.COMPUTING
    await harness.start()  # recovery on start requeues it; the worker runs it
    finished = await harness.engine.run_finished(run.id)
    assert finished.outcome is RunOutcome.SUCCEEDED and finished.counts["sent"] == 2
    history = get_run_stages(db.uow, T, run.id)
    stages = [s["stage"] for s in history]
    assert stages[:4] == ["queued", "computing", "queued", "computing"]
    assert stages[-1] == "finished"
    # the history says who stopped and who took over
    live = harness.engine.worker_id
    heard = long_ago.strftime("%H:%M:%S")
    assert history[1]["worker"] == "dead-worker"
    assert (
        history[2]["note"]
        == f"worker dead-worker stopped (last heard {heard} UTC); requeued by {live}"
    )
    assert history[3]["worker"] == live and history[3]["note"] == f"resumed by {live}"
    assert finished.started_at is not None and finished.started_at <= long_ago  # its first start


def test_a_resumed_runs_message_says_it_resumed(harness: Harness, db: Database) -> None:
    """A run requeued (its database lost, or its worker stopped) kept the message
    "requeued: ..." while another pass had it back at work: it now says it resumed."""
    seed(db, learners=1)
    run, _ = _request(db, harness, Trigger.MANUAL)
    now = datetime.now(UTC)
    with db.uow() as uow:
        uow.runs.claim_next("w1", now, now - timedelta(minutes=1), run_id=run.id)
        assert uow.runs.requeue_own(run.id, "w1", now, "database lost at 10:00:00 UTC")
        requeued = uow.runs.get(run.id)
        assert requeued is not None and requeued.message == (
            "requeued: database lost at 10:00:00 UTC"
        )
        later = now + timedelta(seconds=15)
        resumed = uow.runs.claim_next("w1", later, later - timedelta(minutes=1), run_id=run.id)
        uow.commit()
    assert resumed is not None and resumed.stage is RunStage.COMPUTING
    assert resumed.message == f"resumed by w1 at {later:%H:%M:%S} UTC"
    # why it was requeued stays in its history
    notes = [s.get("note") for s in get_run_stages(db.uow, T, run.id)]
    assert "database lost at 10:00:00 UTC" in notes and "resumed by w1" in notes


async def test_a_destination_without_this_course_finishes_with_a_message(
    harness: Harness, db: Database
) -> None:
    seed(db, learners=1)
    with db.uow() as uow:
        from gradesync.domain.model import Course

        uow.courses.upsert(Course(T, "c2", "Chemistry"))
        uow.commit()
    run, _ = _request(db, harness, Trigger.MANUAL, RunScope(T, DEST, "c2"))
    done = await harness.engine.execute_run(run.id)
    assert done is not None and done.outcome is RunOutcome.SUCCEEDED
    assert done.message is not None and "no destination is linked" in done.message


async def test_a_run_waits_for_rows_a_stopped_worker_still_holds(
    harness: Harness, db: Database
) -> None:
    """A worker died holding some of the run's rows: the run does not end "partly failed,
    still pending" while their lease runs; it sends them once the lease ends."""
    await harness.use(replace(FAST, retry_patience=timedelta(milliseconds=300)))
    seed(db, learners=4)
    post(db, None, [("a1", learner(i), 5.0) for i in range(4)])
    await harness.engine.process_dirty()
    held = list(ledger(db).values())[:2]
    with db.uow() as uow:  # what the dead worker left: two rows leased for another 1.5 s
        uow.ledger.lease(
            [(r.key, datetime.now(UTC)) for r in held],
            "dead-worker",
            datetime.now(UTC) + timedelta(seconds=1.5),
        )
        uow.commit()
    run, _ = _request(db, harness, Trigger.MANUAL)
    done = await harness.engine.execute_run(run.id)
    assert done is not None and done.outcome is RunOutcome.SUCCEEDED, done.message
    assert done.counts["sent"] == 4 and done.counts["pending"] == 0


def _counted(make: Any) -> tuple[Any, list[object]]:
    """`make` (a unit-of-work factory), recording each unit it hands out."""
    units: list[object] = []

    def counted() -> Any:
        units.append(make)
        return make()

    return counted, units


async def _runtime_engine_uses(db: Database, tmp_path: Path, attr: str, factory: Any) -> None:
    """The engine the runtime builds gives its run executor `factory` as `attr`."""
    settings = Settings(database_url=db.url, secret_key=TEST_SECRET, data_dir=tmp_path)
    engine = Runtime(settings=settings, db=db).build_engine()
    try:
        assert getattr(engine.executor, attr) == factory
    finally:
        await engine.aclose()


async def _remaster_with(harness: Harness, db: Database, **factories: Any) -> Any:
    """A remaster of the course by an engine given these unit-of-work `factories`."""
    await harness.engine.aclose()
    harness.engine = Engine(db.uow, SystemClock(), harness.factory, FAST, **factories)
    run, _ = _request(db, harness, Trigger.REMASTER)
    done = await harness.engine.execute_run(run.id)
    assert done is not None and done.outcome is RunOutcome.SUCCEEDED, done
    return done


async def test_a_run_computes_in_bulk_units_of_work(
    harness: Harness, db: Database, tmp_path: Path
) -> None:
    """A run's computing (its learners, and its chunks) goes through `Database.bulk`, whose
    transactions let live writes go first on SQLite (tests/integration/test_sqlite_gate.py);
    the runtime gives its engine that factory."""
    seed(db, learners=3, activities=("a1", "a2"))
    post(db, None, [(a, learner(i), 5.0) for i in range(3) for a in ("a1", "a2")])
    bulk, bulk_units = _counted(db.bulk)
    done = await _remaster_with(harness, db, bulk=bulk)
    assert done.counts["sent"] == 6
    # the course's learners, then per activity its people and one chunk
    assert len(bulk_units) == 1 + 2 * 2
    await _runtime_engine_uses(db, tmp_path, "bulk", db.bulk)


async def test_a_runs_summary_and_read_backs_take_no_write_lock(
    harness: Harness, db: Database, tmp_path: Path
) -> None:
    """A run's summary (a count over its whole scope: a second at 1,000,000 results) and
    its read-backs' ledger reads go through `Database.reads`, which on SQLite waits for no
    writer and holds no write lock: live grades do not queue behind them. The runtime
    gives its engine that factory."""
    seed(db, learners=3)
    post(db, None, [("a1", learner(i), 5.0) for i in range(3)])
    reads, read_units = _counted(db.reads)
    done = await _remaster_with(harness, db, reads=reads)
    assert done.counts["sent"] == 3 and done.counts["keys"] == 3
    # the summary, the destinations made since it started (not counted), the one column's
    # facts read back, whether its destination remains, and the runs that ran alongside it
    assert len(read_units) == 5
    await _runtime_engine_uses(db, tmp_path, "reads", db.reads)


async def test_a_runs_computing_makes_way_while_live_grades_flow(
    harness: Harness, db: Database
) -> None:
    from gradesync.services.live_traffic import LiveTraffic

    seed(db, learners=6)
    # three chunks of learners, and a clock that stands still: live grades computed now
    # stay recent through the run
    live = LiveTraffic(lambda: 100.0)
    engine = await harness.use(replace(FAST, scope_chunk=2), live=live)
    post(db, harness.waker, [("a1", learner(0), 7.0)])
    assert (await engine.process_dirty()).dirty == 1  # a live grade computed
    run, _ = _request(db, harness, Trigger.REMASTER)
    done = await engine.execute_run(run.id)
    assert done is not None and done.counts["computed"] == 6
    assert live.pauses == 3  # after each chunk

    quiet = LiveTraffic(lambda: 100.0)  # no live grade: the next run never pauses
    engine = await harness.use(replace(FAST, scope_chunk=2), live=quiet)
    run, _ = _request(db, harness, Trigger.REMASTER)
    assert (await engine.execute_run(run.id)) is not None
    assert quiet.pauses == 0


def test_the_outcomes_docs_name_the_rejections_a_run_accepts() -> None:
    """docs/operations.md said any rejection makes a run partly failed, while a learner the
    LMS does not know is accepted (the test above): each accepted code is documented there."""
    from gradesync.services.sync import ACCEPTED_REJECTIONS

    doc = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    outcomes = doc.split("### Outcomes and counts", 1)[1].split("`counts` holds", 1)[0]
    succeeded = outcomes.split("- **partly failed**", 1)[0]
    assert ACCEPTED_REJECTIONS and all(f"`{code}`" in succeeded for code in ACCEPTED_REJECTIONS)


async def test_a_job_ended_while_its_run_is_being_claimed_leaves_the_run_running(
    harness: Harness, db: Database
) -> None:
    """The queue's job for a run ends (procrastinate aborts jobs a stopping worker still
    runs) while the engine's claim of the run is in flight: the claim commits, and the run
    must still run here. It was left claimed and run by nobody."""
    seed(db, learners=2)
    post(db, None, [("a1", learner(i), 6.0) for i in range(2)])
    run, _ = _request(db, harness, Trigger.MANUAL)
    engine = harness.engine
    claim, entered, release = engine._claim, threading.Event(), threading.Event()

    def held_claim(run_id: str | None):  # type: ignore[no-untyped-def]
        entered.set()
        assert release.wait(DEADLINE)
        return claim(run_id)

    engine._claim = held_claim  # type: ignore[method-assign]
    job = asyncio.create_task(engine.execute_run(run.id))
    assert await asyncio.to_thread(entered.wait, DEADLINE)
    job.cancel()  # the job ends, its claim still in the database's hands
    with pytest.raises(asyncio.CancelledError):
        await job
    finished = engine.run_finished(run.id)
    release.set()
    await asyncio.wait_for(finished, DEADLINE)
    done = get_run(db.uow, T, run.id)
    assert done.stage is RunStage.FINISHED and done.outcome is RunOutcome.SUCCEEDED, done


async def test_a_job_for_a_run_this_engine_runs_leaves_the_run_to_it(
    harness: Harness, db: Database
) -> None:
    """The runs loop started a run; the queue's job for it arrives meanwhile: the job does
    nothing, and the engine still holds the running task (the job's failed claim dropped it,
    so a stopping engine neither cancelled nor awaited the run)."""
    seed(db, learners=1)
    post(db, None, [("a1", learner(0), 6.0)])
    harness.remote.hold = asyncio.Event()  # the run stays in its sending stage until released
    run, _ = _request(db, harness, Trigger.MANUAL)
    engine = harness.engine
    assert await engine.start_queued_runs() == [run.id]
    live = engine._runs[run.id]
    await asyncio.wait_for(harness.remote.arrived.wait(), DEADLINE)  # sending, held
    assert await engine.execute_run(run.id) is None
    assert engine._runs.get(run.id) is live
    finished = engine.run_finished(run.id)
    harness.remote.hold.set()
    await asyncio.wait_for(finished, DEADLINE)
