"""Two updates of one course, activity or person at once, each sending some of its fields:
every field either sent is stored. Each reads the stored object to compare; on PostgreSQL
(read committed) the other's update can commit between that read and the write, and a write
of the fields left out as read put the old values back over it. The other update here runs
right after the first's read of the object and commits before the first writes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.errors import InvalidInput
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


def _finish(racing: AfterFirstRead) -> None:
    """The other update ended; on PostgreSQL it committed between the first's read and its
    write (it waited for no lock of the first's), the interleaving these tests are about."""
    racing.finish()
    assert racing.second is not None and not racing.second.blocked


def test_a_person_s_name_and_email_sent_at_once_are_both_kept(db: Database) -> None:
    add_tenant(db.uow, T)
    _send(db.uow, Person(T, "p1", "Ada", "ada@old.example"), "name", "email")
    other = Person(T, "p1", email="ada@new.example")
    racing = _racing(db, "people", lambda: _send(db.uow, other, "email"), nth=2)
    _send(racing, Person(T, "p1", "Ada Lovelace"), "name")
    _finish(racing)
    with db.uow() as uow:
        assert uow.people.get(T, "p1") == Person(T, "p1", "Ada Lovelace", "ada@new.example")


def test_a_person_created_twice_at_once_keeps_what_each_sent(db: Database) -> None:
    add_tenant(db.uow, T)
    other = Person(T, "p1", email="ada@example.edu")
    racing = _racing(db, "people", lambda: _send(db.uow, other, "email"), nth=2)
    _send(racing, Person(T, "p1", "Ada", sis_id="S-1"), "name", "sis_id")
    _finish(racing)
    with db.uow() as uow:
        assert uow.people.get(T, "p1") == Person(T, "p1", "Ada", "ada@example.edu", "S-1")


def test_a_course_s_title_and_time_zone_sent_at_once_are_both_kept(db: Database) -> None:
    add_tenant(db.uow, T)
    _send(db.uow, Course(T, "c1", "Biology", time_zone="UTC"), "title", "time_zone")
    other = Course(T, "c1", "Biology", time_zone="Europe/Paris")
    racing = _racing(db, "courses", lambda: _send(db.uow, other, "time_zone"), nth=2)
    _send(racing, Course(T, "c1", "Biology 101", sync_enabled=False), "title", "sync_enabled")
    _finish(racing)
    with db.uow() as uow:
        stored = uow.courses.get(T, "c1")
    assert stored is not None
    assert (stored.title, stored.time_zone, stored.sync_enabled) == (
        "Biology 101",
        "Europe/Paris",
        False,
    )


def test_a_course_s_two_dates_sent_at_once_that_cross_are_refused(db: Database) -> None:
    """One request sets the course's end, another its start, after it: each checked its own
    date against the other as read (none), and the course was stored ending before it
    starts. The second to write finds the other's date once written, and is refused."""
    add_tenant(db.uow, T)
    _send(db.uow, Course(T, "c1", "Biology"), "title")
    start = CLOCK.now().replace(microsecond=0)
    other = Course(T, "c1", "Biology", starts_at=start)
    racing = _racing(db, "courses", lambda: _send(db.uow, other, "starts_at"), nth=2)
    ending = Course(T, "c1", "Biology", ends_at=start - timedelta(days=30))
    if db.is_sqlite:  # the other runs once this one committed, and is refused itself
        _send(racing, ending, "ends_at")
        with pytest.raises(InvalidInput) as refused:
            racing.finish()
    else:
        with pytest.raises(InvalidInput) as refused:
            _send(racing, ending, "ends_at")
        _finish(racing)
    assert [(x.field, x.rule) for x in refused.value.problems] == [("courses[0].ends_at", "order")]
    with db.uow() as uow:
        stored = uow.courses.get(T, "c1")
    assert stored is not None
    assert stored.starts_at is None or stored.ends_at is None


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
    _finish(racing)
    with db.uow() as uow:
        stored = uow.activities.get(T, "a1")
    assert stored is not None
    assert (stored.points_possible, stored.due_at, stored.published) == (20, due, False)


def test_of_two_batches_creating_an_activity_in_two_courses_the_second_is_refused(
    db: Database,
) -> None:
    # On PostgreSQL the other creates it in c2 after this one read it absent: this one, the
    # second to write, is refused as a move is (and rolled back: the other's stays whole).
    # On SQLite the other runs after this one, and is refused by validation.
    add_tenant(db.uow, T)
    _send(db.uow, Course(T, "c1", "Biology"), "title")
    _send(db.uow, Course(T, "c2", "Chemistry"), "title")
    fields = ("course_id", "title", "points_possible")
    lab = Activity(T, "a1", "c2", "Lab", 5)
    quiz = Activity(T, "a1", "c1", "Quiz", 10)
    racing = _racing(db, "activities", lambda: _send(db.uow, lab, *fields), nth=1)
    if db.is_sqlite:
        _send(racing, quiz, *fields)
        with pytest.raises(InvalidInput, match="cannot move"):
            racing.finish()
    else:
        with pytest.raises(InvalidInput, match="cannot move"):
            _send(racing, quiz, *fields)
        _finish(racing)
    with db.uow() as uow:
        assert uow.activities.get(T, "a1") == (quiz if db.is_sqlite else lab)


def test_an_activity_made_meanwhile_in_another_course_is_not_written_over_before_the_refusal(
    db: Database,
) -> None:
    # The refused batch's own write finds the activity in the other course and leaves it: it
    # was written over (all but its course) and read again, its fields restored only by the
    # rollback. Read here in the refused batch's transaction, right after that write.
    add_tenant(db.uow, T)
    _send(db.uow, Course(T, "c1", "Biology"), "title")
    _send(db.uow, Course(T, "c2", "Chemistry"), "title")
    fields = ("course_id", "title", "points_possible")
    lab = Activity(T, "a1", "c2", "Lab", 5)
    quiz = Activity(T, "a1", "c1", "Quiz", 10)
    racing = _racing(db, "activities", lambda: _send(db.uow, lab, *fields), nth=1)
    seen: list[Activity | None] = []

    @contextmanager
    def peeking() -> Iterator[Any]:
        with racing() as uow:
            write = uow.activities.upsert_many

            def then(*args: Any, **kwargs: Any) -> Any:
                found = write(*args, **kwargs)
                seen.append(uow.activities.get(T, "a1"))
                return found

            uow.activities.upsert_many = then
            yield uow

    if db.is_sqlite:  # the other batch runs after this one, and is refused by validation
        _send(peeking, quiz, *fields)
        with pytest.raises(InvalidInput, match="cannot move"):
            racing.finish()
        assert seen == [quiz]
    else:
        with pytest.raises(InvalidInput, match="cannot move") as refused:
            _send(peeking, quiz, *fields)
        _finish(racing)
        assert [(p.field, p.rule) for p in refused.value.problems] == [
            ("activities[0].course_id", "immutable")
        ]
        assert seen == [lab]


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
    _finish(racing)
    with db.uow() as uow:
        assert uow.people.get(T, "p1") == Person(T, "p1", "Ada Lovelace", "ada@example.edu")
        assert uow.enrollments.get(T, "c1", "p1") is not None


def test_two_batches_sending_different_fields_of_the_same_people_do_not_deadlock(
    db: Database,
) -> None:
    # Each batch's people sending the same fields are written together, a statement each:
    # were the stored rows not locked first in id order, the second batch (its groups [p1,
    # p3] and [p2]) would hold p2 while the first (its groups [p1] and [p2, p3]) held p1, and
    # each then wait for the other. The second batch starts once the first wrote a group.
    add_tenant(db.uow, T)
    ids = ("p1", "p2", "p3")
    ingest(db.uow, CLOCK, None, T, IngestBatch(people=[Person(T, p, "Old", "old@x") for p in ids]))

    def batch(email_of: str, name: str) -> IngestBatch:
        return IngestBatch(
            people=[Person(T, p, f"{name} {p}", f"{p}@{name}") for p in ids],
            sent={("people", p): frozenset({"email" if p == email_of else "name"}) for p in ids},
        )

    second = batch("p2", "second")
    racing = AfterFirstRead(
        db, "people", "upsert_many", lambda: ingest(db.uow, CLOCK, None, T, second)
    )
    ingest(racing, CLOCK, None, T, batch("p1", "first"))
    racing.finish()
    with db.uow() as uow:
        stored = uow.people.get_many(T, ids)
    assert stored == {
        "p1": Person(T, "p1", "second p1", "p1@first"),
        "p2": Person(T, "p2", "first p2", "p2@second"),
        "p3": Person(T, "p3", "second p3", "old@x"),
    }


def test_two_batches_sending_different_fields_of_some_same_courses_do_not_deadlock(
    db: Database,
) -> None:
    # The first's groups [c1, c3] and [c2], the second's [c2] and [c3]: unlocked first, the
    # second would hold c2 and wait for c3 while the first held c3 and wanted c2.
    add_tenant(db.uow, T)
    ids = ("c1", "c2", "c3")
    ingest(db.uow, CLOCK, None, T, IngestBatch(courses=[Course(T, c, "Old") for c in ids]))

    def batch(courses: tuple[str, ...], zoned: tuple[str, ...]) -> IngestBatch:
        return IngestBatch(
            courses=[Course(T, c, f"New {c}", time_zone="Europe/Paris") for c in courses],
            sent={
                ("courses", c): frozenset({"time_zone" if c in zoned else "title"}) for c in courses
            },
        )

    second = batch(("c2", "c3"), zoned=("c2",))
    racing = AfterFirstRead(
        db, "courses", "upsert_many", lambda: ingest(db.uow, CLOCK, None, T, second)
    )
    ingest(racing, CLOCK, None, T, batch(ids, zoned=("c1", "c3")))
    racing.finish()
    with db.uow() as uow:
        stored = uow.courses.get_many(T, ids)
    assert {c: (x.title, x.time_zone) for c, x in stored.items()} == {
        "c1": ("Old", "Europe/Paris"),
        "c2": ("New c2", "Europe/Paris"),
        "c3": ("New c3", "Europe/Paris"),
    }
