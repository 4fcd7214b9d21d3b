"""Scheduled syncs: list, add, edit, pause, resume, pause all, delete, run now, history.

Admin keys only (`admin` scope). Every change is logged with the key's actor; "run now" runs
in the caller's name.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import Field

from gradesync.answers.runs import RunOut, asked_out
from gradesync.answers.schedules import (
    HistoryOut,
    PreviewOut,
    ScheduleOut,
    history_out,
    schedule_out,
)
from gradesync.domain.model import RunScope, ScheduleKind
from gradesync.runtime import Runtime
from gradesync.services.schedules import ScheduleService
from gradesync.web.api.auth import Principal, require_scope
from gradesync.web.api.deps import runtime
from gradesync.web.api.errors import UrlIdsRoute
from gradesync.web.api.schemas import Id, InputModel, LocalDateTime, Whole, ZonedDateTime

router = APIRouter(tags=["schedules"], route_class=UrlIdsRoute)

Spec = Annotated[str, Field(min_length=1, max_length=255, strict=True)]
Zone = Annotated[str, Field(min_length=1, max_length=64, strict=True)]
_FIRST_RUN = (
    "When the schedule starts (its first run is not before this). Without an offset it is a "
    "local time in the schedule's time zone."
)


# The triggers a schedule may start (the others are a person's or the system's): said by the
# schema, so a client learns them from the document rather than from a refusal.
Scheduled = Literal["schedule", "remaster"]


class ScheduleIn(InputModel):
    kind: ScheduleKind
    spec: Spec = Field(description='"15m", "2h"; "01:30"; "mon,wed 07:00"; "0 7 * * 1-5"')
    time_zone: Zone | None = Field(
        None, description="IANA zone; default: the course's zone (interval: UTC)"
    )
    destination_id: Id | None = None
    course_id: Id | None = None
    activity_ids: list[Id] = Field(default_factory=list, max_length=1000)
    first_run_at: LocalDateTime | None = Field(None, description=_FIRST_RUN)
    trigger: Scheduled = Field("schedule", description="schedule or remaster")


class ScheduleEditIn(InputModel):
    """Only the fields present change; `destination_id: null` widens to every destination."""

    kind: ScheduleKind | None = None
    spec: Spec | None = None
    time_zone: Zone | None = None
    destination_id: Id | None = None
    course_id: Id | None = None
    activity_ids: list[Id] | None = Field(None, max_length=1000)
    first_run_at: LocalDateTime | None = Field(None, description=_FIRST_RUN)
    trigger: Scheduled | None = None


class PreviewIn(InputModel):
    kind: ScheduleKind
    spec: Spec
    time_zone: Zone = "UTC"
    first_run_at: LocalDateTime | None = Field(None, description=_FIRST_RUN)
    count: Annotated[int, Field(ge=1, le=50, strict=True), Whole] = 5


def service(rt: Runtime = Depends(runtime)) -> ScheduleService:
    return rt.schedules()


Admin = Annotated[Principal, Depends(require_scope("admin"))]
Service = Annotated[ScheduleService, Depends(service)]


@router.get("/schedules", response_model=list[ScheduleOut])
def list_schedules(p: Admin, svc: Service) -> list[ScheduleOut]:
    """The tenant's schedules with interval, first and next run, zone and who posted them."""
    return [schedule_out(i) for i in svc.all(p.tenant_id)]


@router.post("/schedules", status_code=201, response_model=ScheduleOut)
def create_schedule(body: ScheduleIn, p: Admin, svc: Service) -> ScheduleOut:
    info = svc.create(
        p.tenant_id,
        p.actor,
        kind=body.kind,
        spec=body.spec,
        time_zone=body.time_zone,
        destination_id=body.destination_id,
        course_id=body.course_id,
        activity_ids=body.activity_ids,
        first_run_at=body.first_run_at,
        trigger=body.trigger,
    )
    return schedule_out(info)


@router.post("/schedules/preview", response_model=PreviewOut)
def preview_schedule(body: PreviewIn, p: Admin, svc: Service) -> PreviewOut:
    """The next runs a rule would make (daylight-saving changes included), without saving."""
    runs = svc.preview(
        body.kind, body.spec, body.time_zone, first_run_at=body.first_run_at, count=body.count
    )
    return PreviewOut(runs=runs)


@router.post("/schedules/pause-all", response_model=list[ScheduleOut])
def pause_all(p: Admin, svc: Service) -> list[ScheduleOut]:
    """Pause every running schedule of the tenant; returns those it paused."""
    return [schedule_out(i) for i in svc.pause_all(p.tenant_id, p.actor)]


@router.get("/schedules/history", response_model=list[HistoryOut])
def all_history(
    p: Admin,
    svc: Service,
    since: ZonedDateTime | None = Query(None, description="At or after (ISO 8601)."),
    until: ZonedDateTime | None = Query(None, description="Before (ISO 8601)."),
    limit: int = Query(50, ge=1, le=1000),
) -> list[HistoryOut]:
    """The log of every schedule of the tenant, newest first."""
    return [history_out(h) for h in svc.history(p.tenant_id, since=since, until=until, limit=limit)]


@router.get("/schedules/{schedule_id}", response_model=ScheduleOut)
def get_schedule(schedule_id: str, p: Admin, svc: Service) -> ScheduleOut:
    return schedule_out(svc.get(p.tenant_id, schedule_id))


@router.patch("/schedules/{schedule_id}", response_model=ScheduleOut)
def edit_schedule(schedule_id: str, body: ScheduleEditIn, p: Admin, svc: Service) -> ScheduleOut:
    given = body.model_fields_set
    scope = None
    if given & {"destination_id", "course_id", "activity_ids"}:
        current = svc.get(p.tenant_id, schedule_id).schedule.scope
        scope = RunScope(
            p.tenant_id,
            body.destination_id if "destination_id" in given else current.destination_id,
            body.course_id if "course_id" in given else current.course_id,
            tuple(body.activity_ids or ()) if "activity_ids" in given else current.activity_ids,
        )
    info = svc.edit(
        p.tenant_id,
        schedule_id,
        p.actor,
        kind=body.kind,
        spec=body.spec,
        time_zone=body.time_zone,
        first_run_at=body.first_run_at,
        scope=scope,
        trigger=body.trigger,
    )
    return schedule_out(info)


@router.delete("/schedules/{schedule_id}", status_code=204)
def delete_schedule(schedule_id: str, p: Admin, svc: Service) -> Response:
    svc.delete(p.tenant_id, schedule_id, p.actor)
    return Response(status_code=204)


@router.post("/schedules/{schedule_id}/pause", response_model=ScheduleOut)
def pause_schedule(schedule_id: str, p: Admin, svc: Service) -> ScheduleOut:
    return schedule_out(svc.pause(p.tenant_id, schedule_id, p.actor))


@router.post("/schedules/{schedule_id}/resume", response_model=ScheduleOut)
def resume_schedule(schedule_id: str, p: Admin, svc: Service) -> ScheduleOut:
    return schedule_out(svc.resume(p.tenant_id, schedule_id, p.actor))


@router.post("/schedules/{schedule_id}/run-now", status_code=202, response_model=RunOut)
def run_schedule_now(
    schedule_id: str, p: Admin, svc: Service, rt: Runtime = Depends(runtime)
) -> RunOut:
    """Run the schedule's scope now in the caller's name; joins a run already going."""
    run, joined = svc.run_now(p.tenant_id, schedule_id, p.actor)
    return asked_out(rt, p.tenant_id, run, joined)


@router.get("/schedules/{schedule_id}/history", response_model=list[HistoryOut])
def schedule_history(
    schedule_id: str,
    p: Admin,
    svc: Service,
    since: ZonedDateTime | None = Query(None, description="At or after (ISO 8601)."),
    until: ZonedDateTime | None = Query(None, description="Before (ISO 8601)."),
    limit: int = Query(50, ge=1, le=1000),
) -> list[HistoryOut]:
    """This schedule's log: changes, and each run it started or joined with that run's
    stages, counts and outcome."""
    entries = svc.history(p.tenant_id, schedule_id, since=since, until=until, limit=limit)
    return [history_out(h) for h in entries]
