"""Reads by (course or activity, person) pairs return those pairs' rows and no others, on
both databases: their statements select by a list of each column's values, which matches
every combination of the lists (PostgreSQL serves those lists from the index at least as
fast as an array of pairs joined to the table, which it hashes against the whole table)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Attempt, DueDateOverride
from gradesync.testing import add_course, add_tenant
from gradesync.testing.seeding import EPOCH

T = "t1"
PEOPLE = [f"p{i}" for i in range(300)]


def _seed(db: Database) -> None:
    add_tenant(db.uow, T)
    add_course(db.uow, T, "c1", ("a1", "Quiz", 10.0), learners=PEOPLE)
    add_course(db.uow, T, "c2", ("a2", "Essay", 10.0), learners=PEOPLE)
    with db.uow() as uow:
        for activity in ("a1", "a2"):
            for i, person in enumerate(PEOPLE):
                at = EPOCH + timedelta(minutes=i)
                uow.attempts.add(
                    Attempt(T, f"{activity}-{person}", activity, person, 5.0, 10.0, at), at
                )
                uow.overrides.upsert(DueDateOverride(T, activity, person, at))
        uow.commit()


def _read_all(db: Database, pairs: list[tuple[str, str]]) -> tuple[Any, Any, Any]:
    """Enrollments by (course, person); overrides and attempts by (activity, person)."""
    course_of = {"a1": "c1", "a2": "c2"}
    with db.reads() as uow:
        enrollments = uow.enrollments.for_pairs(T, [(course_of[a], p) for a, p in pairs])
        overrides = uow.overrides.for_pairs(T, pairs)
        attempts = uow.attempts.for_pairs(T, pairs)
    return enrollments, overrides, attempts


def test_reads_by_pairs_return_the_pairs_asked_for_and_no_others(db: Database) -> None:
    _seed(db)
    # a1 with the first half of the people, a2 with the second: every activity and every
    # person is asked for, but not every combination
    pairs = [("a1", p) for p in PEOPLE[:150]] + [("a2", p) for p in PEOPLE[150:]]
    enrollments, overrides, attempts = _read_all(db, pairs)

    assert set(enrollments) == {("c1", p) for p in PEOPLE[:150]} | {("c2", p) for p in PEOPLE[150:]}
    assert all(e.course_id == c and e.person_id == p for (c, p), e in enrollments.items())
    assert set(overrides) == set(pairs)
    assert overrides[("a2", "p299")] == EPOCH + timedelta(minutes=299)
    assert {k: [a.source_event_id for a in v] for k, v in attempts.items()} == {
        (a, p): [f"{a}-{p}"] for a, p in pairs
    }
