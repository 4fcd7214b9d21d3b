"""PostgreSQL: the dirty keys' pages keep room (fillfactor 50), so a key marked again while
it still waits (an import's attempts after its roster marked their keys) is rewritten beside
the row it replaces (a HOT update) and adds nothing to an index: neither the primary key's
nor the claims' queue's, which holds its first mark, not its last (migration 0026). In full
pages few could be (docs/benchmarks-journal.md, "PostgreSQL ingest with one client: one
write")."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from gradesync.adapters.db.database import Database
from gradesync.testing import add_tenant
from gradesync.testing.seeding import EPOCH

KEYS = [("t1", "c1", f"a{j}", f"p{i:03d}") for i in range(100) for j in range(4)]


def test_a_key_marked_again_is_written_in_its_rows_page(postgres_db: Database) -> None:
    db = postgres_db
    add_tenant(db.uow, "t1")
    with db.uow() as uow:
        uow.dirty.mark_many(KEYS, EPOCH)
        uow.commit()
    with db.uow() as uow:
        uow.dirty.mark_many(KEYS, EPOCH + timedelta(minutes=1))
        # this transaction's own counts, exact and at once
        updated, hot = uow.conn.execute(
            text(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
                "WHERE relname = 'dirty_keys'"
            )
        ).one()
        uow.commit()
    assert updated == len(KEYS)
    # every mark finds room in its page; in full pages none did here
    assert hot >= len(KEYS) * 9 // 10, (hot, updated)
