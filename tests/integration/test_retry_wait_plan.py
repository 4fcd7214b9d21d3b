"""The delivery loop's wait for the next retry it could send asks each destination it does
not leave out for its soonest retrying row, one probe each along an index of the retrying
rows: a paused destination's many retrying rows are not read. Before, one query walked
every retrying row of the destinations left out (49.5 ms at 100,000 such rows)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, insert

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.database import Database

PAUSED = 2000  # retrying rows of the destination left out


def _fill(db: Database, now: datetime) -> datetime:
    """d0 (left out) with PAUSED retrying rows due long ago, d1 with one due later."""
    free_at = now + timedelta(seconds=30)
    row = {"tenant_id": "t", "course_id": "c", "state": "retrying", "tries": 1}
    with db.engine.begin() as conn:
        conn.execute(insert(t.tenants), [{"id": "t", "name": "t", "policy": {}, "created_at": now}])
        conn.execute(
            insert(t.destinations),
            [
                {"tenant_id": "t", "id": d, "kind": "lti13_ags", "name": d, "profile": "generic",
                 "config": {}, "enabled": True, "created_at": now}
                for d in ("d0", "d1")
            ],
        )  # fmt: skip
        conn.execute(
            insert(t.ledger),
            [
                {**row, "destination_id": "d0", "activity_id": "a", "person_id": f"p{i}",
                 "updated_at": now, "next_attempt_at": now - timedelta(seconds=60 + i)}
                for i in range(PAUSED)
            ]
            + [{**row, "destination_id": "d1", "activity_id": "a", "person_id": "p",
                "updated_at": now, "next_attempt_at": free_at}],
        )  # fmt: skip
    return free_at


def test_the_next_retry_is_read_per_destination_from_its_index(db: Database) -> None:
    now = datetime.now(UTC)
    free_at = _fill(db, now)
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        sent.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.uow() as uow:
            assert uow.ledger.next_retry_at(now, [("t", "d1")]) == free_at
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    asked = [(s, p) for s, p in sent if "FROM ledger" in s]
    assert asked
    postgres = db.engine.dialect.name == "postgresql"
    with db.engine.connect() as conn:
        for statement, params in asked:
            explain = "EXPLAIN ANALYZE " if postgres else "EXPLAIN QUERY PLAN "
            plan = "\n".join(str(r[-1]) for r in conn.exec_driver_sql(explain + statement, params))
            assert "ix_ledger_retrying" in plan, plan
            assert "Seq Scan" not in plan and "SCAN ledger" not in plan, plan
            if postgres:  # one row read at most: none of the paused destination's
                assert "rows=1 loops" in plan or "rows=0 loops" in plan, plan


def test_the_retry_wait_compiles_a_few_statements_however_many_destinations(db: Database) -> None:
    """A vendor's thousands of platforms: the statements asked have a few shapes, whatever
    the number of destinations and whichever have rows waiting, so SQLAlchemy's cache of
    compiled statements keeps a few, not one per count of destinations (each up to 100
    subqueries: the cache grew with the platforms, tens of MB)."""
    now = datetime.now(UTC)
    free_at = _fill(db, now)
    everyone = [("t", "d1")] + [("t", f"x{i}") for i in range(149)]
    cache: dict[Any, Any] = {}
    db.engine.update_execution_options(compiled_cache=cache)
    with db.uow() as uow:
        for n in range(1, len(everyone) + 1):
            assert uow.ledger.next_retry_at(now, everyone[:n]) == free_at
        shapes = len(cache)
        for n in range(2, len(everyone) + 1, 7):  # d1 (rows waiting) anywhere in the list
            asked = everyone[1:n] + everyone[:1] + everyone[n:]
            assert uow.ledger.next_retry_at(now, asked) == free_at
        assert uow.ledger.next_retry_at(now, everyone[1:]) is None
    assert shapes <= 10, shapes  # two statements in each of five sizes
    assert len(cache) == shapes
