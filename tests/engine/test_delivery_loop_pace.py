"""The worker's delivery loop waits for work it can do: a retrying row it cannot claim (its
destination paused, or another worker holding it) does not make it pass again at once, and
a task that keeps failing is tried again on the backoff of a failed send, then given up,
there and in a run's sending stage. Their waits run on the test's clock."""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.queue.inprocess import EmbeddedWorker, InProcessWaker
from gradesync.domain.capabilities import Capabilities
from gradesync.domain.ledger import BackoffPolicy
from gradesync.domain.model import DeliveryState, Destination, RunOutcome, RunScope, Trigger
from gradesync.domain.pauses import PauseCause
from gradesync.domain.policy import DesiredResult
from gradesync.services.delivery.records import DeliveryStats
from gradesync.services.destination import Receipt, RequestGate, ResultTarget, ungated
from gradesync.services.runs import request_run
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory, ManualClock
from gradesync.testing.double import DoubleClient, Remote, server_error

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


# a bug's backoff, long enough to tell from the loop's poll: 1 s, 2 s, 4 s, 4 s (each
# between half of it and all of it), then the row gives up
BACKOFF = BackoffPolicy(base_seconds=1.0, cap_seconds=4.0, max_tries=5)


def _on_backoff(times: list[float]) -> None:
    """Each try after the first came once the backoff of the failures before it ran out:
    no sooner than half its nominal delay (the jitter), no later than all of it."""
    for tries, (before, after) in enumerate(itertools.pairwise(times), start=1):
        nominal = min(BACKOFF.cap_seconds, BACKOFF.base_seconds * BACKOFF.factor ** (tries - 1))
        assert nominal / 2 - 1e-6 <= after - before <= nominal + 1e-6, times


class _Broken(DoubleClient):
    """An adapter with a bug that stays: reading its capabilities (as a course's rows are
    prepared) always raises. `tried` gets the test clock's time of each."""

    def __init__(self, d: Destination, remote: Remote, clock: ManualClock, tried: list[float]):
        super().__init__(d, remote)
        self._clock, self._tried = clock, tried

    @property
    def capabilities(self) -> Capabilities:
        self._tried.append(self._clock.monotonic())
        raise RuntimeError("a bug in the adapter")


async def test_a_task_that_always_fails_backs_off_then_gives_up_in_the_loop(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    seed(db, learners=1)
    post(db, None, [("a1", learner(0), 8.0)])
    clock, factory, tried = ManualClock(), DoubleFactory(), []
    computing = Engine(db.uow, clock, factory, FAST)
    await computing.process_dirty()
    await computing.aclose()
    broken = Engine(
        db.uow,
        clock,
        lambda d: _Broken(d, factory.remote(d.id), clock, tried),
        replace(FAST, destinations_ttl=timedelta(0), backoff=BACKOFF),
        waker=InProcessWaker(),
    )
    paced = _Paced(broken, clock, InProcessWaker())
    try:
        with caplog.at_level(logging.ERROR):
            await paced.run(span=30.0)
    finally:
        await paced.worker.stop()
    # tried when each retry fell due, not at each pass (a pass a poll), then given up
    assert len(tried) == BACKOFF.max_tries
    _on_backoff(tried)
    [row] = ledger(db).values()
    assert (row.state, row.reason_code, row.tries) == (
        DeliveryState.REJECTED,
        "retries_exhausted",
        BACKOFF.max_tries,
    )
    assert row.reason_text is not None and "(RuntimeError)" in row.reason_text
    with db.engine.connect() as conn:  # settled: no lease left on it
        assert conn.exec_driver_sql("SELECT lease_owner FROM ledger").all() == [(None,)]
    said = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    assert len(said) == len(tried) and all(r.exc_info is not None for r in said)


class _NoReceipt(DoubleClient):
    """An adapter with a bug that stays: each send reaches the gradebook, then answers with
    a receipt that is no receipt (its payload no mapping), and its task fails. `sent` gets
    the test clock's time of each send."""

    def __init__(self, d: Destination, remote: Remote, clock: ManualClock, sent: list[float]):
        super().__init__(d, remote)
        self._clock, self._sent = clock, sent

    async def put_result(
        self,
        target: ResultTarget,
        result: DesiredResult,
        timestamp: datetime,
        *,
        each_request: RequestGate = ungated,
    ) -> Receipt:
        said = await super().put_result(target, result, timestamp, each_request=each_request)
        self._sent.append(self._clock.monotonic())
        return Receipt(None, said.status, said.message)  # type: ignore[arg-type]


async def test_a_send_that_always_fails_backs_off_then_gives_up_in_a_run(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    seed(db, learners=1)
    post(db, None, [("a1", learner(0), 8.0)])
    clock, factory, sent = ManualClock(), DoubleFactory(), []
    engine = Engine(
        db.uow,
        clock,
        lambda d: _NoReceipt(d, factory.remote(d.id), clock, sent),
        # patient enough to wait for each retry
        replace(FAST, retry_patience=timedelta(seconds=30), backoff=BACKOFF),
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
        with caplog.at_level(logging.ERROR):
            done = await engine.execute_run(run.id)
    finally:
        await engine.aclose()
    # sent when each retry fell due (a pass each), not once a poll, until it gave up
    assert len(sent) == BACKOFF.max_tries == factory.remote(DEST).sends
    _on_backoff(sent)
    assert len(passes) == len(sent)
    [row] = ledger(db).values()
    assert (row.state, row.reason_code) == (DeliveryState.REJECTED, "retries_exhausted")
    assert done is not None and done.outcome is not RunOutcome.SUCCEEDED
    said = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    assert len(said) == len(sent) and all(r.exc_info is not None for r in said)
