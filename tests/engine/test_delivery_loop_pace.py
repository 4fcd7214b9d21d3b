"""The worker's delivery loop waits for work it can do: a retrying row it cannot claim (its
destination paused, or another worker holding it) does not make it pass again at once. Its
waits run on the test's clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from gradesync.adapters.db.database import Database
from gradesync.adapters.queue.inprocess import EmbeddedWorker, InProcessWaker
from gradesync.domain.model import DeliveryState
from gradesync.domain.pauses import PauseCause
from gradesync.services.delivery.records import DeliveryStats
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory, ManualClock
from gradesync.testing.double import server_error

from .conftest import DEST, FAST, T, learner, ledger, post, seed

ITEM = "https://lms/courses/1/items/a1"
POLL = FAST.poll.total_seconds()


class _Paced:
    """Runs an `EmbeddedWorker`'s delivery loop on a `ManualClock`: a wait that no event
    ends lasts its timeout on the clock, then the loop goes on at once. It stops once the
    clock has run `span` seconds, or after `most` passes (a loop that never lets the clock
    move)."""

    def __init__(self, engine: Engine, clock: ManualClock, waker: InProcessWaker) -> None:
        self.clock = clock
        self.worker = EmbeddedWorker(engine, waker, sole_worker=False)
        self.worker.wait = self._wait
        self.worker.sleep = self._sleep
        self.passes = 0
        self._end = 0.0
        self._most = 0
        deliver = engine.deliver_due

        async def counted() -> DeliveryStats:
            self.passes += 1
            return await deliver()

        engine.deliver_due = counted  # type: ignore[method-assign,assignment]

    async def run(self, span: float, most: int = 300) -> int:
        """Passes the loop made while the clock ran `span` seconds."""
        waker = self.worker.waker
        waker.bind(asyncio.get_running_loop())
        self.worker.engine.deliverer.on_idle_due = waker.wake_delivery  # as `start` does
        self.passes, self._end, self._most = 0, self.clock.monotonic() + span, most
        self.worker._stopping = False
        await self.worker._loop("deliver", self.worker._deliver)
        return self.passes

    def _moved(self, seconds: float) -> None:
        self.clock.advance(seconds)
        if self.clock.monotonic() >= self._end or self.passes >= self._most:
            self.worker._stopping = True

    async def _wait(self, event: asyncio.Event, timeout: float | None) -> None:
        assert timeout is not None  # the delivery loop always looks again within a poll
        self._moved(0.0 if event.is_set() else timeout)
        event.clear()
        await asyncio.sleep(0)

    async def _sleep(self, seconds: float) -> None:
        self._moved(seconds)
        await asyncio.sleep(0)


async def _retrying(db: Database, clock: ManualClock) -> tuple[Engine, DoubleFactory]:
    """One learner's grade, refused once with a 502: retrying, its retry due now."""
    seed(db, learners=1)
    post(db, None, [("a1", learner(0), 8.0)])
    factory = DoubleFactory()
    engine = Engine(db.uow, clock, factory, FAST, waker=InProcessWaker())
    await engine.process_dirty()
    factory.remote(DEST).fail_next(1, server_error())
    await engine.deliver_due()
    [row] = ledger(db).values()
    assert row.state is DeliveryState.RETRYING and row.next_attempt_at is not None
    clock.set(max(clock.now(), row.next_attempt_at) + timedelta(seconds=1))
    return engine, factory


async def test_a_paused_destinations_due_retry_does_not_spin_the_loop(db: Database) -> None:
    clock = ManualClock()
    engine, factory = await _retrying(db, clock)
    with db.uow() as uow:
        uow.destinations.set_pause(
            T, DEST, clock.now() + timedelta(hours=1), "Paused by an admin.", PauseCause.ADMIN
        )
        uow.commit()
    paced = _Paced(engine, clock, InProcessWaker())
    try:
        passes = await paced.run(span=2.0)
        assert passes <= 2.0 / POLL + 2  # once a poll: nothing it could send is due
        assert factory.remote(DEST).sends == 1  # the refused one; nothing sent while paused
        [row] = ledger(db).values()
        assert row.state is DeliveryState.RETRYING
    finally:
        await paced.worker.stop()


async def test_a_retry_another_worker_holds_wakes_the_loop_when_its_lease_ends(
    db: Database,
) -> None:
    clock = ManualClock()
    engine, factory = await _retrying(db, clock)
    [row] = ledger(db).values()
    with db.uow() as uow:  # another worker claimed it: leased for one more second
        uow.ledger.lease(
            [(row.key, clock.now())], "other-worker", clock.now() + timedelta(seconds=1)
        )
        uow.commit()
    paced = _Paced(engine, clock, InProcessWaker())
    try:
        passes = await paced.run(span=3.0)
        assert passes <= 3.0 / POLL + 3
        # its lease ended (that worker stopped): this one sent it
        assert factory.remote(DEST).score_of(ITEM, f"sub-{learner(0)}") == 8.0
        [row] = ledger(db).values()
        assert row.state is DeliveryState.DELIVERED
    finally:
        await paced.worker.stop()
