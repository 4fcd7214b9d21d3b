"""PostgreSQL: the ledger's pages keep room (fillfactor 70), so a claim's lease, which
changes no indexed column, can be written beside the row it replaces (a HOT update) and add
nothing to the ledger's five indexes. In full pages every lease went elsewhere and added an
entry to each index (docs/benchmarks-journal.md, "PostgreSQL against SQLite, late
evening")."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from gradesync.adapters.db.database import Database
from gradesync.domain.model import DeliveryState, LedgerKey, LedgerRow
from gradesync.testing import add_course, add_destination, add_tenant
from gradesync.testing.seeding import EPOCH

ROWS = 400
T, DEST = "t1", "lms"


def test_a_lease_is_written_in_its_rows_page(postgres_db: Database) -> None:
    db = postgres_db
    add_tenant(db.uow, T)
    add_course(db.uow, T, "c1", ("a1", "Quiz", 10.0))
    add_destination(db.uow, T, DEST)
    rows = [
        (
            LedgerRow(
                key=LedgerKey(T, DEST, "a1", f"p{i:03d}"),
                state=DeliveryState.PENDING,
                desired_hash=f"h{i:060d}",
                desired={"score_given": 1.0, "score_maximum": 10.0, "comment": "x" * 40},
                updated_at=EPOCH,
            ),
            "c1",
        )
        for i in range(ROWS)
    ]
    with db.uow() as uow:
        uow.ledger.save_many(rows)
        uow.commit()
    with db.uow() as uow:
        uow.ledger.lease([(r.key, EPOCH) for r, _ in rows], "w1", EPOCH + timedelta(minutes=1))
        # this transaction's own counts, exact and at once
        updated, hot = uow.conn.execute(
            text(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
                "WHERE relname = 'ledger'"
            )
        ).one()
        uow.commit()
    assert updated == ROWS
    # each page's room takes a new version for about one row in four; a full page's, none
    assert hot >= ROWS // 5, (hot, updated)
