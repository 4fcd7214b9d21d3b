"""Whether an error means the database's connection was lost (a restart, a failover, a
network cut): the work is interrupted, not failed, and goes on once the database answers."""

from __future__ import annotations

import sqlite3

import psycopg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SqlAlchemyTimeout


def database_lost(exc: BaseException) -> bool:
    """True for a dropped or refused PostgreSQL connection; False for every other error
    (SQLite's "database is locked" included: that one has its own wait)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DBAPIError) and (
            seen.connection_invalidated or isinstance(seen.orig, psycopg.OperationalError)
        ):
            return True
        if isinstance(seen, psycopg.OperationalError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def database_unavailable(exc: BaseException) -> bool:
    """True when the database could not do the work at all, for now: the connection lost or
    refused, the database busy or locked, a transaction given up on a conflict or a deadlock,
    no connection free in the pool (SQLAlchemy's OperationalError, InterfaceError and pool
    TimeoutError, and the drivers' own), anywhere in the chain of causes. Work that hit it
    is tried again as it is. A statement the database refused (a constraint, a value the
    column cannot hold, a missing column or grant) is not this: it may be the work's own,
    and tried again as it is it would fail for ever."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(
            seen,
            OperationalError
            | InterfaceError
            | SqlAlchemyTimeout
            | psycopg.OperationalError
            | psycopg.InterfaceError
            | sqlite3.OperationalError
            | sqlite3.InterfaceError,
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
