"""The in-process worker: asyncio tasks inside `gradesync serve` (and inside each
`gradesync worker`), woken at once by events and looking for work on their own every
`poll` seconds (retries falling due, runs queued by another process, anything a lost
wake-up missed).

Four loops share one `Engine`:
- compute: dirty keys -> ledger rows (then wakes delivery); wakes itself when a timed key
  (a past-due zero) falls due;
- deliver: due ledger rows -> destinations (sleeps until the next retry or the poll);
- runs: queued runs -> started, each in its own task;
- recover: runs whose worker stopped proving it is alive go back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable

from gradesync.domain.model import RunScope
from gradesync.services.database_lost import OutageNotice
from gradesync.services.worker import Engine

log = logging.getLogger(__name__)


class InProcessWaker:
    """Sets the worker's events; safe to call from any thread (sync API handlers run in a
    thread pool) and before the loop runs (the event is then set once it does)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.dirty = asyncio.Event()
        self.deliver = asyncio.Event()
        self.runs = asyncio.Event()
        self._thread_id: int | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._thread_id = threading.get_ident()

    def _set(self, event: asyncio.Event) -> None:
        loop = self.loop
        if loop is None or threading.get_ident() == self._thread_id:
            event.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    def wake_keys(self) -> None:
        self._set(self.dirty)

    def wake_run(self, run_id: str, scope: RunScope) -> None:
        self._set(self.runs)

    def wake_delivery(self) -> None:
        self._set(self.deliver)


async def _wait(event: asyncio.Event, timeout: float | None) -> None:
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation that
    # arrives as the event is set, and a stopping worker's loop would then run on
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    event.clear()


class EmbeddedWorker:
    def __init__(self, engine: Engine, waker: InProcessWaker, *, sole_worker: bool) -> None:
        self.engine = engine
        self.waker = waker
        self.sole_worker = sole_worker
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.poll = engine.settings.poll.total_seconds()
        self.retry_pause = max(self.poll, 1.0)  # after a loop's step failed
        # an outage is said once for the four loops, and its end once, by a step begun after
        # the loss was found: one begun before may end well after it
        self._outage = OutageNotice(log, "worker loops")
        # how the loops wait (for an event or a timeout, or a time): a test's clock may
        # drive them in place of the event loop's
        self.wait: Callable[[asyncio.Event, float | None], Awaitable[None]] = _wait
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def start(self) -> None:
        self._stopping = False
        self.waker.bind(asyncio.get_running_loop())
        # rows due again with no delivery pass running (outcomes written late, a run's
        # rows reopened): the delivery loop starts one
        self.engine.deliverer.on_idle_due = self.waker.wake_delivery
        await self.engine.recover(sole_worker=self.sole_worker)
        # whatever was pending when the last process stopped is picked up at once
        self.waker.dirty.set()
        self.waker.deliver.set()
        self.waker.runs.set()
        self._tasks = [
            asyncio.create_task(self._loop("compute", self._compute), name="gradesync-compute"),
            asyncio.create_task(self._loop("deliver", self._deliver), name="gradesync-deliver"),
            asyncio.create_task(self._loop("runs", self._runs), name="gradesync-runs"),
            asyncio.create_task(self._loop("recover", self._recover), name="gradesync-recover"),
        ]

    async def stop(self) -> None:
        self._stopping = True  # a loop whose cancellation a library lost ends at its next turn
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.engine.aclose()

    async def _loop(self, name: str, step: Callable[[], Awaitable[None]]) -> None:
        while not self._stopping:
            outages = self._outage.outages
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._outage.failed(exc, f"worker loop {name}")
                await self.sleep(self.retry_pause)
            else:
                self._outage.answered(since=outages)

    async def _compute(self) -> None:
        timer_in = await self.engine.next_timer_in()
        timeout = self.poll if timer_in is None else min(self.poll, timer_in)
        await self.wait(self.waker.dirty, timeout)
        stats = await self.engine.process_dirty()
        if stats.due_at:
            self.waker.deliver.set()

    async def _deliver(self) -> None:
        retry_in = await self.engine.next_retry_in()
        timeout = self.poll if retry_in is None else min(self.poll, retry_in)
        await self.wait(self.waker.deliver, timeout)
        await self.engine.deliver_due()

    async def _runs(self) -> None:
        await self.wait(self.waker.runs, self.poll)
        await self.engine.start_queued_runs()

    async def _recover(self) -> None:
        await self.sleep(self.engine.settings.stale_after.total_seconds() / 2)
        if await self.engine.recover(sole_worker=False):
            self.waker.runs.set()
