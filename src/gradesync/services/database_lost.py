"""Whether an error means the database's connection was lost (a restart, a failover, a
network cut): the work is interrupted, not failed, and goes on once the database answers."""

from __future__ import annotations

import sqlite3

import psycopg
from sqlalchemy.exc import DBAPIError, SQLAlchemyError


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


def database_trouble(exc: BaseException) -> bool:
    """True when an error comes from the database or its driver rather than from the work:
    any SQLAlchemy error (the connection lost, the database busy or locked, a transaction
    given up on a conflict, no connection free in the pool, a statement refused: a missing
    column or grant, a constraint, a value the column cannot hold) and any DB-API driver
    error, anywhere in the chain of causes. Work that hit it is tried again as it is; any
    other error is the work's own (a grade that cannot be worked out)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SQLAlchemyError | psycopg.Error | sqlite3.Error):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
