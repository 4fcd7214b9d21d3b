"""Schedules as an earlier version of gradesync stored them, which today's version must still
list: one due at the end of year 9999 (the last time a datetime holds) and one whose rule
("7pm") no longer parses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gradesync.adapters.db.database import Database
from gradesync.domain.model import RunScope, Schedule, ScheduleKind

_END_OF_9999 = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)


def save_old_schedules(db: Database, tenant_id: str, posted_by: str) -> None:
    """`sch_lastrun` (every 744 hours) and `sch_oldrule` (daily at "7pm"),
    both first due then, straight into the database."""
    with db.uow() as uow:
        for old_id, kind, spec in (
            ("sch_lastrun", ScheduleKind.INTERVAL, "744h"),
            ("sch_oldrule", ScheduleKind.DAILY, "7pm"),
        ):
            uow.schedules.save(
                Schedule(
                    old_id,
                    tenant_id,
                    RunScope(tenant_id),
                    kind,
                    spec,
                    "UTC",
                    posted_by,
                    first_run_at=_END_OF_9999,
                    next_run_at=_END_OF_9999,
                    created_at=_END_OF_9999 - timedelta(days=1),
                )
            )
        uow.commit()
