"""A run whose destination is deleted while it runs says so: not a plain success, and its
counts keep what it delivered there before (the destination's ledger went with it). A
destination made again under the same id meanwhile is another one: the run still says its
own was deleted, and counts none of the new one's results as its own."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.model import (
    DeliveryState,
    Destination,
    ItemLink,
    RunOutcome,
    RunScope,
    RunStage,
    SyncRun,
    Trigger,
)
from gradesync.services import destination_admin
from gradesync.services.clock import SystemClock
from gradesync.services.runs import get_run, request_run
from gradesync.testing import DoubleFactory, add_course, add_destination
from tests.engine.conftest import COURSE, DEST, FAST, Harness, T, learner, ledger, post, seed

LEARNERS = 4


class _Gated:
    """A double's client whose sends of a gated activity to learners not in `early` wait
    for that activity's gate."""

    def __init__(self, inner: Any, factory: _Factory) -> None:
        self._inner, self._factory = inner, factory

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def put_result(self, target: Any, result: Any, timestamp: Any, **kw: Any) -> Any:
        gate = self._factory.gates.get(target.item.activity_id)
        if gate is not None and target.person.remote_id not in self._factory.early:
            self._factory.reaching[target.item.activity_id].set()
            await gate.wait()
        return await self._inner.put_result(target, result, timestamp, **kw)


class _Factory(DoubleFactory):
    def __init__(self, early: int, gated: tuple[str, ...] = ("a1",)) -> None:
        super().__init__()
        self.early = {f"sub-{learner(i)}" for i in range(early)}  # answered at once
        self.gates = {a: asyncio.Event() for a in gated}
        self.reaching = {a: asyncio.Event() for a in gated}
        self.gate, self.reached = self.gates[gated[0]], self.reaching[gated[0]]

    def __call__(self, destination: Destination) -> Any:
        return _Gated(super().__call__(destination), self)


def _delivered(db: Database) -> int:
    return sum(r.state is DeliveryState.DELIVERED for r in ledger(db).values())


async def _deleted_midway(
    harness: Harness, db: Database, early: int, made_again: bool = False
) -> SyncRun:
    """A remaster of `lms` whose first `early` learners' results are delivered, then `lms`
    is deleted while the others' sends are in flight. `made_again`: `lms` is then made
    again under the same id and its learners' results computed (a grade of a2 each) while
    the run still sends."""
    factory = _Factory(early)
    run, task = await _deleting(harness, db, factory)
    if made_again:
        people = _linked_again(db, "new", name="Canvas again")
        post(db, None, [("a2", p, 8.0) for p in people])
        await harness.engine.process_dirty()  # the new lms's rows, pending for the run
    factory.gate.set()
    done = await task
    assert done is not None
    assert get_run(db.uow, T, run.id) == done
    return done


async def _deleting(
    harness: Harness, db: Database, factory: _Factory
) -> tuple[SyncRun, asyncio.Task[SyncRun | None]]:
    """A remaster of `lms` sending through `factory`: once its early learners' results of
    a1 are delivered, and the others' wait for the gate, `lms` is deleted. The run and its
    task."""
    seed(db, learners=LEARNERS, activities=("a1", "a2"))
    post(db, None, [("a1", learner(i), 5.0 + i) for i in range(LEARNERS)])
    harness.factory = factory
    await harness.use(FAST)
    run, _ = request_run(
        db.uow, harness.waker, SystemClock(), RunScope(T, DEST), Trigger.REMASTER, "ada"
    )
    task = asyncio.create_task(harness.engine.execute_run(run.id))
    await factory.reached.wait()
    early = len(factory.early)
    await harness.until(lambda: _delivered(db) == early, f"{early} delivered")
    await asyncio.to_thread(destination_admin.delete, db.uow, SystemClock(), T, DEST)
    return run, task


def _said_two_sent_before(done: SyncRun) -> None:
    """The run says `lms` was deleted while it ran, and counts as sent only the two results
    it delivered there before."""
    c = done.counts
    assert c["destinations_deleted"] == {DEST: 2}, c
    assert c["sent"] == 2 and c["keys"] == 2, c
    assert done.message is not None
    assert done.message.startswith(
        "Deleted while the run ran, the rest of its results not sent: "
        "Canvas test (2 sent to it before). 2 sent;"
    ), done.message


async def _requeued(harness: Harness, db: Database, scope: RunScope) -> SyncRun:
    """A remaster of `scope` a worker started, then gave back to the queue when it lost its
    database: run again, it is resumed."""
    await harness.use(FAST)
    run, _ = request_run(db.uow, harness.waker, SystemClock(), scope, Trigger.REMASTER, "ada")
    now = datetime.now(UTC)
    with db.uow() as uow:
        uow.runs.claim_next("w1", now, now - timedelta(minutes=1), run_id=run.id)
        assert uow.runs.requeue_own(run.id, "w1", now, "database lost at 10:00:00 UTC")
        uow.commit()
    return run


def _add_linked(
    db: Database, destination_id: str = DEST, name: str = "Canvas again", course: str = COURSE
) -> list[str]:
    """A destination added (by default `lms` made again under its id), linked to `course`
    and its learners; the learners' ids."""
    people = [learner(i) for i in range(LEARNERS)]
    add_destination(
        db.uow,
        T,
        destination_id,
        name=name,
        links={course: f"https://{destination_id}/courses/1"},
        people={p: f"sub-{p}" for p in people},
    )
    return people


async def test_a_run_whose_destination_is_deleted_midway_counts_what_it_sent(
    harness: Harness, db: Database
) -> None:
    done = await _deleted_midway(harness, db, early=2)
    c = done.counts
    assert done.outcome is RunOutcome.PARTLY_FAILED
    _said_two_sent_before(done)
    assert c["verified"] <= c["sent"]


async def test_a_run_whose_destination_is_deleted_before_it_sent_fails(
    harness: Harness, db: Database
) -> None:
    done = await _deleted_midway(harness, db, early=0)
    c = done.counts
    assert done.outcome is RunOutcome.FAILED
    assert c["destinations_deleted"] == {DEST: 0}
    assert c["sent"] == 0 and c["keys"] == 0 and c["verified"] == 0
    assert "Canvas test (0 sent to it before)" in (done.message or ""), done.message


async def test_a_destination_made_again_under_its_id_is_not_the_runs(
    harness: Harness, db: Database
) -> None:
    done = await _deleted_midway(harness, db, early=2, made_again=True)
    # the new lms's results went (the run's sends took them), none of them the run's
    assert _delivered(db) == len(ledger(db)) == 2 * LEARNERS
    c = done.counts
    assert done.outcome is RunOutcome.PARTLY_FAILED, done.message
    assert c["destinations_deleted"] == {DEST: 2}
    assert c["sent"] == 2 and c["keys"] == 2, c
    # nothing read back: the run's destination is gone, the new one is not the run's
    assert (c["verified"], c["differs"], c["unverifiable"], c["overridden"]) == (0, 0, 0, 0), c
    assert done.message is not None
    assert done.message.startswith(
        "Deleted while the run ran, the rest of its results not sent: "
        "Canvas test (2 sent to it before). 2 sent;"
    ), done.message


async def test_a_run_resumed_after_its_destination_was_made_again_says_it_was_deleted(
    harness: Harness, db: Database
) -> None:
    """A run resumed after a restart reads its destinations again: one made again under the
    id of its own, deleted while the run waited, is not the run's. The run says its own was
    deleted and counts nothing of the new one, though its sends take the new one's grades."""
    seed(db, learners=LEARNERS, activities=("a1",))
    run = await _requeued(harness, db, RunScope(T, DEST))
    await asyncio.to_thread(destination_admin.delete, db.uow, SystemClock(), T, DEST)
    people = _add_linked(db)
    post(db, None, [("a1", p, 8.0) for p in people])
    await harness.engine.process_dirty()  # the new lms's rows, pending for the run
    done = await harness.engine.execute_run(run.id)
    assert done is not None and done.stage is RunStage.FINISHED
    c = done.counts
    assert c["destinations_deleted"] == {DEST: 0}, c
    assert c["sent"] == 0 and c["keys"] == 0, c
    assert (c["verified"], c["differs"], c["unverifiable"], c["overridden"]) == (0, 0, 0, 0), c
    assert done.outcome is RunOutcome.FAILED, done.message
    assert done.message is not None
    assert done.message.startswith(
        "Deleted while the run ran, the rest of its results not sent: "
        "Canvas test (0 sent to it before)."
    ), done.message


async def test_a_run_resumed_after_its_destination_was_deleted_says_so(
    harness: Harness, db: Database
) -> None:
    """A run asked for one destination, resumed after that destination was deleted and not
    made again, finds nothing linked: it says its destination was deleted, not that none is
    linked."""
    seed(db, learners=LEARNERS, activities=("a1",))
    post(db, None, [("a1", learner(i), 6.0) for i in range(LEARNERS)])
    run = await _requeued(harness, db, RunScope(T, DEST))
    await asyncio.to_thread(destination_admin.delete, db.uow, SystemClock(), T, DEST)
    done = await harness.engine.execute_run(run.id)
    assert done is not None and done.stage is RunStage.FINISHED
    c = done.counts
    assert c["destinations_deleted"] == {DEST: 0}, c
    assert c["sent"] == 0 and c["keys"] == 0, c
    assert done.outcome is RunOutcome.FAILED, done.message
    assert done.message == (
        "Deleted while the run ran, the rest of its results not sent: "
        "Canvas test (0 sent to it before). 0 sent; 0 unchanged."
    ), done.message


async def test_destinations_added_since_a_resumed_run_started_are_not_counted_in_it(
    harness: Harness, db: Database
) -> None:
    """Destinations added to a resumed run's scope since it first started are not the run's:
    their rows are neither sent nor pending in its counts (its sends take those due), and
    one of them paused does not hold the run up."""
    seed(db, learners=LEARNERS, activities=("a1",))
    run = await _requeued(harness, db, RunScope(T, None, COURSE))
    _add_linked(db, "lms2", "Moodle")
    _add_linked(db, "lms3", "Sakai")
    await asyncio.to_thread(
        destination_admin.pause, db.uow, SystemClock(), T, "lms3", actor="ada", reason="exams"
    )
    post(db, None, [("a1", learner(i), 6.0) for i in range(LEARNERS)])
    await harness.engine.process_dirty()  # the new ones' rows, pending for the run's sends
    done = await harness.engine.execute_run(run.id)
    assert done is not None and done.stage is RunStage.FINISHED
    c = done.counts
    assert (c["sent"], c["keys"], c["pending"]) == (LEARNERS, LEARNERS, 0), c
    assert done.outcome is RunOutcome.SUCCEEDED, done.message
    assert done.message == f"{LEARNERS} sent; 0 unchanged.", done.message
    with db.uow() as uow:  # the new ones' rows: Moodle's went with the run's sends
        assert uow.ledger.counts_by_state(T, destination_id="lms2") == {"delivered": LEARNERS}
        assert uow.ledger.counts_by_state(T, destination_id="lms3") == {"pending": LEARNERS}


async def test_a_resumed_run_whose_destinations_were_all_added_since_says_so(
    harness: Harness, db: Database
) -> None:
    """A resumed run whose scope's every destination was added since it first started has
    nothing of its own to sync, and says why: a destination is linked, just not one it was
    made for."""
    seed(db, learners=LEARNERS, activities=("a1",))
    people = [learner(i) for i in range(LEARNERS)]
    add_course(db.uow, T, "c2", ("b1", "Quiz b1", 10.0), title="Chemistry", learners=people)
    run = await _requeued(harness, db, RunScope(T, None, "c2"))
    _add_linked(db, "lms2", "Moodle", course="c2")
    done = await harness.engine.execute_run(run.id)
    assert done is not None and done.stage is RunStage.FINISHED
    assert done.counts["keys"] == 0, done.counts
    assert done.message == (
        "Nothing to sync: the destination linked to this scope (Moodle) was added after the "
        "run first started, and a resumed run syncs only the destinations it started with "
        "(a new run syncs it)."
    ), done.message


def _linked_again(db: Database, copy: str, name: str = "Canvas again") -> list[str]:
    """`lms` made again under its id (`_add_linked`) with columns of its own (a deep link's,
    say: the run's went with the one deleted); its learners' ids."""
    people = _add_linked(db, name=name)
    with db.uow() as uow:
        for activity in ("a1", "a2"):
            uow.links.save_item(ItemLink(T, DEST, activity, f"https://lms/{copy}/{activity}"))
        uow.commit()
    return people


def _sent_to(db: Database, run_id: str) -> int:
    """How many results the run's sends delivered to `lms` (under any of its makings)."""
    ever = datetime(2000, 1, 1, tzinfo=UTC)
    with db.uow() as uow:
        return uow.deliveries.delivered_by_run(T, run_id, [DEST], ever).get(DEST, 0)


async def test_a_destination_made_again_twice_is_not_the_runs_either(
    harness: Harness, db: Database
) -> None:
    """`lms` deleted, made again, deleted again and made again while the run runs: what the
    run's sends took to the copy in between is not counted as sent to the run's `lms`."""
    factory = _Factory(2, gated=("a1", "a2"))
    run, task = await _deleting(harness, db, factory)
    people = _linked_again(db, "second")
    post(db, None, [("a2", p, 8.0) for p in people])
    await harness.engine.process_dirty()  # the second lms's rows, pending for the run
    factory.gates["a1"].set()
    # the run's sends take the second lms's rows: all but two learners' a2 go
    await factory.reaching["a2"].wait()
    await harness.until(lambda: _delivered(db) == 2 * LEARNERS - 2, "the second's delivered")
    assert _sent_to(db, run.id) == 2 * LEARNERS - 2  # results the run sent, to either
    await asyncio.to_thread(destination_admin.delete, db.uow, SystemClock(), T, DEST)
    _linked_again(db, "third", name="Canvas third")
    factory.gates["a2"].set()
    done = await task
    assert done is not None and done.stage is RunStage.FINISHED
    _said_two_sent_before(done)


@pytest.mark.parametrize("resumed", [True, False], ids=["resumed", "first start"])
async def test_a_destination_added_while_a_run_runs_is_not_counted_in_it(
    harness: Harness, db: Database, resumed: bool
) -> None:
    """A destination added to a run's scope while the run runs (after it read its
    destinations), in its first start or resumed, is not the run's: its rows are not in the
    run's counts, and its pause does not hold the run up (in a first start they were
    counted)."""
    seed(db, learners=LEARNERS, activities=("a1", "a2"))
    post(db, None, [("a1", learner(i), 6.0) for i in range(LEARNERS)])
    harness.factory = factory = _Factory(0)
    scope = RunScope(T, None, COURSE)
    if resumed:
        run = await _requeued(harness, db, scope)
    else:
        await harness.use(FAST)
        run, _ = request_run(db.uow, harness.waker, SystemClock(), scope, Trigger.MANUAL, "ada")
    task = asyncio.create_task(harness.engine.execute_run(run.id))
    await factory.reached.wait()  # sending: the run read its destinations
    people = _add_linked(db, "lms2", "Moodle")
    await asyncio.to_thread(
        destination_admin.pause, db.uow, SystemClock(), T, "lms2", actor="ada", reason="exams"
    )
    post(db, None, [("a2", p, 7.0) for p in people])
    await harness.engine.process_dirty()  # rows of lms's and lms2's, pending for the run
    factory.gate.set()
    done = await task
    assert done is not None and done.stage is RunStage.FINISHED
    c = done.counts
    assert (c["sent"], c["keys"], c["pending"]) == (2 * LEARNERS, 2 * LEARNERS, 0), c
    assert done.outcome is RunOutcome.SUCCEEDED, done.message
    assert done.message == f"{2 * LEARNERS} sent; 0 unchanged.", done.message
    with db.uow() as uow:  # lms2's rows wait for its pause
        assert uow.ledger.counts_by_state(T, destination_id="lms2") == {"pending": 2 * LEARNERS}


async def test_a_destination_made_by_a_clock_running_ahead_is_still_the_runs_own(
    harness: Harness, db: Database
) -> None:
    """A destination the run started with is its own even when the process that made it
    stamped it later than the worker's clock says the run started (two machines' clocks a
    minute apart): its results are counted, not left out as made since."""
    seed(db, learners=LEARNERS, activities=("a1",))
    ahead = datetime.now(UTC) + timedelta(minutes=1)
    people = [learner(i) for i in range(LEARNERS)]
    add_destination(
        db.uow,
        T,
        "lms2",
        name="Moodle",
        links={COURSE: "https://lms2/courses/1"},
        people={p: f"sub-{p}" for p in people},
        at=ahead,
    )
    post(db, None, [("a1", p, 6.0) for p in people])
    await harness.use(FAST)
    run, _ = request_run(
        db.uow, harness.waker, SystemClock(), RunScope(T, None, COURSE), Trigger.MANUAL, "ada"
    )
    done = await harness.engine.execute_run(run.id)
    assert done is not None and done.stage is RunStage.FINISHED
    c = done.counts
    assert (c["sent"], c["keys"], c["pending"]) == (2 * LEARNERS, 2 * LEARNERS, 0), c
