"""The facts a test starts from: tenants, courses, activities, people, destinations, the
links a launch would have made, and attempts.

Each helper writes through the services' unit of work (`db.uow` is one) in its own
transaction, so what it stores is exactly what the product stores. Attempts go through the
real ingest service, as the API would send them. Helpers are idempotent where the product's
own upserts are.

    add_course(db.uow, "t1", "c1", ("a1", "Quiz 1", 10.0), learners=["p1", "p2"])
    add_destination(db.uow, "t1", "lms", links={"c1": "https://lms/courses/1"})
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from gradesync.domain.model import (
    Activity,
    Attempt,
    Course,
    CourseLink,
    Destination,
    DestinationKind,
    Enrollment,
    Person,
    PersonLink,
    Role,
    Tenant,
)
from gradesync.services.clock import Clock, SystemClock
from gradesync.services.ingest import IngestBatch, IngestResult, ingest
from gradesync.services.ports import UnitOfWorkFactory
from gradesync.services.wakeup import Waker

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)  # attempts are completed after it, one second apart


def add_tenant(
    uow_factory: UnitOfWorkFactory,
    tenant_id: str = "t1",
    name: str | None = None,
    *,
    at: datetime | None = None,
) -> None:
    """The tenant, unless it exists already."""
    with uow_factory() as uow:
        if uow.tenants.get(tenant_id) is None:
            tenant = Tenant(tenant_id, name or tenant_id.upper())
            uow.tenants.upsert(tenant, at or datetime.now(UTC))
            uow.commit()


def add_course(
    uow_factory: UnitOfWorkFactory,
    tenant_id: str,
    course_id: str,
    *activities: tuple[str, str, float] | Activity,
    title: str | None = None,
    learners: Iterable[str] = (),
    **course: Any,
) -> None:
    """The course (its other fields in `course`), its activities, given as (id, title,
    points) or whole, and its learners, enrolled (a person is created with a name derived
    from the id). The tenant must exist."""
    with uow_factory() as uow:
        uow.courses.upsert(Course(tenant_id, course_id, title or f"Course {course_id}", **course))
        for a in activities:
            if not isinstance(a, Activity):
                activity_id, activity_title, points = a
                a = Activity(tenant_id, activity_id, course_id, activity_title, points)
            uow.activities.upsert(a)
        for person_id in learners:
            uow.people.upsert(Person(tenant_id, person_id, f"Learner {person_id}"))
            uow.enrollments.upsert(Enrollment(tenant_id, course_id, person_id, Role.LEARNER))
        uow.commit()


def add_destination(
    uow_factory: UnitOfWorkFactory,
    tenant_id: str,
    destination_id: str,
    kind: DestinationKind = DestinationKind.LTI13_AGS,
    *,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    links: Mapping[str, str] | None = None,
    people: Mapping[str, str] | None = None,
    at: datetime | None = None,
) -> Destination:
    """The destination, with the course links (course id -> remote id) and person links
    (person id -> remote id) a launch or a roster mapping would have made."""
    destination = Destination(
        tenant_id,
        destination_id,
        kind,
        name or f"Destination {destination_id}",
        config=dict(config or {}),
    )
    with uow_factory() as uow:
        uow.destinations.upsert(destination, at or datetime.now(UTC))
        for course_id, remote in (links or {}).items():
            uow.links.save_course(CourseLink(tenant_id, destination_id, course_id, remote))
        for person_id, remote in (people or {}).items():
            uow.links.save_person(PersonLink(tenant_id, destination_id, person_id, remote))
        uow.commit()
    return destination


_event_ids = itertools.count(1)
_unique_ids = itertools.count(1)


def unique(prefix: str) -> str:
    """`prefix` and a number not used before in this process: ids of tenants, courses,
    users and clients that tests sharing one sandbox or database do not collide on."""
    return f"{prefix}{next(_unique_ids)}"


def post_attempts(
    uow_factory: UnitOfWorkFactory,
    waker: Waker | None,
    tenant_id: str,
    scores: Sequence[tuple[str, str, float | None]],
    *,
    maximum: float | None = 10.0,
    clock: Clock | None = None,
) -> IngestResult:
    """Attempts (activity id, person id, score) through the ingest service, each with a new
    event id and a later completion time than any before it in this process."""
    attempts = []
    for activity_id, person_id, score in scores:
        n = next(_event_ids)
        attempts.append(
            Attempt(
                tenant_id,
                f"ev-{n}",
                activity_id,
                person_id,
                score,
                maximum,
                completed_at=EPOCH + timedelta(seconds=n),
            )
        )
    batch = IngestBatch(attempts=attempts)
    return ingest(uow_factory, clock or SystemClock(), waker, tenant_id, batch)
