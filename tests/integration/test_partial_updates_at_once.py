"""Two updates of one course, activity or person at once, each sending some of its fields:
every field either sent is stored. Each reads the stored object to compare; on PostgreSQL
(read committed) the other's update can commit between that read and the write, and a write
of the fields left out as read put the old values back over it. The other update here runs
right after the first's read of the object and commits before the first writes."""

from __future__ import annotations

from typing import Any

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Activity, Course, Enrollment, Person
from gradesync.services.clock import SystemClock
from gradesync.services.ingest import IngestBatch, ingest
from gradesync.testing import add_tenant
from tests.support.races import AfterFirstRead

T = "t1"
CLOCK = SystemClock()
KIND = {Course: "courses", Activity: "activities", Person: "people"}


def _send(uow_factory: Any, item: Course | Activity | Person, *fields: str) -> None:
    kind = KIND[type(item)]
    batch = IngestBatch(**{kind: [item]}, sent={(kind, item.id): frozenset({"id", *fields})})
    ingest(uow_factory, CLOCK, None, T, batch)


def _racing(db: Database, repo: str, other: Any, *, nth: int) -> AfterFirstRead:
    """The first update's unit of work: `other` runs once it has read the stored object
    (the `nth` call of `repo.get_many`: validation reads the objects the batch only names
    first, when it has any kind of reference to check)."""
    return AfterFirstRead(db, repo, "get_many", other, nth=nth)


def test_a_person_s_name_and_email_sent_at_once_are_both_kept(db: Database) -> None:
    add_tenant(db.uow, T)
    _send(db.uow, Person(T, "p1", "Ada", "ada@old.example"), "name", "email")
    other = Person(T, "p1", email="ada@new.example")
    racing = _racing(db, "people", lambda: _send(db.uow, other, "email"), nth=2)
    _send(racing, Person(T, "p1", "Ada Lovelace"), "name")
    racing.finish()
    with db.uow() as uow:
        assert uow.people.get(T, "p1") == Person(T, "p1", "Ada Lovelace", "ada@new.example")


def test_a_person_created_twice_at_once_keeps_what_each_sent(db: Database) -> None:
    add_tenant(db.uow, T)
    other = Person(T, "p1", email="ada@example.edu")
    racing = _racing(db, "people", lambda: _send(db.uow, other, "email"), nth=2)
    _send(racing, Person(T, "p1", "Ada", sis_id="S-1"), "name", "sis_id")
    racing.finish()
    with db.uow() as uow:
        assert uow.people.get(T, "p1") == Person(T, "p1", "Ada", "ada@example.edu", "S-1")


def test_a_course_s_title_and_time_zone_sent_at_once_are_both_kept(db: Database) -> None:
    add_tenant(db.uow, T)
    _send(db.uow, Course(T, "c1", "Biology", time_zone="UTC"), "title", "time_zone")
    other = Course(T, "c1", "Biology", time_zone="Europe/Paris")
    racing = _racing(db, "courses", lambda: _send(db.uow, other, "time_zone"), nth=2)
    _send(racing, Course(T, "c1", "Biology 101", sync_enabled=False), "title", "sync_enabled")
    racing.finish()
    with db.uow() as uow:
        stored = uow.courses.get(T, "c1")
    assert stored is not None
    assert (stored.title, stored.time_zone, stored.sync_enabled) == (
        "Biology 101",
        "Europe/Paris",
        False,
    )


def test_an_activity_s_due_date_and_points_sent_at_once_are_both_kept(db: Database) -> None:
    add_tenant(db.uow, T)
    _send(db.uow, Course(T, "c1", "Biology"), "title")
    fields = ("course_id", "title", "points_possible")
    _send(db.uow, Activity(T, "a1", "c1", "Quiz", 10), *fields)
    due = CLOCK.now().replace(microsecond=0)
    other = Activity(T, "a1", "c1", "Quiz", 10, due_at=due)
    racing = _racing(db, "activities", lambda: _send(db.uow, other, "due_at"), nth=1)
    _send(
        racing, Activity(T, "a1", "c1", "Quiz", 20, published=False), "points_possible", "published"
    )
    racing.finish()
    with db.uow() as uow:
        stored = uow.activities.get(T, "a1")
    assert stored is not None
    assert (stored.points_possible, stored.due_at, stored.published) == (20, due, False)


def test_a_learner_enrolled_with_their_name_keeps_an_email_set_at_once(db: Database) -> None:
    # without attempts the people go in one write with the enrollments (on PostgreSQL one
    # statement): it too writes only the fields sent
    add_tenant(db.uow, T)
    _send(db.uow, Course(T, "c1", "Biology"), "title")
    _send(db.uow, Person(T, "p1", "Ada"), "name")
    other = Person(T, "p1", email="ada@example.edu")
    racing = _racing(db, "people", lambda: _send(db.uow, other, "email"), nth=2)
    batch = IngestBatch(
        people=[Person(T, "p1", "Ada Lovelace")],
        enrollments=[Enrollment(T, "c1", "p1")],
        sent={("people", "p1"): frozenset({"id", "name"})},
    )
    ingest(racing, CLOCK, None, T, batch)
    racing.finish()
    with db.uow() as uow:
        assert uow.people.get(T, "p1") == Person(T, "p1", "Ada Lovelace", "ada@example.edu")
        assert uow.enrollments.get(T, "c1", "p1") is not None
