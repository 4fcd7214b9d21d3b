"""Whether an error means the database's connection was lost (a restart, a failover, a
network cut): the work is interrupted, not failed, and goes on once the database answers."""

from __future__ import annotations

import logging
import sqlite3
import threading
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
    is rolled back and tried again later as it is. A statement the database refused (a
    constraint, a value the column cannot hold, a missing grant) is not this: it may be the
    work's own, and tried again as it is it would fail for ever. SQLite also reports a table
    or column missing, a read-only or full disk and a damaged file as operational errors:
    those count here (they are not one grade's fault) but are no outage, so nothing answers
    "retry" for them: `database_outage` is that question."""
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
            return _gone(seen)
    return False


def _gone(exc: psycopg.OperationalError) -> bool:
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _SHUTDOWN


def _explicit(exc: BaseException) -> BaseException | None:
    """The error `exc` was raised from on purpose: SQLAlchemy's wrapper's driver error, or
    else `raise ... from`'s cause. Never the error it was merely raised while handling: a bug
    in an `except` block for an outage is a bug, not an outage."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return exc.orig
    return exc.__cause__


# SQLite's primary result codes for a file another connection holds (sqlite_errorcode may be
# an extended code: its low byte is the primary one)
_SQLITE_HELD = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_SQLITE_HELD_SAYS = ("database is locked", "database table is locked")


def _held(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _SQLITE_HELD
    # an error built by hand, like our write gate's, has no code, only SQLite's words
    return str(exc).startswith(_SQLITE_HELD_SAYS)


def _out_itself(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, SqlAlchemyTimeout):  # no connection free in the pool
        return True
    if isinstance(exc, psycopg.OperationalError):  # psycopg_pool's PoolTimeout included
        return _gone(exc)
    if isinstance(exc, sqlite3.OperationalError):
        return _held(exc)
    return False


def database_outage(exc: BaseException) -> bool:
    """True only when the database cannot take any work for now, whatever the work: its
    connection lost or refused (a restart, a failover, a network cut), no connection free in
    the pool, or SQLite's file held by another writer past the busy timeout. The request or
    write met it would go through as it is once the database answers: a 503 to retry, a
    `gradesync_database_up` of 0, outcomes kept to be written later.

    Not an error the database gave about this work: SQLite's "no such table" (a schema
    behind), a read-only or full disk, a malformed file; PostgreSQL's cancelled statement,
    deadlock or lock timeout. `database_unavailable` counts those too, for work that is rolled
    back and tried again later anyway. Only explicit causes are followed (see `_explicit`)."""
    return any(_out_itself(seen) for seen in _chain(exc, _explicit))


def first_line(exc: BaseException) -> str:
    """What went wrong in a few words, for a log line without a traceback: the first line of
    the first error in the chain that says something (a wrapper's may be empty or generic;
    SQLAlchemy's later lines quote the statement)."""
    for seen in _chain(exc):
        text = str(seen).strip()
        if text and text != "Database error.":
            return f"{type(seen).__name__}: {text.splitlines()[0]}"
    return type(exc).__name__


def database_conflict(exc: BaseException) -> bool:
    """True when PostgreSQL gave up on this work for now while still answering: a deadlock,
    a serialization conflict, a lock or statement timeout, a cancelled statement. The work is
    rolled back and tried again as it is; it is neither an outage nor a bug. False for an
    outage (`database_outage`) and for SQLite's own operational errors other than its lock (a
    table missing, a disk full: those stay until someone acts). Explicit causes only."""
    return any(
        isinstance(seen, psycopg.OperationalError) and not _gone(seen)
        for seen in _chain(exc, _explicit)
    )


def say_failed(
    logger: logging.Logger,
    what: str,
    exc: BaseException,
    then: str | None = "retrying",
    *,
    stacklevel: int = 2,
) -> None:
    """Say, in the one format every place shares, that `what` failed: an outage or a conflict
    (see `database_conflict`) in one WARNING line, `then` saying what happens next; anything
    else at ERROR with its traceback, as the bug it may be. The line names the caller's
    place (`stacklevel`), not this one. `OutageNotice` says an outage once."""
    rest = f", {then}" if then else ""
    if database_outage(exc):
        line = "%s: database unavailable: %s%s"
        logger.warning(line, what, first_line(exc), rest, stacklevel=stacklevel)
    elif database_conflict(exc):
        line = "%s: the database gave up on it for now: %s%s"
        logger.warning(line, what, first_line(exc), rest, stacklevel=stacklevel)
    else:
        logger.error("%s failed%s", what, rest, exc_info=exc, stacklevel=stacklevel)


class OutageNotice:
    """Says an outage once, however often a loop meets it until the database answers, and its
    end once (`answered`). A conflict is one line each time and a bug a traceback each time:
    neither is an outage, and neither starts or ends one. Threads may share one (the
    scrapes of `/metrics`): each start and end is still said once."""

    def __init__(self, logger: logging.Logger, what: str, then: str | None = "retrying") -> None:
        self._log = logger
        self.what = what
        self.then = then
        self.down = False
        self.outages = 0  # outages said so far: see `answered`'s `since`
        self._lock = threading.Lock()

    def failed(self, exc: BaseException, what: str | None = None) -> None:
        """`exc` stopped the work; `what`, if given, names it in the lines of a conflict or a
        bug (an outage is said under the notice's own name, whoever met it first)."""
        if database_outage(exc):
            with self._lock:  # said under it: an end is never said before its start
                if not self.down:
                    self.down, self.outages = True, self.outages + 1
                    say_failed(self._log, self.what, exc, self.then, stacklevel=3)
        else:
            say_failed(self._log, what or self.what, exc, self.then, stacklevel=3)

    def answered(self, since: int | None = None) -> None:
        """The work went through: the outage, if one was said, has ended. `since` is
        `outages` when the work began: work begun before the last outage was found may end
        well after it (several loops sharing one notice), and says nothing."""
        with self._lock:
            if self.down and (since is None or since == self.outages):
                self.down = False
                self._log.warning("%s: the database answers again", self.what, stacklevel=2)
