"""Ingest writes a batch in a few statements, on SQLite and PostgreSQL alike, with the same
outcome as one attempt at a time: new ones stored once, repeats reported as duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Activity, Attempt, Course, Enrollment, Person, Tenant
from gradesync.services import ingest as svc
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


def test_a_batch_of_a_thousand_attempts_takes_a_few_statements(db: Database) -> None:
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
