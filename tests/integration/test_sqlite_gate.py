"""SQLite writers inside one process queue on the write gate: a waiter goes on as soon as the
holder commits, and no way of leaving a transaction keeps the gate. Readers (`Database.reads`)
do not queue at all."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from gradesync.adapters.db.database import Database
from gradesync.adapters.db.engine import make_engine
from gradesync.adapters.db.sqlite_gate import WriteGate, gate_of


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = make_engine(f"sqlite:///{tmp_path / 'gate.db'}")
    with e.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    yield e
    e.dispose()


def test_a_waiting_writer_goes_on_when_the_holder_commits(engine: Engine) -> None:
    holder = engine.connect()
    holder.execute(text("INSERT INTO t VALUES (1)"))  # BEGIN IMMEDIATE: the gate is held
    wrote = threading.Event()

    def writer() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (2)"))
        wrote.set()

    t = threading.Thread(target=writer)
    t.start()
    assert not wrote.wait(0.3)  # queued behind the holder
    holder.commit()
    holder.close()
    assert wrote.wait(10)
    t.join(10)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 2


@pytest.mark.parametrize("leave", ["rollback", "close", "invalidate", "error"])
def test_no_way_out_of_a_transaction_keeps_the_gate(engine: Engine, leave: str) -> None:
    gate = gate_of(engine)
    conn = engine.connect()
    conn.execute(text("INSERT INTO t VALUES (1)"))
    assert gate.held
    if leave == "rollback":
        conn.rollback()
    elif leave == "close":
        conn.close()  # given back to the pool mid-transaction
    elif leave == "invalidate":
        conn.invalidate()
    else:
        with pytest.raises(Exception, match="no such table"):
            conn.execute(text("INSERT INTO missing VALUES (1)"))
        conn.close()
    assert not gate.held
    with engine.begin() as other:  # and the next writer is not kept waiting
        other.execute(text("INSERT INTO t VALUES (2)"))
    if leave == "rollback":
        conn.close()


def test_a_writer_that_waits_too_long_gets_sqlites_own_error() -> None:
    gate = WriteGate(timeout=0.05)
    gate.acquire(object())
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        gate.acquire(object())


def test_a_reader_waits_for_no_writer_sees_the_last_commit_and_cannot_write(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'reads.db'}", "k" * 32)
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    holder = db.engine.connect()
    holder.execute(text("INSERT INTO t VALUES (2)"))  # a writer at work, not committed
    try:
        with db.reads() as r:  # in this thread: waiting for the writer would never end
            assert r.conn.execute(text("SELECT n FROM t")).scalars().all() == [1]
            with pytest.raises(OperationalError, match="readonly"):
                r.conn.execute(text("INSERT INTO t VALUES (3)"))
    finally:
        holder.commit()
        holder.close()
    with db.reads() as r:
        assert r.conn.execute(text("SELECT count(*) FROM t")).scalar() == 2
    db.dispose()
