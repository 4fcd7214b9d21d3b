"""Whether an error means the database's connection was lost (a restart, a failover, a
network cut): the work is interrupted, not failed, and goes on once the database answers."""

from __future__ import annotations

import psycopg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SqlTimeoutError


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
    """True when an error comes from the database rather than from the work: the connection
    lost, the database busy or locked, a transaction given up on a conflict (serialization,
    deadlock), no connection free in the pool. Work that hit it is tried again as it is;
    any other error is the work's own (a grade that cannot be worked out)."""
    if database_lost(exc):
        return True
    return isinstance(exc, OperationalError | InterfaceError | SqlTimeoutError)
