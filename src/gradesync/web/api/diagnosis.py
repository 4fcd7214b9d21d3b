"""Diagnostics over the API: why a grade did or did not sync, course triage, overrides,
repair resyncs and the end-to-end destination check.

- GET  /activities/{activity_id}/learners/{person_id}/diagnosis[?destination_id=]
- GET  /activities/{activity_id}/diagnosis[?destination_id=]
- GET  /courses/{course_id}/diagnosis[?destination_id=]
- GET  /destinations/{destination_id}/diagnosis[?live=true]     (admin)
- POST /destinations/{destination_id}/check                     (admin)
- GET  /courses/{course_id}/overrides[?destination_id=]
- POST /courses/{course_id}/repair
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from gradesync.answers.checks import destination_check_out
from gradesync.answers.overrides import OverrideOut, RepairOut, overrides_out, repair_out
from gradesync.domain.remedies import Reader
from gradesync.runtime import Runtime
from gradesync.services import overrides
from gradesync.web.api.auth import Principal, require_scope
from gradesync.web.api.deps import runtime
from gradesync.web.api.errors import UrlIdsRoute
from gradesync.web.api.schemas import Bool

router = APIRouter(tags=["diagnostics"], route_class=UrlIdsRoute)
reader = require_scope("sync")
admin = require_scope("admin")


@router.get("/activities/{activity_id}/learners/{person_id}/diagnosis")
def learner_activity(
    activity_id: str,
    person_id: str,
    destination_id: str | None = Query(None, description="Only this destination."),
    p: Principal = Depends(reader),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """Ordered checks for one learner and one activity: passed or failed, evidence, remedy."""
    d = rt.diagnose_learner_activity(p.tenant_id, person_id, activity_id, destination_id)
    return d.read_over(Reader.API).as_json()


@router.get("/activities/{activity_id}/diagnosis")
def activity(
    activity_id: str,
    destination_id: str | None = Query(None),
    p: Principal = Depends(reader),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """The activity's own checks and its learners' delivery states per destination."""
    d = rt.diagnose_activity(p.tenant_id, activity_id, destination_id)
    return d.read_over(Reader.API).as_json()


@router.get("/courses/{course_id}/diagnosis")
def course(
    course_id: str,
    destination_id: str | None = Query(None),
    p: Principal = Depends(reader),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """The course sorted by symptom: nothing syncing, some activities, some learners."""
    t = rt.diagnose_course(p.tenant_id, course_id, destination_id)
    return t.read_over(Reader.API).as_json()


@router.get("/destinations/{destination_id}/diagnosis")
async def destination(
    destination_id: str,
    live: bool = Query(False, description="Also ask the destination for a token (its check)."),
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    d = await rt.diagnose_destination(p.tenant_id, destination_id, live=live)
    return d.read_over(Reader.API).as_json()


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    course_id: str | None = Field(None, description="The course to test (default: the first).")
    learner_id: str | None = Field(None, description="Who gets the test result.")
    send_test: Bool = Field(
        False,
        description="Send and read back a test result in a test column, then delete the column "
        "(LTI 1.3 AGS only; 422 `not_supported` for other destinations). Nothing is sent while "
        "the destination is paused.",
    )


@router.post("/destinations/{destination_id}/check")
async def check(
    destination_id: str,
    body: CheckIn | None = None,
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """Prove a destination end to end: token, listing, and (send_test) a test result sent
    and read back."""
    body = body or CheckIn.model_validate({})
    steps = await rt.check_destination(
        p.tenant_id,
        destination_id,
        course_id=body.course_id,
        learner_id=body.learner_id,
        send_test=body.send_test,
    )
    # each step's remedy in the API's words where it is held as a code (a SIS's)
    return destination_check_out(destination_id, [s.read_over(Reader.API) for s in steps])


@router.get("/courses/{course_id}/overrides", response_model=list[OverrideOut])
def course_overrides(
    course_id: str,
    destination_id: str | None = Query(None),
    p: Principal = Depends(reader),
    rt: Runtime = Depends(runtime),
) -> list[OverrideOut]:
    """Grades changed by hand in the LMS after gradesync sent them, and the course's policy."""
    return overrides_out(overrides.list_overrides(rt.uow, p.tenant_id, course_id, destination_id))


class RepairIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    destination_id: str | None = None
    activity_ids: list[str] = Field(default_factory=list)
    person_ids: list[str] = Field(default_factory=list)


@router.post("/courses/{course_id}/repair", status_code=202, response_model=RepairOut)
async def repair(
    course_id: str,
    body: RepairIn,
    p: Principal = Depends(reader),
    rt: Runtime = Depends(runtime),
) -> RepairOut:
    """Resend the selected results with a fresh timestamp so the LMS applies them over a
    grade typed in by hand (or one stuck behind the timestamp rule)."""
    sel = overrides.RepairSelection(
        p.tenant_id,
        course_id,
        body.destination_id,
        tuple(body.activity_ids),
        tuple(body.person_ids),
    )
    return repair_out(rt, p.tenant_id, await rt.repair(sel, p.actor))
