"""The count of grades set aside as compute_failed, read at every /metrics scrape, is served by
the partial index that holds only them, on both databases: the index's condition is written
as the same literal in the query (a bound value could not be proved to match it), so the
scrape never reads every skipped row of the ledger."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from gradesync.adapters.db.database import Database
from gradesync.adapters.metrics import LedgerCollector


def _collector_statement(db: Database) -> tuple[str, Any]:
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        sent.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        list(LedgerCollector(db.engine).collect())
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    (found,) = [(s, p) for s, p in sent if "compute_failed" in s]
    return found


def test_the_scrape_counts_compute_failed_rows_by_their_own_index(db: Database) -> None:
    statement, params = _collector_statement(db)
    with db.engine.connect() as conn:
        if db.is_sqlite:
            plan = " ".join(
                str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
            )
        else:
            # the planner may be free to scan a tiny table: asked to avoid it, it can only
            # take an index, and the partial one only if the query proves its condition
            conn.exec_driver_sql("SET enable_seqscan = off")
            rows = conn.exec_driver_sql("EXPLAIN " + statement, params)
            plan = " ".join(str(r[0]) for r in rows)
        assert "ix_ledger_compute_failed" in plan, plan
