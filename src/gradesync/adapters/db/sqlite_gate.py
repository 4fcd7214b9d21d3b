"""One SQLite writer at a time inside this process, queued on a lock instead of SQLite's
busy handler.

Every transaction on SQLite takes the database's write lock up front (BEGIN IMMEDIATE). When
it is taken, SQLite's busy handler makes a waiter sleep and try again, 1, 2, 5 ... up to
100 ms at a time: under a steady load of small transactions from many threads (API requests,
computing, claiming, settling) waiters sleep far longer than the lock is held, and one
request's latency grows to seconds. Inside one process the same queue is kept by a lock, and
a waiter is woken as soon as the holder is done. Other processes (a CLI command next to the
server) still meet SQLite's own lock and busy timeout.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import weakref
from typing import Any

from sqlalchemy import Engine, event

# The execution option that marks a bulk writer (`Database.bulk`).
BULK = "gradesync_bulk"


class WriteGate:
    """Held by one connection from its BEGIN to its COMMIT or ROLLBACK (or its return to
    the pool, should a transaction be left open).

    A bulk writer (a run recomputing thousands of results, chunk after chunk) lets every
    other writer waiting go first, for up to `bulk_patience` seconds; then it queues like
    them. Live grades arriving during a big remaster so wait for at most the chunk being
    written, not for the chunks queued after it."""

    def __init__(self, timeout: float, bulk_patience: float = 2.0) -> None:
        self.timeout = timeout
        self.bulk_patience = bulk_patience
        self._mutex = threading.Lock()
        self._others = threading.Condition(self._mutex)  # writers that are not bulk
        self._bulk = threading.Condition(self._mutex)
        self._others_waiting = 0
        self._bulk_waiting = 0
        self._holder: int | None = None

    def acquire(self, dbapi_conn: Any, *, bulk: bool = False) -> None:
        now = time.monotonic()
        deadline = now + self.timeout
        with self._mutex:
            if bulk:
                yield_until = min(deadline, now + self.bulk_patience)
                self._bulk_waiting += 1
                try:
                    while self._holder is not None or self._others_waiting:
                        left = yield_until - time.monotonic()
                        if left <= 0:
                            break  # waited long enough: queue like the others
                        self._bulk.wait(left)
                finally:
                    self._bulk_waiting -= 1
            if self._holder is not None:
                self._others_waiting += 1
                try:
                    while self._holder is not None:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            # the error SQLite itself gives after its busy timeout: callers
                            # treat both alike
                            raise sqlite3.OperationalError(
                                f"database is locked (waited {self.timeout:g} s for this "
                                "process's writers)"
                            )
                        self._others.wait(left)
                finally:
                    # a bulk writer yielding to this one is woken by this one's release
                    self._others_waiting -= 1
            self._holder = id(dbapi_conn)

    def release(self, dbapi_conn: Any) -> None:
        with self._mutex:
            if self._holder is None or self._holder != id(dbapi_conn):
                return
            self._holder = None
            if self._others_waiting:
                self._others.notify()
            elif self._bulk_waiting:
                self._bulk.notify()

    @property
    def held(self) -> bool:
        return self._holder is not None

    @property
    def waiting(self) -> tuple[int, int]:
        """(bulk writers still letting others go first, writers queued)."""
        return self._bulk_waiting, self._others_waiting


_gates: weakref.WeakKeyDictionary[Engine, WriteGate] = weakref.WeakKeyDictionary()


def gate_of(engine: Engine) -> WriteGate:
    return _gates[engine]


def install(engine: Engine, timeout: float) -> WriteGate:
    """Begin every transaction of `engine` with BEGIN IMMEDIATE, behind the gate."""
    gate = _gates[engine] = WriteGate(timeout)

    def dbapi(conn: Any) -> Any:
        return conn.connection.dbapi_connection

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that later writes can
        # fail with SQLITE_BUSY without waiting, which busy_timeout cannot fix.
        raw = dbapi(conn)
        gate.acquire(raw, bulk=bool(conn.get_execution_options().get(BULK)))
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            gate.release(raw)
            raise

    # Released as the COMMIT or ROLLBACK is issued: the next writer may meet SQLite's lock
    # for the moment that takes, which its busy handler waits out in a millisecond or two.
    @event.listens_for(engine, "commit")
    def _on_commit(conn: Any) -> None:
        gate.release(dbapi(conn))

    @event.listens_for(engine, "rollback")
    def _on_rollback(conn: Any) -> None:
        gate.release(dbapi(conn))

    # a connection given back, closed or invalidated inside a transaction never keeps it
    @event.listens_for(engine, "checkin")
    def _on_checkin(raw: Any, _record: Any) -> None:
        gate.release(raw)

    @event.listens_for(engine, "invalidate")
    def _on_invalidate(raw: Any, _record: Any, _exc: Any) -> None:
        gate.release(raw)

    @event.listens_for(engine, "close")
    def _on_close(raw: Any, _record: Any) -> None:
        gate.release(raw)

    return gate


def write_lock_free(engine: Engine, wait: float) -> bool:
    """Whether SQLite's write lock can be taken now: BEGIN IMMEDIATE then ROLLBACK, waiting
    `wait` seconds at most. Reads go through while another process holds the lock, so only
    this says that a writer held up by it would go through now. On a pooled connection of
    its own, outside the gate (it writes nothing, and holds the lock for an instant)."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        (kept,) = cur.execute("PRAGMA busy_timeout").fetchone()
        cur.execute(f"PRAGMA busy_timeout={max(0, round(wait * 1000))}")
        try:
            cur.execute("BEGIN IMMEDIATE")
            cur.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            cur.execute(f"PRAGMA busy_timeout={int(kept)}")
            cur.close()
    finally:
        raw.close()
