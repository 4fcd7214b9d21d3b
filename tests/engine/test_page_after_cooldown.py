"""A listing's later page (`Governor.further_requests`) meets the destination as a new request
would: while its breaker is open the page is not asked; once the cool-down has passed with
no probe out, the page goes as the breaker's probe (it was refused for a pause already
over, and the column's rows waited for nothing), and its answer closes or re-opens the
breaker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Destination
from gradesync.services.delivery.background import BackgroundWrites
from gradesync.services.delivery.governor import (
    BreakerState,
    DestinationPaused,
    Governor,
    counted,
)
from gradesync.services.destination import FailureClass, RemoteFailure
from gradesync.testing import ManualClock
from tests.engine.conftest import DEST, FAST, T, seed


def _server_error() -> RemoteFailure:
    return RemoteFailure(FailureClass.RETRY_LATER, "server_error", "HTTP 500")


@asynccontextmanager
async def _governor(
    db: Database, clock: ManualClock
) -> AsyncIterator[tuple[Governor, Destination]]:
    """A governor on the seeded destination, its background writes awaited at the end."""
    background = BackgroundWrites()
    governor = Governor(db.uow, clock, FAST, background)
    await governor.refresh_destinations(force=True)
    try:
        yield governor, governor.destinations[(T, DEST)]
    finally:
        await background.wait()
        await governor.aclose()


async def test_a_later_page_after_the_cool_down_probes_as_a_new_request_would(
    db: Database,
) -> None:
    clock = ManualClock()
    seed(db)
    async with _governor(db, clock) as (governor, d):
        async with governor.request(d) as lim:
            page = governor.further_requests(d)
            async with page():  # the first page: the request's own slot and token
                pass
            # meanwhile the destination's sends fail: its breaker opens for the cool-down
            for _ in range(FAST.breaker.threshold):
                governor.failed(d, lim, "server error")
            assert lim.breaker.state is BreakerState.OPEN
            with pytest.raises(DestinationPaused):
                async with page():
                    pytest.fail("a page asked while the breaker is open")
            clock.advance(FAST.breaker.cooldown)
            async with page():  # cooled, no probe out: this page is the probe
                assert lim.breaker.probing
            assert lim.breaker.state is BreakerState.CLOSED  # its answer closed the breaker

        async with governor.request(d) as lim:
            page = governor.further_requests(d)
            async with page():
                pass
            for _ in range(FAST.breaker.threshold):
                governor.failed(d, lim, "server error")
            clock.advance(FAST.breaker.cooldown * 2)
            with pytest.raises(RemoteFailure) as failed:
                async with page():  # the probe fails: the breaker opens again
                    raise _server_error()
            assert lim.breaker.state is BreakerState.OPEN and not lim.breaker.probing
            assert counted(failed.value)  # on the breaker once: the caller counts it no more


async def test_a_request_beside_the_held_slot_takes_only_a_slot_free_at_once(
    db: Database,
) -> None:
    """`beside` takes a further slot of the destination's concurrency only while one is
    free, counted in flight while held, and gives it back as its block ends, to a request
    waiting for one first (a grade's send)."""
    seed(db, config={"concurrency": 3})
    async with (
        _governor(db, ManualClock()) as (governor, d),
        governor.request(d),  # one of three slots
    ):
        gate = governor.further_requests(d)
        lim = governor.limits_for(d)
        with gate.beside() as second, gate.beside() as third, gate.beside() as fourth:
            assert (second, third, fourth) == (True, True, False)
            assert lim.in_flight == 3  # each request beside counts in flight
        assert lim.in_flight == 1 and lim.max_in_flight == 3
        with gate.beside() as again:  # given back
            assert again
        with gate.beside() as second, gate.beside() as third:  # every slot held
            assert second and third
            slots = governor.limits_for(d).semaphore
            waiter = asyncio.create_task(slots.acquire(0))  # a grade's send, say
            await asyncio.sleep(0)  # one turn of the loop: it queues for a slot
        # the slots given back went to the grade waiting, not to a request beside
        await waiter
        with gate.beside() as beside_the_grade:  # one free, nothing waits
            assert beside_the_grade
            with gate.beside() as none_left:
                assert not none_left
        slots.release()


async def test_a_call_that_asks_nothing_is_no_answer_to_the_breaker_s_probe(
    db: Database,
) -> None:
    """A read-back with no learner to ask (LTI 1.1) held the half-open breaker's probe and,
    asking nothing, closed the breaker: the grades behind it were let go at a destination
    nobody had heard from. Now the probe goes back, the breaker still half-open, and the
    next request takes it; a call that did ask closes the breaker."""
    clock = ManualClock()
    seed(db)
    async with _governor(db, clock) as (governor, d):
        lim = governor.limits_for(d)
        for _ in range(FAST.breaker.threshold):
            governor.failed(d, lim, "server error")
        clock.advance(FAST.breaker.cooldown)

        async with governor.call(d) as gate:
            assert lim.breaker.probing  # this call holds the probe
        assert not gate.asked
        assert lim.breaker.state is BreakerState.HALF_OPEN and not lim.breaker.probing

        async with governor.call(d) as gate:
            assert lim.breaker.probing  # the next call takes it
            async with gate():
                pass
        assert lim.breaker.state is BreakerState.CLOSED  # an answer: the breaker closes
