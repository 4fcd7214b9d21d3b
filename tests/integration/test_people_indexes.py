"""people's indexes. The statement `PersonRepo.find` sends for an email (any case) looks up
both the tenant and lower(email) in the email index, on both databases: the old (tenant,
email) index could look up the tenant only, and SQLite takes the partial index only when
the statement says `email IS NOT NULL`. PostgreSQL's foreign-key check of each stored
attempt (tenant, person) takes the primary key even before the table has statistics, in
its custom and its generic plan: with the old index it took that one and filtered every
person of the tenant, per attempt."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, text

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Person, Tenant


def _index_scans(plan: Any) -> list[tuple[str, str]]:
    """(index, its condition) of each index scan in an EXPLAIN (FORMAT JSON) plan."""
    found = [(plan["Index Name"], plan.get("Index Cond", ""))] if "Index Name" in plan else []
    for sub in plan.get("Plans", ()):
        found += _index_scans(sub)
    return found


def _find_statement(db: Database, **search: str) -> tuple[str, Any]:
    """The statement `PersonRepo.find(**search)` sends, with its parameters."""
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        sent.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.uow() as uow:
            uow.people.find("t1", **search)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    (found,) = [(s, p) for s, p in sent if "FROM people" in s]
    return found


def test_a_search_by_email_ignores_case_and_uses_the_email_index(db: Database) -> None:
    with db.uow() as uow:
        uow.tenants.upsert(Tenant("t1", "Tenant"), datetime.now(UTC))
        uow.people.upsert(Person("t1", "p1", "Ada", "Ada@Example.edu"))
        uow.people.upsert(Person("t1", "p2", "Alan", None))
        uow.commit()
        assert [p.id for p in uow.people.find("t1", email="ada@EXAMPLE.edu")] == ["p1"]
        assert uow.people.find("t1", email="alan@example.edu") == []
    statement, params = _find_statement(db, email="ada@EXAMPLE.edu")
    with db.engine.connect() as conn:
        # a tenant of many people, each with an email, as the planner sees it
        conn.exec_driver_sql(
            "INSERT INTO people (tenant_id, id, name, email) "
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) "
            "SELECT 't1', 'n' || i, 'N' || i, 'n' || i || '@example.edu' FROM n"
        )
        conn.exec_driver_sql("ANALYZE people")
        if db.is_sqlite:
            plan = " ".join(
                str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
            )
            # both the tenant and lower(email) looked up in the index
            assert "ix_people_email (tenant_id=? AND <expr>=?)" in plan
        else:
            plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, params).scalar()
            scans = _index_scans(plan[0]["Plan"])
            assert [name for name, _ in scans] == ["ix_people_email"]
            assert "lower(" in scans[0][1]  # in the index's condition, not a filter after it


def test_the_foreign_key_check_on_people_takes_the_primary_key(postgres_db: Database) -> None:
    with postgres_db.engine.connect() as conn:
        # people's very definition (columns and indexes), fresh: no statistics yet
        conn.execute(text("CREATE TEMP TABLE fresh (LIKE people INCLUDING INDEXES)"))
        conn.execute(
            text(
                "INSERT INTO fresh (tenant_id, id, name) "
                "SELECT 't', 'p' || i, 'P' || i FROM generate_series(1, 2000) AS i"
            )
        )
        pk = conn.execute(
            text(
                "SELECT indexrelid::regclass::text FROM pg_index "
                "WHERE indrelid = 'fresh'::regclass AND indisprimary"
            )
        ).scalar()
        # the statement PostgreSQL's referential-integrity trigger runs (ri_triggers.c),
        # prepared as the trigger prepares it, planned for these values and generically
        conn.execute(
            text(
                "PREPARE ri_check(text, text) AS SELECT 1 FROM ONLY fresh x "
                "WHERE tenant_id::text = $1 AND id::text = $2 FOR KEY SHARE OF x"
            )
        )
        for mode in ("force_custom_plan", "force_generic_plan"):
            conn.execute(text(f"SET plan_cache_mode = {mode}"))
            plan = conn.execute(text("EXPLAIN (FORMAT JSON) EXECUTE ri_check('t', 'p5')"))
            assert [name for name, _ in _index_scans(plan.scalar()[0]["Plan"])] == [pk], mode
