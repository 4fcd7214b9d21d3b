"""Ledger rows stored and claimed the way a claim leaves them, for the tests of the ledger's
writers (settle, release): tenant t1's LMS destination `lms`, course c1, a lease until UNTIL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Destination, DestinationKind, LedgerRow, Tenant

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
UNTIL = NOW + timedelta(minutes=2)  # a claim's lease


def store_claimed(db: Database, rows: Sequence[LedgerRow], stamp: datetime) -> None:
    """`rows` stored, a statement each in this order (the order the heap holds them in), and
    leased to w1 until UNTIL in that order, each with its score timestamp `stamp`."""
    with db.uow() as uow:
        uow.tenants.upsert(Tenant("t1", "Tenant"), NOW)
        uow.destinations.upsert(Destination("t1", "lms", DestinationKind.LTI13_AGS, "LMS"), NOW)
        for row in rows:
            uow.ledger.save_many([(row, "c1")])
        uow.ledger.lease([(row.key, stamp) for row in rows], "w1", UNTIL)
        uow.commit()
