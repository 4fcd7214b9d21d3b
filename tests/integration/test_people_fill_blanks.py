"""People written filling only blanks (`fill_blanks`, an LTI 1.1 launch's name, email and
SIS id): each field written only where the stored person's is NULL or '' as the write finds
it, whatever the caller read before; a new person is stored as sent. Every statement that
writes people does it: one row or many (on PostgreSQL an `unnest`), alone or with the
enrollments and their marks (on PostgreSQL one statement)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Course, Enrollment, Person
from gradesync.testing import add_tenant

T = "t1"
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
FIELDS = frozenset({"name", "email", "sis_id"})


@pytest.mark.parametrize("write", ["one", "many", "with_enrollments", "no_enrollments"])
def test_only_the_blanks_of_stored_people_are_filled(db: Database, write: str) -> None:
    add_tenant(db.uow, T)
    stored = [
        Person(T, "p1", "Ada", None, "S-1"),
        Person(T, "p2", "", "bo@school.example.edu", None),
    ]
    with db.uow() as uow:
        uow.courses.upsert(Course(T, "c1", "Biology"))
        uow.people.upsert_many(stored)
        uow.commit()
    sent = [
        Person(T, "p1", "Ada L.", "ada@lms.example.edu", "S-LMS-1"),
        Person(T, "p2", "Bo", "bo@lms.example.edu", "S-LMS-2"),
        Person(T, "p3", "Cy", "cy@lms.example.edu", None),  # new: as sent
    ]
    if write == "one":
        sent = sent[:1]
    with db.uow() as uow:
        if write in ("one", "many"):
            uow.people.upsert_many(sent, fields=FIELDS, fill_blanks=True)
        else:
            enrollments = [Enrollment(T, "c1", "p1")] if write == "with_enrollments" else []
            uow.enrollments.upsert_many_marking(
                enrollments, NOW, people=sent, people_fields=FIELDS, people_fill_blanks=True
            )
        uow.commit()
    with db.uow() as uow:
        people = uow.people.get_many(T, ["p1", "p2", "p3"])
    filled = {
        "p1": Person(T, "p1", "Ada", "ada@lms.example.edu", "S-1"),
        "p2": Person(T, "p2", "Bo", "bo@school.example.edu", "S-LMS-2"),
        "p3": Person(T, "p3", "Cy", "cy@lms.example.edu", None),
    }
    if write == "one":  # p1 alone was written
        filled = {"p1": filled["p1"], "p2": stored[1]}
    assert people == filled
