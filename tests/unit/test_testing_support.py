"""The test support gradesync ships (`gradesync.testing`): its clock and its waits."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest

from gradesync.testing import ManualClock, wait_for, wait_for_async

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def test_the_clock_moves_only_when_told_and_both_times_together() -> None:
    clock = ManualClock(T0)
    start = clock.monotonic()
    assert clock.now() == T0 and clock.now() == T0
    assert clock.advance(timedelta(minutes=1)) == T0 + timedelta(minutes=1)
    clock.advance(1.5)  # seconds
    assert clock.now() == T0 + timedelta(seconds=61.5)
    assert clock.monotonic() - start == 61.5
    clock.set(T0)  # a jump back in wall time; monotonic time still only grows
    assert clock.now() == T0 and clock.monotonic() - start == 123.0


def test_the_clock_refuses_naive_times_and_going_backwards() -> None:
    with pytest.raises(ValueError, match="at: must be timezone-aware"):
        ManualClock(datetime(2026, 1, 1))
    clock = ManualClock(T0)
    with pytest.raises(ValueError, match="delta: a clock does not go backwards"):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError, match="at: must be timezone-aware"):
        clock.set(datetime(2026, 1, 1))


def test_wait_for_returns_what_the_condition_found() -> None:
    found = threading.Event()
    threading.Thread(target=found.set).start()
    assert wait_for(lambda: found.is_set() and "done", "the thread") == "done"


def test_wait_for_names_what_it_waited_for_at_the_deadline() -> None:
    with pytest.raises(AssertionError, match="waiting for the moon\nlog: nothing"):
        wait_for(lambda: False, "the moon", timeout=0.05, explain=lambda: "log: nothing")


async def test_wait_for_async_sees_a_change_its_condition_variable_announces() -> None:
    changed = asyncio.Condition()
    state = {"n": 0}

    async def bump() -> None:
        async with changed:
            state["n"] = 1
            changed.notify_all()

    waiting = asyncio.create_task(wait_for_async(lambda: state["n"] == 1, "n", changed=changed))
    await bump()  # takes the lock: the waiter does not hold it while it waits
    assert await waiting is True


async def test_wait_for_async_checks_in_a_thread_and_fails_with_what() -> None:
    assert await wait_for_async(lambda: 42, "an answer", blocking=True) == 42
    with pytest.raises(AssertionError, match=r"timed out after 0\.05 s waiting for never"):
        await wait_for_async(lambda: False, "never", timeout=0.05)
