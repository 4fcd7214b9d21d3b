"""Scheduled syncs as `GET /schedules` answers them and `gradesync schedules list --json`
prints them; a rule's next runs (preview); and a schedule's log, each run it started or
joined as `GET /runs/{id}` shows it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from gradesync.answers.runs import RunOut, run_out
from gradesync.services.schedules import HistoryEntry, ScheduleInfo


class PreviewOut(BaseModel):
    runs: list[datetime]


class ScheduleOut(BaseModel):
    id: str
    kind: str
    spec: str
    description: str
    time_zone: str
    destination_id: str | None
    course_id: str | None
    activity_ids: list[str]
    trigger: str
    posted_by: str
    first_run_at: datetime | None
    next_run_at: datetime | None  # none while paused
    last_run_at: datetime | None
    paused: bool
    paused_at: datetime | None
    created_at: datetime | None
    upcoming: list[datetime]


class HistoryOut(BaseModel):
    schedule_id: str
    at: datetime
    action: str
    actor: str
    message: str | None
    run_id: str | None
    joined: bool  # the run was already going for this scope and was joined
    slot_at: datetime | None
    missed: int
    run: RunOut | None


def schedule_out(info: ScheduleInfo) -> ScheduleOut:
    s = info.schedule
    return ScheduleOut(
        id=s.id,
        kind=s.kind.value,
        spec=s.spec,
        description=info.description,
        time_zone=s.time_zone,
        destination_id=s.scope.destination_id,
        course_id=s.scope.course_id,
        activity_ids=list(s.scope.activity_ids),
        trigger=s.trigger.value,
        posted_by=s.posted_by,
        first_run_at=s.first_run_at,
        next_run_at=s.next_run_at,
        last_run_at=s.last_run_at,
        paused=s.paused_at is not None,
        paused_at=s.paused_at,
        created_at=s.created_at,
        upcoming=info.upcoming,
    )


def history_out(h: HistoryEntry) -> HistoryOut:
    e = h.event
    return HistoryOut(
        schedule_id=e.schedule_id,
        at=e.at,
        action=e.action.value,
        actor=e.actor,
        message=e.message,
        run_id=e.run_id,
        joined=e.joined,
        slot_at=e.slot_at,
        missed=e.missed,
        run=run_out(h.run, h.stages or []) if h.run is not None else None,
    )
