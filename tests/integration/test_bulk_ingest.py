"""Ingest writes a batch in a few statements, on SQLite and PostgreSQL alike, with the same
outcome as one attempt at a time: new ones stored once, repeats reported as duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from gradesync.adapters.db import schema
from gradesync.adapters.db.database import Database
from gradesync.adapters.db.mapping import utc
from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import (
    Activity,
    Attempt,
    Course,
    DueDateOverride,
    Enrollment,
    EnrollmentStatus,
    Person,
    Tenant,
)
from gradesync.services import ingest as svc
from gradesync.services.ingest_group import GroupedIngest
from gradesync.testing import ManualClock
from tests.support.statements import statements

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def seed(db: Database, learners: int = 120, activities: int = 10) -> None:
    with db.uow() as uow:
        uow.tenants.upsert(Tenant("t1", "Tenant"), NOW)
        uow.courses.upsert(Course("t1", "c1", "Biology"))
        for j in range(activities):
            uow.activities.upsert(Activity("t1", f"a{j}", "c1", f"Quiz {j}", 10.0))
        for i in range(learners):
            uow.people.upsert(Person("t1", f"p{i}", f"Learner {i}"))
            uow.enrollments.upsert(Enrollment("t1", "c1", f"p{i}"))
        uow.commit()


def test_add_many_stores_new_attempts_once_in_order(db: Database) -> None:
    seed(db)
    old = Attempt("t1", "evt-old", "a0", "p0", 3.0, 10.0, NOW)
    with db.uow() as uow:
        stored_old, _ = uow.attempts.add(old, NOW)
        uow.commit()
    batch = [
        Attempt("t1", "evt-1", "a1", "p1", 7.0, 10.0, NOW),
        old,  # stored before: not new, the stored one comes back
        Attempt("t1", "evt-2", "a2", "p2", 8.0, 10.0, NOW, comment="late work"),
        Attempt("t1", "evt-1", "a1", "p1", 7.0, 10.0, NOW),  # a repeat inside the batch
    ]
    with db.uow() as uow:
        out = uow.attempts.add_many(batch, NOW + timedelta(minutes=1))
        uow.commit()
    assert [new for _, new in out] == [True, False, True, False]
    assert out[1][0].id == stored_old.id and out[1][0].score_given == 3.0
    assert out[0][0].id == out[3][0].id
    assert out[2][0].comment == "late work" and out[2][0].recorded_at == NOW + timedelta(minutes=1)
    assert len({a.id for a, _ in out}) == 3
    with db.uow() as uow:
        stored = uow.attempts.get_by_events("t1", ["evt-1", "evt-2", "evt-old", "evt-none"])
        assert sorted(stored) == ["evt-1", "evt-2", "evt-old"]
        assert stored["evt-2"] == out[2][0]
        assert len(uow.attempts.for_key("t1", "a1", "p1")) == 1


def _a_thousand_attempts(db: Database) -> tuple[list[Attempt], svc.IngestResult, list[str]]:
    """A batch of 1,000 new attempts (100 learners, 10 activities) ingested: the attempts,
    the result (checked: all recorded and marked) and the statements it ran."""
    seed(db, learners=100)
    attempts = [
        Attempt("t1", f"e-{i}-{j}", f"a{j}", f"p{i}", float(j), 10.0, NOW)
        for i in range(100)
        for j in range(10)
    ]
    with statements(db) as seen:
        result = svc.ingest(
            db.uow, ManualClock(NOW), None, "t1", svc.IngestBatch(attempts=attempts)
        )
    assert result.recorded == 1000 and result.dirty_keys == 1000
    return attempts, result, seen


def test_a_batch_of_a_thousand_attempts_takes_a_few_statements(db: Database) -> None:
    attempts, result, seen = _a_thousand_attempts(db)
    # the tenant, people, activities, stored event ids, the attempts, the dirty keys (and
    # SQLite's BEGIN): not one or two statements per attempt
    assert len(seen) <= 8, seen
    with db.uow() as uow:
        assert uow.dirty.count() == 1000
        assert len(uow.attempts.get_by_events("t1", [a.source_event_id for a in attempts])) == 1000

    # posted again (a client's retry): all duplicates, nothing new marked
    again = svc.ingest(db.uow, ManualClock(NOW), None, "t1", svc.IngestBatch(attempts=attempts))
    assert again.recorded == 0 and again.duplicates == 1000 and again.dirty_keys == 0
    assert [a.attempt_id for a in again.attempts] == [a.attempt_id for a in result.attempts]


def test_a_batch_of_courses_and_activities_reads_the_tenant_once(db: Database) -> None:
    """The tenant is read to refuse an unknown one; a course's or an activity's change needs
    its policy layer, taken from that same read, whether the ingest writes alone or shares a
    transaction with others."""
    seed(db, learners=3, activities=2)
    batch = svc.IngestBatch(
        courses=[Course("t1", "c1", "Biology, renamed")],
        activities=[Activity("t1", "a0", "c1", "Quiz 0, renamed", 10.0)],
    )
    group = GroupedIngest(db.uow, ManualClock(NOW))
    for ingest in (
        lambda: svc.ingest(db.uow, ManualClock(NOW), None, "t1", batch),
        lambda: group.ingest(None, "t1", batch),
    ):
        with statements(db) as seen:
            ingest()
        # one read of the tenant (11 statements in all the first time, 7 the second): it was
        # read twice (12 and 8)
        tenants = [s for s in seen if "FROM tenants" in s]
        assert len(tenants) == 1, "\n".join(s.split("\n")[0][:90] for s in seen)
    with db.uow() as uow:
        assert uow.courses.get("t1", "c1") == batch.courses[0]


def test_a_batch_checks_its_activities_in_one_read(db: Database) -> None:
    """The activities a batch holds (may they move?) and those its attempts and extensions
    name (do they exist?) are read together: one statement, not one for each purpose."""
    seed(db, learners=3, activities=3)
    batch = svc.IngestBatch(
        activities=[
            Activity("t1", "a0", "c1", "Quiz 0, renamed", 10.0),
            Activity("t1", "lab", "c1", "Lab", 20.0),
        ],
        overrides=[DueDateOverride("t1", "a1", "p0", NOW + timedelta(days=7))],
        attempts=[
            Attempt("t1", "e1", "a2", "p1", 7.0, 10.0, NOW),
            Attempt("t1", "e2", "lab", "p2", 7.0, 10.0, NOW),
            Attempt("t1", "e3", "nope", "p2", 7.0, 10.0, NOW),
        ],
    )
    with statements(db) as seen, pytest.raises(InvalidInput) as refused:
        svc.check(db.uow, "t1", batch)
    assert [(p.field, p.rule) for p in refused.value.problems] == [
        ("attempts[2].activity_id", "unknown_activity")
    ]
    # 6 here (the tenant, the courses, the activities, the people, the event ids and
    # SQLite's BEGIN); 7 when the activities were read in two statements
    acts = [s for s in seen if "FROM activities" in s]
    assert len(acts) == 1, "\n".join(s.split("\n")[0][:90] for s in seen)


def test_a_batch_reads_its_activities_once(db: Database) -> None:
    """The stored activities a batch holds, read to check it, are what it compares its own
    with when recording it (nothing writes them in between): one read, not a second."""
    seed(db, learners=3, activities=3)
    batch = svc.IngestBatch(
        activities=[
            Activity("t1", "a0", "c1", "Quiz 0, renamed", 10.0),
            Activity("t1", "a1", "c1", "Quiz 1", 10.0),  # as stored
            Activity("t1", "lab", "c1", "Lab", 20.0),
        ],
        attempts=[
            Attempt("t1", "e1", "a2", "p1", 7.0, 10.0, NOW),
            Attempt("t1", "e2", "lab", "p2", 7.0, 10.0, NOW),
        ],
    )
    group = GroupedIngest(db.uow, ManualClock(NOW))
    with statements(db) as seen:
        first = svc.ingest(db.uow, ManualClock(NOW), None, "t1", batch)
    with statements(db) as seen_again:  # the same activities again, as stored now
        again = group.ingest(None, "t1", svc.IngestBatch(activities=batch.activities))
    assert (first.changed, first.unchanged) == ({"activities": 2, "attempts": 2}, {"activities": 1})
    assert first.dirty_keys == 7  # a0's and the lab's learners, and p1's a2
    assert (again.changed, again.unchanged, again.dirty_keys) == ({}, {"activities": 3}, 0)
    for each in (seen, seen_again):
        # one read of the activities; validation's and recording's made two. A batch making
        # one no longer reads it again once written (on PostgreSQL, made meanwhile in another
        # course?): its write tells
        acts = [s for s in each if "FROM activities" in s]
        assert len(acts) == 1, "\n".join(s.split("\n")[0][:90] for s in each)
    with db.uow() as uow:
        assert uow.activities.get_many("t1", ["a0", "lab"]) == {
            "a0": batch.activities[0],
            "lab": batch.activities[2],
        }


def test_dirty_marks_in_bulk_refresh_the_time(db: Database) -> None:
    seed(db, learners=3, activities=2)
    rows = [("t1", "c1", f"a{j}", f"p{i}") for i in range(3) for j in range(2)]
    with db.uow() as uow:
        uow.dirty.mark_many(rows, NOW)
        uow.commit()
    with db.uow() as uow:
        uow.dirty.mark_many(rows[:2], NOW + timedelta(seconds=5))
        uow.commit()
    with db.uow() as uow:
        marks = {(r[2], r[3]): r[4] for r in uow.dirty.peek(10)}
    assert len(marks) == 6
    assert marks[("a0", "p0")] == NOW + timedelta(seconds=5)
    assert marks[("a1", "p0")] == NOW + timedelta(seconds=5)
    assert marks[("a0", "p2")] == NOW


def test_a_roster_batch_takes_a_few_statements_whatever_its_rows(db: Database) -> None:
    """A roster sync posts people, enrollments and extensions by the thousand: each kind is
    read in one statement and its changed rows written in one, not one or three per row."""
    seed(db, learners=0, activities=3)
    clock = ManualClock(NOW)
    due = NOW + timedelta(days=7)
    people = [Person("t1", f"p{i}", f"Learner {i}", email=f"p{i}@example.edu") for i in range(300)]
    batch = svc.IngestBatch(
        courses=[Course("t1", "c2", "Chemistry")],
        activities=[
            Activity("t1", "a0", "c1", "Quiz 0, renamed", 10.0),
            Activity("t1", "lab", "c2", "Lab", 20.0),
        ],
        people=people,
        enrollments=[Enrollment("t1", "c1", p.id, section_id="s1") for p in people],
        overrides=[DueDateOverride("t1", "a1", f"p{i}", due) for i in range(50)],
    )
    with statements(db) as seen:
        first = svc.ingest(db.uow, clock, None, "t1", batch)
    # per kind a read and a write; per changed activity or course its learners, activities
    # and attempts: 21 here, where one statement or three per row made more than 1,200
    assert len(seen) <= 22, "\n".join(s.split("\n")[0][:90] for s in seen)
    assert first.changed == {
        "courses": 1,
        "activities": 2,
        "people": 300,
        "enrollments": 300,
        "overrides": 50,
    }
    # each new learner of c1 for its three activities (the renamed quiz and the extensions
    # name keys among them); the new lab's course has no learner yet
    assert first.dirty_keys == 900
    with db.uow() as uow:
        assert uow.people.get("t1", "p7") == people[7]
        assert uow.enrollments.get("t1", "c1", "p7") == Enrollment(
            "t1", "c1", "p7", section_id="s1"
        )
        assert uow.overrides.get("t1", "a1", "p49") == due
        assert uow.activities.get("t1", "a0") == batch.activities[0]
        assert uow.courses.get("t1", "c2") == batch.courses[0]

    # the same batch again (a nightly roster that did not change): read, nothing written
    with statements(db) as seen:
        again = svc.ingest(db.uow, clock, None, "t1", batch)
    assert len(seen) <= 12, "\n".join(seen)
    assert not again.changed and again.dirty_keys == 0
    assert again.unchanged["people"] == 300 and again.unchanged["enrollments"] == 300

    # one rename (no grade changes), one extension moved, one learner dropped
    moved = NOW + timedelta(days=9)
    people[3] = Person("t1", "p3", "Learner Three", email="p3@example.edu")
    changed = svc.IngestBatch(
        people=people,
        enrollments=[
            Enrollment("t1", "c1", p.id, section_id="s1")
            if p.id != "p5"
            else Enrollment("t1", "c1", "p5", section_id="s1", status=EnrollmentStatus.DROPPED)
            for p in people
        ],
        overrides=[
            DueDateOverride("t1", "a1", f"p{i}", moved if i == 8 else due) for i in range(50)
        ],
    )
    third = svc.ingest(db.uow, clock, None, "t1", changed)
    assert third.changed == {"people": 1, "enrollments": 1, "overrides": 1}
    # the dropped learner's three keys and the moved extension's one
    assert third.dirty_keys == 4
    with db.uow() as uow:
        assert uow.people.get("t1", "p3") == people[3]
        assert uow.enrollments.get("t1", "c1", "p5").status is EnrollmentStatus.DROPPED
        assert uow.overrides.get("t1", "a1", "p8") == moved


def test_a_batch_marks_its_new_attempts_and_its_rosters_keys_once(db: Database) -> None:
    """The keys a batch marks are those of its new attempts (not a retried one, a repeat
    once) and those its other facts change, each once, at the batch's time and for every
    destination (a key marked before keeping when it was first marked), whether the
    attempts' marks are written with their insert or apart."""
    seed(db, learners=3, activities=2)
    with db.uow() as uow:
        old, _ = uow.attempts.add(Attempt("t1", "e-old", "a0", "p0", 1.0, 10.0, NOW), NOW)
        # marked an hour ago, for one destination only: the new attempt's mark takes its place
        uow.dirty.mark_many(
            [("t1", "c1", "a1", "p1")], NOW - timedelta(hours=1), destination_id="sis"
        )
        uow.commit()
    later = NOW + timedelta(minutes=5)
    batch = svc.IngestBatch(
        people=[Person("t1", "p9", "New learner")],
        enrollments=[Enrollment("t1", "c1", "p9")],
        attempts=[
            Attempt("t1", "e-old", "a0", "p0", 1.0, 10.0, NOW),  # retried: stored before
            Attempt("t1", "e1", "a1", "p1", 5.0, 10.0, NOW),
            Attempt("t1", "e2", "a0", "p2", 6.0, 10.0, NOW),
            Attempt("t1", "e2", "a0", "p2", 6.0, 10.0, NOW),  # repeated in the batch
            Attempt("t1", "e3", "a0", "p9", 7.0, 10.0, NOW),  # the enrollment marks it too
        ],
    )
    result = svc.ingest(db.uow, ManualClock(later), None, "t1", batch)
    assert (result.recorded, result.duplicates) == (3, 2)
    ids = [a.attempt_id for a in result.attempts]
    assert ids[0] == old.id and ids[2] == ids[3] and len(set(ids)) == 4
    assert result.dirty_keys == 4
    with db.uow() as uow:
        rows = uow.dirty.conn.execute(
            text("SELECT course_id, activity_id, person_id, destination_id FROM dirty_keys")
        ).all()
        k = schema.dirty_keys.c
        waited = uow.dirty.conn.execute(select(k.person_id, k.activity_id, k.waiting_since)).all()
        stored = uow.attempts.get_by_events("t1", ["e1", "e2", "e3"])
        times = {r[4] for r in uow.dirty.peek(10)}
    assert sorted((r[0], r[1], r[2], r[3]) for r in rows) == [
        ("c1", "a0", "p2", None),
        ("c1", "a0", "p9", None),
        ("c1", "a1", "p1", None),
        ("c1", "a1", "p9", None),
    ]
    assert times == {later}
    # marked again, the key has waited since its first mark; the others since the batch
    since = {(p, a): utc(w) for p, a, w in waited}
    assert since.pop(("p1", "a1")) == NOW - timedelta(hours=1)
    assert set(since.values()) == {later}
    assert {a.id for a in stored.values()} == set(ids[1:])
    assert stored["e3"].recorded_at == later


def test_postgresql_writes_a_batchs_attempts_and_marks_in_one_statement(
    postgres_db: Database,
) -> None:
    """On PostgreSQL each statement is a wait for the server: a batch of attempts is the reads
    its checks need (the tenant, the activities, the people, the event ids) and one write,
    the attempts with the marks of the new ones (they were two writes, one after the other)."""
    db = postgres_db
    _, _, seen = _a_thousand_attempts(db)
    writes = [s.split("\n")[0][:60] for s in seen if not s.lstrip().startswith("SELECT")]
    assert len(writes) == 1 and len(seen) == 5, "\n".join(s.split("\n")[0][:90] for s in seen)
    with db.uow() as uow:
        assert uow.dirty.count() == 1000


def test_a_roster_batch_marks_its_enrollments_keys_as_before(db: Database) -> None:
    """A roster batch marks each key of a new or changed enrollment (its course's activities,
    an activity of the same batch among them) with the batch's other keys, each once, at the
    batch's time and for every destination, a key marked before keeping when it was first
    marked; an unchanged enrollment marks nothing. On PostgreSQL the people, the enrollments
    and the marks are one statement, the keys listed by the server."""
    seed(db, learners=2, activities=2)
    with db.uow() as uow:
        # marked an hour ago, for one destination only: the new enrollment's mark takes over
        uow.dirty.mark_many(
            [("t1", "c1", "a1", "p7")], NOW - timedelta(hours=1), destination_id="sis"
        )
        uow.commit()
    later = NOW + timedelta(minutes=5)
    due = NOW + timedelta(days=7)
    batch = svc.IngestBatch(
        activities=[Activity("t1", "a2", "c1", "Quiz 2", 10.0)],  # new: marks p0 and p1
        people=[Person("t1", "p7", "New learner")],
        enrollments=[Enrollment("t1", "c1", "p0"), Enrollment("t1", "c1", "p7")],
        overrides=[DueDateOverride("t1", "a0", "p7", due)],  # a key p7's enrollment marks too
    )
    result = svc.ingest(db.uow, ManualClock(later), None, "t1", batch)
    assert result.changed == {"activities": 1, "people": 1, "enrollments": 1, "overrides": 1}
    assert result.unchanged == {"enrollments": 1}
    assert result.dirty_keys == 5
    with db.uow() as uow:
        k = schema.dirty_keys.c
        rows = uow.dirty.conn.execute(
            select(k.course_id, k.activity_id, k.person_id, k.destination_id, k.waiting_since)
        ).all()
        times = {r[4] for r in uow.dirty.peek(10)}
    assert sorted((r[0], r[1], r[2], r[3]) for r in rows) == [
        ("c1", "a0", "p7", None),
        ("c1", "a1", "p7", None),
        ("c1", "a2", "p0", None),
        ("c1", "a2", "p1", None),
        ("c1", "a2", "p7", None),
    ]
    assert times == {later}
    since = {(r[1], r[2]): utc(r[4]) for r in rows}
    assert since.pop(("a1", "p7")) == NOW - timedelta(hours=1)
    assert set(since.values()) == {later}

    # the same batch again: nothing changed, nothing marked
    again = svc.ingest(db.uow, ManualClock(later), None, "t1", batch)
    assert not again.changed and again.dirty_keys == 0


def test_postgresql_writes_a_roster_batch_in_one_statement(postgres_db: Database) -> None:
    """A roster batch of 500 learners on PostgreSQL: the reads its checks need (the tenant,
    the course, the people, the enrollments) and one write, the people, the enrollments and
    the marks of their keys (they were the activities' read and three writes, the 5,000 keys
    built and sent by the client)."""
    db = postgres_db
    seed(db, learners=0)
    ids = [f"p{i}" for i in range(500)]
    batch = svc.IngestBatch(
        people=[Person("t1", p, p) for p in ids],
        enrollments=[Enrollment("t1", "c1", p) for p in ids],
    )
    with statements(db) as seen:
        result = svc.ingest(db.uow, ManualClock(NOW), None, "t1", batch)
    assert result.dirty_keys == 5000
    writes = [s.split("\n")[0][:60] for s in seen if not s.lstrip().startswith("SELECT")]
    assert len(writes) == 1 and len(seen) == 5, "\n".join(s.split("\n")[0][:90] for s in seen)
    with db.uow() as uow:
        assert uow.dirty.count() == 5000
        assert len(uow.enrollments.for_course("t1", "c1")) == 500
        assert uow.people.get("t1", "p499") == Person("t1", "p499", "p499")
