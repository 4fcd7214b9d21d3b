"""Linking learners to their SIS students wakes the running workers: the grades they already
have in ticked activities are computed and sent at once, not on the workers' next look.

The workers here look for work on their own only once an hour, so a grade reaches the SIS
within the wait only if the mapping signalled them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from gradesync.adapters.db.database import Database
from gradesync.sandbox.testing import RunningSandbox
from gradesync.testing import wait_for
from tests.support.served import Served
from tests.support.sis import SIS_PATH, one_learner_matched, results_in, sis_row

from .facts import ROSTER


@pytest.fixture
def gs(db: Database, tmp_path: Path, sis: RunningSandbox) -> Iterator[Served]:
    """p1's 8 in q1 sent to the SIS (stu-1); p2's 7 skipped: Bo has no SIS id."""
    yield from one_learner_matched(db, tmp_path, sis, ROSTER)


def test_mapping_one_student_sends_their_grade_at_once(gs: Served, sis: RunningSandbox) -> None:
    gs.ok("PUT", f"{SIS_PATH}/students/p2", json={"student_id": "stu-2"})
    wait_for(
        lambda: results_in(sis).get("stu-2") == 7.0,
        "p2's grade in the SIS",
        explain=lambda: f"p2's row: {sis_row(gs, 'p2')}",
    )


def test_mapping_a_course_s_students_sends_their_grades_at_once(
    gs: Served, sis: RunningSandbox
) -> None:
    with gs.runtime.uow() as uow:  # p2's SIS id arrives (nothing else is woken by it)
        person = uow.people.get(gs.tenant, "p2")
        assert person is not None
        uow.people.upsert(replace(person, sis_id="stu-2"))
        uow.commit()
    mapped = gs.ok("POST", f"{SIS_PATH}/courses/c1/students")
    assert mapped == {"mapped": ["p1", "p2"], "unmapped": []}
    wait_for(
        lambda: results_in(sis).get("stu-2") == 7.0,
        "p2's grade in the SIS",
        explain=lambda: f"p2's row: {sis_row(gs, 'p2')}",
    )
