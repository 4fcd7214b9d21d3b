"""Two updates of one course or person at once, each sending some of its fields: each field
one of them sent is stored. Each keeps the fields it left out at their stored values, read
before it writes; on PostgreSQL (read committed) the other's update committed between that
read and the write was written back over with the old values, unless the read locks."""

from __future__ import annotations

from typing import Any

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Course, Person
from gradesync.services.clock import SystemClock
from gradesync.services.ingest import IngestBatch, ingest
from gradesync.testing import add_tenant
from tests.support.races import AfterFirstRead

# The other update runs right after the first locks the rows it keeps fields of (the first
# of these calls), and waits for it. (Without the lock it committed after the first's read.)

T = "t1"
CLOCK = SystemClock()


def _send(uow_factory: Any, *items: Course | Person, fields: set[str]) -> None:
    kind = "courses" if isinstance(items[0], Course) else "people"
    sent = {(kind, x.id): frozenset(fields | {"id"}) for x in items}
    courses = [x for x in items if isinstance(x, Course)]
    people = [x for x in items if isinstance(x, Person)]
    batch = IngestBatch(courses=courses, people=people, sent=sent)
    ingest(uow_factory, CLOCK, None, T, batch)


def test_a_person_s_name_and_email_sent_at_once_are_both_kept(db: Database) -> None:
    add_tenant(db.uow, T)
    _send(db.uow, Person(T, "p1", "Ada", "ada@old.example"), fields={"name", "email"})
    racing = AfterFirstRead(
        db,
        "people",
        ("lock", "get_many"),
        lambda: _send(db.uow, Person(T, "p1", email="ada@new.example"), fields={"email"}),
    )
    _send(racing, Person(T, "p1", "Ada Lovelace"), fields={"name"})
    racing.finish()
    with db.uow() as uow:
        stored = uow.people.get(T, "p1")
    assert stored == Person(T, "p1", "Ada Lovelace", "ada@new.example")


def test_a_course_s_title_and_time_zone_sent_at_once_are_both_kept(db: Database) -> None:
    add_tenant(db.uow, T)
    _send(db.uow, Course(T, "c1", "Biology", time_zone="UTC"), fields={"title", "time_zone"})
    racing = AfterFirstRead(
        db,
        "courses",
        ("lock", "get_many"),
        lambda: _send(
            db.uow, Course(T, "c1", "Biology", time_zone="Europe/Paris"), fields={"time_zone"}
        ),
    )
    _send(racing, Course(T, "c1", "Biology 101"), fields={"title"})
    racing.finish()
    with db.uow() as uow:
        stored = uow.courses.get(T, "c1")
    assert stored is not None
    assert (stored.title, stored.time_zone) == ("Biology 101", "Europe/Paris")
