"""SQLite writers inside one process queue on the write gate: a waiter goes on as soon as the
holder commits, and no way of leaving a transaction keeps the gate. Readers (`Database.reads`)
do not queue at all."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from gradesync.adapters.db.database import Database
from gradesync.adapters.db.engine import SQLITE_HEAP_LIMIT, make_engine
from gradesync.adapters.db.sqlite_gate import WriteGate, gate_of
from gradesync.testing.waiting import wait_for


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


def _taker(
    gate: WriteGate, conn: object, order: list[str], name: str, bulk: bool
) -> threading.Thread:
    def take() -> None:
        gate.acquire(conn, bulk=bulk)
        order.append(name)
        gate.release(conn)

    t = threading.Thread(target=take)
    t.start()
    return t


def test_a_bulk_writer_lets_writers_that_came_after_it_go_first() -> None:
    gate = WriteGate(timeout=10)
    holder = object()
    gate.acquire(holder)
    order: list[str] = []
    bulk = _taker(gate, object(), order, "bulk", bulk=True)
    wait_for(lambda: gate.waiting == (1, 0), "the bulk writer waiting")
    live = _taker(gate, object(), order, "live", bulk=False)
    wait_for(lambda: gate.waiting == (1, 1), "the live writer queued")
    gate.release(holder)
    bulk.join(10)
    live.join(10)
    assert order == ["live", "bulk"]
    assert not gate.held and gate.waiting == (0, 0)


def test_a_bulk_writer_waits_for_others_at_most_its_patience_then_queues_like_them() -> None:
    gate = WriteGate(timeout=10, bulk_patience=0.05)
    holder = object()
    gate.acquire(holder)
    order: list[str] = []
    live = _taker(gate, object(), order, "live", bulk=False)
    wait_for(lambda: gate.waiting == (0, 1), "the live writer queued")
    bulk = _taker(gate, object(), order, "bulk", bulk=True)
    # past its patience the bulk writer is queued with the others, not yielding any more
    wait_for(lambda: gate.waiting == (0, 2), "the bulk writer queued after its patience")
    gate.release(holder)
    bulk.join(10)
    live.join(10)
    assert sorted(order) == ["bulk", "live"]
    assert not gate.held


def test_a_bulk_writer_with_no_one_waiting_goes_at_once_and_its_timeout_still_holds() -> None:
    gate = WriteGate(timeout=0.1, bulk_patience=0.05)
    conn = object()
    gate.acquire(conn, bulk=True)
    assert gate.held
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        gate.acquire(object(), bulk=True)
    gate.release(conn)
    assert not gate.held and gate.waiting == (0, 0)


def test_a_bulk_unit_of_work_lets_a_live_write_go_first(tmp_path: Path) -> None:
    """`Database.bulk` (a run's computing) yields at the gate; `Database.uow` does not."""
    db = Database(f"sqlite:///{tmp_path / 'bulk.db'}", "k" * 32)
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (who TEXT)"))
    gate = gate_of(db.engine)
    holder = db.engine.connect()
    holder.execute(text("INSERT INTO t VALUES ('first')"))

    def write(factory: Any, who: str) -> threading.Thread:
        def run() -> None:
            with factory() as uow:
                uow.conn.execute(text("INSERT INTO t VALUES (:w)"), {"w": who})
                uow.commit()

        t = threading.Thread(target=run)
        t.start()
        return t

    bulk = write(db.bulk, "bulk")
    wait_for(lambda: gate.waiting == (1, 0), "the bulk unit of work waiting")
    live = write(db.uow, "live")
    wait_for(lambda: gate.waiting == (1, 1), "the live unit of work queued")
    holder.commit()
    holder.close()
    bulk.join(10)
    live.join(10)
    with db.reads() as r:
        rows = r.conn.execute(text("SELECT who FROM t ORDER BY rowid")).scalars().all()
    assert rows == ["first", "live", "bulk"]
    db.dispose()


def test_sorts_spill_to_a_file_on_writers_and_readers(tmp_path: Path) -> None:
    """A sort or temporary table larger than the page cache goes to a temporary file, not
    to RAM without a bound: a run's summary sorts its whole scope (86 MB of RAM for
    1,000,000 ledger rows when SQLite kept it in memory)."""
    db = Database(f"sqlite:///{tmp_path / 'spill.db'}", "k" * 32)
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA temp_store").scalar() == 1  # FILE
        assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -8000
    with db.reads() as r:
        assert r.conn.exec_driver_sql("PRAGMA temp_store").scalar() == 1
        assert r.conn.exec_driver_sql("PRAGMA cache_size").scalar() == -8000
    db.dispose()


_HOLD_CONNECTIONS = """
import sys
from sqlalchemy import text
from gradesync.adapters.db.engine import make_engine, make_read_engine

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

url = sys.argv[1]
writes, reads = make_engine(url), make_read_engine(url)
held = [e.connect() for e in (writes, reads) for _ in range(5)]
start = rss_mb()
for conn in held:  # every connection reads the whole table through its page cache
    conn.execute(text("SELECT count(*), sum(length(v)) FROM big")).one()
    conn.commit()  # the writers' transactions end (one at a time), their connections stay
print(rss_mb() - start)
"""


def test_sqlites_memory_over_all_connections_stays_under_one_bound(tmp_path: Path) -> None:
    """A server keeps many SQLite connections open, and each one's page cache fills to its
    own bound as the database grows (1,000 platforms held about 50 MB more than 10). Ten
    connections reading a database of 80 MB, in a process of their own: without the
    process-wide bound their caches grow by 80 MB (8 MB each); with it, by the bound."""
    path = tmp_path / "big.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT)")
    raw.executemany("INSERT INTO big (v) VALUES (?)", ((f"{i:0400d}",) for i in range(200_000)))
    raw.commit()
    raw.close()
    out = subprocess.run(
        [sys.executable, "-c", _HOLD_CONNECTIONS, f"sqlite:///{path}"],
        capture_output=True,
        text=True,
        check=True,
    )
    grew_mb = float(out.stdout)
    assert grew_mb < SQLITE_HEAP_LIMIT / 2**20 + 12, grew_mb  # not 10 x 8 MB
