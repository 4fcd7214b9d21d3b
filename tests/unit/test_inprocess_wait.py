"""The in-process worker's loops wait on events with a timeout; stopping the worker
cancels them, and that cancellation must never be lost."""

from __future__ import annotations

import asyncio

import pytest

from gradesync.adapters.queue.inprocess import _wait


async def test_a_cancel_that_arrives_as_the_event_is_set_is_not_lost() -> None:
    event = asyncio.Event()
    waiting = asyncio.create_task(_wait(event, 10.0))
    await asyncio.sleep(0)  # the task now waits on the event
    event.set()
    waiting.cancel()  # in the same turn of the loop: a worker stopping as work arrives
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_wait_ends_at_its_timeout_and_clears_the_event() -> None:
    event = asyncio.Event()
    await _wait(event, 0.01)
    event.set()
    await _wait(event, 10.0)  # set: returns at once
    assert not event.is_set()
