"""Attempts and batches of facts. Answered 202 only after the transaction committed."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from gradesync.domain.errors import InvalidInput
from gradesync.runtime import Runtime
from gradesync.services import ingest as svc
from gradesync.web.api.auth import Principal, require_scope
from gradesync.web.api.deps import runtime
from gradesync.web.api.errors import UrlIdsRoute, strip_prefix
from gradesync.web.api.schemas import (
    AttemptBatchIn,
    AttemptIn,
    AttemptOutcomeOut,
    IngestIn,
    IngestOut,
)

router = APIRouter(tags=["ingest"], route_class=UrlIdsRoute)


def out(r: svc.IngestResult) -> IngestOut:
    return IngestOut(
        changed=r.changed,
        unchanged=r.unchanged,
        recorded=r.recorded,
        duplicates=r.duplicates,
        dirty_keys=r.dirty_keys,
        attempts=[
            AttemptOutcomeOut(
                source_event_id=a.source_event_id, attempt_id=a.attempt_id, duplicate=a.duplicate
            )
            for a in r.attempts
        ],
    )


def run(rt: Runtime, tenant_id: str, batch: svc.IngestBatch) -> svc.IngestResult:
    return rt.ingest(tenant_id, batch)


@router.post("/attempts", status_code=202, response_model=IngestOut)
def record_attempt(
    body: AttemptIn,
    p: Principal = Depends(require_scope("ingest")),
    rt: Runtime = Depends(runtime),
) -> IngestOut:
    """Record one attempt. Idempotent by `source_event_id`: a repeat is answered 202 with
    `duplicate: true` and changes nothing."""
    try:
        r = run(rt, p.tenant_id, svc.IngestBatch(attempts=[body.to_domain(p.tenant_id)]))
    except InvalidInput as exc:
        raise strip_prefix(exc, "attempts[0].") from exc
    return out(r)


@router.post("/attempts/batch", status_code=202, response_model=IngestOut)
def record_attempts(
    body: AttemptBatchIn,
    p: Principal = Depends(require_scope("ingest")),
    rt: Runtime = Depends(runtime),
) -> IngestOut:
    """Record up to 1000 attempts at once: all stored, or (on any problem) none."""
    return out(
        run(
            rt,
            p.tenant_id,
            svc.IngestBatch(attempts=[a.to_domain(p.tenant_id) for a in body.attempts]),
        )
    )


@router.post("/ingest", status_code=202, response_model=IngestOut)
def ingest_batch(
    body: IngestIn,
    p: Principal = Depends(require_scope("ingest")),
    rt: Runtime = Depends(runtime),
) -> IngestOut:
    """Courses, activities, people, enrollments, due-date overrides and attempts together,
    in one transaction (up to 1000 items in all). References may point into the same batch.
    A course, activity or person already stored keeps its value of every field its item
    leaves out."""
    t = p.tenant_id
    batch = svc.IngestBatch(
        courses=[c.to_domain(t, c.id) for c in body.courses],
        activities=[a.to_domain(t, a.id) for a in body.activities],
        people=[x.to_domain(t, x.id) for x in body.people],
        enrollments=[e.to_domain(t, e.course_id, e.person_id) for e in body.enrollments],
        overrides=[o.to_domain(t, o.activity_id, o.person_id) for o in body.overrides],
        attempts=[a.to_domain(t) for a in body.attempts],
        sent={
            **{("courses", c.id): c.sent() for c in body.courses},
            **{("activities", a.id): a.sent() for a in body.activities},
            **{("people", x.id): x.sent() for x in body.people},
        },
    )
    return out(run(rt, t, batch))
