"""Database writes a pass does not wait for (a pause, a column's link), run in a thread."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class BackgroundWrites:
    """Starts writes without waiting for them; a pass waits for all of them before it
    returns, so its callers see what it decided."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, write: Callable[[], None], what: str) -> None:
        async def run() -> None:
            try:
                await asyncio.to_thread(write)
            except Exception:
                log.exception("%s failed", what)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
