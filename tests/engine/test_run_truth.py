"""A run's outcome tells the truth: 'pending' only where a destination is paused, and what a
remaster could not rewrite goes with the next run, which says so (`services.carry`)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.model import (
    Destination,
    DestinationKind,
    RunOutcome,
    RunScope,
    RunStage,
    SyncRun,
    Trigger,
)
from gradesync.services import destination_admin, policies, sync
from gradesync.services.carry import covers, owed
from gradesync.services.clock import SystemClock
from gradesync.services.delivery import DeliveryStats
from gradesync.services.destination import FailureClass, RemoteFailure
from gradesync.services.runs import get_run, get_run_stages, request_run
from gradesync.services.worker import Engine
from gradesync.testing import DEADLINE, ManualClock
from gradesync.testing.double import rate_limited, server_error
from gradesync.testing.seeding import add_destination
from tests.engine.conftest import COURSE, DEST, FAST, Harness, T, learner, post, seed

SCOPE = RunScope(T, DEST, COURSE)
REFUSED = RemoteFailure(FailureClass.REJECTED, "invalid_score", "Score refused.", status=400)


async def _run(db: Database, harness: Harness, trigger: Trigger) -> SyncRun:
    run, _ = request_run(db.uow, harness.waker, SystemClock(), SCOPE, trigger, "ada@school")
    done = await harness.engine.execute_run(run.id)
    assert done is not None
    return done


def _notes(db: Database, run_id: str) -> str:
    return " ".join(str(s.get("note")) for s in get_run_stages(db.uow, T, run_id))


async def test_a_grade_arriving_while_the_run_verifies_is_sent_not_left_pending(
    harness: Harness, db: Database, monkeypatch: Any
) -> None:
    seed(db, learners=2)
    post(db, None, [("a1", learner(i), 5.0) for i in range(2)])
    executor = harness.engine.executor
    verifying = executor._verifying

    async def a_grade_arrives(*args: Any, **kw: Any) -> dict[str, int]:
        post(db, None, [("a1", learner(0), 9.0)])  # a newer, better attempt meanwhile
        await harness.engine.process_dirty()
        return await verifying(*args, **kw)

    monkeypatch.setattr(executor, "_verifying", a_grade_arrives)
    done = await _run(db, harness, Trigger.MANUAL)
    assert done.counts["pending"] == 0, done.counts
    assert done.outcome is RunOutcome.SUCCEEDED, done.message
    assert harness.remote.score_of("https://lms/courses/1/items/a1", "sub-p000") == 9.0


@pytest.mark.parametrize("arriving", [1, 3])
async def test_a_slow_down_met_while_the_run_verifies_is_waited_out(
    harness: Harness, db: Database, monkeypatch: Any, arriving: int
) -> None:
    """Grades arrive while the run verifies, and their live sends meet a 429 with a 1 s
    Retry-After: the destination is paused for that second, well within the run's patience.
    The run waits it out and sends them, rather than ending with them pending (or retrying)
    behind a pause that was about to end. One grade: its send retries at the pause's end;
    three, sent one at a time: the two after the 429 wait pending."""
    seed(db, learners=3, config={"concurrency": 1})
    post(db, None, [("a1", learner(i), 5.0) for i in range(3)])
    executor = harness.engine.executor
    verifying = executor._verifying
    met: list[DeliveryStats] = []

    async def grades_arrive(*args: Any, **kw: Any) -> dict[str, int]:
        post(db, None, [("a1", learner(i), 9.0) for i in range(arriving)])
        await harness.engine.process_dirty()
        harness.remote.fail_next(1, rate_limited(1))
        met.append(await harness.engine.deliver_due())  # the live sends
        return await verifying(*args, **kw)

    monkeypatch.setattr(executor, "_verifying", grades_arrive)
    done = await _run(db, harness, Trigger.MANUAL)
    assert met[0].retrying == 1 and met[0].delivered == 0, met  # the 429 paused the LMS
    assert (done.counts["pending"], done.counts["retrying"]) == (0, 0), done.message
    assert done.outcome is RunOutcome.SUCCEEDED, done.message
    item = "https://lms/courses/1/items/a1"
    assert [harness.remote.score_of(item, f"sub-{learner(i)}") for i in range(3)] == [
        *[9.0] * arriving,
        *[5.0] * (3 - arriving),
    ]


async def test_an_admins_pause_met_while_the_run_verifies_is_named_not_waited_for(
    harness: Harness, db: Database, monkeypatch: Any
) -> None:
    """A grade arrives while the run verifies, and an admin pauses the destination until
    resumed: the run stops at once and its message names the pause."""
    seed(db, learners=2)
    post(db, None, [("a1", learner(i), 5.0) for i in range(2)])
    executor = harness.engine.executor
    verifying = executor._verifying

    async def paused_meanwhile(*args: Any, **kw: Any) -> dict[str, int]:
        post(db, None, [("a1", learner(0), 9.0)])
        await harness.engine.process_dirty()
        destination_admin.pause(db.uow, SystemClock(), T, DEST, actor="admin", reason="exam week")
        return await verifying(*args, **kw)

    monkeypatch.setattr(executor, "_verifying", paused_meanwhile)
    waits = _Waits()
    monkeypatch.setattr(executor, "monotonic", waits.monotonic)
    monkeypatch.setattr(executor, "sleep", waits.sleep)
    done = await _run(db, harness, Trigger.MANUAL)
    assert waits.waits == []
    assert done.counts["pending"] == 1 and done.counts["sent"] == 1
    assert done.outcome is RunOutcome.PARTLY_FAILED
    assert done.message == (
        "1 sent; 0 unchanged; 1 still pending (waiting for Canvas test paused (exam week); "
        "sent when resumed)."
    )


class _Waits:
    """The sending stage's clock and waits, counted: time moves only when it waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.mark.parametrize("where", ["sending", "resending"])
async def test_a_destination_answering_every_send_with_429_holds_the_run_one_patience(
    harness: Harness, db: Database, where: str
) -> None:
    """Every send answered `429 Retry-After: 2`, patience 3 s: the run waits out one pause,
    meets the next 429, and ends once its patience is spent, not once per place it sends
    (the sending stage, verifying's resend of grades changed in the LMS, the rounds after
    verifying). Time is the test's: pauses end, and the run's waits pass, as the run waits."""
    seed(db, learners=2)
    post(db, None, [("a1", learner(i), 5.0) for i in range(2)])
    clock = ManualClock()
    settings = replace(FAST, retry_patience=timedelta(seconds=3))
    engine = Engine(db.uow, clock, harness.factory, settings, waker=harness.waker)
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    engine.executor.monotonic = clock.monotonic
    engine.executor.sleep = wait
    remote = harness.remote
    try:
        if where == "resending":
            # sent, then typed over in the LMS under "gradesync wins": verifying resends them
            first, _ = request_run(db.uow, harness.waker, clock, SCOPE, Trigger.MANUAL, "ada")
            assert (await engine.execute_run(first.id)) is not None
            policies.set_tenant_policy(db.uow, clock, None, T, {"keep_lms_edits": False})
            typed = clock.advance(1)
            for key, stored in list(remote.results.items()):
                remote.results[key] = replace(stored, score_given=3.0, timestamp=typed)
            waits.clear()
        remote.fail_next(1000, rate_limited(2))
        sends = remote.sends
        run, _ = request_run(db.uow, harness.waker, clock, SCOPE, Trigger.MANUAL, "ada@school")
        done = await engine.execute_run(run.id)
    finally:
        await engine.aclose()
    assert done is not None
    assert done.outcome is RunOutcome.FAILED, done.message
    assert (done.counts["sent"], done.counts["retrying"]) == (0, 2), done.message
    assert done.counts.get("overridden", 0) == (2 if where == "resending" else 0), done.counts
    assert waits and sum(waits) <= 3.0 + 0.1, waits
    assert remote.sends - sends <= 4, remote.sends - sends  # two tries of each at most


async def test_a_paused_destinations_rows_are_reported_not_waited_for(
    harness: Harness, db: Database, monkeypatch: Any
) -> None:
    """Its rows cannot be sent until the pause ends: the run does not look at them again
    every 0.1 s for its whole patience (5 s here, 30 s by default) before saying so."""
    seed(db, learners=2)
    destination_admin.pause(db.uow, SystemClock(), T, DEST, actor="admin", reason="exam week")
    post(db, None, [("a1", learner(i), 5.0) for i in range(2)])
    await harness.engine.process_dirty()
    waits = _Waits()
    monkeypatch.setattr(harness.engine.executor, "monotonic", waits.monotonic)
    monkeypatch.setattr(harness.engine.executor, "sleep", waits.sleep)
    done = await _run(db, harness, Trigger.MANUAL)
    assert waits.waits == []
    assert done.counts["pending"] == 2 and harness.remote.sends == 0
    assert done.outcome is not RunOutcome.SUCCEEDED
    # its column, never made, waits with them: nothing is asked of a paused destination
    assert done.message == (
        "0 sent; 0 unchanged; 2 still pending (waiting for Canvas test paused (exam week); "
        "sent when resumed); 1 column(s) could not be provisioned (lms/a1, destination_paused: "
        "nothing is asked of a paused destination; the column is written with its results once "
        "the pause ends)."
    )


async def test_the_message_names_only_the_paused_destinations_holding_pending_rows(
    harness: Harness, db: Database
) -> None:
    """A course's run names the pause its pending rows wait for, not another destination of
    the tenant paused too that holds none of them."""
    seed(db, learners=2)
    add_destination(db.uow, T, "other", name="Consumer One")  # not linked to the course
    destination_admin.pause(db.uow, SystemClock(), T, "other", actor="admin", reason="fixing")
    destination_admin.pause(db.uow, SystemClock(), T, DEST, actor="admin", reason="exam week")
    post(db, None, [("a1", learner(i), 5.0) for i in range(2)])
    await harness.engine.process_dirty()
    scope = RunScope(T, None, COURSE)
    run, _ = request_run(db.uow, harness.waker, SystemClock(), scope, Trigger.MANUAL, "ada")
    done = await harness.engine.execute_run(run.id)
    assert done is not None and done.counts["pending"] == 2, done and done.counts
    assert done.message is not None and "Consumer One" not in done.message, done.message
    assert "2 still pending (waiting for Canvas test paused (exam week); sent when resumed)" in (
        done.message
    )


async def test_a_pause_ending_after_the_patience_is_named_with_its_end(
    harness: Harness, db: Database, monkeypatch: Any
) -> None:
    """A timed pause that ends after the run's patience is not waited for: the run ends at
    once and says until when its results wait."""
    seed(db, learners=2)
    post(db, None, [("a1", learner(i), 5.0) for i in range(2)])
    await harness.engine.process_dirty()
    until = datetime(2100, 1, 1, 9, 30, 5, tzinfo=UTC)
    destination_admin.pause(db.uow, SystemClock(), T, DEST, actor="ada", until=until)
    waits = _Waits()
    monkeypatch.setattr(harness.engine.executor, "monotonic", waits.monotonic)
    monkeypatch.setattr(harness.engine.executor, "sleep", waits.sleep)
    done = await _run(db, harness, Trigger.MANUAL)
    assert waits.waits == []
    # nothing asked of the paused LMS, its column included
    assert done.counts["pending"] == 2 and harness.remote.sends == 0
    assert harness.remote.column_calls == 0 and done.counts["columns"]["failed"] == 1
    assert done.message == (
        "0 sent; 0 unchanged; 2 still pending (waiting for Canvas test paused until 2100-01-01 "
        "09:30:05 UTC (paused by ada); sent when it ends); 1 column(s) could not be provisioned "
        "(lms/a1, destination_paused: nothing is asked of a paused destination; the column "
        "is written with its results once the pause ends)."
    )
    assert done.counts["column_failures"] == {"destination_paused": 1}


def test_the_message_says_a_timed_pauses_results_go_when_it_ends() -> None:
    """Nobody resumes a timed pause (a Retry-After, the breaker, an admin's pause with an
    end): its results go when it ends. An admin's pause without an end, when resumed."""
    counts = {"sent": 0, "unchanged": 0, "pending": 3}
    until = datetime(2100, 1, 1, 9, 30, 5, tzinfo=UTC)
    admin = Destination(T, "a", DestinationKind.LTI13_AGS, "A", enabled=False, pause_reason="x")
    timed = Destination(T, "b", DestinationKind.LTI13_AGS, "B", paused_until=until)
    other = replace(timed, name="C")
    off = replace(admin, paused_until=until)  # turned off: its end is no end
    for paused, when in [
        ([admin], "sent when resumed"),
        ([off], "sent when resumed"),
        ([timed], "sent when it ends"),
        ([timed, other], "sent when they end"),
        ([admin, timed], "sent when resumed or when a timed pause ends"),
    ]:
        assert sync._describe(counts, paused).endswith(f"; {when})."), paused
    assert sync._describe(counts, [timed]) == (
        "0 sent; 0 unchanged; 3 still pending (waiting for B paused until 2100-01-01 09:30:05 "
        "UTC; sent when it ends)."
    )


async def test_a_pause_ending_within_the_patience_is_waited_for_once(
    harness: Harness, db: Database, monkeypatch: Any
) -> None:
    """A short pause (a Retry-After, the breaker's cooldown) is waited out as a retry is: one
    wait until it ends, then its rows go with the run."""
    seed(db, learners=2)
    post(db, None, [("a1", learner(i), 5.0) for i in range(2)])
    await harness.engine.process_dirty()
    until = SystemClock().now() + timedelta(seconds=1)
    destination_admin.pause(db.uow, SystemClock(), T, DEST, actor="admin", until=until)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(seconds)

    monkeypatch.setattr(harness.engine.executor, "sleep", sleep)
    done = await _run(db, harness, Trigger.MANUAL)
    assert done.outcome is RunOutcome.SUCCEEDED, done.message
    assert done.counts["sent"] == 2
    # one wait to the pause's end (a second, should the first end a hair early), not polls
    assert 1 <= len(slept) <= 2, slept


async def test_what_a_remaster_could_not_rewrite_goes_with_the_next_run(
    harness: Harness, db: Database
) -> None:
    seed(db, learners=3, activities=("a1", "a2"))
    post(db, None, [(a, learner(i), 5.0) for i in range(3) for a in ("a1", "a2")])
    assert (await _run(db, harness, Trigger.MANUAL)).outcome is RunOutcome.SUCCEEDED

    # the remaster: the LMS refuses one learner's grade and fails the column's rewrite
    remote = harness.remote
    remote.fail_person("sub-p001", REFUSED)
    remote.column_failures["a1"] = server_error()
    calls = remote.column_calls
    remaster = await _run(db, harness, Trigger.REMASTER)
    assert remaster.outcome is RunOutcome.PARTLY_FAILED
    # a1's grades go to the column as it is once its check by their send failed (the run's
    # own write tries again and fails): the column's failures, once per process and once
    # by the run, hold no grade and open no breaker
    assert remaster.counts["rejected"] == {"invalid_score": 2}
    assert remaster.counts["sent"] == 4 and remaster.counts["retrying"] == 0
    assert remaster.counts["columns"]["failed"] == 1
    assert remaster.counts["columns_failed"] == ["lms/a1"]
    # a1's column asked by its grades' send once, and by the run twice (its second try)
    # beside a2's written once
    assert remote.column_calls - calls == 4
    with db.uow() as uow:
        held = uow.destinations.get(T, DEST)
    assert held is not None and held.enabled and held.paused_until is None, held

    # fixed in the LMS; a scheduled run would leave a rejection alone, but these are owed
    remote.failures.clear()
    remote.column_failures.clear()
    sends = remote.sends
    written = {item.rsplit("/", 1)[-1]: details for item, details in remote.columns.items()}
    nxt = await _run(db, harness, Trigger.SCHEDULE)
    assert nxt.outcome is RunOutcome.SUCCEEDED, nxt.message
    # the results it could not rewrite: a1's three (two of them sent to the column as it
    # was) and the refused one of a2
    assert nxt.counts["carried"] == {"from_run": remaster.id, "results": 4, "columns": 1}
    assert remote.sends == sends + 4
    # the column it could not rewrite is rewritten though unchanged (by the run, or first by
    # a retry of its grades); the other one is not
    now = {item.rsplit("/", 1)[-1]: details for item, details in remote.columns.items()}
    assert now["a1"] is not written["a1"] and now["a2"] is written["a2"]
    assert nxt.counts["columns"]["written"] == 1 and nxt.counts["columns"]["unchanged"] == 1
    writes = remote.column_writes
    assert nxt.message is not None
    assert nxt.message.startswith(f"carried from remaster {remaster.id}: 4 result(s) and 1 column")
    assert f"remaster {remaster.id} could not rewrite" in _notes(db, nxt.id)
    stored = get_run(db.uow, T, remaster.id)
    assert stored is not None and stored.counts["carried_to"] == nxt.id

    # carried once: the run after that owes nothing
    again = await _run(db, harness, Trigger.SCHEDULE)
    assert "carried" not in again.counts and again.counts["sent"] == 0
    assert remote.column_writes == writes


async def test_grades_sent_to_a_column_as_it_was_go_again_once_the_run_writes_it(
    harness: Harness, db: Database, monkeypatch: Any
) -> None:
    """A remaster's column fails its write for the run and for its grades' check, so the
    grades go to the column as it was; the run's second try writes it. Those grades (on an
    LMS that stores a score on the column's points, on the wrong points) are sent again
    after it: before, nothing resent them and nothing was carried."""
    seed(db, learners=3)
    post(db, None, [("a1", learner(i), 5.0) for i in range(3)])
    assert (await _run(db, harness, Trigger.MANUAL)).outcome is RunOutcome.SUCCEEDED
    remote = harness.remote
    remote.column_failures["a1"] = server_error()
    again = harness.engine.executor._provision_again

    async def fixed_in_the_lms(*args: Any, **kwargs: Any) -> Any:
        remote.column_failures.clear()
        return await again(*args, **kwargs)

    monkeypatch.setattr(harness.engine.executor, "_provision_again", fixed_in_the_lms)
    sends, writes = remote.sends, remote.column_writes
    remaster = await _run(db, harness, Trigger.REMASTER)
    assert remaster.outcome is RunOutcome.SUCCEEDED, remaster.message
    assert "columns_failed" not in remaster.counts and remaster.counts["sent"] == 3
    assert remote.column_writes == writes + 1
    # three to the column as it was, the same three again once it was written
    assert remote.sends == sends + 6
    assert sorted(remote.order[-3:]) == sorted(remote.order[-6:-3])


async def test_a_remaster_that_did_its_job_leaves_nothing_to_carry(
    harness: Harness, db: Database
) -> None:
    seed(db, learners=2)
    post(db, None, [("a1", learner(i), 5.0) for i in range(2)])
    assert (await _run(db, harness, Trigger.REMASTER)).outcome is RunOutcome.SUCCEEDED
    nxt = await _run(db, harness, Trigger.SCHEDULE)
    assert "carried" not in nxt.counts and nxt.counts["sent"] == 0


def test_a_run_carries_only_remasters_within_its_scope() -> None:
    course = RunScope(T, DEST, COURSE)
    assert covers(RunScope(T), course)
    assert covers(course, RunScope(T, DEST, COURSE, ("a1",)))
    assert not covers(RunScope(T, DEST, COURSE, ("a1",)), course)
    assert not covers(RunScope(T, DEST, "other"), course)
    assert not covers(RunScope("t2"), course)


def test_a_remaster_s_debt_is_carried_after_many_remasters_of_other_courses(
    db: Database,
) -> None:
    """The remasters a run looks at for a debt are those within its scope: before, the
    tenant's 20 latest of any scope, so a course's failed remaster followed by 20 of other
    courses (a nightly remaster schedule per course) was never carried."""
    seed(db, learners=1)
    t0 = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)

    def finished(run_id: str, course: str, at: datetime, **counts: Any) -> SyncRun:
        return SyncRun(
            run_id,
            RunScope(T, DEST, course),
            Trigger.REMASTER,
            "schedule",
            stage=RunStage.FINISHED,
            outcome=RunOutcome.PARTLY_FAILED if counts else RunOutcome.SUCCEEDED,
            counts=counts,
            created_at=at,
            started_at=at,
            finished_at=at + timedelta(minutes=1),
        )

    with db.uow() as uow:
        uow.runs.add(finished("run-owes", COURSE, t0, columns_failed=[f"{DEST}/a1"]))
        for i in range(25):
            later = t0 + timedelta(minutes=2 + i)
            uow.runs.add(finished(f"run-other-{i:02}", f"other-{i:02}", later))
        uow.commit()
    nxt = SyncRun(
        "run-next",
        SCOPE,
        Trigger.SCHEDULE,
        "schedule",
        stage=RunStage.COMPUTING,
        created_at=t0 + timedelta(hours=1),
        started_at=t0 + timedelta(hours=1),
    )
    carry = owed(db.uow, nxt)
    assert carry is not None and carry.from_run == "run-owes"
    assert carry.column_names == {f"{DEST}/a1"}


async def test_a_column_that_failed_once_is_tried_again_before_the_run_ends(
    harness: Harness, db: Database
) -> None:
    seed(db, learners=2, activities=("a1", "a2"))
    post(db, None, [(a, learner(i), 5.0) for i in range(2) for a in ("a1", "a2")])
    assert (await _run(db, harness, Trigger.MANUAL)).outcome is RunOutcome.SUCCEEDED
    remote = harness.remote
    remote.column_failures["a1"] = server_error()  # the line item PUT answers 502 once
    remote.hold, remote.arrived = asyncio.Event(), asyncio.Event()
    remaster = asyncio.create_task(_run(db, harness, Trigger.REMASTER))
    await asyncio.wait_for(remote.arrived.wait(), DEADLINE)  # the run is sending
    remote.column_failures.clear()
    remote.hold.set()
    done = await remaster
    assert done.outcome is RunOutcome.SUCCEEDED, done.message
    assert done.counts["columns"] == {"written": 2, "unchanged": 0, "not_synced": 0, "failed": 0}
    assert "columns_failed" not in done.counts


async def test_a_runs_rows_waiting_behind_other_results_are_waited_for_past_its_patience(
    harness: Harness, db: Database, monkeypatch: Any
) -> None:
    """Live grades go before a run's rows: while the destination takes others' results the
    run keeps waiting for its own, however long that is, and ends truthfully."""
    seed(db, learners=3)
    post(db, None, [("a1", learner(i), 5.0) for i in range(3)])
    deliverer = harness.engine.deliverer
    clock = [0.0]
    monkeypatch.setattr(sync, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    real_deliver = deliverer.deliver
    starved = 0

    async def busy_with_others(*args: Any, **kw: Any) -> DeliveryStats:
        # the pass found only other results to send (live grades) for 10 minutes
        nonlocal starved
        if starved < 20:
            starved += 1
            clock[0] += 30.0  # past the run's patience at every look
            deliverer.writer.delivered[(T, DEST)] += 1
            return DeliveryStats()
        return await real_deliver(*args, **kw)

    monkeypatch.setattr(deliverer, "deliver", busy_with_others)
    done = await _run(db, harness, Trigger.MANUAL)
    assert starved == 20
    assert done.outcome is RunOutcome.SUCCEEDED
    assert done.counts["sent"] == 3 and done.counts["pending"] == 0


async def test_the_destination_taking_nothing_still_ends_the_runs_patience(
    harness: Harness, db: Database, monkeypatch: Any
) -> None:
    seed(db, learners=2)
    post(db, None, [("a1", learner(i), 5.0) for i in range(2)])
    clock = [0.0]
    monkeypatch.setattr(sync, "time", SimpleNamespace(monotonic=lambda: clock[0]))

    async def nothing_moves(*args: Any, **kw: Any) -> DeliveryStats:
        clock[0] += 30.0
        return DeliveryStats()

    monkeypatch.setattr(harness.engine.deliverer, "deliver", nothing_moves)
    done = await _run(db, harness, Trigger.MANUAL)
    assert done.outcome is not RunOutcome.SUCCEEDED
    assert done.counts["sent"] == 0


async def test_a_column_that_fails_both_tries_of_a_run_is_logged_once(
    harness: Harness, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A run tries a failed column again after sending; the same failure the second time
    is not a second log line (each run logged every failed column twice)."""
    seed(db, learners=1)
    post(db, None, [("a1", learner(0), 5.0)])
    no_launch = RemoteFailure(FailureClass.REJECTED, "no_launch", "No launch yet.")
    harness.remote.column_failures["a1"] = no_launch
    calls = harness.remote.column_calls
    with caplog.at_level(logging.WARNING, logger="gradesync.services.sync"):
        done = await _run(db, harness, Trigger.RESYNC)
    assert done.counts["columns_failed"] == ["lms/a1"]
    assert harness.remote.column_calls - calls >= 2  # tried twice by the run
    said = [r.getMessage() for r in caplog.records if "column a1 at lms" in r.getMessage()]
    assert len(said) == 1 and "no_launch" in said[0], said
