"""Creating the SQLAlchemy engine for SQLite (embedded default) or PostgreSQL."""

from __future__ import annotations

from typing import Any

from psycopg.types.array import ListBinaryDumper
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

from gradesync.adapters.db import sqlite_gate

CONNECT_TIMEOUT = 5  # seconds, for PostgreSQL

# SQLite's memory over all of a process's connections, in bytes (its page caches above all).
# Each connection's cache is bounded (`_bound_memory`), but a server keeps 8 or more open
# and each fills to its bound as the database grows: 1,000 platforms' worth held about 50
# MB more in page caches than 10 did. Past this soft limit SQLite gives back the least
# recently used pages of any connection, so the total stays flat whatever the database's
# size and the connections open; one busy connection (a remaster's writer) still keeps its
# whole cache.
SQLITE_HEAP_LIMIT = 24 * 2**20

# A refused statement's error (logged with its traceback: a grade set aside, a failed
# request) names the statement but not the values sent with it: learners' scores, comments
# and names stay out of the logs.
_QUIET = {"hide_parameters": True}


def normalise_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here (the only PostgreSQL driver we install)."""
    u = make_url(url)
    if u.get_backend_name() not in ("sqlite", "postgresql", "postgres"):
        raise ArgumentError(
            f"{u.get_backend_name()!r} is not supported: use sqlite:///PATH or postgresql://..."
        )
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 10) -> Engine:
    url = normalise_url(url)
    if is_sqlite(url):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=20,
            **_QUIET,
        )
        _configure_sqlite(engine, sqlite_synchronous)
        return engine
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_size": pool_size, "max_overflow": 20}
    if pool_size == 0:
        kwargs = {"poolclass": NullPool}
    kwargs.update(_QUIET)
    # an unreachable server is an error within seconds, not after the kernel gives up on TCP
    kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    engine = create_engine(url, **kwargs)
    event.listen(engine, "connect", _send_arrays_binary)
    return engine


def _send_arrays_binary(dbapi_conn: Any, _record: Any) -> None:
    """Python lists go to PostgreSQL as binary arrays. A batch's rows go as one array per
    column (`mapping.unnested`); psycopg's text arrays quote and escape each element in
    Python (a regular expression per string: 21 us per JSON payload, against 0.3 us in
    binary), the largest part of a settle's CPU on PostgreSQL. Registered last, the binary
    dumper is the one `%s` picks for a list."""
    dbapi_conn.adapters.register_dumper(list, ListBinaryDumper)


def _bound_memory(cur: Any) -> None:
    """What a connection may hold in memory, the same for writers and readers."""
    # Each pooled connection keeps its own page cache, filled up to this size as the
    # database grows, so it bounds a server's memory: at 32 MB a 50,000-result remaster
    # peaked at 528 MB RSS, at 8 MB at 259 MB. The OS caches the file beneath it.
    cur.execute("PRAGMA cache_size=-8000")
    # Sorts and temporary tables spill to a temporary file past that cache. In memory they
    # have no bound: a run's summary (a GROUP BY over its scope) sorted 1,000,000 ledger
    # rows in 86 MB of RAM, the peak of the 1,000,000-result remaster; spilled, 16 MB.
    cur.execute("PRAGMA temp_store=FILE")
    cur.execute(f"PRAGMA soft_heap_limit={SQLITE_HEAP_LIMIT}")  # the process's, see above


def make_read_engine(url: str, *, pool_size: int = 10) -> Engine:
    """SQLite connections for transactions that only read: each begins deferred, takes no
    write lock and queues behind no writer (in WAL mode a reader sees the last commit while
    a writer works), and refuses any write (`query_only`)."""
    url = normalise_url(url)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=pool_size,
        max_overflow=20,
        **_QUIET,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions begin below, not in the driver
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA query_only=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        _bound_memory(cur)
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")  # deferred: one snapshot for the whole transaction

    return engine


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        raise ValueError(
            f"sqlite_synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}"
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see sqlite_gate).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cur.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        _bound_memory(cur)
        cur.close()

    # every transaction begins with BEGIN IMMEDIATE, queued first behind this process's
    # other writers (for at most SQLite's own busy timeout)
    sqlite_gate.install(engine, timeout=30.0)
