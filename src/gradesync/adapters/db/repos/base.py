"""What the repositories share: the unit of work's connection, and the row mapper of a run
scope (runs and schedules both store one)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from gradesync.domain.model import RunScope


class SqlRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @property
    def postgres(self) -> bool:
        """True on PostgreSQL, where some statements differ from SQLite's."""
        return self.conn.dialect.name == "postgresql"


def scope_of(r: Mapping[Any, Any]) -> RunScope:
    """The run scope stored in a row's tenant, destination, course and activity columns."""
    return RunScope(
        r["tenant_id"], r["destination_id"], r["course_id"], tuple(r["activity_ids"] or ())
    )
