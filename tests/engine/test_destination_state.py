"""What the engine reads from a destination beside its grades: an admin's pause (taken into
account before every send), the timestamp step of its gradebook (Moodle's whole seconds),
a course moved from LTI 1.1 to LTI 1.3, and the distributed worker's schedule tick."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.queue.inprocess import EmbeddedWorker, InProcessWaker
from gradesync.adapters.queue.procrastinate_app import QUEUE, worker_app
from gradesync.adapters.queue.scheduler import PERIODIC_ID, TICK_TASK, build_schedule_service
from gradesync.domain.ledger import next_score_timestamp
from gradesync.domain.model import CourseLink, DeliveryState, RunStage, Trigger
from gradesync.services import destination_admin
from gradesync.services.clock import SystemClock
from gradesync.services.destination import timestamp_step_of
from gradesync.services.lti.migration import MIGRATED_KEY
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory, ManualClock
from tests.engine.conftest import COURSE, DEST, FAST, Harness, T, learner, ledger, post, seed

ITEM = "https://lms/courses/1/items/a1"


# --- an admin's pause ----------------------------------------------------------------------


@pytest.mark.parametrize("timed", [True, False], ids=["until", "indefinite"])
async def test_a_pause_stops_sends_after_the_requests_in_flight(
    harness: Harness, db: Database, timed: bool
) -> None:
    seed(db, learners=12, config={"concurrency": 2})
    remote = harness.remote
    remote.hold = asyncio.Event()
    post(db, harness.waker, [("a1", learner(i), 5.0) for i in range(12)])
    await harness.engine.process_dirty()
    task = asyncio.create_task(harness.engine.deliver_due())  # claims all 12 at once
    await remote.wait_for(lambda: remote.in_flight == 2)
    until = datetime.now(UTC) + timedelta(hours=1) if timed else None
    await asyncio.to_thread(
        destination_admin.pause, db.uow, SystemClock(), T, DEST, actor="admin", until=until
    )
    remote.hold.set()
    stats = await task
    assert remote.sends == 2  # the two in flight finished; nothing else went out
    assert stats.gated == 10
    counts: dict[DeliveryState, int] = {}
    for row in ledger(db).values():
        counts[row.state] = counts.get(row.state, 0) + 1
    assert counts == {DeliveryState.DELIVERED: 2, DeliveryState.PENDING: 10}  # waiting
    assert (await harness.engine.deliver_due()).sent == 0  # still paused
    await asyncio.to_thread(destination_admin.resume, db.uow, SystemClock(), None, T, DEST)
    await harness.start()
    await harness.all_delivered(12)


async def test_pause_checks_are_shared_between_concurrent_sends(db: Database) -> None:
    """With a freshness window, a burst of sends costs one read of the destination, and
    once half the window has passed the next read starts without making anyone wait."""
    seed(db, learners=0)
    reads = 0
    lock = threading.Lock()
    real_uow = db.uow

    def counting_uow():  # type: ignore[no-untyped-def]
        nonlocal reads
        with lock:
            reads += 1
        return real_uow()

    engine = Engine(
        counting_uow,
        SystemClock(),
        DoubleFactory(),
        replace(FAST, pause_check=timedelta(seconds=30)),
    )
    try:
        d = destination_admin.get_destination(db.uow, T, DEST)
        governor = engine.deliverer.governor
        lim = governor.limits_for(d)
        await asyncio.gather(*(governor.check_pause(d, lim) for _ in range(20)))
        await governor.check_pause(d, lim)
        assert reads == 1
        # past half its freshness: the next read starts in the background, nobody waits
        lim.pause_checked_at = time.monotonic() - 20
        await governor.check_pause(d, lim)
        assert lim.pause_check is not None and not lim.pause_check.done()
        await lim.pause_check
        assert reads == 2
        # a strict check (0) always reads anew, once for everyone waiting
        strict = Engine(counting_uow, SystemClock(), DoubleFactory(), FAST)
        lim2 = strict.deliverer.governor.limits_for(d)
        await asyncio.gather(*(strict.deliverer.governor.check_pause(d, lim2) for _ in range(20)))
        assert 3 <= reads <= 4
        await strict.aclose()
    finally:
        await engine.aclose()


async def test_a_destination_read_again_unchanged_is_held_once(db: Database) -> None:
    """The governor reads each destination again (its pause, the list of destinations): one
    found unchanged stays the object already held, so a vendor's thousands of registrations
    are not each held once more per read; one that changed is taken as read."""
    seed(db, learners=0)
    engine = Engine(db.uow, SystemClock(), DoubleFactory(), FAST)
    try:
        governor = engine.deliverer.governor
        await governor.refresh_destinations(force=True)
        held = governor.destinations[(T, DEST)]
        await governor.refresh_destinations(force=True)
        assert governor.destinations[(T, DEST)] is held
        lim = governor.limits_for(held)
        await governor.check_pause(held, lim)  # a strict check: read again, unchanged
        assert governor.destinations[(T, DEST)] is held
        destination_admin.pause(db.uow, SystemClock(), T, DEST, actor="admin")
        await governor.check_pause(held, lim)
        changed = governor.destinations[(T, DEST)]
        assert changed is not held and not changed.enabled
    finally:
        await engine.aclose()


# --- timestamps ----------------------------------------------------------------------------


def test_next_score_timestamp_honours_the_step() -> None:
    t0 = datetime(2026, 1, 1, 12, 0, 0, 400_000, tzinfo=UTC)
    now = t0 + timedelta(milliseconds=300)
    assert next_score_timestamp(t0, now) == now  # default 1 ms: the clock moved enough
    assert next_score_timestamp(t0, t0) == t0 + timedelta(milliseconds=1)
    assert next_score_timestamp(t0, now, timedelta(seconds=1)) == t0 + timedelta(seconds=1)
    assert next_score_timestamp(None, now, timedelta(seconds=1)) == now


def test_timestamp_step_defaults_to_a_millisecond() -> None:
    class Plain:
        pass

    class Whole:
        timestamp_step = timedelta(seconds=1)

    assert timestamp_step_of(Plain()) == timedelta(milliseconds=1)
    assert timestamp_step_of(Whole()) == timedelta(seconds=1)


async def test_whole_second_gradebooks_get_timestamps_a_second_apart(
    harness: Harness, db: Database
) -> None:
    seed(db, learners=1)
    harness.remote.timestamp_step = timedelta(seconds=1)  # like Moodle
    for score in (5.0, 7.0, 9.0):
        post(db, harness.waker, [("a1", learner(0), score)])
        await harness.engine.process_dirty()
        await harness.engine.deliver_due()
    history = harness.remote.history[(ITEM, "sub-p000")]
    assert [s.score_given for s in history] == [5.0, 7.0, 9.0]
    for before, after in itertools.pairwise(history):
        assert after.timestamp - before.timestamp >= timedelta(seconds=1)
    assert ledger(db)[("a1", learner(0))].state is DeliveryState.DELIVERED


def test_the_moodle_profile_declares_whole_seconds() -> None:
    from gradesync.adapters.destinations.ags_profiles import profile_for

    assert profile_for("moodle").rejects_equal_timestamps
    assert not profile_for("canvas").rejects_equal_timestamps


# --- a course moved from LTI 1.1 to LTI 1.3 ------------------------------------------------


def _migrate(db: Database) -> None:
    with db.uow() as uow:
        link = uow.links.course(T, DEST, COURSE)
        assert link is not None
        data = {**link.data, MIGRATED_KEY: "lti13"}
        uow.links.save_course(CourseLink(T, DEST, COURSE, link.remote_id, data))
        uow.commit()


async def test_a_migrated_course_link_is_neither_computed_nor_sent(
    harness: Harness, db: Database
) -> None:
    seed(db, learners=2)
    post(db, harness.waker, [("a1", learner(0), 5.0)])
    await harness.engine.process_dirty()  # computed before the move: pending
    _migrate(db)
    post(db, harness.waker, [("a1", learner(1), 6.0)])
    stats = await harness.engine.process_dirty()
    assert stats.keys == 0  # the old destination is history now
    await harness.engine.deliver_due()
    assert harness.remote.sends == 0
    rows = ledger(db)
    assert set(rows) == {("a1", learner(0))}
    row = rows[("a1", learner(0))]
    assert row.state is DeliveryState.SKIPPED and row.reason_code == "course_migrated"
    assert row.reason_text is not None and "'lti13'" in row.reason_text


# --- the distributed worker's schedule tick ------------------------------------------------


async def test_the_distributed_worker_ticks_schedules(db: Database) -> None:
    seed(db, learners=1)
    clock = ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    waker = InProcessWaker()
    engine = Engine(db.uow, clock, DoubleFactory(), FAST, waker=waker)
    worker = EmbeddedWorker(engine, waker, sole_worker=False)
    try:
        # constructing the app opens no connection
        app = worker_app("postgresql://nobody@127.0.0.1:1/none", lambda: worker)
        assert (TICK_TASK, PERIODIC_ID) in app.periodic_registry.periodic_tasks
        assert app.tasks[TICK_TASK].queue == QUEUE
        service = build_schedule_service(db.uow, clock, None)
        service.create(T, "alice", kind="interval", spec="15m", course_id=COURSE)
        clock.advance(timedelta(minutes=15))
        fired = await asyncio.to_thread(app.tasks[TICK_TASK], int(clock.now().timestamp()))
        assert fired == 1
        assert waker.runs.is_set()  # the run was handed to the workers
        with db.uow() as uow:
            runs = [run for run, _ in uow.runs.unfinished()]
        assert [(r.trigger, r.stage) for r in runs] == [(Trigger.SCHEDULE, RunStage.QUEUED)]
    finally:
        await engine.aclose()
