"""Past-due zeros fall due with no other event: the key's recompute time is stored with it,
fired by whichever worker looks first."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from gradesync.adapters.db.database import Database
from gradesync.adapters.queue.inprocess import InProcessWaker
from gradesync.domain.model import DeliveryState, PastDueZeros, PolicySettings
from gradesync.services.clock import Clock, SystemClock
from gradesync.services.ingest import IngestBatch, ingest
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory, ManualClock

from .conftest import FAST, Harness, T, learner, ledger, seed

ITEM = "https://lms/courses/1/items/a1"


def _due(db: Database, clock: Clock, due: datetime, grace_minutes: int) -> None:
    """Give activity a1 a due date with zeros on, through ingest (as a source would)."""
    with db.uow() as uow:
        act = uow.activities.get(T, "a1")
    assert act is not None
    policy = PolicySettings(past_due_zeros=PastDueZeros.ON, grace_period_minutes=grace_minutes)
    ingest(
        db.uow,
        clock,
        None,
        T,
        IngestBatch(activities=[replace(act, due_at=due, policy=policy)]),
    )


async def test_a_zero_falls_due_at_due_time_plus_grace_with_no_other_event(
    db: Database,
) -> None:
    clock = ManualClock(datetime(2026, 3, 2, 5, 26, tzinfo=UTC))
    seed(db, learners=2)
    _due(db, clock, clock.now() + timedelta(minutes=10), grace_minutes=5)
    factory = DoubleFactory()
    engine = Engine(db.uow, clock, factory, FAST, waker=InProcessWaker())
    try:
        await engine.process_dirty()
        rows = ledger(db)
        assert {r.state for r in rows.values()} == {DeliveryState.SKIPPED}
        assert all("05:41" in (r.reason_text or "") for r in rows.values())
        assert await engine.next_timer_in() == 15 * 60

        clock.advance(timedelta(minutes=15) - timedelta(seconds=1))
        assert (await engine.process_dirty()).dirty == 0  # not yet
        assert await engine.next_timer_in() == 1

        clock.advance(1)
        stats = await engine.process_dirty()
        assert stats.dirty == 2 and stats.pending == 2
        await engine.deliver_due()
        remote = factory.remote("lms")
        assert remote.score_of(ITEM, "sub-p000") == 0.0
        assert remote.score_of(ITEM, "sub-p001") == 0.0
        rows = ledger(db)
        assert {r.state for r in rows.values()} == {DeliveryState.DELIVERED}
        assert not any("will be sent" in (r.reason_text or "") for r in rows.values())
        assert await engine.next_timer_in() is None
    finally:
        await engine.aclose()


async def test_an_earlier_due_date_replaces_a_later_timer_and_an_attempt_makes_it_moot(
    db: Database,
) -> None:
    clock = ManualClock(datetime(2026, 3, 2, 5, 0, tzinfo=UTC))
    seed(db, learners=1)
    _due(db, clock, clock.now() + timedelta(hours=2), grace_minutes=0)
    engine = Engine(db.uow, clock, DoubleFactory(), FAST, waker=InProcessWaker())
    try:
        await engine.process_dirty()
        assert await engine.next_timer_in() == 2 * 3600
        _due(db, clock, clock.now() + timedelta(minutes=30), grace_minutes=0)
        await engine.process_dirty()
        assert await engine.next_timer_in() == 30 * 60
        # the timer firing early or late is harmless: the key is recomputed from the facts
        with db.uow() as uow:  # written behind the engine's back: no key is marked
            act = uow.activities.get(T, "a1")
            assert act is not None
            uow.activities.upsert(replace(act, due_at=clock.now() + timedelta(hours=5)))
            uow.commit()
        clock.advance(timedelta(minutes=30))
        assert (await engine.process_dirty()).dirty == 1
        row = ledger(db)[("a1", learner(0))]
        assert row.state is DeliveryState.SKIPPED and row.reason_code == "no_attempt_yet"
        assert await engine.next_timer_in() == 5 * 3600 - 30 * 60
    finally:
        await engine.aclose()


async def test_timers_fire_once_across_workers(db: Database) -> None:
    clock = ManualClock(datetime(2026, 3, 2, 5, 0, tzinfo=UTC))
    seed(db, learners=3)
    _due(db, clock, clock.now() + timedelta(minutes=1), grace_minutes=0)
    factory = DoubleFactory()
    one = Engine(db.uow, clock, factory, FAST, waker=InProcessWaker(), worker_id="one")
    two = Engine(db.uow, clock, factory, FAST, waker=InProcessWaker(), worker_id="two")
    try:
        await one.process_dirty()
        clock.advance(60)
        first, second = await one.process_dirty(), await two.process_dirty()
        assert first.dirty + second.dirty == 3
        assert await two.next_timer_in() is None
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_running_worker_sends_the_zero_when_it_falls_due(
    harness: Harness, db: Database
) -> None:
    seed(db, learners=2)
    clock: Clock = SystemClock()
    await harness.start()
    # due a moment from now: the worker computes "not yet", then wakes itself for the zero
    _due(db, clock, clock.now() + timedelta(seconds=1), grace_minutes=0)
    harness.waker.wake_keys()
    await harness.until(
        lambda: (
            harness.remote.score_of(ITEM, "sub-p000") == 0.0
            and harness.remote.score_of(ITEM, "sub-p001") == 0.0
        ),
        "past-due zeros delivered",
    )
    await harness.all_delivered(2)
