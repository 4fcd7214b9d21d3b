"""The breaker's probe answered while a person's timed pause holds the destination: the
probe closes the breaker, and the person's pause stays, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Destination
from gradesync.domain.pauses import PauseCause
from gradesync.services import destination_admin
from gradesync.services.delivery.background import BackgroundWrites
from gradesync.services.delivery.governor import BreakerState, DestinationLimits, Governor
from gradesync.testing import ManualClock
from tests.engine.conftest import DEST, FAST, T, seed


def _stored_pause(db: Database) -> tuple[object, object, object]:
    """The destination's pause as stored: (until, reason, cause)."""
    with db.uow() as uow:
        stored = uow.destinations.get(T, DEST)
    assert stored is not None
    return stored.paused_until, stored.pause_reason, stored.pause_cause


async def _open_breaker(
    clock: ManualClock,
    background: BackgroundWrites,
    governor: Governor,
    d: Destination,
    lim: DestinationLimits,
) -> None:
    """The breaker opened by failures, and its cool-down passed."""
    for _ in range(lim.breaker.settings.threshold):
        governor.failed(d, lim, "HTTP 503")
    await background.wait()
    clock.advance(1)


async def _governed(
    db: Database,
) -> tuple[ManualClock, BackgroundWrites, Governor, Destination, DestinationLimits]:
    """The engine's seed, and a worker's governor of its destination: (clock, background
    writes, governor, the destination, its limits)."""
    seed(db)
    clock = ManualClock()
    background = BackgroundWrites()
    governor = Governor(db.uow, clock, FAST, background)
    await governor.refresh_destinations(force=True)
    d = governor.destinations[(T, DEST)]
    return clock, background, governor, d, governor.limits_for(d)


async def _probing(
    db: Database,
) -> tuple[ManualClock, BackgroundWrites, Governor, Destination, DestinationLimits]:
    """`_governed`, its breaker opened by failures and its cool-down passed: the next
    request is the probe."""
    clock, background, governor, d, lim = await _governed(db)
    await _open_breaker(clock, background, governor, d, lim)
    assert governor.may_send(lim, clock.now()) and lim.breaker.probing
    return clock, background, governor, d, lim


async def test_a_probes_success_keeps_an_admins_timed_pause(db: Database) -> None:
    clock, background, governor, d, lim = await _probing(db)

    # while the probe is out, a person pauses the destination for an hour
    until = clock.now() + timedelta(hours=1)
    destination_admin.pause(db.uow, clock, T, DEST, actor="admin", reason="exam week", until=until)
    await governor.refresh_destinations(force=True)
    assert lim.gated(clock.now()) == until

    governor.answered(d, lim)  # the probe succeeded
    await background.wait()
    assert lim.breaker.state is BreakerState.CLOSED
    assert lim.gated(clock.now()) == until, "the probe lifted the person's pause here"
    with db.uow() as uow:
        stored = uow.destinations.get(T, DEST)
    assert stored is not None
    assert stored.paused_until == until, "the probe lifted the person's pause for every worker"
    assert stored.pause_reason == "exam week" and stored.pause_cause is PauseCause.ADMIN
    await governor.aclose()


async def test_a_probes_success_keeps_a_pause_not_read_yet(db: Database) -> None:
    """The person's pause is committed while the probe is out and not read here before it
    answers: the breaker's pause is lifted here, and the person's stays stored (and is
    honoured at the next read)."""
    clock, background, governor, d, lim = await _probing(db)

    until = clock.now() + timedelta(hours=1)
    destination_admin.pause(db.uow, clock, T, DEST, actor="admin", reason="exam week", until=until)
    governor.answered(d, lim)
    await background.wait()
    assert _stored_pause(db) == (
        until,
        "exam week",
        PauseCause.ADMIN,
    ), "the probe lifted the person's pause for every worker"
    await governor.refresh_destinations(force=True)
    assert lim.gated(clock.now()) == until

    # with nobody's pause but the breaker's, a success lifts it for every worker
    destination_admin.resume(db.uow, clock, None, T, DEST)
    await governor.refresh_destinations(force=True)
    await _open_breaker(clock, background, governor, d, lim)
    assert governor.may_send(lim, clock.now())
    governor.answered(d, lim)
    await background.wait()
    assert _stored_pause(db) == (None, None, None)
    assert lim.gated(clock.now()) is None
    await governor.aclose()


async def test_a_retry_after_does_not_shorten_a_pause_written_meanwhile(db: Database) -> None:
    """A 429 answered before this process read a person's longer timed pause: its own
    pause is written beside the person's, not over it (the console, other workers and a
    restart would have read only the 429's end)."""
    clock, background, governor, d, lim = await _governed(db)

    until = clock.now() + timedelta(hours=1)
    destination_admin.pause(db.uow, clock, T, DEST, actor="admin", reason="exam week", until=until)
    # not read here yet: a send in flight meets a 429 with Retry-After: 30
    governor.gate(d, lim, clock.now() + timedelta(seconds=30), PauseCause.SLOW_DOWN, ".")
    await background.wait()
    assert _stored_pause(db) == (
        until,
        "exam week",
        PauseCause.ADMIN,
    ), "the Retry-After's pause was written over the person's"
    await governor.refresh_destinations(force=True)
    assert lim.gated(clock.now() + timedelta(seconds=31)) == until

    # a later end than the stored pause's is written (the later end wins)
    later = until + timedelta(hours=1)
    governor.gate(d, lim, later, PauseCause.SLOW_DOWN, ".")
    await background.wait()
    with db.uow() as uow:
        stored = uow.destinations.get(T, DEST)
    assert stored is not None
    assert (stored.paused_until, stored.pause_cause) == (later, PauseCause.SLOW_DOWN)
    await governor.aclose()
