"""A district's SIS for the end-to-end tests: the sandbox SIS's seed (school sch-1, a term
around today, class cls-1 with its students, two categories) and what the SIS admin sets up
in gradesync: the connection, and a course (or one of its sections) mapped to a class."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from gradesync.services import sis
from gradesync.services.clock import Clock
from gradesync.services.outbound import OutboundGuard
from gradesync.services.ports import UnitOfWorkFactory

CLIENT_ID, CLIENT_SECRET = "gradesync", "s3cret-value"
TODAY = date.today()
TERM_START, TERM_END = TODAY - timedelta(days=60), TODAY + timedelta(days=120)
SCHOOL, CLASS = "sch-1", "cls-1"


def sis_seed(students: Iterable[str]) -> dict[str, Any]:
    """The sandbox SIS's seed: `students` in class cls-1, which has the categories Homework
    and Quizzes; titles up to 30 characters, due dates inside the term."""
    students = list(students)
    return {
        "profile": {"max_title_length": 30, "due_date_in_term": True},
        "clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}],
        "schools": [SCHOOL],
        "terms": [
            {"sourcedId": "term-1", "start": TERM_START.isoformat(), "end": TERM_END.isoformat()}
        ],
        "students": [{"sourcedId": s} for s in students],
        "classes": [{"sourcedId": CLASS, "school": SCHOOL, "term": "term-1", "students": students}],
        "categories": [
            {"sourcedId": "cat-hw", "title": "Homework", "classes": [CLASS]},
            {"sourcedId": "cat-quiz", "title": "Quizzes", "classes": [CLASS]},
        ],
    }


def connect(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    *,
    tenant_id: str,
    destination_id: str,
    name: str,
    base_url: str,
    profile: dict[str, Any],
    guard: OutboundGuard | None = None,
) -> None:
    """A REST connection to the seeded SIS, with its client's credentials."""
    sis.add_connection(
        uow_factory,
        clock,
        tenant_id=tenant_id,
        destination_id=destination_id,
        name=name,
        base_url=base_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        profile=profile,
        guard=guard,
    )


def map_to_class(
    uow_factory: UnitOfWorkFactory,
    *,
    tenant_id: str,
    destination_id: str,
    course_id: str,
    class_id: str = CLASS,
    section_id: str | None = None,
) -> None:
    """The course mapped to `class_id` of school sch-1 for the term; with `section_id`, that
    section (one no enrollment need name yet) to a class of its own."""
    sis.map_class(
        uow_factory,
        tenant_id=tenant_id,
        destination_id=destination_id,
        course_id=course_id,
        class_id=class_id,
        school_id=SCHOOL,
        term_start=TERM_START,
        term_end=TERM_END,
        section_id=section_id,
        new_section=section_id is not None,
    )


def file_based_sis(
    uow: UnitOfWorkFactory, clock: Clock, *, tenant_id: str = "t1", course_id: str = "c1"
) -> None:
    """A file-based SIS connection `sis` (District SIS) with `course_id` mapped to class
    cls-1 of school sch-1: nothing to ask over the network."""
    sis.add_connection(
        uow, clock, tenant_id=tenant_id, destination_id="sis", name="District SIS",
        base_url=None, file_based=True,
    )  # fmt: skip
    sis.map_class(
        uow, tenant_id=tenant_id, destination_id="sis", course_id=course_id, class_id=CLASS,
        school_id=SCHOOL,
    )  # fmt: skip
