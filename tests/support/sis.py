"""A district's SIS for the end-to-end tests: the sandbox SIS's seed (school sch-1, a term
around today, class cls-1 with its students, two categories) and what the SIS admin sets up
in gradesync: the connection, and a course (or one of its sections) mapped to a class."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from gradesync.adapters.db.database import Database
from gradesync.domain.model import DeliveryState
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services import sis
from gradesync.services.clock import Clock
from gradesync.services.outbound import OutboundGuard
from gradesync.services.ports import UnitOfWorkFactory
from gradesync.testing import wait_for
from tests.support.api import attempt
from tests.support.served import Served, serve

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


# the SIS connection `sis` in the API's paths
SIS_PATH = "/sis/connections/sis"


def results_in(sandbox: RunningSandbox) -> dict[str, float]:
    """The sandbox SIS's results: each student's score (one graded activity)."""
    return {
        r["student"]["sourcedId"]: r["score"] for r in sandbox.admin.inspect()["sis"]["results"]
    }


def sis_row(gs: Served, person: str) -> tuple[DeliveryState, str | None] | None:
    """The state and reason of `person`'s q1 row at `sis` (course c1), None before any."""
    with gs.runtime.uow() as uow:
        row = uow.ledger.get_many(gs.tenant, "sis", "c1", ["q1"]).get(("q1", person))
    return (row.state, row.reason_code) if row else None


def one_learner_matched(
    db: Database, tmp_path: Path, sandbox: RunningSandbox, roster: dict[str, Any]
) -> Iterator[Served]:
    """gradesync served, its workers looking for work unprompted only once an hour (within a
    test only a wake-up gets a grade sent), with `roster` (course c1 with quiz q1; p1 with
    SIS id stu-1, p2 with none); p1 graded 8 and p2 7 in q1. The sandbox SIS (seeded with
    class cls-1 of school sch-1, as tests/oneroster's) is connected as `sis`, c1 mapped to
    cls-1, its students mapped (p1 by SIS id; p2 has none) and q1 ticked: p1's 8 is in the
    SIS and p2's 7 skipped `no_person_link`."""
    with contextmanager(serve)(db, tmp_path, worker_poll_seconds=3600.0) as gs:
        gs.ok("POST", "/ingest", json=roster)
        for event, person, score in (("e1", "p1", 8), ("e2", "p2", 7)):
            gs.ok(
                "POST", "/attempts", json=attempt(event, score, activity_id="q1", person_id=person)
            )
        body = {"name": "SIS", "base_url": sandbox.base_url, "client_id": CLIENT_ID}
        body |= {"client_secret": CLIENT_SECRET, "profile": {"category_match": "name"}}
        gs.ok("PUT", SIS_PATH, json=body)
        klass = {"class_id": "cls-1", "school_id": SCHOOL, "term_start": "2025-01-06"}
        gs.ok("PUT", f"{SIS_PATH}/classes/c1", json=klass)
        mapped = gs.ok("POST", f"{SIS_PATH}/courses/c1/students")
        assert mapped == {"mapped": ["p1"], "unmapped": ["p2"]}
        gs.ok("PUT", f"{SIS_PATH}/selection", json={"activity_ids": ["q1"]})  # wakes them
        wait_for(lambda: results_in(sandbox) == {"stu-1": 8.0}, "p1's grade in the SIS")
        wait_for(
            lambda: sis_row(gs, "p2") == (DeliveryState.SKIPPED, "no_person_link"),
            "p2's grade computed with no SIS student",
        )
        yield gs
