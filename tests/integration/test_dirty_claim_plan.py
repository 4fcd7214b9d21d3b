"""A computing pass's claim of the first dirty keys of the queue reads them in order from its
index, however many keys wait, on both databases. Before, each claim sorted every waiting key:
on PostgreSQL the sort could not stop at the keys it takes (the claim locks its rows, which
rules out a top-n sort), and the claimed keys were matched back to a scan of the whole table.
At 120,000 keys waiting, a roster import's marks, a claim of 500 took 233 ms
(docs/benchmarks-journal.md, "Dirty keys claimed from an index")."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import psycopg
from sqlalchemy import event

from gradesync.adapters.db.database import Database
from gradesync.testing import add_tenant
from gradesync.testing.seeding import EPOCH

WAITING = 3000
CLAIM = 50


def _claim_statement(db: Database) -> tuple[str, Any]:
    """The statement a claim sends, with its parameters (the claim itself rolled back)."""
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "DELETE FROM dirty_keys" in statement:
            sent.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.uow() as uow:
            uow.dirty.claim(CLAIM)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    (found,) = sent
    return found


def _mark(db: Database, n: int) -> None:
    keys = [("t1", "c1", f"a{i % 10}", f"p{i // 10}") for i in range(n)]
    with db.uow() as uow:
        uow.dirty.mark_many(keys, EPOCH)
        uow.commit()


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for sub in plan.get("Plans", ()) for n in _nodes(sub))]


def test_a_claim_reads_only_the_keys_it_takes_on_postgres(postgres_db: Database) -> None:
    """Through the plan psycopg prepares for a statement it runs often, made while no key
    waited; then WAITING keys are marked and ingest renews the statistics (as it does after
    a bulk write: services/ledger_statistics.py), which makes PostgreSQL plan it again."""
    db = postgres_db
    add_tenant(db.uow, "t1")
    statement, params = _claim_statement(db)
    raw = db.engine.raw_connection()
    try:
        conn = raw.dbapi_connection
        assert isinstance(conn, psycopg.Connection)
        conn.autocommit = True
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(statement, params, prepare=True)  # planned now, with no key waiting
        (name,) = conn.execute(
            "SELECT name FROM pg_prepared_statements WHERE NOT from_sql "
            "ORDER BY prepare_time DESC LIMIT 1"
        ).fetchone() or (None,)
        _mark(db, WAITING)
        with db.uow() as uow:
            uow.attempts.refresh_statistics()
            uow.commit()
        order = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement)))
        literal = psycopg.ClientCursor(conn)
        args = f"({', '.join(f'%({n})s' for n in order)})" if order else ""
        literal.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}{args}", params)
        row = literal.fetchone()
        assert row is not None
        plan = row[0][0]["Plan"]
    finally:
        raw.close()
    nodes = _nodes(plan)
    assert plan["Actual Rows"] == CLAIM
    assert not [n for n in nodes if n["Node Type"] == "Sort"], plan  # no sort of them all
    (queue,) = [n for n in nodes if n.get("Index Name") == "ix_dirty_keys_queue"]
    assert queue["Actual Rows"] == CLAIM, plan  # the queue read only as far as it takes


def test_a_claim_reads_the_queue_s_index_in_order_on_sqlite(sqlite_db: Database) -> None:
    db = sqlite_db
    add_tenant(db.uow, "t1")
    _mark(db, WAITING)
    statement, params = _claim_statement(db)
    with db.engine.connect() as conn:
        plan = " ".join(
            str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
        )
    assert "ix_dirty_keys_queue" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # no sort of every waiting key


def test_claims_take_keys_in_the_order_first_marked(db: Database) -> None:
    """The order the index serves is the claim's: first marked first; a key marked again
    keeps its place, one sent `behind` (it could not even be set aside) goes to the back."""
    add_tenant(db.uow, "t1")
    with db.uow() as uow:
        for i in range(6):
            uow.dirty.mark("t1", "c1", "a1", f"p{i}", EPOCH + timedelta(seconds=i))
        uow.dirty.mark("t1", "c1", "a1", "p1", EPOCH + timedelta(seconds=10))  # again
        uow.dirty.mark_many([("t1", "c1", "a1", "p0")], EPOCH + timedelta(seconds=11), behind=True)
        uow.commit()
    with db.uow() as uow:
        first = {k[3] for k in uow.dirty.claim(3)}
        rest = {k[3] for k in uow.dirty.claim(10)}
        uow.commit()
    assert first == {"p1", "p2", "p3"}
    assert rest == {"p4", "p5", "p0"}
