"""Rows read as the driver gives them (`adapters/db/driver_rows.py`), as a claim reads its
ledger rows and its people's links, hold exactly what SQLAlchemy's own reading gives: every
column kind (text, integers, floats, booleans, times, JSON), nulls included, on SQLite and
PostgreSQL. (The schema has no decimal column: numbers are integers, floats, or JSON.)"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.database import Database
from gradesync.adapters.db.driver_rows import decoded_rows
from gradesync.adapters.db.mapping import from_row, to_row, utc
from gradesync.adapters.db.repos.ledger import _ledger_row, _ledger_rows
from gradesync.adapters.db.repos.links import LinkRepo, _person_links
from gradesync.domain.model import (
    Attempt,
    DeliveryState,
    LedgerKey,
    LedgerRow,
    PersonLink,
)
from gradesync.testing import add_course, add_destination, add_tenant

NOW = datetime(2026, 12, 6, 15, 4, 5, 678901, tzinfo=UTC)


def _world(db: Database) -> None:
    add_tenant(db.uow, "t1")
    add_course(db.uow, "t1", "c1", ("a1", "Quiz", 10.0), learners=["p1", "p2", "p3"])
    add_destination(db.uow, "t1", "lms")


def _rows() -> list[tuple[LedgerRow, str]]:
    """A row with every field set (a time in another zone, JSON of every kind), one with
    every nullable field null, and one whose desired result is JSON's own null values."""
    full = LedgerRow(
        LedgerKey("t1", "lms", "a1", "p1"),
        DeliveryState.RETRYING,
        desired_hash="h2",
        desired={
            "score": 7.25,
            "max": 10,
            "big": 2**53 + 1,
            "comment": "très bien \u2603",
            "none": None,
            "flags": [True, False],
            "nested": {"at": "2026-12-06T15:04:05Z", "list": [1.5, -0.0, 1e-7]},
        },
        delivered_hash="h1",
        delivered_at=NOW.astimezone(timezone(timedelta(hours=-5))),
        last_timestamp=NOW + timedelta(microseconds=1),
        tries=3,
        next_attempt_at=NOW + timedelta(minutes=1),
        reason_code="remote_5xx",
        reason_text="the platform answered 503",
        remote_status=503,
        remote_message="busy",
        updated_at=NOW.replace(microsecond=0),
        pending_since=NOW - timedelta(days=400),
    )
    nulls = LedgerRow(LedgerKey("t1", "lms", "a1", "p2"), DeliveryState.PENDING, updated_at=NOW)
    json_nulls = LedgerRow(
        LedgerKey("t1", "lms", "a1", "p3"),
        DeliveryState.DELIVERED,
        desired={"score": None, "list": []},
        updated_at=NOW,
    )
    return [(full, "c1"), (nulls, "c1"), (json_nulls, "c1")]


def _times(row: Any) -> list[Any]:
    return [v.tzinfo for v in vars_of(row) if isinstance(v, datetime)]


def vars_of(row: LedgerRow) -> list[Any]:
    return [getattr(row, n) for n in row.__dataclass_fields__]


def test_ledger_rows_read_from_the_driver_equal_sqlalchemys(db: Database) -> None:
    _world(db)
    with db.uow() as uow:
        uow.ledger.save_many(_rows(), bulk=True)
        # a lease (read by the claim's statements, not into the rows), the row's own stamp
        full = _rows()[0][0]
        uow.ledger.lease([(full.key, full.last_timestamp or NOW)], "w:1", NOW)
        uow.commit()
    query = select(t.ledger).order_by(t.ledger.c.person_id)
    with db.uow() as uow:
        old = [
            (_ledger_row(r), r["course_id"], r["priority"])
            for r in uow.conn.execute(query).mappings()
        ]
        new = _ledger_rows(uow.conn.execute(query))
        raw_old = [list(r) for r in uow.conn.execute(query)]
        raw_new = decoded_rows(uow.conn.execute(query), tuple(t.ledger.c))
    assert [r for r, _, _ in old] == [r for r, _ in _rows()]  # as written
    assert new == old
    # the same values of the same types, times in UTC as `mapping.utc` gives them
    for o, n in zip(old, new, strict=True):
        assert [type(v) for v in vars_of(n[0])] == [type(v) for v in vars_of(o[0])]
        assert set(_times(n[0])) == {UTC}
    # every column, the lease's too, as SQLAlchemy reads it (times only put in UTC)
    assert raw_new == [[utc(v) if isinstance(v, datetime) else v for v in r] for r in raw_old]


def test_person_links_read_from_the_driver_equal_sqlalchemys(db: Database) -> None:
    _world(db)
    links = [
        PersonLink("t1", "lms", "p1", "sub-1"),
        PersonLink("t1", "lms", "p1", "sourcedid-1", course_id="c1", data={"rl": "r1", "n": 1.5}),
        PersonLink("t1", "lms", "p2", "sub-2", data={"deep": {"x": [None, True]}}),
    ]
    with db.uow() as uow:
        for link in links:
            uow.links.save_person(link)
        uow.commit()
    query = select(t.person_links).order_by(t.person_links.c.person_id, t.person_links.c.course_id)
    with db.uow() as uow:
        old = [LinkRepo._person(r) for r in uow.conn.execute(query).mappings()]
        new = _person_links(uow.conn.execute(query))
        found = uow.links.people_in_courses("t1", "lms", [("c1", "p1"), ("c1", "p2"), ("c1", "p3")])
    assert new == old == sorted(links, key=lambda x: (x.person_id, x.course_id or ""))
    assert found == {("c1", "p1"): links[1], ("c1", "p2"): links[2]}


def test_any_table_read_from_the_driver_equals_sqlalchemy(db: Database) -> None:
    """Floats, booleans, integers and times of another table, nulls among them."""
    _world(db)
    attempts = [
        Attempt("t1", "e1", "a1", "p1", 7.5, 10.0, completed_at=NOW, comment="ok", late=True),
        Attempt("t1", "e2", "a1", "p2", None, None, completed_at=NOW, started_at=NOW),
    ]
    with db.uow() as uow:
        for a in attempts:
            row = to_row(a, exclude=("id",)) | {"recorded_at": NOW}
            uow.conn.execute(t.attempts.insert().values(**row))
        uow.commit()
    query = select(t.attempts).order_by(t.attempts.c.source_event_id)
    with db.uow() as uow:
        old = [
            [utc(v) if isinstance(v, datetime) else v for v in r] for r in uow.conn.execute(query)
        ]
        new = decoded_rows(uow.conn.execute(query), tuple(t.attempts.c))
    assert new == old
    assert [[type(v) for v in r] for r in new] == [[type(v) for v in r] for r in old]
    read = from_row(Attempt, dict(zip(t.attempts.c.keys(), new[0], strict=True)))
    assert read == replace(attempts[0], id=read.id, recorded_at=NOW)
