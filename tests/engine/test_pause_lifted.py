"""A pause found lifted wakes the passes of its destination alone; a timed pause running out
by itself wakes nobody (passes look again by then), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from gradesync.adapters.db.database import Database
from gradesync.services import destination_admin
from gradesync.services.delivery.background import BackgroundWrites
from gradesync.services.delivery.governor import Governor
from gradesync.services.delivery.records import DeliveryScope, DestKey
from gradesync.testing import ManualClock
from tests.engine.conftest import DEST, FAST, T, seed


async def test_an_admins_resume_is_told_once_with_its_destination(db: Database) -> None:
    seed(db)
    clock = ManualClock()
    governor = Governor(db.uow, clock, FAST, BackgroundWrites())
    opened: list[DestKey] = []
    governor.on_open = opened.append
    await governor.refresh_destinations(force=True)

    # a timed pause that runs out by itself: nobody told
    destination_admin.pause(
        db.uow, clock, T, DEST, actor="admin", until=clock.now() + timedelta(seconds=60)
    )
    await governor.refresh_destinations(force=True)
    clock.advance(61)
    await governor.refresh_destinations(force=True)
    assert opened == []

    # an admin's pause until resumed, then the resume: told once, naming the destination
    destination_admin.pause(db.uow, clock, T, DEST, actor="admin")
    await governor.refresh_destinations(force=True)
    destination_admin.resume(db.uow, clock, None, T, DEST)
    await governor.refresh_destinations(force=True)
    await governor.refresh_destinations(force=True)
    assert opened == [(T, DEST)]
    await governor.aclose()


async def test_a_resume_lifts_an_open_breaker(db: Database) -> None:
    """The breaker opened (its pause saved for every worker); a person resumes, from the
    command line in another process: the pause was lifted here but the breaker held every
    send until its own cool-down ended. Now the next send goes, as the breaker's probe."""
    seed(db)
    clock = ManualClock()
    governor = Governor(db.uow, clock, FAST, BackgroundWrites())
    await governor.refresh_destinations(force=True)
    lim = governor.limits[(T, DEST)]
    for _ in range(lim.breaker.settings.threshold):
        until = lim.breaker.record_failure(clock.now())
    assert until is not None and not governor.may_send(lim, clock.now())
    destination_admin.pause(db.uow, clock, T, DEST, actor="breaker", until=until)
    await governor.refresh_destinations(force=True)
    assert lim.gated(clock.now())

    destination_admin.resume(db.uow, clock, None, T, DEST)
    await governor.refresh_destinations(force=True)
    assert governor.may_send(lim, clock.now()), "the breaker held the resumed destination"
    assert lim.breaker.probing  # one probe first: its answer closes or opens it again
    await governor.aclose()


def test_a_scope_reaches_the_destinations_it_holds() -> None:
    assert DeliveryScope().reaches((T, DEST))
    assert DeliveryScope(T, DEST, "c1").reaches((T, DEST))
    assert not DeliveryScope(T, "other").reaches((T, DEST))
    assert not DeliveryScope("t2").reaches((T, DEST))
