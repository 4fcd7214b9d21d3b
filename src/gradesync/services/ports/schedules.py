"""Schedules and their event log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from gradesync.domain.model import Schedule, ScheduleAction, ScheduleEvent


class ScheduleRepo(Protocol):
    def save(self, s: Schedule) -> None: ...

    def get(
        self, schedule_id: str, tenant_id: str | None = None, *, for_update: bool = False
    ) -> Schedule | None:
        """A schedule, of one tenant when `tenant_id` is given. for_update: the row stays
        locked until the transaction ends (a change that writes the schedule back whole)."""

    def all(self, tenant_id: str | None = None) -> list[Schedule]:
        """One tenant's schedules, or every tenant's, oldest first."""

    def due(self, now: datetime) -> list[Schedule]:
        """Unpaused schedules whose next run is due at `now` (any tenant)."""

    def delete(self, schedule_id: str, tenant_id: str) -> bool:
        """False when there was no such schedule."""

    def advance(
        self,
        schedule_id: str,
        *,
        expected_next_run_at: datetime | None,
        next_run_at: datetime | None,
        last_run_at: datetime | None,
    ) -> bool:
        """Compare-and-set: move an unpaused schedule off the slot it was read at. False when
        another scheduler fired that slot first, or the schedule was paused or edited. A
        `next_run_at` of None: the schedule has no slot left (none before year 10000)."""

    def set_paused(
        self,
        schedule_id: str,
        tenant_id: str,
        *,
        paused_at: datetime | None,
        next_run_at: datetime | None,
    ) -> bool:
        """Pause (a time) or resume (None) a schedule; False when there is no such schedule."""

    def next_due_at(self) -> datetime | None:
        """When the soonest unpaused schedule is due (any tenant): the scheduler sleeps until."""

    def add_event(self, e: ScheduleEvent) -> None: ...

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
        """A tenant's schedule log, newest first; `until` is exclusive."""
