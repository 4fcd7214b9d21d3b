"""Whether an error means the database's connection was lost (a restart, a failover, a
network cut): the work is interrupted, not failed, and goes on once the database answers."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator

import psycopg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SqlAlchemyTimeout


def _cause(exc: BaseException) -> BaseException | None:
    return exc.__cause__ or exc.__context__


def _driver_first(exc: BaseException) -> BaseException | None:
    """SQLAlchemy's wrapper leads to the driver's own error, which says what happened."""
    return exc.orig if isinstance(exc, DBAPIError) else _cause(exc)


def _chain(
    exc: BaseException, step: Callable[[BaseException], BaseException | None] = _cause
) -> Iterator[BaseException]:
    """`exc` and the errors that led to it: each one's explicit cause, or else the error it
    was raised while handling (a wrapper of ours or procrastinate's may hide the driver's).
    Each error once: causes set by hand can loop, and a loop must not hang the worker."""
    met: set[int] = set()
    seen: BaseException | None = exc
    while seen is not None and id(seen) not in met:
        met.add(id(seen))
        yield seen
        seen = step(seen)


def database_lost(exc: BaseException) -> bool:
    """True for a dropped or refused PostgreSQL connection, and for the other errors
    PostgreSQL reports as operational (a deadlock, a serialization conflict, a lock or
    statement timeout): a run that meets one is interrupted and resumes, never failed for
    it. False for every other error (SQLite's "database is locked" included: that one has
    its own wait). `connection_lost` is the narrow question."""
    return any(
        isinstance(seen, psycopg.OperationalError)
        or (
            isinstance(seen, DBAPIError)
            and (seen.connection_invalidated or isinstance(seen.orig, psycopg.OperationalError))
        )
        for seen in _chain(exc)
    )


_UNAVAILABLE = (
    OperationalError
    | InterfaceError
    | SqlAlchemyTimeout
    | psycopg.OperationalError
    | psycopg.InterfaceError
    | sqlite3.OperationalError
    | sqlite3.InterfaceError
)


def database_unavailable(exc: BaseException) -> bool:
    """True when the database could not do the work at all, for now: the connection lost or
    refused, the database busy or locked, a transaction given up on a conflict or a deadlock,
    no connection free in the pool (SQLAlchemy's OperationalError, InterfaceError and pool
    TimeoutError, and the drivers' own), anywhere in the chain of causes. Work that hit it
    is tried again as it is. A statement the database refused (a constraint, a value the
    column cannot hold, a missing column or grant) is not this: it may be the work's own,
    and tried again as it is it would fail for ever."""
    return any(isinstance(seen, _UNAVAILABLE) for seen in _chain(exc))


# SQLSTATEs of a connection gone: class 08 (connection exception) and the server shutting
# down or starting (57P01-57P03); a client-side failure to connect or a dropped socket has
# none at all
_SHUTDOWN = frozenset({"57P01", "57P02", "57P03"})


def connection_lost(exc: BaseException) -> bool:
    """True only when the connection itself was lost or refused (a restart, a failover, a
    network cut, no connection to be had): not a deadlock, a conflict, a lock timeout or a
    cancelled statement, which PostgreSQL also reports as operational errors but which leave
    the database answering."""
    for seen in _chain(exc, _driver_first):
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, psycopg.OperationalError):
            state = seen.sqlstate
            return state is None or state.startswith("08") or state in _SHUTDOWN
    return False


def first_line(exc: BaseException) -> str:
    """What went wrong in a few words, for a log line without a traceback: the first line of
    the first error in the chain that says something (a wrapper's may be empty or generic;
    SQLAlchemy's later lines quote the statement)."""
    for seen in _chain(exc):
        text = str(seen).strip()
        if text and text != "Database error.":
            return f"{type(seen).__name__}: {text.splitlines()[0]}"
    return type(exc).__name__
