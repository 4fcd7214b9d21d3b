"""Courses, activities, people, enrollments and due-date overrides, one at a time.

PUT is an upsert by the source's own ids; sending the same body twice changes nothing. A
course, activity or person that exists keeps its value of every field the body leaves out.
"""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends, Query

from gradesync.domain.errors import InvalidInput, NotFound
from gradesync.domain.model import Activity, Course
from gradesync.domain.policy_layers import settings_as_json
from gradesync.domain.remedies import Reader
from gradesync.runtime import Runtime
from gradesync.services import ingest as svc
from gradesync.services import queries
from gradesync.web.api.auth import Principal, require_scope
from gradesync.web.api.deps import runtime
from gradesync.web.api.errors import UrlIdsRoute, strip_prefix
from gradesync.web.api.ingest import out, run
from gradesync.web.api.schemas import (
    ActivityBody,
    ActivityOut,
    CourseBody,
    CourseOut,
    EnrollmentBody,
    IngestOut,
    LearnerGradesOut,
    OverrideBody,
    PersonBody,
)

router = APIRouter(tags=["courses and roster"], route_class=UrlIdsRoute)
reader = require_scope("ingest", "sync")


def course_out(c: Course) -> CourseOut:
    return CourseOut(
        id=c.id,
        title=c.title,
        time_zone=c.time_zone,
        starts_at=c.starts_at,
        ends_at=c.ends_at,
        sync_enabled=c.sync_enabled,
        policy=settings_as_json(c.policy),
    )


def activity_out(a: Activity) -> ActivityOut:
    return ActivityOut(
        id=a.id,
        course_id=a.course_id,
        title=a.title,
        points_possible=a.points_possible,
        kind=a.kind.value,
        due_at=a.due_at,
        category=a.category,
        published=a.published,
        sync_enabled=a.sync_enabled,
        assigned=a.assigned,
        policy=settings_as_json(a.policy),
    )


def _one(
    rt: Runtime, tenant_id: str, batch: svc.IngestBatch, prefix: str, **path: str
) -> IngestOut:
    """One object through the ingest; `path`: which of its fields the URL gave, and as
    which parameter (a problem with one is the URL's, not the body's)."""
    try:
        return out(run(rt, tenant_id, batch))
    except InvalidInput as exc:
        raise strip_prefix(exc, prefix, path) from exc


@router.put("/courses/{course_id}", response_model=IngestOut)
def put_course(
    course_id: str,
    body: CourseBody,
    p: Principal = Depends(require_scope("ingest")),
    rt: Runtime = Depends(runtime),
) -> IngestOut:
    """Create or update a course. A change to its dates, time zone, policy or sync switch
    recomputes every grade in it. A field left out keeps its stored value."""
    course = body.to_domain(p.tenant_id, course_id)
    batch = svc.IngestBatch(courses=[course], sent={("courses", course_id): body.sent()})
    return _one(rt, p.tenant_id, batch, "courses[0].", id="course_id")


@router.get("/courses", response_model=list[CourseOut])
def list_courses(p: Principal = Depends(reader), rt: Runtime = Depends(runtime)) -> list[CourseOut]:
    with rt.uow() as uow:
        return [course_out(c) for c in uow.courses.all(p.tenant_id)]


@router.get("/courses/{course_id}", response_model=CourseOut)
def get_course(
    course_id: str, p: Principal = Depends(reader), rt: Runtime = Depends(runtime)
) -> CourseOut:
    with rt.uow() as uow:
        c = uow.courses.get(p.tenant_id, course_id)
    if c is None:
        raise NotFound("course", course_id)
    return course_out(c)


@router.get("/courses/{course_id}/activities", response_model=list[ActivityOut])
def list_activities(
    course_id: str, p: Principal = Depends(reader), rt: Runtime = Depends(runtime)
) -> list[ActivityOut]:
    with rt.uow() as uow:
        if uow.courses.get(p.tenant_id, course_id) is None:
            raise NotFound("course", course_id)
        return [activity_out(a) for a in uow.activities.for_course(p.tenant_id, course_id)]


@router.put("/activities/{activity_id}", response_model=IngestOut)
def put_activity(
    activity_id: str,
    body: ActivityBody,
    p: Principal = Depends(require_scope("ingest")),
    rt: Runtime = Depends(runtime),
) -> IngestOut:
    """Create or update an activity (a gradebook column). A change recomputes its grades. A
    field left out keeps its stored value."""
    act = body.to_domain(p.tenant_id, activity_id)
    batch = svc.IngestBatch(activities=[act], sent={("activities", activity_id): body.sent()})
    return _one(rt, p.tenant_id, batch, "activities[0].", id="activity_id")


@router.get("/activities/{activity_id}", response_model=ActivityOut)
def get_activity(
    activity_id: str, p: Principal = Depends(reader), rt: Runtime = Depends(runtime)
) -> ActivityOut:
    with rt.uow() as uow:
        a = uow.activities.get(p.tenant_id, activity_id)
    if a is None:
        raise NotFound("activity", activity_id)
    return activity_out(a)


@router.put("/people/{person_id}", response_model=IngestOut)
def put_person(
    person_id: str,
    body: PersonBody,
    p: Principal = Depends(require_scope("ingest")),
    rt: Runtime = Depends(runtime),
) -> IngestOut:
    person = body.to_domain(p.tenant_id, person_id)
    batch = svc.IngestBatch(people=[person], sent={("people", person_id): body.sent()})
    return _one(rt, p.tenant_id, batch, "people[0].", id="person_id")


@router.put("/courses/{course_id}/enrollments/{person_id}", response_model=IngestOut)
def put_enrollment(
    course_id: str,
    person_id: str,
    body: EnrollmentBody,
    p: Principal = Depends(require_scope("ingest")),
    rt: Runtime = Depends(runtime),
) -> IngestOut:
    """Enrol a person (or change role or status). Recomputes their grades in the course."""
    e = body.to_domain(p.tenant_id, course_id, person_id)
    batch = svc.IngestBatch(enrollments=[e])
    return _one(
        rt, p.tenant_id, batch, "enrollments[0].", course_id="course_id", person_id="person_id"
    )


@router.put("/activities/{activity_id}/overrides/{person_id}", response_model=IngestOut)
def put_override(
    activity_id: str,
    person_id: str,
    body: OverrideBody,
    p: Principal = Depends(require_scope("ingest")),
    rt: Runtime = Depends(runtime),
) -> IngestOut:
    """A per-learner due date (an extension): moves when a past-due zero applies."""
    o = body.to_domain(p.tenant_id, activity_id, person_id)
    batch = svc.IngestBatch(overrides=[o])
    return _one(
        rt, p.tenant_id, batch, "overrides[0].", activity_id="activity_id", person_id="person_id"
    )


@router.get("/people/{person_id}/grades", response_model=LearnerGradesOut)
def learner_grades(
    person_id: str,
    destination_id: str | None = Query(None, description="Only this destination."),
    course_id: str | None = Query(None, description="Only this course's activities."),
    p: Principal = Depends(require_scope("sync")),
    rt: Runtime = Depends(runtime),
) -> LearnerGradesOut:
    """A learner's grade state per destination: what we want there, whether it arrived, and
    if not, why and what happens next. A course not connected to a destination (no launch
    from the LMS course, no SIS class mapped) lists its activities there as `not_sent`, with
    the reason; `note` says when the tenant has no destination at all."""
    # a filter naming nothing stored is refused, located in the query (UrlIdsRoute)
    g = queries.learner_grades(
        rt.uow,
        p.tenant_id,
        person_id,
        destination_id=destination_id,
        course_id=course_id,
        now=rt.clock.now(),
        reader=Reader.API,
    )
    return LearnerGradesOut.model_validate(
        {
            "person_id": g.person_id,
            "name": g.name,
            "destinations": {d: [asdict(c) for c in cells] for d, cells in g.destinations.items()},
            "note": g.note,
        }
    )
