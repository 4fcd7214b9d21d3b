"""people's indexes: a search by email (any case) is served by the email index on both
databases, and PostgreSQL's foreign-key check of each stored attempt (tenant, person) takes
the primary key even before the table has statistics. With the email index led by the
tenant alone, it took that index and filtered every person of the tenant per attempt."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Person, Tenant


def _indexes_in(plan: Any) -> set[str]:
    found = {plan["Index Name"]} if "Index Name" in plan else set()
    for sub in plan.get("Plans", ()):
        found |= _indexes_in(sub)
    return found


def test_a_search_by_email_ignores_case_and_uses_the_email_index(db: Database) -> None:
    with db.uow() as uow:
        uow.tenants.upsert(Tenant("t1", "Tenant"), datetime.now(UTC))
        uow.people.upsert(Person("t1", "p1", "Ada", "Ada@Example.edu"))
        uow.people.upsert(Person("t1", "p2", "Alan", None))
        uow.commit()
        assert [p.id for p in uow.people.find("t1", email="ada@EXAMPLE.edu")] == ["p1"]
        assert uow.people.find("t1", email="alan@example.edu") == []
        query = "SELECT id FROM people WHERE tenant_id = 't1' AND email IS NOT NULL"
        query += " AND lower(email) = 'ada@example.edu'"
        if db.is_sqlite:
            plan = " ".join(
                str(r[-1]) for r in uow.conn.execute(text("EXPLAIN QUERY PLAN " + query))
            )
            assert "ix_people_email" in plan
        else:
            uow.conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = uow.conn.execute(text("EXPLAIN (FORMAT JSON) " + query)).scalar()
            assert _indexes_in(plan[0]["Plan"]) == {"ix_people_email"}


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
        # the statement PostgreSQL's referential-integrity trigger runs (ri_triggers.c)
        plan = conn.execute(
            text(
                "EXPLAIN (FORMAT JSON) SELECT 1 FROM ONLY fresh x "
                "WHERE tenant_id::text = 't' AND id::text = 'p5' FOR KEY SHARE OF x"
            )
        ).scalar()
        assert _indexes_in(plan[0]["Plan"]) == {pk}
