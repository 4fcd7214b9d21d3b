"""What the repositories share: the unit of work's connection, and the row mapper of a run
scope (runs and schedules both store one)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from gradesync.domain.model import RunScope

log = logging.getLogger(__name__)


class SqlRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @property
    def postgres(self) -> bool:
        """True on PostgreSQL, where some statements differ from SQLite's."""
        return self.conn.dialect.name == "postgresql"

    def _analyze(self, *tables: str) -> None:
        """PostgreSQL: renew the planner's statistics of `tables` (why and when:
        services/ledger_statistics.py). SQLite needs nothing: without statistics its planner
        takes the primary key or unique index for a lookup by it."""
        if not self.postgres:
            return
        try:
            with self.conn.begin_nested():
                # not worth a long wait: autovacuum holding the table yields within a second
                self.conn.execute(text("SET LOCAL lock_timeout = '2s'"))
                for table in tables:
                    self.conn.execute(text(f"ANALYZE {table}"))
        except OperationalError as exc:  # autovacuum will do it later
            log.warning("refreshing the statistics of %s: %s", ", ".join(tables), exc.orig or exc)


def scope_of(r: Mapping[Any, Any]) -> RunScope:
    """The run scope stored in a row's tenant, destination, course and activity columns."""
    return RunScope(
        r["tenant_id"], r["destination_id"], r["course_id"], tuple(r["activity_ids"] or ())
    )
