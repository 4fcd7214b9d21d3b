"""Sync runs: trigger one for a course or a selection, follow it, list the history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from gradesync.answers.runs import RunOut, asked_out, run_out
from gradesync.domain.model import RunScope, Trigger
from gradesync.domain.remedies import Reader
from gradesync.runtime import Runtime
from gradesync.services import queries
from gradesync.web.api import query
from gradesync.web.api.auth import Principal, require_scope
from gradesync.web.api.deps import runtime
from gradesync.web.api.errors import UrlIdsRoute
from gradesync.web.api.schemas import CourseSyncIn, InputModel, SyncIn, ZonedDateTime

router = APIRouter(tags=["sync runs"], route_class=UrlIdsRoute)


@router.post("/runs", status_code=202, response_model=RunOut)
def request_run(
    body: SyncIn,
    p: Principal = Depends(require_scope("sync")),
    rt: Runtime = Depends(runtime),
) -> RunOut:
    """Start a run over a selection: the whole tenant, a course, a destination and/or some
    activities. A run already queued for the same scope is joined, not duplicated."""
    scope = RunScope(p.tenant_id, body.destination_id, body.course_id, tuple(body.activity_ids))
    run, joined = rt.ask_for_run(scope, body.trigger, p.actor, Reader.API)
    return asked_out(rt, p.tenant_id, run, joined)


@router.post("/courses/{course_id}/sync", status_code=202, response_model=RunOut)
def sync_course(
    course_id: str,
    body: CourseSyncIn,
    p: Principal = Depends(require_scope("sync")),
    rt: Runtime = Depends(runtime),
) -> RunOut:
    """ "Sync now" for a course (optionally one destination and some of its activities)."""
    scope = RunScope(p.tenant_id, body.destination_id, course_id, tuple(body.activity_ids))
    run, joined = rt.ask_for_run(scope, body.trigger, p.actor, Reader.API)
    return asked_out(rt, p.tenant_id, run, joined)


class RunsQuery(InputModel):
    """GET /runs's filters. A parameter it does not know (`course` for `course_id`) is
    refused as `unknown_field`, as in a body: ignored, it listed every run."""

    course_id: str | None = None
    destination_id: str | None = None
    trigger: Trigger | None = None
    since: ZonedDateTime | None = Field(None, description="Created at or after (ISO 8601).")
    until: ZonedDateTime | None = Field(None, description="Created before (ISO 8601).")
    limit: int = Field(50, ge=1, le=500)


@router.get("/runs", response_model=list[RunOut])
@query.run_history  # a deleted destination's id names its runs
def list_runs(
    q: Annotated[RunsQuery, Query()],
    p: Principal = Depends(require_scope("sync")),
    rt: Runtime = Depends(runtime),
) -> list[RunOut]:
    """Runs, newest first, with their stage, stages and counts."""
    runs = queries.runs_with_stages(
        rt.uow,
        p.tenant_id,
        course_id=q.course_id,
        destination_id=q.destination_id,
        trigger=q.trigger.value if q.trigger else None,
        since=q.since,
        until=q.until,
        limit=q.limit,
    )
    return [run_out(d.run, d.stages) for d in runs]


@router.get("/runs/{run_id}", response_model=RunOut)
def get_run(
    run_id: str,
    p: Principal = Depends(require_scope("sync")),
    rt: Runtime = Depends(runtime),
) -> RunOut:
    """One run with its stage history; poll it to follow progress."""
    d = queries.run_detail(rt.uow, p.tenant_id, run_id)
    return run_out(d.run, d.stages)
