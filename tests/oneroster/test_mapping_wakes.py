"""Linking learners to their SIS students wakes the running workers: the grades they already
have in ticked activities are computed and sent at once, not on the workers' next look.

The workers here look for work on their own only once an hour, so a grade reaches the SIS
within the wait only if the mapping signalled them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.model import DeliveryState
from gradesync.sandbox.testing import RunningSandbox
from gradesync.testing import wait_for
from tests.support.api import attempt
from tests.support.served import Served, serve

from .conftest import CLIENT_ID, CLIENT_SECRET
from .facts import ADA, ALGEBRA, BO, QUIZ_1

ROSTER: dict[str, Any] = {
    "courses": [ALGEBRA],
    "activities": [QUIZ_1],
    "people": [ADA, BO],  # Bo has no SIS id: `map-students` cannot link them
    "enrollments": [{"course_id": "c1", "person_id": p} for p in ("p1", "p2")],
}
SIS = "/sis/connections/sis"


@contextmanager
def _served(db: Database, tmp_path: Path) -> Iterator[Served]:
    # no look for work unprompted within the test: only a wake-up gets a grade sent
    yield from serve(db, tmp_path, worker_poll_seconds=3600.0)


@pytest.fixture
def gs(db: Database, tmp_path: Path, sis: RunningSandbox) -> Iterator[Served]:
    """Course c1 mapped to class cls-1, p1 linked, q1 ticked; p2 graded 7 in q1 but linked
    to no SIS student (their grade computed as `no_person_link`), p1's 8 sent."""
    with _served(db, tmp_path) as gs:
        gs.ok("POST", "/ingest", json=ROSTER)
        for event, person, score in (("e1", "p1", 8), ("e2", "p2", 7)):
            gs.ok(
                "POST", "/attempts", json=attempt(event, score, activity_id="q1", person_id=person)
            )
        body = {"name": "SIS", "base_url": sis.base_url, "client_id": CLIENT_ID}
        body |= {"client_secret": CLIENT_SECRET, "profile": {"category_match": "name"}}
        gs.ok("PUT", SIS, json=body)
        klass = {"class_id": "cls-1", "school_id": "sch-1", "term_start": "2025-01-06"}
        gs.ok("PUT", f"{SIS}/classes/c1", json=klass)
        assert gs.ok("POST", f"{SIS}/courses/c1/students") == {"mapped": ["p1"], "unmapped": ["p2"]}
        gs.ok("PUT", f"{SIS}/selection", json={"activity_ids": ["q1"]})  # wakes the workers
        wait_for(lambda: _sent(sis) == {"stu-1": 8.0}, "p1's grade in the SIS")
        wait_for(
            lambda: _row(gs, "p2") == (DeliveryState.SKIPPED, "no_person_link"),
            "p2's grade computed with no SIS student",
        )
        yield gs


def _sent(sis: RunningSandbox) -> dict[str, float]:
    return {r["student"]["sourcedId"]: r["score"] for r in sis.admin.inspect()["sis"]["results"]}


def _row(gs: Served, person: str) -> tuple[DeliveryState, str | None] | None:
    with gs.runtime.uow() as uow:
        row = uow.ledger.get_many(gs.tenant, "sis", "c1", ["q1"]).get(("q1", person))
    return (row.state, row.reason_code) if row else None


def test_mapping_one_student_sends_their_grade_at_once(gs: Served, sis: RunningSandbox) -> None:
    gs.ok("PUT", f"{SIS}/students/p2", json={"student_id": "stu-2"})
    wait_for(
        lambda: _sent(sis).get("stu-2") == 7.0,
        "p2's grade in the SIS",
        explain=lambda: f"p2's row: {_row(gs, 'p2')}",
    )


def test_mapping_a_course_s_students_sends_their_grades_at_once(
    gs: Served, sis: RunningSandbox
) -> None:
    with gs.runtime.uow() as uow:  # p2's SIS id arrives (nothing else is woken by it)
        person = uow.people.get(gs.tenant, "p2")
        assert person is not None
        uow.people.upsert(replace(person, sis_id="stu-2"))
        uow.commit()
    mapped = gs.ok("POST", f"{SIS}/courses/c1/students")
    assert mapped == {"mapped": ["p1", "p2"], "unmapped": []}
    wait_for(
        lambda: _sent(sis).get("stu-2") == 7.0,
        "p2's grade in the SIS",
        explain=lambda: f"p2's row: {_row(gs, 'p2')}",
    )
