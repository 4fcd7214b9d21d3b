"""A worker asked to stop (SIGTERM: a deploy, `systemctl restart`) cancels the sends it has
in flight; their rows were claimed under its lease. Before, the lease was kept, so after a
restart those grades waited for it to run out (two minutes by default); now the stopping
engine gives back what it claimed and did not settle, and they go at once."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from gradesync.adapters.db.database import Database
from gradesync.adapters.queue.inprocess import InProcessWaker
from gradesync.services.clock import SystemClock
from gradesync.services.delivery import DeliveryScope
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory

from .conftest import DEST, FAST, T, learner, post, seed


def _owners(db: Database) -> set[str | None]:
    with db.engine.connect() as conn:
        return {owner for (owner,) in conn.exec_driver_sql("SELECT lease_owner FROM ledger")}


async def test_a_stopped_engine_gives_back_the_rows_it_had_not_sent(db: Database) -> None:
    seed(db, learners=2)
    factory = DoubleFactory()
    remote = factory.remote(DEST)
    remote.hold = asyncio.Event()  # the LMS does not answer: the sends stay in flight
    settings = replace(FAST, lease=timedelta(minutes=10), stop_grace=timedelta(seconds=1))
    engine = Engine(db.uow, SystemClock(), factory, settings, waker=InProcessWaker())
    post(db, None, [("a1", "p000", 7.0), ("a1", "p001", 8.0)])
    await engine.process_dirty()
    sending = asyncio.create_task(engine.deliver_due())
    await asyncio.wait_for(remote.arrived.wait(), 30)
    assert engine.worker_id in _owners(db)
    sending.cancel()  # the stop cancels the worker's loops
    await asyncio.gather(sending, return_exceptions=True)
    await engine.aclose()
    assert _owners(db) == {None}

    # a new engine (the restarted worker) sends them at once, not ten minutes later
    remote.hold = None
    again = Engine(db.uow, SystemClock(), factory, settings, waker=InProcessWaker())
    try:
        await again.deliver_due()
        assert remote.score_of("https://lms/courses/1/items/a1", "sub-p000") == 7.0
    finally:
        await again.aclose()


async def test_a_cancelled_pass_leaves_its_destination_counting_only_the_rows_still_held(
    db: Database,
) -> None:
    """A pass is cancelled with rows at every step: a1's waiting for their column to be
    created, a2's being sent. Each row counts once in its destination's rows in hand (what
    keeps a destination that looks busy out of regular claims): the cancelled pass's
    count is given back, once, and another pass's rows still count until they settle."""
    # room for a1's column and the four sends at once (a column's write takes a slot too)
    seed(db, learners=2, activities=("a1", "a2", "a3"), config={"concurrency": 5})
    factory = DoubleFactory()
    remote = factory.remote(DEST)
    remote.column_hold["a1"] = asyncio.Event()  # the line item POST does not answer
    remote.hold = asyncio.Event()  # nor do the scores
    engine = Engine(db.uow, SystemClock(), factory, FAST, waker=InProcessWaker())
    try:
        post(db, None, [(a, learner(i), 7.0) for a in ("a1", "a2", "a3") for i in range(2)])
        await engine.process_dirty()
        deliverer = engine.deliverer
        stopped = asyncio.create_task(deliverer.deliver(DeliveryScope(activity_ids=("a1", "a2"))))
        other = asyncio.create_task(deliverer.deliver(DeliveryScope(activity_ids=("a3",))))
        await remote.wait_for(lambda: remote.in_flight == 4, "a2's and a3's sends in flight")
        lim = deliverer.governor.limits[(T, DEST)]
        assert lim.waiting == 6 and not stopped.done()

        stopped.cancel()
        await asyncio.gather(stopped, return_exceptions=True)
        # a2's cancelled sends have left the remote (and the engine's hands)
        await remote.wait_for(lambda: remote.in_flight == 2, "a2's sends cancelled")
        assert lim.waiting == 2  # a3's, still in flight

        remote.hold.set()
        assert (await asyncio.wait_for(other, 30)).delivered == 2
        assert lim.waiting == 0
    finally:
        remote.column_hold["a1"].set()
        await engine.aclose()
