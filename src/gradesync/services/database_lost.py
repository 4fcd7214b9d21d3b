"""Whether an error means the database's connection was lost (a restart, a failover, a
network cut): the work is interrupted, not failed, and goes on once the database answers."""

from __future__ import annotations

import psycopg
from sqlalchemy.exc import DBAPIError


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
