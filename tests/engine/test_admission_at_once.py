"""A score's send takes its slot and rate token at once when nothing need be waited for
(`Admission.take_now`), and holds nothing when something must be (`take` then waits), on
SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from functools import partial

import pytest

from gradesync.adapters.db.database import Database
from gradesync.services.clock import SystemClock
from gradesync.services.delivery.background import BackgroundWrites
from gradesync.services.delivery.governor import Governor, RateLimiter
from gradesync.testing import ManualClock
from tests.engine.conftest import DEST, FAST, T, seed


async def test_a_send_takes_a_free_slot_and_token_at_once_and_holds_nothing_otherwise(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()  # the rate's: no token comes back by itself
    monkeypatch.setattr(
        "gradesync.services.delivery.governor.RateLimiter",
        partial(RateLimiter, clock=clock.monotonic),
    )
    seed(db, config={"concurrency": 1, "rate_per_second": 2})
    background = BackgroundWrites()
    # a pause read serves sends for a minute (FAST re-reads it before every send)
    settings = replace(FAST, pause_check=timedelta(minutes=1))
    governor = Governor(db.uow, SystemClock(), settings, background)
    await governor.refresh_destinations(force=True)
    d = governor.destinations[(T, DEST)]
    lim = governor.limits_for(d)

    # the pause never read: nothing taken at once, `take` reads it
    first = governor.admitted(d, lim)
    assert not first.take_now()
    assert lim.semaphore.used == 0 and lim.rate.take_now() is True  # a token was free
    lim.rate.refund()
    await first.take()
    assert lim.semaphore.used == 1
    first.leave()  # nothing sent: the slot and the token go back
    assert lim.semaphore.used == 0

    # the pause fresh, a slot and a token free: both at once
    second = governor.admitted(d, lim)
    assert second.take_now() and second.limits is lim and lim.semaphore.used == 1
    # no slot left: nothing taken, not even a token
    third = governor.admitted(d, lim)
    assert not third.take_now() and lim.semaphore.used == 1
    second.sending()
    assert lim.in_flight == 1
    second.leave()  # sent: the token is spent, the slot goes back
    assert lim.in_flight == 0 and lim.semaphore.used == 0

    # one token left (two a second, none refilled): taken; then none, and the slot it
    # would have held is not kept
    fourth = governor.admitted(d, lim)
    assert fourth.take_now()
    fourth.sending()
    fourth.leave()
    fifth = governor.admitted(d, lim)
    assert not fifth.take_now() and lim.semaphore.used == 0
    clock.advance(0.5)  # a token again
    assert fifth.take_now() and lim.semaphore.used == 1
    fifth.leave()  # nothing sent: its token goes back, for the next send
    sixth = governor.admitted(d, lim)
    assert sixth.take_now()
    sixth.leave()
    await background.wait()
    await governor.aclose()
