"""The pieces that share a destination's limits between worker processes: a semaphore that
shrinks while held, a rate share that saves up no burst, and the heartbeats that count
the workers alive."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.services.clock import SystemClock
from gradesync.services.delivery.governor import DestinationLimits, RateLimiter
from gradesync.services.delivery.share import Slots, WorkerShare


async def test_slots_shrunk_while_held_let_only_the_new_size_go_on() -> None:
    slots = Slots(3)
    go_on: list[int] = []
    shrunk = asyncio.Event()
    release = asyncio.Event()

    async def holder(i: int) -> None:
        async with slots:
            await shrunk.wait()
            await slots.refit(0)
            go_on.append(i)
            await release.wait()

    tasks = [asyncio.create_task(holder(i)) for i in range(3)]
    await asyncio.wait_for(_until(lambda: slots.used == 3), 5)
    await slots.resize(1)
    shrunk.set()
    await asyncio.wait_for(_until(lambda: len(go_on) == 1), 5)
    assert slots.used == 1  # the two others gave their slots back and wait
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert sorted(go_on) == [0, 1, 2] and slots.used == 0


async def test_a_holder_cancelled_while_it_refits_gives_back_one_slot_only() -> None:
    """A holder that gave its slot back to fit a shrunk share, then was cancelled while it
    queued for one again (its pass stopped), holds nothing: leaving its `async with`, it
    gave a slot back a second time, so one more request than the share went on."""
    slots = Slots(2)
    shrunk, release = asyncio.Event(), asyncio.Event()

    async def refitting() -> None:
        async with slots.slot(1):
            await shrunk.wait()
            await slots.refit(1)

    async def staying() -> None:
        async with slots.slot(0):
            await release.wait()

    a, b = asyncio.create_task(refitting()), asyncio.create_task(staying())
    await asyncio.wait_for(_until(lambda: slots.used == 2), 5)
    slots.set_size(1)
    shrunk.set()
    await asyncio.wait_for(_until(lambda: slots._queued == 1), 5)  # a gave its slot back
    a.cancel()
    await asyncio.gather(a, return_exceptions=True)
    assert slots.used == 1  # b's, the only one held
    third = asyncio.create_task(slots.acquire())
    await asyncio.wait_for(_until(lambda: third.done() or slots._queued == 1), 5)
    assert not third.done(), "a second slot was handed out at a size of 1"
    release.set()
    await asyncio.wait_for(asyncio.gather(b, third), 5)
    assert slots.used == 1


async def _until(predicate: object) -> None:
    assert callable(predicate)
    while not predicate():
        await asyncio.sleep(0)


def test_a_share_of_the_limits_is_the_fraction_for_the_workers_alive() -> None:
    lim = DestinationLimits(concurrency=8, rate_per_second=12.0)
    lim.set_share(3)
    assert lim.concurrency == 2 and lim.semaphore.size == 2
    assert lim.rate.rate == 4.0
    lim.set_share(10)  # more workers than slots: one each
    assert lim.concurrency == 1


def test_a_shared_rate_saves_up_no_burst() -> None:
    now = [0.0]
    bucket = RateLimiter(10.0, clock=lambda: now[0], burst=False)
    assert bucket.try_acquire() == 0.0
    now[0] = 5.0  # idle for long: still one token, not fifty
    assert bucket.try_acquire() == 0.0
    assert bucket.try_acquire() > 0.0


async def test_slots_go_to_live_grades_before_a_run_s_rows_waiting_longer() -> None:
    """Sends wait for one of the destination's slots by priority: a live grade (0) that
    arrives behind a run's queue of rows (1) takes the next free slot."""
    slots = Slots(1)
    order: list[str] = []
    free = asyncio.Event()

    async def send(name: str, priority: int) -> None:
        async with slots.slot(priority):
            order.append(name)
            await free.wait()

    first = asyncio.create_task(send("run-0", 1))  # holds the one slot
    await asyncio.wait_for(_until(lambda: slots.used == 1), 5)
    queued = [asyncio.create_task(send(f"run-{i}", 1)) for i in range(1, 4)]
    await asyncio.wait_for(_until(lambda: slots.waiting(1) == 3), 5)
    live = asyncio.create_task(send("live", 0))
    await asyncio.wait_for(_until(lambda: slots.waiting(0) == 1), 5)
    free.set()
    await asyncio.wait_for(asyncio.gather(first, *queued, live), 5)
    assert order == ["run-0", "live", "run-1", "run-2", "run-3"]
    assert slots.used == 0


async def test_a_cancelled_waiter_leaves_the_line_and_passes_on_a_slot_it_was_handed() -> None:
    slots = Slots(1)
    await slots.acquire()  # held
    order: list[str] = []

    async def wait_for_slot(name: str) -> None:
        await slots.acquire()
        order.append(name)

    a = asyncio.create_task(wait_for_slot("a"))
    b = asyncio.create_task(wait_for_slot("b"))
    await asyncio.wait_for(_until(lambda: slots._queued == 2), 5)
    a.cancel()  # cancelled while it waits: it leaves the line
    await asyncio.gather(a, return_exceptions=True)
    assert slots._queued == 1
    slots.release()  # handed to b
    await asyncio.wait_for(b, 5)
    assert order == ["b"] and slots.used == 1

    c = asyncio.create_task(wait_for_slot("c"))
    await asyncio.wait_for(_until(lambda: slots._queued == 1), 5)
    slots.release()  # handed to c ...
    c.cancel()  # ... which is cancelled before it runs again: the slot is not lost
    await asyncio.gather(c, return_exceptions=True)
    assert order == ["b"] and slots.used == 0
    await asyncio.wait_for(slots.acquire(), 5)


async def test_a_grown_share_serves_the_waiters_at_once() -> None:
    """A worker's share grows (`DestinationLimits.set_share`): the waiters in line get the new
    slots then, not when some send ends or the next one starts."""
    limits = DestinationLimits(concurrency=1)
    await limits.semaphore.acquire()
    waiters = [asyncio.create_task(limits.semaphore.acquire(1)) for _ in range(2)]
    await asyncio.wait_for(_until(lambda: limits.semaphore.used == 1), 5)
    limits.total_concurrency = 3
    limits.set_share(1)
    await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert limits.semaphore.used == 3


class _BeatHeld:
    """A unit-of-work factory whose `nth` heartbeat, once its unit is open, waits until the
    worker's leave has committed its delete (for a second at most: a leave that waits for
    the beat would wait for it in vain)."""

    def __init__(self, db: Database, nth: int) -> None:
        self.db, self.nth = db, nth
        self.beats = 0
        self.held = threading.Event()  # the beat is in its unit, waiting
        self.deleted = threading.Event()  # the leave's unit has committed
        self.done = threading.Event()  # the held beat's unit has ended

    @contextlib.contextmanager
    def __call__(self) -> Iterator[Any]:
        with self.db.uow() as uow:
            workers, share = uow.workers, self
            left: list[bool] = []

            class Workers:
                def beat(self, *args: Any) -> int:
                    share.beats += 1
                    if share.beats == share.nth:
                        share.held.set()
                        share.deleted.wait(1)
                    return workers.beat(*args)

                def leave(self, worker_id: str) -> None:
                    left.append(True)
                    workers.leave(worker_id)

            uow.workers = Workers()
            try:
                yield uow
            finally:
                if left:
                    self.deleted.set()
        if self.beats == self.nth:
            self.done.set()


@pytest.mark.postgres
@pytest.mark.parametrize("held", [1, 2], ids=["first beat", "a later beat"])
async def test_no_heartbeat_is_written_after_the_worker_left(
    postgres_db: Database, held: int
) -> None:
    """A beat's thread runs on when the worker leaves and cancels its heartbeat task: were
    its beat written after the leave's delete, the others would count the gone worker alive
    and take a smaller share of each destination until that beat aged out."""
    units = _BeatHeld(postgres_db, held)
    alive = timedelta(seconds=30)
    share = WorkerShare(units, SystemClock(), "w1", beat=timedelta(milliseconds=10), alive=alive)
    sending = asyncio.create_task(share.ready())  # the first beat; the next one 10 ms after
    assert await asyncio.to_thread(units.held.wait, 5)
    sending.cancel()  # the worker stops (held at a later beat, the send went on already)
    with contextlib.suppress(asyncio.CancelledError):
        await sending
    await share.leave()
    assert await asyncio.to_thread(units.done.wait, 5)
    now = SystemClock().now()
    with postgres_db.uow() as uow:
        assert uow.workers.beat("w2", now, now - alive) == 1  # w2 counts itself alone
        uow.commit()


async def test_a_run_s_row_refitting_its_slot_queues_behind_a_live_grade() -> None:
    """A run's row (priority 1) gives its slot back when its worker's share shrinks and
    queues again at its own priority: a live grade that queued after it goes first. Before,
    it queued again at priority 0, a live grade's, and went ahead of it."""
    slots = Slots(2)
    order: list[str] = []
    shrunk, free = asyncio.Event(), asyncio.Event()

    async def run_row() -> None:
        async with slots.slot(1):
            await shrunk.wait()
            await slots.refit(1)
            order.append("run")

    async def other() -> None:
        async with slots.slot(0):
            await free.wait()

    async def live() -> None:
        async with slots.slot(0):
            order.append("live")

    row, held = asyncio.create_task(run_row()), asyncio.create_task(other())
    await asyncio.wait_for(_until(lambda: slots.used == 2), 5)
    slots.set_size(1)
    shrunk.set()
    await asyncio.wait_for(_until(lambda: slots._queued == 1), 5)  # the row queued again
    grade = asyncio.create_task(live())
    await asyncio.wait_for(_until(lambda: slots._queued == 2), 5)
    free.set()  # one slot frees: the live grade's
    await asyncio.wait_for(asyncio.gather(row, held, grade), 5)
    assert order == ["live", "run"]
