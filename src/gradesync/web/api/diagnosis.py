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

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from gradesync.domain.remedies import Reader
from gradesync.runtime import Runtime
from gradesync.services import overrides
from gradesync.web.api.auth import Principal, require_scope
from gradesync.web.api.deps import runtime
from gradesync.web.api.errors import UrlIdsRoute
from gradesync.web.api.runs import asked_out
from gradesync.web.api.schemas import Bool, RunOut

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
        description="Send and read back a test result (LTI 1.3 AGS only; 422 `not_supported` "
        "for other destinations).",
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
    return {
        "destination_id": destination_id,
        "ok": all(s.passed for s in steps),
        # each step's remedy in the API's words where it is held as a code (a SIS's)
        "steps": [
            {
                "name": s.name,
                "passed": s.passed,
                "code": s.code,
                "evidence": s.evidence,
                "remedy": s.remedy,
            }
            for s in (s.read_over(Reader.API) for s in steps)
        ],
    }


class OverrideOut(BaseModel):
    destination_id: str
    activity_id: str
    person_id: str
    state: str
    sent_given: float | None = Field(description="The score gradesync sent.")
    sent_maximum: float | None = Field(description="The maximum gradesync sent with it.")
    delivered_at: datetime | None
    lms: str | None = Field(description="What the LMS holds, in its words.")
    explanation: str | None = Field(description="What happened, and what the policy does.")
    policy: Literal["keep_lms_edit", "gradesync_wins"]


def overrides_out(rows: list[dict[str, Any]]) -> list[OverrideOut]:
    """Overridden grades as the API answers them (also `gradesync overrides --json`)."""
    return [OverrideOut(**r) for r in rows]


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


class UnreadOut(BaseModel):
    destination_id: str
    activity_id: str
    error: str = Field(description="Why the LMS's timestamps could not be read, in its words.")


class RepairOut(BaseModel):
    run: RunOut | None
    marked: int
    skipped: int
    keys: list[dict[str, str]]
    unread: list[UnreadOut] = Field(
        description="Columns whose LMS timestamps could not be read first: their grades are "
        "resent with gradesync's clock only."
    )
    warning: str | None = Field(description="What `unread` means for the repair, if any.")


def repair_out(rt: Runtime, tenant_id: str, result: overrides.RepairResult) -> RepairOut:
    """A repair as the API answers it (also `gradesync repair --json`); its run as
    `GET /runs/{id}` shows it, stages included."""
    return RepairOut(
        run=(
            asked_out(rt, tenant_id, result.run, result.joined) if result.run is not None else None
        ),
        marked=result.marked,
        skipped=result.skipped,
        keys=[
            {
                "destination_id": k.destination_id,
                "activity_id": k.activity_id,
                "person_id": k.person_id,
            }
            for k in result.keys
        ],
        unread=[
            UnreadOut(destination_id=u.destination_id, activity_id=u.activity_id, error=u.error)
            for u in result.unread
        ],
        warning=overrides.unread_warning(result.unread),
    )


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
