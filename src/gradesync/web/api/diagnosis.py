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
from starlette.concurrency import run_in_threadpool

from gradesync.domain.capabilities import Capabilities
from gradesync.domain.model import Destination
from gradesync.domain.reasons import Reason
from gradesync.runtime import Runtime
from gradesync.services import diagnostics as svc
from gradesync.services import overrides
from gradesync.services.destination_check import check_destination
from gradesync.web.api.auth import Principal, require_scope
from gradesync.web.api.deps import runtime
from gradesync.web.api.runs import run_out
from gradesync.web.api.schemas import RunOut

router = APIRouter(tags=["diagnostics"])
reader = require_scope("sync")
admin = require_scope("admin")


def capabilities_of(rt: Runtime) -> svc.CapabilitiesLookup:
    """What each destination accepts, from the same clients the engine uses."""

    def lookup(d: Destination) -> Capabilities | Reason:
        try:
            return rt.destination_client(d).capabilities
        except Exception as exc:  # an unusable destination is a diagnosis, not a 500
            return Reason("destination_unavailable", f"{type(exc).__name__}: {exc}")

    return lookup


@router.get("/activities/{activity_id}/learners/{person_id}/diagnosis")
def learner_activity(
    activity_id: str,
    person_id: str,
    destination_id: str | None = Query(None, description="Only this destination."),
    p: Principal = Depends(reader),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """Ordered checks for one learner and one activity: passed or failed, evidence, remedy."""
    d = svc.diagnose_learner_activity(
        rt.uow,
        rt.clock,
        p.tenant_id,
        person_id,
        activity_id,
        destination_id,
        capabilities=capabilities_of(rt),
    )
    return d.as_json()


@router.get("/activities/{activity_id}/diagnosis")
def activity(
    activity_id: str,
    destination_id: str | None = Query(None),
    p: Principal = Depends(reader),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """The activity's own checks and its learners' delivery states per destination."""
    d = svc.diagnose_activity(
        rt.uow,
        rt.clock,
        p.tenant_id,
        activity_id,
        destination_id,
        capabilities=capabilities_of(rt),
    )
    return d.as_json()


@router.get("/courses/{course_id}/diagnosis")
def course(
    course_id: str,
    destination_id: str | None = Query(None),
    p: Principal = Depends(reader),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """The course in seed 001's shape: nothing syncing, some activities, some learners."""
    t = svc.diagnose_course(
        rt.uow,
        rt.clock,
        p.tenant_id,
        course_id,
        destination_id,
        capabilities=capabilities_of(rt),
    )
    return t.as_json()


@router.get("/destinations/{destination_id}/diagnosis")
async def destination(
    destination_id: str,
    live: bool = Query(False, description="Also ask the destination for a token (its check)."),
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    client = None
    if live:
        dest = await run_in_threadpool(_destination, rt, p.tenant_id, destination_id)
        client = rt.destination_client(dest)
    d = await svc.diagnose_destination(
        rt.uow,
        rt.clock,
        p.tenant_id,
        destination_id,
        client=client,
        capabilities=capabilities_of(rt),
    )
    return d.as_json()


def _destination(rt: Runtime, tenant_id: str, destination_id: str) -> Destination:
    from gradesync.services.destination_admin import get_destination

    return get_destination(rt.uow, tenant_id, destination_id)


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    course_id: str | None = Field(None, description="The course to test (default: the first).")
    learner_id: str | None = Field(None, description="Who gets the test result.")
    send_test: bool = Field(False, description="Send and read back a test result (AGS).")


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
    dest = await run_in_threadpool(_destination, rt, p.tenant_id, destination_id)
    steps = await check_destination(
        rt.uow,
        rt.clock,
        p.tenant_id,
        destination_id,
        rt.destination_client(dest),
        course_id=body.course_id,
        learner_id=body.learner_id,
        send_test=body.send_test,
    )
    return {
        "destination_id": destination_id,
        "ok": all(s.passed for s in steps),
        "steps": [
            {"name": s.name, "passed": s.passed, "evidence": s.evidence, "remedy": s.remedy}
            for s in steps
        ],
    }


@router.get("/courses/{course_id}/overrides")
def course_overrides(
    course_id: str,
    destination_id: str | None = Query(None),
    p: Principal = Depends(reader),
    rt: Runtime = Depends(runtime),
) -> list[dict[str, Any]]:
    """Grades changed by hand in the LMS after gradesync sent them, and the course's policy."""
    return overrides.list_overrides(rt.uow, p.tenant_id, course_id, destination_id)


class RepairIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    destination_id: str | None = None
    activity_ids: list[str] = Field(default_factory=list)
    person_ids: list[str] = Field(default_factory=list)


class RepairOut(BaseModel):
    run: RunOut | None
    marked: int
    skipped: int
    keys: list[dict[str, str]]


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
    # validate before reading anything back, so bad input changes nothing and costs nothing
    await run_in_threadpool(_validate, rt, sel)
    remote = await overrides.remote_timestamps(rt.uow, sel, rt.destination_client)
    result = await run_in_threadpool(
        overrides.request_repair, rt.uow, rt.waker, rt.clock, sel, p.actor, remote=remote
    )
    return RepairOut(
        run=run_out(result.run, joined=result.joined) if result.run is not None else None,
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
    )


def _validate(rt: Runtime, sel: overrides.RepairSelection) -> None:
    with rt.uow() as uow:
        overrides.validate_selection(uow, sel)
