"""A small school: one course mapped to a SIS class, three learners, a few activities."""

from __future__ import annotations

from datetime import UTC, datetime

from gradesync.adapters.db.database import Database
from gradesync.domain.model import (
    Activity,
    Attempt,
    Course,
    Enrollment,
    Person,
    Tenant,
)
from gradesync.services.clock import Clock

NOW = datetime(2025, 3, 20, 12, 0, tzinfo=UTC)
DUE = datetime(2025, 3, 14, 23, 59, tzinfo=UTC)


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
