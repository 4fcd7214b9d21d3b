"""The tasks of one delivery pass and the claimed rows they hold."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class InFlight:
    """The tasks of one delivery pass (preparing a course, or sending one row) and the
    claimed rows they hold. `wait()` returns once one of them has ended or `wake()` was
    called (rows became due), whichever is first."""

    def __init__(self) -> None:
        self.tasks: dict[asyncio.Task[None], int] = {}
        self.rows = 0
        self._ended: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()

    def start(self, work: Coroutine[Any, Any, None], rows: int) -> None:
        task = asyncio.create_task(work)
        self.tasks[task] = rows
        self.rows += rows
        task.add_done_callback(self._ended_one)

    def _ended_one(self, task: asyncio.Task[None]) -> None:
        # said here, not in wait(): a pass that stops (its database lost) waits no more,
        # and its tasks' errors would end as "Task exception was never retrieved"
        if not task.cancelled() and task.exception() is not None:
            log.error("a delivery task failed unexpectedly", exc_info=task.exception())
        self._ended.append(task)
        self._wake.set()

    @property
    def holding(self) -> int:
        """Rows held by tasks that have not ended yet (`rows` counts ended tasks until the
        pass waits again)."""
        return self.rows - sum(self.tasks.get(t, 0) for t in self._ended)

    def wake(self) -> None:
        self._wake.set()

    async def wait(self, timeout: float | None = None) -> None:
        """Until a task ends, `wake()` is called, or `timeout` seconds pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        self._wake.clear()
        ended, self._ended = self._ended, []
        for task in ended:
            self.rows -= self.tasks.pop(task, 0)

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()
