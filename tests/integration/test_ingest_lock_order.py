"""Two batches writing the same rows take their locks in one order, whether they carry
attempts or not: the stored people they change first, then the due-date overrides (and the
ledger rows they resend), then the people and their enrollments and marks. A batch with
attempts once wrote its people first and one without wrote them last (on PostgreSQL after
its enrollments and marks, in one statement), and the two, each holding what the other
wanted next, deadlocked."""

from __future__ import annotations

from datetime import UTC, datetime

from gradesync.adapters.db.database import Database
from gradesync.domain.model import (
    Activity,
    Attempt,
    Course,
    DueDateOverride,
    Enrollment,
    EnrollmentStatus,
    Person,
)
from gradesync.services.clock import SystemClock
from gradesync.services.ingest import IngestBatch, ingest
from gradesync.testing import add_tenant
from tests.support.races import AfterFirstRead

T = "t1"
CLOCK = SystemClock()


GRADED = Attempt(T, "e1", "a1", "p1", 5, 10, datetime(2029, 1, 1, tzinfo=UTC))


def _setup(db: Database) -> None:
    add_tenant(db.uow, T)
    setup = IngestBatch(
        courses=[Course(T, "c1", "Biology")],
        activities=[Activity(T, "a1", "c1", "Quiz", 10)],
        people=[Person(T, "p1", "Ada")],
        enrollments=[Enrollment(T, "c1", "p1")],
    )
    ingest(db.uow, CLOCK, None, T, setup)


def _race(db: Database, with_attempts: IngestBatch, without: IngestBatch) -> None:
    """The batch without attempts starts once the other has written its people, and
    commits last; each raised DeadlockDetected on PostgreSQL when the orders differed."""
    racing = AfterFirstRead(
        db, "people", "upsert_many", lambda: ingest(db.uow, CLOCK, None, T, without)
    )
    ingest(racing, CLOCK, None, T, with_attempts)
    racing.finish()


def test_a_batch_with_attempts_and_one_without_change_a_learner_and_an_extension(
    db: Database,
) -> None:
    _setup(db)
    sooner, later = datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 2, 1, tzinfo=UTC)
    without = IngestBatch(
        people=[Person(T, "p1", "Ada Lovelace")],
        overrides=[DueDateOverride(T, "a1", "p1", later)],
    )
    with_attempts = IngestBatch(
        people=[Person(T, "p1", "Ada King")],
        overrides=[DueDateOverride(T, "a1", "p1", sooner)],
        attempts=[GRADED],
    )
    _race(db, with_attempts, without)
    with db.uow() as uow:
        assert uow.people.get(T, "p1") == Person(T, "p1", "Ada Lovelace")
        assert uow.overrides.for_pairs(T, [("a1", "p1")]) == {("a1", "p1"): later}
        assert uow.attempts.for_key(T, "a1", "p1") != []


def test_a_batch_with_attempts_and_one_without_change_a_learner_and_their_enrollment(
    db: Database,
) -> None:
    # without attempts the people, the enrollments and the marks are one statement on
    # PostgreSQL, which writes the people last: the one with attempts wrote them first
    _setup(db)
    without = IngestBatch(
        people=[Person(T, "p1", "Ada Lovelace")],
        enrollments=[Enrollment(T, "c1", "p1", status=EnrollmentStatus.DROPPED)],
    )
    with_attempts = IngestBatch(people=[Person(T, "p1", "Ada King")], attempts=[GRADED])
    _race(db, with_attempts, without)
    with db.uow() as uow:
        assert uow.people.get(T, "p1") == Person(T, "p1", "Ada Lovelace")
        enrollment = uow.enrollments.get(T, "c1", "p1")
        assert enrollment is not None and enrollment.status is EnrollmentStatus.DROPPED
        assert uow.attempts.for_key(T, "a1", "p1") != []
