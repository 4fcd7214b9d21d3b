"""PostgreSQL: the settle writer's statements lock their ledger rows in key order, as every
other writer of the ledger does (ingest, computing, claims), so they cannot deadlock with
one. An `UPDATE ... FROM unnest(...)` locks rows in the order its plan meets them (here the
order they are stored in, reverse key order, as a seq scan meets them): a writer holding a
row in the middle of the batch and then taking a later one deadlocked with it, and the
batch was dropped and its rows sent again once their leases ran out. So do a move's reads
of a learner's rows under lock, and its taking of their leases, and a gone column's read of
its rows under lock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from gradesync.adapters.db.database import Database
from gradesync.domain.ledger import Delivered, after_delivery
from gradesync.domain.model import DeliveryState, LedgerKey, LedgerRow
from gradesync.services.ports import UnitOfWork
from tests.support.ledger import NOW, UNTIL, store_claimed

STAMP = NOW + timedelta(microseconds=11)
# the ledger holds 100 rows, a batch settles 20 of them: PostgreSQL then hashes the batch
# and scans the ledger (the order it stores the rows in), where for a batch as large as the
# ledger it would hash the ledger and walk the batch in its order
STORED = [LedgerKey("t1", "lms", "a1", f"p{i:03}") for i in range(100)]
KEYS = STORED[:20]
MIDDLE, LATER = KEYS[10], KEYS[15]


def _claimed(db: Database) -> dict[LedgerKey, LedgerRow]:
    """STORED in reverse key order (so the heap holds them that way) and claimed by w1:
    KEYS' rows as the claim read them."""
    rows = [
        LedgerRow(k, DeliveryState.PENDING, desired_hash="h", desired={"s": 1}, updated_at=NOW)
        for k in reversed(STORED)
    ]
    # leased in that order too (a claim leases its rows oldest first), which rewrites them
    store_claimed(db, rows, STAMP)
    with db.engine.connect() as conn:  # statistics as autovacuum keeps them
        conn.execute(text("ANALYZE ledger"))
        conn.commit()
    with db.uow() as uow:
        return uow.ledger.get_keys(KEYS)


def _lock(uow: UnitOfWork, key: LedgerKey) -> None:
    uow.conn.execute(
        text("SELECT 1 FROM ledger WHERE person_id = :p FOR UPDATE"), {"p": key.person_id}
    )


def _waiting_on_a_lock(db: Database, pid: int) -> bool:
    with db.engine.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT count(*) FROM pg_locks WHERE pid = :pid AND NOT granted"),
                {"pid": pid},
            ).scalar()
        )


def _beside_a_key_order_writer(db: Database, write: Callable[[UnitOfWork], int]) -> int:
    """`write` run while another transaction holds MIDDLE, and, once `write` waits for it,
    takes LATER too (in key order, as ingest would); what `write` returns."""
    got: dict[str, Any] = {}
    started = threading.Event()

    def settle() -> None:
        try:
            with db.uow() as uow:
                got["pid"] = uow.conn.execute(text("SELECT pg_backend_pid()")).scalar()
                started.set()
                got["done"] = write(uow)
                uow.commit()
        except Exception as exc:  # raised below, in the test's thread
            got["error"] = exc
            started.set()

    with db.uow() as other:
        other.conn.execute(text("SET LOCAL lock_timeout = '20s'"))
        _lock(other, MIDDLE)
        writer = threading.Thread(target=settle)
        writer.start()
        assert started.wait(20)
        deadline = datetime.now(UTC) + timedelta(seconds=20)
        while "error" not in got and not _waiting_on_a_lock(db, got["pid"]):
            assert datetime.now(UTC) < deadline, "the settle never waited for the held row"
        # a deadlock is detected after `deadlock_timeout` (1 s) by either side
        _lock(other, LATER)
        other.commit()
    writer.join(30)
    assert not writer.is_alive()
    if "error" in got:
        raise got["error"]
    return int(got["done"])


@pytest.mark.postgres
def test_a_settle_as_claimed_locks_its_rows_in_key_order(postgres_db: Database) -> None:
    claimed = _claimed(postgres_db)
    delivered = Delivered(200, "ok")
    rows = [
        (after_delivery(was, "h", delivered, NOW, sent_timestamp=STAMP), was, STAMP, UNTIL)
        for was in claimed.values()
    ]
    done = _beside_a_key_order_writer(
        postgres_db, lambda uow: uow.ledger.settle_as_claimed(rows, "w1")
    )
    assert done == len(KEYS)
    with postgres_db.uow() as uow:
        after = uow.ledger.get_keys(KEYS)
    assert all(r.state is DeliveryState.DELIVERED for r in after.values())


@pytest.mark.postgres
def test_a_release_locks_its_rows_in_key_order(postgres_db: Database) -> None:
    _claimed(postgres_db)
    done = _beside_a_key_order_writer(
        postgres_db, lambda uow: uow.ledger.release([(k, UNTIL) for k in reversed(KEYS)], "w1")
    )
    assert done == len(KEYS)
    with postgres_db.engine.connect() as conn:
        held = conn.execute(text("SELECT count(*) FROM ledger WHERE lease_owner IS NOT NULL"))
        assert held.scalar() == len(STORED) - len(KEYS)


@pytest.mark.postgres
def test_a_read_of_some_peoples_rows_under_lock_locks_them_in_key_order(
    postgres_db: Database,
) -> None:
    """A learner moved to another SIS student has their rows read under lock
    (`sis.mapping._send_to_new_student`), found by person, not by key: the sort in key order
    comes before the locks, so they are taken in that order too."""
    _claimed(postgres_db)
    people = [k.person_id for k in reversed(KEYS)]
    done = _beside_a_key_order_writer(
        postgres_db, lambda uow: len(uow.ledger.of_people("t1", "lms", ["c1"], people, lock=True))
    )
    assert done == len(KEYS)


@pytest.mark.postgres
def test_a_read_of_a_columns_rows_under_lock_locks_them_in_key_order(
    postgres_db: Database,
) -> None:
    """A column gone at its destination has its delivered rows read under lock
    (`Provisioner.mark_gone`), found by their column, not by key: the sort in key order
    comes before the locks, so they are taken in that order too."""
    _claimed(postgres_db)
    done = _beside_a_key_order_writer(
        postgres_db, lambda uow: len(uow.ledger.get_many("t1", "lms", "c1", ["a1"], lock=True))
    )
    assert done == len(STORED)


@pytest.mark.postgres
def test_taking_leases_locks_the_rows_in_key_order(postgres_db: Database) -> None:
    """A learner moved to another SIS student has the leases of their rows taken
    (`sis.mapping._send_to_new_student`), in one statement: the rows it drops a lease of
    are locked in key order first."""
    _claimed(postgres_db)
    done = _beside_a_key_order_writer(
        postgres_db, lambda uow: len(uow.ledger.take_leases(list(reversed(KEYS)), NOW))
    )
    assert done == len(KEYS)
    with postgres_db.engine.connect() as conn:
        held = conn.execute(text("SELECT count(*) FROM ledger WHERE lease_owner IS NOT NULL"))
        assert held.scalar() == len(STORED) - len(KEYS)


@pytest.mark.postgres
def test_a_settle_locks_its_rows_no_more_than_its_update_does(postgres_db: Database) -> None:
    """The rows are locked FOR NO KEY UPDATE, the lock an UPDATE of non-key columns takes:
    a row's key share (a foreign key's check) is not held up by it, a writer's lock is."""
    claimed = _claimed(postgres_db)
    delivered = Delivered(200, "ok")
    rows = [
        (after_delivery(was, "h", delivered, NOW, sent_timestamp=STAMP), was, STAMP, UNTIL)
        for was in claimed.values()
    ]
    with postgres_db.uow() as uow:
        assert uow.ledger.settle_as_claimed(rows, "w1") == len(KEYS)
        with postgres_db.uow() as other:
            share = "SELECT 1 FROM ledger WHERE person_id = :p FOR KEY SHARE NOWAIT"
            assert other.conn.execute(text(share), {"p": MIDDLE.person_id}).scalar() == 1
            with pytest.raises(OperationalError, match="could not obtain lock"):
                other.conn.execute(
                    text("SELECT 1 FROM ledger WHERE person_id = :p FOR UPDATE NOWAIT"),
                    {"p": MIDDLE.person_id},
                )
        uow.commit()
