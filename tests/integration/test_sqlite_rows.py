"""`sqlite_rows.execute_rows` binds values itself, through the driver's executemany: what it
stores must be, byte for byte and type for type, what SQLAlchemy stores for the same rows
(a time compared as text with another must have the same form, a JSON value the same
text). Two tables with times, JSON, defaults and the settle writer's lease release; and
`execute_tuples`, the values converted by their callers, the same."""

from __future__ import annotations

import gc
import sqlite3
import weakref
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, create_engine, insert, update

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.mapping import insert_many
from gradesync.adapters.db.repos import ledger as ledger_repo
from gradesync.adapters.db.repos.ledger import DeliveryLogRepo, LedgerRepo, _ledger_upsert
from gradesync.adapters.db.sqlite_rows import execute_rows, execute_tuples
from gradesync.domain.ledger import Delivered, RetryLater, after_delivery
from gradesync.domain.model import DeliveryState, LedgerKey, LedgerRow
from gradesync.domain.reasons import Reason

AT = datetime(2026, 12, 5, 1, 2, 3, 456789, tzinfo=UTC)
PARIS = timezone(timedelta(hours=1))


def _ledger_rows(owner_note: str) -> list[dict[str, Any]]:
    base = {
        "tenant_id": "t",
        "destination_id": "d",
        "course_id": "c",
        "desired_hash": "h1",
        "delivered_hash": None,
        "delivered_at": None,
        "tries": 2,
        "next_attempt_at": None,
        "reason_code": None,
        "reason_text": "naïve café ✓",
        "remote_status": None,
        "remote_message": owner_note,
        "pending_since": None,
    }
    return [
        base
        | {
            "activity_id": "a1",
            "person_id": "p1",
            "state": "delivered",
            "desired": {"score": 0.5, "max": 1, "comment": "très bien", "nested": [1, None]},
            "last_timestamp": AT,
            "updated_at": AT.replace(microsecond=0),  # no fraction: still six digits
        },
        base
        | {
            "activity_id": "a1",
            "person_id": "p2",
            "state": "pending",
            "desired": None,  # JSON null, not SQL NULL
            "last_timestamp": None,
            # the zone is not stored, either way: the repositories hand over UTC (`utc`)
            "updated_at": datetime(2026, 12, 5, 2, 0, tzinfo=PARIS),
        },
    ]


def _stored(path: Path, table: str) -> list[dict[str, tuple[Any, str]]]:
    """Each row as it is on disk: per column, its value and SQLite's type of it."""
    raw = sqlite3.connect(path)
    try:
        names = [r[1] for r in raw.execute(f"PRAGMA table_info({table})") if r[1] != "id"]
        typed = ", ".join(f"{n}, typeof({n})" for n in names)
        keys = ", ".join(str(2 * i + 1) for i in range(min(4, len(names))))
        rows = raw.execute(f"SELECT {typed} FROM {table} ORDER BY {keys}").fetchall()
        return [{n: (r[2 * i], r[2 * i + 1]) for i, n in enumerate(names)} for r in rows]
    finally:
        raw.close()


def _database(tmp_path: Path, name: str) -> tuple[Any, Path]:
    path = tmp_path / f"{name}.db"
    engine = create_engine(f"sqlite:///{path}")
    t.metadata.create_all(engine)
    return engine, path


def test_the_ledger_upsert_stores_what_sqlalchemy_stores(tmp_path: Path) -> None:
    by_sqlalchemy, a = _database(tmp_path, "a")
    by_driver, b = _database(tmp_path, "b")
    columns = tuple(_ledger_rows("")[0])
    stmt = _ledger_upsert("sqlite", columns, True)
    leased = {"lease_owner": "w1", "lease_until": AT}
    for engine in (by_sqlalchemy, by_driver):
        with engine.begin() as conn:  # two rows leased, one to another worker
            conn.execute(
                insert(t.ledger),
                [
                    r | leased | {"lease_owner": owner}
                    for r, owner in zip(_ledger_rows("first"), ("w1", "w2"), strict=True)
                ],
            )
    with by_sqlalchemy.begin() as conn:
        conn.execute(stmt, [r | {"release_owner": "w1"} for r in _ledger_rows("second")])
    with by_driver.begin() as conn:
        execute_rows(conn, stmt, _ledger_rows("second"), {"release_owner": "w1"})

    stored = _stored(b, "ledger")
    assert stored == _stored(a, "ledger")
    first, second = stored
    assert first["last_timestamp"] == ("2026-12-05 01:02:03.456789", "text")
    assert first["updated_at"] == ("2026-12-05 01:02:03.000000", "text")
    assert second["updated_at"] == ("2026-12-05 02:00:00.000000", "text")
    assert second["desired"] == ("null", "text")
    assert first["remote_message"] == ("second", "text")  # the upsert's update was applied
    # the release: w1's lease let go, w2's kept (the CASE's parameter bound from `shared`)
    assert (first["lease_owner"], second["lease_owner"]) == ((None, "null"), ("w2", "text"))


def test_a_log_insert_and_an_upsert_store_what_sqlalchemy_stores(tmp_path: Path) -> None:
    by_sqlalchemy, a = _database(tmp_path, "a")
    by_driver, b = _database(tmp_path, "b")
    entries = [
        {
            "tenant_id": "t",
            "destination_id": "d",
            "activity_id": "a1",
            "person_id": f"p{i}",
            "run_id": None,
            "sent_at": AT + timedelta(seconds=i),
            "sent_hash": "h",
            "payload": payload,
            "outcome": "delivered",
            "remote_status": 200,
            "remote_message": None,
            "latency_ms": 12.5,
        }
        for i, payload in enumerate([{"scoreGiven": 1.0, "userId": "ü"}, None])
    ]
    people = [{"tenant_id": "t", "id": "p1", "name": "Zoë", "email": None, "sis_id": "s1"}]
    with by_sqlalchemy.begin() as conn:
        conn.execute(insert(t.deliveries), entries)
        conn.execute(insert(t.people), people)
        conn.execute(
            t.people.update().where(t.people.c.id == "p1").values(name="Zoë B.", sis_id=None)
        )
    with by_driver.begin() as conn:
        insert_many(conn, t.deliveries, entries)
        insert_many(conn, t.people, people)
        insert_many(  # the same key again: the upsert's update
            conn,
            t.people,
            [people[0] | {"name": "Zoë B.", "sis_id": None}],
            conflict=["tenant_id", "id"],
            update=("name", "sis_id"),
        )
    assert _stored(b, "deliveries") == _stored(a, "deliveries")
    assert _stored(b, "people") == _stored(a, "people")


def test_a_column_left_out_takes_its_default(tmp_path: Path) -> None:
    by_sqlalchemy, a = _database(tmp_path, "a")
    by_driver, b = _database(tmp_path, "b")
    ledger = _ledger_rows("")[:1]  # no priority: its default, 0
    # no policy: its default is `dict`, a new one per row, so this goes SQLAlchemy's way
    tenants = [{"id": "t", "name": "T", "created_at": AT}]
    with by_sqlalchemy.begin() as conn:
        conn.execute(insert(t.ledger), ledger)
        conn.execute(insert(t.tenants), tenants)
    with by_driver.begin() as conn:
        execute_rows(conn, insert(t.ledger), ledger)
        execute_rows(conn, insert(t.tenants), tenants)
    assert _stored(b, "ledger") == _stored(a, "ledger")
    assert _stored(b, "ledger")[0]["priority"] == (0, "integer")
    assert _stored(b, "tenants") == _stored(a, "tenants")
    assert _stored(b, "tenants")[0]["policy"] == ("{}", "text")


def test_the_statements_compiled_for_an_engine_go_with_it(tmp_path: Path) -> None:
    """A process that makes engines one after another (the tests make one each) does not
    keep every one's dialect and statements."""
    engine, path = _database(tmp_path, "gone")
    stmt = _ledger_upsert("sqlite", tuple(_ledger_rows("")[0]), False)
    with engine.begin() as conn:
        execute_rows(conn, stmt, _ledger_rows(""))
    assert len(_stored(path, "ledger")) == len(_ledger_rows(""))
    dialect = weakref.ref(engine.dialect)
    engine.dispose()
    del engine, conn
    gc.collect()
    assert dialect() is None, "the dialect outlived its engine"


def test_a_parameter_like_a_column_is_bound_as_that_column_stores_its_values(
    tmp_path: Path,
) -> None:
    """A statement's own parameter compared with a time column (what a settle without a
    read compares) is bound as the column stores a time when `like` names the column, and
    the count returned is of every row changed: as given, an aware time matches nothing."""
    engine, _ = _database(tmp_path, "like")
    rows = _ledger_rows("")
    with engine.begin() as conn:
        conn.execute(insert(t.ledger), rows)
    c = t.ledger.c
    stmt = (
        update(t.ledger)
        .where(c.person_id == bindparam("k_p"), c.updated_at == bindparam("was"))
        .values(remote_message="seen")
    )
    found = [{"k_p": r["person_id"], "was": r["updated_at"]} for r in rows]
    with engine.begin() as conn:
        assert execute_rows(conn, stmt, found) == 0
        assert execute_rows(conn, stmt, found, like={"was": "updated_at"}) == 2
        with pytest.raises(ValueError, match="the rows do not"):
            execute_rows(conn, stmt, found, like={"other": "updated_at"})


def _claimed_rows() -> list[tuple[LedgerRow, datetime | None]]:
    """Ledger rows as a claim read them (times in and out of UTC, nulls, an unstamped one),
    with the score timestamp the claim stamped."""
    key = LedgerKey("t", "d", "a1", "p1")
    row = LedgerRow(
        key,
        DeliveryState.RETRYING,
        desired_hash="h2",
        desired={"score": 0.5},
        delivered_hash="h1",
        delivered_at=AT - timedelta(days=1),
        last_timestamp=AT.replace(microsecond=0),
        tries=2,
        next_attempt_at=datetime(2026, 12, 5, 2, 0, tzinfo=PARIS),
        reason_code="remote_5xx",
        reason_text="naïve café ✓",
        remote_status=503,
        remote_message="busy",
        updated_at=AT - timedelta(minutes=5),
        pending_since=AT - timedelta(hours=1),
    )
    pending = LedgerRow(
        LedgerKey("t", "d", "a1", "p2"),
        DeliveryState.PENDING,
        desired_hash="h",
        desired=None,
        updated_at=AT,
    )
    return [(row, AT + timedelta(microseconds=7)), (pending, None)]


def test_a_settle_as_claimed_stores_what_binding_its_rows_by_name_stores(
    tmp_path: Path,
) -> None:
    """`LedgerRepo.settle_as_claimed` on SQLite (tuples, `execute_tuples`) writes the rows,
    and counts them, as the same statement run through `execute_rows` with the values by
    name, each bound as its column stores it; a row not as the claim read it is left."""
    by_name, a = _database(tmp_path, "a")
    by_tuple, b = _database(tmp_path, "b")
    until = datetime(2026, 12, 5, 3, 4, 5, 6, tzinfo=PARIS)  # the claim's lease
    claimed = _claimed_rows()
    busy = Reason("remote_5xx", "busy")
    outcomes = [Delivered(200, "ok"), RetryLater(busy, None, 503, "busy")]
    settled = [
        (after_delivery(was, "h2", outcome, AT, sent_timestamp=stamp), was, stamp, until)
        for (was, stamp), outcome in zip(claimed, outcomes, strict=True)
    ]
    for engine in (by_name, by_tuple):
        with engine.begin() as conn:
            repo = LedgerRepo(conn)
            repo.save_many([(was, "c") for was, _ in claimed])
            repo.lease([(was.key, stamp or AT) for was, stamp in claimed], "w1", until)
    # the second row's stamp is not what the lease wrote: it is not as its claim read it
    with by_name.begin() as conn:
        n = execute_rows(
            conn,
            ledger_repo._settle_as_claimed(),
            [
                ledger_repo._settled(new)
                | ledger_repo._as_read(was, stamp)
                | {"claim_until": until.astimezone(UTC)}
                for new, was, stamp, until in settled
            ],
            {"release_owner": "w1"},
            like={f"w_{n}": n for n in ledger_repo._FOLDED} | {"claim_until": "lease_until"},
        )
    with by_tuple.begin() as conn:
        assert LedgerRepo(conn).settle_as_claimed(settled, "w1") == n == 1
    stored = _stored(b, "ledger")
    assert stored == _stored(a, "ledger")
    assert stored[0]["state"] == ("delivered", "text")
    assert stored[0]["lease_owner"] == (None, "null")
    assert stored[1]["lease_owner"] == ("w1", "text")


def test_the_log_of_a_settle_stores_what_sqlalchemy_stores(tmp_path: Path) -> None:
    by_sqlalchemy, a = _database(tmp_path, "a")
    by_tuple, b = _database(tmp_path, "b")
    lines = [
        {
            "key": LedgerKey("t", "d", "a1", f"p{i}"),
            "run_id": run,
            "sent_at": sent,
            "sent_hash": "h",
            "payload": payload,
            "outcome": "delivered",
            "remote_status": 200,
            "remote_message": None,
            "latency_ms": 12.5,
            "score_scale": scale,
        }
        for i, (run, sent, payload, scale) in enumerate(
            [
                ("r1", AT, {"scoreGiven": 1.0, "userId": "ü", "at": AT}, 10.0),
                (None, datetime(2026, 12, 5, 2, 0, tzinfo=PARIS), None, None),
            ]
        )
    ]
    with by_sqlalchemy.begin() as conn:
        conn.execute(
            insert(t.deliveries),
            [
                {k: v for k, v in line.items() if k != "key"}
                | {
                    "tenant_id": "t",
                    "destination_id": "d",
                    "activity_id": "a1",
                    "person_id": line["key"].person_id,
                    "sent_at": line["sent_at"].astimezone(UTC),
                    # a time in a payload is logged as its text
                    "payload": line["payload"] and line["payload"] | {"at": str(AT)},
                }
                for line in lines
            ],
        )
    with by_tuple.begin() as conn:
        DeliveryLogRepo(conn).add_many(lines)
    assert _stored(b, "deliveries") == _stored(a, "deliveries")
    assert _stored(b, "deliveries")[1]["sent_at"] == ("2026-12-05 01:00:00.000000", "text")


def test_execute_tuples_names_a_parameter_it_is_not_given(tmp_path: Path) -> None:
    engine, _ = _database(tmp_path, "missing")
    c = t.ledger.c
    stmt = update(t.ledger).where(c.person_id == bindparam("k_p")).values(tries=bindparam("n"))
    with engine.begin() as conn, pytest.raises(ValueError, match="'n'"):
        execute_tuples(conn, stmt, ("k_p",), [("p1",)])
