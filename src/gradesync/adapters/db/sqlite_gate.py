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
import weakref
from typing import Any

from sqlalchemy import Engine, event


class WriteGate:
    """Held by one connection from its BEGIN to its COMMIT or ROLLBACK (or its return to
    the pool, should a transaction be left open)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._holder: int | None = None

    def acquire(self, dbapi_conn: Any) -> None:
        if not self._lock.acquire(timeout=self.timeout):
            # the error SQLite itself gives after its busy timeout: callers treat both alike
            raise sqlite3.OperationalError(
                f"database is locked (waited {self.timeout:g} s for this process's writers)"
            )
        self._holder = id(dbapi_conn)

    def release(self, dbapi_conn: Any) -> None:
        if self._holder is not None and self._holder == id(dbapi_conn):
            self._holder = None
            self._lock.release()

    @property
    def held(self) -> bool:
        return self._holder is not None


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
        gate.acquire(raw)
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
