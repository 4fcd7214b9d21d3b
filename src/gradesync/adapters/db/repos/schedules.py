"""Schedules and their event log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.mapping import from_row, to_row, upsert, utc
from gradesync.adapters.db.repos.base import SqlRepo, scope_of
from gradesync.domain.model import Schedule, ScheduleAction, ScheduleEvent
from gradesync.services import ports


def _schedule(r: Mapping[Any, Any]) -> Schedule:
    return from_row(Schedule, r, scope=scope_of(r))


class ScheduleRepo(SqlRepo, ports.ScheduleRepo):
    def save(self, s: Schedule) -> None:
        row = to_row(s, exclude=("scope",))
        row.update(
            destination_id=s.scope.destination_id,
            course_id=s.scope.course_id,
            activity_ids=list(s.scope.activity_ids),
        )
        upsert(self.conn, t.schedules, row)

    def get(
        self, schedule_id: str, tenant_id: str | None = None, *, for_update: bool = False
    ) -> Schedule | None:
        q = select(t.schedules).where(t.schedules.c.id == schedule_id)
        if tenant_id is not None:
            q = q.where(t.schedules.c.tenant_id == tenant_id)
        # SQLite has no row locks: its transactions already hold the write lock
        row = self.conn.execute(q.with_for_update() if for_update else q).mappings().first()
        return _schedule(row) if row else None

    def all(self, tenant_id: str | None = None) -> list[Schedule]:
        q = select(t.schedules).order_by(t.schedules.c.created_at)
        if tenant_id is not None:
            q = q.where(t.schedules.c.tenant_id == tenant_id)
        return [_schedule(r) for r in self.conn.execute(q).mappings()]

    def due(self, now: datetime) -> list[Schedule]:
        c = t.schedules.c
        rows = self.conn.execute(
            select(t.schedules).where(c.paused_at.is_(None), c.next_run_at <= utc(now))
        ).mappings()
        return [_schedule(r) for r in rows]

    def delete(self, schedule_id: str, tenant_id: str) -> bool:
        c = t.schedules.c
        return bool(
            self.conn.execute(
                delete(t.schedules).where(c.id == schedule_id, c.tenant_id == tenant_id)
            ).rowcount
        )

    def advance(
        self,
        schedule_id: str,
        *,
        expected_next_run_at: datetime | None,
        next_run_at: datetime | None,
        last_run_at: datetime | None,
    ) -> bool:
        c = t.schedules.c
        res = self.conn.execute(
            update(t.schedules)
            .where(
                c.id == schedule_id,
                c.paused_at.is_(None),
                c.next_run_at == utc(expected_next_run_at),
            )
            .values(next_run_at=utc(next_run_at), last_run_at=utc(last_run_at))
        )
        return res.rowcount == 1

    def set_paused(
        self,
        schedule_id: str,
        tenant_id: str,
        *,
        paused_at: datetime | None,
        next_run_at: datetime | None,
    ) -> bool:
        c = t.schedules.c
        res = self.conn.execute(
            update(t.schedules)
            .where(c.id == schedule_id, c.tenant_id == tenant_id)
            .values(paused_at=utc(paused_at), next_run_at=utc(next_run_at))
        )
        return res.rowcount == 1

    def next_due_at(self) -> datetime | None:
        c = t.schedules.c
        return utc(
            self.conn.execute(select(func.min(c.next_run_at)).where(c.paused_at.is_(None))).scalar()
        )

    def add_event(self, e: ScheduleEvent) -> None:
        row = to_row(e, exclude=("id",))
        self.conn.execute(insert(t.schedule_events).values(row))

    def events(
        self,
        tenant_id: str,
        *,
        schedule_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        actions: Sequence[ScheduleAction] = (),
        limit: int = 50,
    ) -> list[ScheduleEvent]:
        c = t.schedule_events.c
        conds = [c.tenant_id == tenant_id]
        if schedule_id is not None:
            conds.append(c.schedule_id == schedule_id)
        if since is not None:
            conds.append(c.at >= utc(since))
        if until is not None:
            conds.append(c.at < utc(until))
        if actions:
            conds.append(c.action.in_([a.value for a in actions]))
        rows = self.conn.execute(
            select(t.schedule_events).where(*conds).order_by(c.at.desc(), c.id.desc()).limit(limit)
        ).mappings()
        return [from_row(ScheduleEvent, r) for r in rows]
