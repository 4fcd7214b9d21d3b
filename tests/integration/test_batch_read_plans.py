"""PostgreSQL: an ingest batch's reads of stored people, courses, enrollments and due-date
overrides by their keys look each key up, however many rows the tenant has, in the plan
psycopg prepares for a statement it runs often: the generic plan, made once, while the
tenant may still have had few rows, and kept as the tables grow.

Before, `id IN ($2, ..., $501)` in that plan read every row of the tenant and compared it
with every id: a roster batch's read of 500 people took 75 ms at 10,000 people, and grew
with them (docs/benchmarks-journal.md, "A roster batch on PostgreSQL: reads by key, one write")."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, text

from gradesync.adapters.db.database import Database
from gradesync.services.ports import UnitOfWork
from gradesync.testing import add_course, add_tenant

T = "t1"
GROWN = 3000  # the tenant's people, enrollments and overrides once the plan is made
ASKED = 200  # keys each read asks for, half of them stored


def _statement(db: Database, read: Callable[[UnitOfWork], object]) -> tuple[str, dict[str, Any]]:
    """The one statement `read` sends, with its parameters."""
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        sent.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.reads() as uow:
            read(uow)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    (found,) = sent
    return found


def _rows_examined(plan: dict[str, Any]) -> int:
    """Rows that the plan's nodes threw away after reading them, over all its loops."""
    removed = plan.get("Rows Removed by Filter", 0) + plan.get("Rows Removed by Join Filter", 0)
    return int(removed) + sum(_rows_examined(sub) for sub in plan.get("Plans", ()))


def _generic_plan_once_grown(
    db: Database, statement: str, params: dict[str, Any], grow: Callable[[Any], None]
) -> dict[str, Any]:
    """The statement prepared and planned generically while the tenant is small, the tables
    grown by `grow` (no new statistics), then run through that same plan: its analysed plan."""
    raw = db.engine.raw_connection()
    try:
        conn = raw.dbapi_connection
        assert isinstance(conn, psycopg.Connection)
        conn.autocommit = True
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(statement, params, prepare=True)  # the plan made and cached now
        name = conn.execute(
            "SELECT name FROM pg_prepared_statements WHERE NOT from_sql "
            "ORDER BY prepare_time DESC LIMIT 1"
        ).fetchone()
        assert name is not None
        grow(conn)
        # the statement's parameters in the order psycopg numbered them ($1, $2, ...)
        order = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement)))
        literal = psycopg.ClientCursor(conn)
        literal.execute(
            f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name[0]}("
            + ", ".join(f"%({n})s" for n in order)
            + ")",
            params,
        )
        row = literal.fetchone()
        assert row is not None
        plan: dict[str, Any] = row[0][0]["Plan"]
        return plan
    finally:
        raw.close()


def _seed(db: Database) -> None:
    add_tenant(db.uow, T)
    add_course(db.uow, T, "c1", ("a1", "Quiz", 10.0), learners=["p0", "p1"])


def _grow(conn: Any) -> None:
    """GROWN people of the tenant, enrolled in c1, with a due-date override for a1."""
    conn.execute(
        "INSERT INTO people (tenant_id, id, name) "
        "SELECT %s, 'g' || i, 'G' || i FROM generate_series(1, %s) AS i",
        (T, GROWN),
    )
    conn.execute(
        "INSERT INTO enrollments (tenant_id, course_id, person_id, role, status) "
        "SELECT %s, 'c1', 'g' || i, 'learner', 'active' FROM generate_series(1, %s) AS i",
        (T, GROWN),
    )
    conn.execute(
        "INSERT INTO due_date_overrides (tenant_id, activity_id, person_id, due_at) "
        "SELECT %s, 'a1', 'g' || i, %s FROM generate_series(1, %s) AS i",
        (T, datetime(2030, 1, 1, tzinfo=UTC), GROWN),
    )


# half of the keys asked for are stored once the tables have grown, half never are
_PEOPLE = [f"g{i}" for i in range(1, ASKED // 2 + 1)] + [f"new{i}" for i in range(ASKED // 2)]


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(lambda u: u.people.get_many(T, _PEOPLE), id="people-by-id"),
        pytest.param(
            lambda u: u.enrollments.for_pairs(T, [("c1", p) for p in _PEOPLE]),
            id="enrollments-by-pair",
        ),
        pytest.param(
            lambda u: u.overrides.for_pairs(T, [("a1", p) for p in _PEOPLE]),
            id="overrides-by-pair",
        ),
    ],
)
def test_each_key_looked_up(postgres_db: Database, read: Callable[[UnitOfWork], object]) -> None:
    _seed(postgres_db)
    statement, params = _statement(postgres_db, read)
    plan = _generic_plan_once_grown(postgres_db, statement, params, _grow)
    assert plan["Actual Rows"] == ASKED // 2
    assert _rows_examined(plan) == 0, plan


def test_the_reads_return_what_is_stored_on_both_databases(db: Database) -> None:
    """The same rows as before on SQLite and PostgreSQL: a key asked twice, a key of
    another tenant and one never stored come back once, not at all and not at all."""
    _seed(db)
    add_tenant(db.uow, "t2")
    add_course(db.uow, "t2", "c1", ("a1", "Quiz", 10.0), learners=["p9"])
    with db.reads() as uow:
        assert sorted(uow.people.get_many(T, ["p0", "p1", "p1", "p9", "nobody"])) == ["p0", "p1"]
        assert sorted(uow.courses.get_many(T, ["c1", "c2"])) == ["c1"]
        assert sorted(uow.activities.get_many(T, ["a1", "a1"])) == ["a1"]
        pairs = [("c1", "p0"), ("c1", "p0"), ("c1", "p9"), ("c2", "p1")]
        assert sorted(uow.enrollments.for_pairs(T, pairs)) == [("c1", "p0")]
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO due_date_overrides (tenant_id, activity_id, person_id, due_at) "
                "VALUES ('t1', 'a1', 'p1', :at), ('t2', 'a1', 'p9', :at)"
            ),
            {"at": datetime(2030, 1, 1, tzinfo=UTC)},
        )
    with db.reads() as uow:
        got = uow.overrides.for_pairs(T, [("a1", "p1"), ("a1", "p9"), ("a1", "p0")])
        assert got == {("a1", "p1"): datetime(2030, 1, 1, tzinfo=UTC)}
