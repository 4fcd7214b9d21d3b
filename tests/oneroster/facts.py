"""A small school: one course mapped to a SIS class, three learners, a few activities."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gradesync.adapters.db.database import Database
from gradesync.domain.model import (
    Activity,
    Attempt,
    Course,
    Enrollment,
    Person,
    Tenant,
)
from gradesync.services import sis
from gradesync.services.clock import Clock

NOW = datetime(2025, 3, 20, 12, 0, tzinfo=UTC)
DUE = datetime(2025, 3, 14, 23, 59, tzinfo=UTC)


# The same school as the API's /ingest takes it: course c1, its quiz, learners by name.
ALGEBRA: dict[str, Any] = {"id": "c1", "title": "Algebra"}
QUIZ_1: dict[str, Any] = {
    "id": "q1",
    "course_id": "c1",
    "title": "Quiz 1",
    "points_possible": 10,
    "due_at": "2025-03-14T23:59:00Z",
    "category": "Quizzes",
}
ADA: dict[str, Any] = {"id": "p1", "name": "Ada", "sis_id": "stu-1"}
BO: dict[str, Any] = {"id": "p2", "name": "Bo"}  # no SIS id: `map-students` cannot link them
# Ada (SIS id stu-1) and Bo (none yet) learners of c1, which has Quiz 1
ROSTER: dict[str, Any] = {
    "courses": [ALGEBRA],
    "activities": [QUIZ_1],
    "people": [ADA, BO],
    "enrollments": [{"course_id": "c1", "person_id": p} for p in ("p1", "p2")],
}


def seed_school(db: Database, clock: Clock) -> None:
    with db.uow() as uow:
        uow.tenants.upsert(Tenant("t1", "School"), clock.now())
        uow.courses.upsert(Course("t1", "c1", "Algebra"))
        for pid, sis_id, section in (
            ("p1", "stu-1", None),
            ("p2", "stu-2", None),
            ("p3", "stu-3", "sec-b"),
        ):
            uow.people.upsert(Person("t1", pid, pid.upper(), sis_id=sis_id))
            uow.enrollments.upsert(Enrollment("t1", "c1", pid, section_id=section))
        uow.activities.upsert(
            Activity("t1", "quiz1", "c1", "Quiz 1", 10, due_at=DUE, category="Quizzes")
        )
        uow.activities.upsert(
            Activity("t1", "hw1", "c1", "Homework 1", 5, due_at=DUE, category="Homework")
        )
        uow.activities.upsert(Activity("t1", "nodue", "c1", "Essay", 20, category="Homework"))
        uow.activities.upsert(
            Activity(
                "t1",
                "long",
                "c1",
                "A very long activity name over thirty",
                10,
                due_at=DUE,
                category="Homework",
            )
        )
        uow.commit()


def map_to_class(db: Database, destination_id: str) -> None:
    """Course c1 mapped at `destination_id` to the SIS class cls-1 of school sch-1, for the
    spring term (NOW and DUE fall in it)."""
    sis.map_class(
        db.uow,
        tenant_id="t1",
        destination_id=destination_id,
        course_id="c1",
        class_id="cls-1",
        school_id="sch-1",
        term_start="2025-01-06",
        term_end="2025-06-20",
    )


def attempt(
    db: Database, event: str, activity: str, person: str, score: float | None, **kw: object
) -> None:
    with db.uow() as uow:
        uow.attempts.add(
            Attempt(
                "t1",
                event,
                activity,
                person,
                score,
                kw.pop("maximum", None),
                kw.pop("at", NOW),
                **kw,
            ),  # type: ignore[arg-type]
            NOW,
        )
        uow.commit()
