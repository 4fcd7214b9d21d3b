"""Two changes to a destination made at the same moment both stay, on SQLite and PostgreSQL:
a pause, a resume and a change of limits each read the destination and write it back whole,
so each holds the row from its read to its commit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Destination
from gradesync.domain.pauses import PauseCause
from gradesync.services import destination_admin
from gradesync.services.clock import SystemClock
from gradesync.testing import add_destination, add_tenant
from tests.support.races import AfterFirstRead

T, DEST = "t1", "lms"
CLOCK = SystemClock()


def _stored(db: Database) -> Destination:
    with db.uow() as uow:
        d = uow.destinations.get(T, DEST)
    assert d is not None
    return d


def _meanwhile(db: Database, other: Callable[[Any], object]) -> AfterFirstRead:
    """A unit of work in which `other` (given the plain factory) commits right after the
    destination is read."""
    add_tenant(db.uow, T)
    add_destination(db.uow, T, DEST, config={"concurrency": 4})
    return AfterFirstRead(db, "destinations", "get", lambda: other(db.uow))


def test_a_pause_made_while_limits_change_stays(db: Database) -> None:
    """Another admin's pause committed between the limits' read of the destination and
    their write was written back as enabled (PostgreSQL's read committed): grades went on to
    a destination its admin had been told was paused."""
    racing = _meanwhile(
        db, lambda uow: destination_admin.pause(uow, CLOCK, T, DEST, actor="other admin")
    )
    destination_admin.set_limits(racing, CLOCK, T, DEST, {"rate_per_second": 5})
    racing.finish()
    d = _stored(db)
    assert (d.enabled, d.pause_reason) == (False, "paused by other admin")
    assert (d.config["concurrency"], d.config["rate_per_second"]) == (4, 5)


def test_limits_changed_while_a_pause_is_made_stay(db: Database) -> None:
    until = datetime.now(UTC) + timedelta(hours=1)
    racing = _meanwhile(
        db, lambda uow: destination_admin.set_limits(uow, CLOCK, T, DEST, {"concurrency": 2})
    )
    destination_admin.pause(racing, CLOCK, T, DEST, actor="admin", until=until)
    racing.finish()
    d = _stored(db)
    assert d.config["concurrency"] == 2
    assert (d.paused_until, d.pause_cause) == (until, PauseCause.ADMIN)


def test_limits_changed_while_a_resume_is_made_stay(db: Database) -> None:
    add_tenant(db.uow, T)
    add_destination(db.uow, T, DEST, config={"concurrency": 4})
    destination_admin.pause(db.uow, CLOCK, T, DEST, actor="admin")
    racing = AfterFirstRead(
        db,
        "destinations",
        "get",
        lambda: destination_admin.set_limits(db.uow, CLOCK, T, DEST, {"rate_per_second": 5}),
    )
    destination_admin.resume(racing, CLOCK, None, T, DEST)
    racing.finish()
    d = _stored(db)
    assert (d.enabled, d.paused_until, d.pause_reason) == (True, None, None)
    assert (d.config["concurrency"], d.config["rate_per_second"]) == (4, 5)
