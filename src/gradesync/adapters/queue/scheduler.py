"""Running the scheduler: an asyncio loop in-process, or a procrastinate periodic task.

Both call the same `ScheduleService.tick`, whose compare-and-set on each schedule's next run
lets any number of them run at once (several `gradesync serve` processes, plus workers)
without a slot firing twice.

The in-process loop does not poll every second: after a tick it sleeps until the soonest
schedule is due, and a change to a schedule in this process wakes it at once
(`notify_changed`). The sleep is capped (`max_sleep`, a minute by default) so that a schedule
added through another process is picked up within that time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from gradesync.services.clock import Clock
from gradesync.services.database_lost import OutageNotice
from gradesync.services.ports import UnitOfWorkFactory
from gradesync.services.runs import request_run
from gradesync.services.schedules import ScheduleService
from gradesync.services.wakeup import Waker

if TYPE_CHECKING:
    import procrastinate

log = logging.getLogger(__name__)

__all__ = [
    "PERIODIC_ID",
    "TICK_TASK",
    "SchedulerLoop",
    "build_schedule_service",
    "notify_changed",
    "register_periodic_tick",
    "seconds_until",
    "start_scheduler",
]

PERIODIC_ID = "gradesync-schedules-tick"
TICK_TASK = "gradesync.schedules.tick"

_loops: weakref.WeakSet[SchedulerLoop] = weakref.WeakSet()
_loops_lock = threading.Lock()


def notify_changed() -> None:
    """A schedule changed in this process: wake every scheduler loop running here."""
    with _loops_lock:
        loops = list(_loops)
    for loop in loops:
        loop.wake()


def build_schedule_service(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    waker: Waker | None,
    *,
    on_change: Callable[[], None] | None = notify_changed,
) -> ScheduleService:
    """The schedule service, asking for runs through the one `request_run`."""
    return ScheduleService(
        uow_factory, clock, partial(request_run, uow_factory, waker, clock), on_change=on_change
    )


def start_scheduler(
    uow_factory: UnitOfWorkFactory, clock: Clock, waker: Waker | None, **loop_options: float
) -> SchedulerLoop:
    """Build and start the in-process scheduler loop (call inside the running event loop,
    e.g. in the app's lifespan next to the in-process worker); `await loop.stop()` ends it."""
    loop = SchedulerLoop(build_schedule_service(uow_factory, clock, waker), clock, **loop_options)
    loop.start()
    return loop


def seconds_until(due: datetime | None, now: datetime, max_sleep: float) -> float:
    """How long to sleep before the next tick: until `due`, at most `max_sleep`, never < 0."""
    if due is None:
        return max_sleep
    return max(0.0, min(max_sleep, (due - now).total_seconds()))


class SchedulerLoop:
    """`loop.start()` inside a running event loop; `await loop.stop()` to end it."""

    def __init__(
        self,
        service: ScheduleService,
        clock: Clock,
        *,
        max_sleep: float = 60.0,
        retry_delay: float = 5.0,
    ) -> None:
        self._service = service
        self._clock = clock
        self._max_sleep = max_sleep
        self._retry_delay = retry_delay
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0  # completed ticks, for health pages and tests
        self._outage = OutageNotice(log, "scheduler")  # said once, not once a tick

    def start(self) -> asyncio.Task[None]:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._task = self._loop.create_task(self._run(), name="gradesync-scheduler")
        with _loops_lock:
            _loops.add(self)
        return self._task

    async def stop(self) -> None:
        with _loops_lock:
            _loops.discard(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        """Tick now (thread-safe: API requests run in a thread pool)."""
        loop, event = self._loop, self._event
        if loop is None or event is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed since the check
            loop.call_soon_threadsafe(event.set)

    async def _run(self) -> None:
        assert self._event is not None
        while True:
            self._event.clear()  # a wake during the tick below makes the next wait return
            try:
                fired = await asyncio.to_thread(self._service.tick)
                due = await asyncio.to_thread(self._service.next_due_at)
                delay = seconds_until(due, self._clock.now(), self._max_sleep)
                if delay == 0 and not fired:
                    # still due but nothing fired (the run request failed): do not spin
                    delay = min(self._retry_delay, self._max_sleep)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the loop, retry soon
                self._outage.failed(exc, "scheduler tick")
                delay = self._retry_delay
            else:
                self._outage.answered()
            self.ticks += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # not wait_for: it can lose a cancel
                    await self._event.wait()


def register_periodic_tick(
    app: procrastinate.App,
    service_factory: Callable[[], ScheduleService],
    *,
    queue: str = "gradesync",
) -> Any:
    """Add a once-a-minute periodic task that ticks the scheduler, for deployments where
    procrastinate workers run the jobs (`queue` must be one the workers listen to). Its
    queueing lock keeps one tick queued at a time; the tick's compare-and-set makes
    overlapping ticks harmless anyway."""

    @app.periodic(cron="* * * * *", periodic_id=PERIODIC_ID)
    @app.task(name=TICK_TASK, queue=queue, queueing_lock=PERIODIC_ID, pass_context=False)
    def schedules_tick(timestamp: int) -> int:
        fired = service_factory().tick()
        log.info("scheduler tick at %s fired %d schedule(s)", timestamp, len(fired))
        return len(fired)

    return schedules_tick
