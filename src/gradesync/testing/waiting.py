"""Wait for a condition, never for a time.

A test waits until what it expects has happened, checked again and again; the deadline is
generous (only a hang reaches it) and is never the thing under test, so a slow machine makes
a test slower, not red. The failure names what was awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEADLINE = 30.0  # seconds; a hang, not a slow machine
_PACE = 0.02  # between two checks of a condition that has no event to wait on


def wait_for(
    check: Callable[[], T],
    what: str,
    *,
    timeout: float = DEADLINE,
    explain: Callable[[], str] | None = None,
) -> T:
    """Call `check` until it returns something truthy and return that; raise an
    AssertionError naming `what` (and `explain()`, e.g. a worker's log) at the deadline."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(_timed_out(what, timeout, explain))
        time.sleep(_PACE)


async def wait_for_async(
    check: Callable[[], T],
    what: str,
    *,
    timeout: float = DEADLINE,
    changed: asyncio.Condition | None = None,
    blocking: bool = False,
    explain: Callable[[], str] | None = None,
) -> T:
    """`wait_for` inside an event loop. With `changed`, the condition is checked again as
    soon as that condition variable is notified (and at least every 0.25 s); `blocking`
    runs `check` in a thread (it reads a database, say)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout

    async def holds() -> T:
        return await asyncio.to_thread(check) if blocking else check()

    while True:
        if changed is None:
            value = await holds()
            if value:
                return value
            left = _left(end, loop, what, timeout, explain)
            await asyncio.sleep(min(_PACE, left))
            continue
        async with changed:  # checked under the lock: no notification slips in between
            value = await holds()
            if value:
                return value
            left = _left(end, loop, what, timeout, explain)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(0.25, left)):
                    await changed.wait()


def _left(
    end: float,
    loop: asyncio.AbstractEventLoop,
    what: str,
    timeout: float,
    explain: Callable[[], str] | None,
) -> float:
    left = end - loop.time()
    if left <= 0:
        raise AssertionError(_timed_out(what, timeout, explain))
    return left


def _timed_out(what: str, timeout: float, explain: Callable[[], str] | None) -> str:
    message = f"timed out after {timeout:g} s waiting for {what}"
    return f"{message}\n{explain()}" if explain is not None else message
