"""Sharing a destination's limits between worker processes.

On PostgreSQL many workers send to one destination, and its `concurrency` and
`rate_per_second` are for all of them together (an LMS throttles per client id). Each
worker writes a heartbeat about once a second while it sends (`WorkerShare`), reads how many
workers are alive, and takes that fraction of each limit: nothing is asked of the database
per send. The count is kept conservative:

- a worker that joins (or comes back after the others may have counted it gone) waits two
  heartbeats before sending, so every other sender has counted it by then; a worker that
  counts itself alone sends at once (heartbeats are written one at a time, so of two
  joining together the second counts the first);
- a worker sends only while its own count is at most two heartbeats old;
- a gone worker stays counted until its heartbeat ages out (`alive`), so the others grow
  their share late, never early.

Requests already in flight when a worker joins finish under the share they started with.
On SQLite there is one process: no heartbeats, each limit is the process's own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from gradesync.services import log_context
from gradesync.services.clock import Clock
from gradesync.services.database_lost import say_failed
from gradesync.services.ports import UnitOfWorkFactory

log = logging.getLogger(__name__)


class Slots:
    """A semaphore whose size can change while it is held (a worker's share of a
    destination's concurrency). A holder that finds more held than the size allows, after
    the size shrank, gives its slot back and queues again (`refit`).

    Waiters are served by priority, then in order: a live grade (priority 0) waiting for a
    slot goes before the rows a run has claimed (1), however many of those wait already (up
    to four times the destination's concurrency are claimed ahead).

    A freed slot is handed to the next waiter (its future set), not raced for: every send
    passes through here, so there is no lock to take and a waiter wakes only once its slot
    is its own."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self.used = 0
        self._queues: dict[int, collections.deque[asyncio.Future[None]]] = {}
        self._waiting: dict[int, int] = {}  # priority -> waiters
        self._queued = 0  # waiters of every priority

    def slot(self, priority: int = 0) -> contextlib.AbstractAsyncContextManager[None]:
        return _Slot(self, priority)

    async def __aenter__(self) -> None:
        await self.acquire(0)

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def waiting(self, priority: int) -> int:
        """How many wait for a slot at `priority` (what a test waits on: a send queued)."""
        return self._waiting.get(priority, 0)

    def take(self) -> bool:
        """A slot at once, when one is free and no one waits for one (False: `acquire`)."""
        if self.used < self.size and not self._queued:
            self.used += 1
            return True
        return False

    async def acquire(self, priority: int = 0) -> None:
        if self.take():
            return
        got: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(priority, collections.deque()).append(got)
        self._waiting[priority] = self._waiting.get(priority, 0) + 1
        self._queued += 1
        self._hand_out()  # the size may have grown since the last slot was freed
        try:
            await got
        except BaseException:
            if got.cancelled():
                self._forget(priority, got)
            else:  # handed a slot just as it was cancelled: pass it on
                self.used -= 1
                self._hand_out()
            raise

    def release(self) -> None:
        self.used -= 1
        self._hand_out()

    async def resize(self, size: int) -> None:
        self.set_size(size)

    def set_size(self, size: int) -> None:
        """A new size, now: slots it adds go to the waiters at once."""
        self.size = max(1, size)
        self._hand_out()

    async def refit(self, priority: int) -> None:
        """Called by a holder that took its slot at `priority`: wait until its slot fits in
        the current size, queued again at that priority (a run's row given back its slot
        must not come back ahead of a live grade)."""
        while self.used > self.size:
            self.release()
            try:
                await self.acquire(priority)
            except BaseException:
                # cancelled holding no slot: the holder's exit gives one back all the same,
                # so count one here, or a slot more than the size would go out
                self.used += 1
                raise

    def _hand_out(self) -> None:
        """Free slots to the waiters first in line: the most urgent priority, the oldest."""
        while self.used < self.size and self._queued:
            priority = min(p for p, n in self._waiting.items() if n)
            got = self._queues[priority].popleft()
            self._waiting[priority] -= 1
            self._queued -= 1
            if not got.done():  # a cancelled waiter is skipped
                got.set_result(None)
                self.used += 1

    def _forget(self, priority: int, got: asyncio.Future[None]) -> None:
        """A cancelled waiter leaves the line (unless `_hand_out` already took it off)."""
        with contextlib.suppress(ValueError):
            self._queues[priority].remove(got)
            self._waiting[priority] -= 1
            self._queued -= 1


class _Slot:
    def __init__(self, slots: Slots, priority: int) -> None:
        self._slots, self._priority = slots, priority

    async def __aenter__(self) -> None:
        await self._slots.acquire(self._priority)

    async def __aexit__(self, *exc: object) -> None:
        self._slots.release()


class WorkerShare:
    """How many delivery workers are alive, from heartbeats written while sending."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        worker_id: str,
        *,
        beat: timedelta,
        alive: timedelta,
    ) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        self.worker_id = worker_id
        self.beat = beat.total_seconds()
        self.alive = max(alive.total_seconds(), 3 * self.beat)
        self.live = 1
        self._beat_started = float("-inf")  # monotonic start of the last beat written
        self._sends_from = float("inf")  # no sends before the first beat is seen by others
        self._task: asyncio.Task[None] | None = None
        self._wanted = float("-inf")  # monotonic time a send last asked for the count
        self._beat_waiters: list[asyncio.Future[None]] = []  # told when a beat is written
        # a beat's thread runs on after its task is cancelled: leave's delete and the beats
        # take turns under this lock, and no beat is written once the worker has left
        self._writing = threading.Lock()
        self._left = False
        self._written = False  # a beat was committed: leave has a row to delete
        # told the new count when it changes (the governor resizes each destination's share)
        self.on_change: Callable[[int], Awaitable[None]] | None = None

    async def ready(self) -> None:
        """Wait until this worker may send with its current share."""
        self._wanted = time.monotonic()
        while True:
            now = time.monotonic()
            age = now - self._beat_started
            if age <= 2 * self.beat and now >= self._sends_from:
                self._start()
                return
            if age > 2 * self.beat:
                await self._next_beat()
                if time.monotonic() - self._beat_started > 2 * self.beat:
                    await asyncio.sleep(self.beat)  # the database is away: try again
            else:
                await asyncio.sleep(self._sends_from - now)

    def _start(self) -> None:
        if self._task is None or self._task.done():
            # the worker's, not the run's or pass's whose send started it
            self._task = asyncio.create_task(
                self._beating(), name="worker heartbeat", context=log_context.detached()
            )

    async def _next_beat(self) -> None:
        """Until the heartbeat task has written its next beat, or ended (the database is
        away). Not until it ends otherwise: it beats on as long as sends keep asking."""
        self._start()
        task = self._task
        assert task is not None
        written = asyncio.get_running_loop().create_future()
        self._beat_waiters.append(written)
        try:
            await asyncio.wait([written, task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if written in self._beat_waiters:
                self._beat_waiters.remove(written)

    async def _beating(self) -> None:
        """Beat every `beat` while sends keep asking, then stop (an idle worker is
        forgotten by the others, and rejoins when it sends again)."""
        while True:
            started = time.monotonic()
            try:
                live = await asyncio.to_thread(self._write, self.clock.now())
            except Exception as exc:
                _failed("writing the worker heartbeat", exc)
                return
            if started - self._beat_started >= self.alive - self.beat:
                # new, or gone long enough that others may not count it: wait until they
                # do. Counted alone, no other worker sends (a sender's heartbeat is never
                # older than two beats), and one joining now counts this one (beats are
                # taken one at a time): nobody to wait for, so a lone worker back from idle
                # sends its first grade at once
                self._sends_from = time.monotonic() + (2 * self.beat if live > 1 else 0.0)
            self._beat_started = started
            if live != self.live:
                self.live = live
                if self.on_change is not None:
                    await self.on_change(live)
            waiters, self._beat_waiters = self._beat_waiters, []
            for written in waiters:
                if not written.done():
                    written.set_result(None)
            if time.monotonic() - self._wanted > self.alive / 2:
                return
            await asyncio.sleep(max(0.0, started + self.beat - time.monotonic()))

    def _write(self, now: datetime) -> int:
        with self._writing:
            if self._left:
                raise RuntimeError(f"worker {self.worker_id} has left: it writes no heartbeat")
            with self.uow_factory() as uow:
                n = uow.workers.beat(self.worker_id, now, now - timedelta(seconds=self.alive))
                uow.commit()
            self._written = True
            return n

    async def leave(self) -> None:
        if self._task is None:
            return  # never beat
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task

        def write() -> None:
            # after a beat still being written (its task is cancelled, its thread is not)
            with self._writing:
                self._left = True
                if not self._written:
                    return
                with self.uow_factory() as uow:
                    uow.workers.leave(self.worker_id)
                    uow.commit()

        try:
            await asyncio.to_thread(write)
        except Exception as exc:
            _failed("removing the worker heartbeat", exc)


def _failed(what: str, exc: Exception) -> None:
    """A database away for now is one line (the worker's own lines say it is lost and when it
    answers again); anything else is a bug, with its traceback."""
    say_failed(log, what, exc, None)
