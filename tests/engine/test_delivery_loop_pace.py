"""The worker's delivery loop waits for work it can do: a retrying row it cannot claim (its
destination paused, or another worker holding it) does not make it pass again at once, and
a task that keeps failing is met once a poll, there and in a run's sending stage. Their
waits run on the test's clock."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.queue.inprocess import EmbeddedWorker, InProcessWaker
from gradesync.domain.capabilities import Capabilities
from gradesync.domain.model import DeliveryState, RunOutcome, RunScope, Trigger
from gradesync.domain.pauses import PauseCause
from gradesync.domain.policy import DesiredResult
from gradesync.services.delivery.records import DeliveryStats
from gradesync.services.destination import Receipt, ResultTarget
from gradesync.services.runs import request_run
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory, ManualClock
from gradesync.testing.double import DoubleClient, server_error

from .conftest import COURSE, DEST, FAST, T, learner, ledger, post, seed

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


class _Broken(DoubleClient):
    """An adapter with a bug that stays: reading its capabilities (as a course's rows are
    prepared) always raises."""

    @property
    def capabilities(self) -> Capabilities:
        raise RuntimeError("a bug in the adapter")


async def test_a_task_that_always_fails_is_tried_once_a_poll_by_the_loop(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    engine, factory = await _retrying(db, clock)
    await engine.aclose()
    broken = Engine(
        db.uow,
        clock,
        lambda d: _Broken(d, factory.remote(d.id)),
        replace(FAST, destinations_ttl=timedelta(0)),
        waker=InProcessWaker(),
    )
    paced = _Paced(broken, clock, InProcessWaker())
    try:
        passes = await paced.run(span=2.0)
        # each pass gives the row back (due at once), and the loop waits a poll before
        # the next: about one pass a poll, not one after another
        assert 2.0 / POLL - 2 <= passes <= 2.0 / POLL + 2
        [row] = ledger(db).values()
        assert row.state is DeliveryState.RETRYING
        with db.engine.connect() as conn:  # given back: no lease left on it
            assert conn.exec_driver_sql("SELECT lease_owner FROM ledger").all() == [(None,)]
    finally:
        await paced.worker.stop()
    assert "failed unexpectedly" in caplog.text


class _NoReceipt(DoubleClient):
    """An adapter with a bug that stays: each send reaches the gradebook, then answers with
    a receipt that is no receipt (its payload no mapping), and its task fails."""

    async def put_result(
        self, target: ResultTarget, result: DesiredResult, timestamp: datetime
    ) -> Receipt:
        said = await super().put_result(target, result, timestamp)
        return Receipt(None, said.status, said.message)  # type: ignore[arg-type]


async def test_a_task_that_always_fails_is_tried_once_a_poll_by_a_run(db: Database) -> None:
    seed(db, learners=1)
    post(db, None, [("a1", learner(0), 8.0)])
    clock, factory = ManualClock(), DoubleFactory()
    patience = 2.0  # a run gives up on rows that do not move after this long
    engine = Engine(
        db.uow,
        clock,
        lambda d: _NoReceipt(d, factory.remote(d.id)),
        replace(FAST, retry_patience=timedelta(seconds=patience)),
        waker=InProcessWaker(),
    )
    passes: list[float] = []  # the clock at each pass
    deliver = engine.deliverer.deliver

    async def counted(*args: Any, **kwargs: Any) -> DeliveryStats:
        passes.append(clock.monotonic())
        if len(passes) > 300:  # a loop that never lets the clock move: end the run
            raise RuntimeError("the run's sending stage passes again and again")
        return await deliver(*args, **kwargs)

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    engine.deliverer.deliver = counted  # type: ignore[method-assign]
    engine.executor.monotonic = clock.monotonic
    engine.executor.sleep = sleep
    run, _ = request_run(
        db.uow, None, clock, RunScope(T, DEST, COURSE), Trigger.MANUAL, "ada@school"
    )
    try:
        done = await engine.execute_run(run.id)
    finally:
        await engine.aclose()
    # one pass a poll until its patience ran out, not one after another
    assert len(passes) <= (passes[-1] - passes[0]) / POLL + 4
    assert len(passes) >= patience / POLL
    assert factory.remote(DEST).sends == len(passes)
    assert done is not None and done.outcome is not RunOutcome.SUCCEEDED
    assert done.counts["pending"] == 1, done.message  # given back each time, never sent
