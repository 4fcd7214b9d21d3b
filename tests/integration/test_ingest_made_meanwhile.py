"""A batch that reads a course, activity or person as absent writes it as new. On PostgreSQL
(read committed) another batch can make it between that read and the write, with activities
and learners whose keys a worker may compute at once; the write is then an update, and a
grade-relevant field the first batch sets over it (a course's time zone, sync switch or
policy, an activity's policy, a person's SIS id) changes grades as a change of a stored
object does. The write tells an update from an insert, and the first batch marks the keys (and
sends again the grades typed into the LMS a policy no longer keeps) as for that change.

The other batch runs right after the first's read and commits before the first writes; a
worker then takes every key marked so far. On SQLite the first's transaction holds the
database: the other runs after it, and its own marks are taken."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.model import (
    Activity,
    Attempt,
    Course,
    DeliveryState,
    DestinationKind,
    Enrollment,
    LedgerKey,
    LedgerRow,
    Person,
    PolicySettings,
)
from gradesync.domain.overrides import OVERRIDDEN
from gradesync.services.clock import SystemClock
from gradesync.services.ingest import IngestBatch, IngestResult, ingest
from gradesync.testing import add_destination, add_tenant
from tests.support.races import AfterFirstRead

T = "t1"
CLOCK = SystemClock()
ACTIVITY_FIELDS = frozenset({"id", "course_id", "title", "points_possible"})
GRADESYNC_WINS = PolicySettings(keep_lms_edits=False)


def _worker_takes_the_keys(db: Database) -> None:
    """A worker claims every key marked so far (computed, as far as this test goes)."""
    with db.uow() as uow:
        uow.dirty.claim(1000)
        uow.commit()


def _kept_lms_edit(db: Database) -> None:
    """p1's grade of a1 typed into the LMS `lms` (linked to c1) and kept there: delivered,
    reason `overridden`, as a read-back under "keep LMS edits" leaves it."""
    now = CLOCK.now()
    add_destination(db.uow, T, "lms", links={"c1": "course-1"})
    row = LedgerRow(
        LedgerKey(T, "lms", "a1", "p1"),
        DeliveryState.DELIVERED,
        desired_hash="h",
        desired={"score_given": 5.0},
        delivered_hash="h",
        delivered_at=now,
        reason_code=OVERRIDDEN,
        reason_text="kept",
        updated_at=now,
    )
    with db.uow() as uow:
        uow.ledger.save(row, "c1")
        uow.commit()


def _dirty(db: Database) -> set[tuple[str, str, str]]:
    with db.uow() as uow:
        return {(r[1], r[2], r[3]) for r in uow.dirty.peek(100)}


def _ledger_state(db: Database) -> DeliveryState:
    with db.uow() as uow:
        row = uow.ledger.get(LedgerKey(T, "lms", "a1", "p1"))
    assert row is not None
    return row.state


def _finish(racing: AfterFirstRead) -> None:
    """The other batch ended; on PostgreSQL it committed between the first's read and its
    write (it waited for no lock of the first's)."""
    racing.finish()
    assert racing.second is not None and not racing.second.blocked


def _course_made(db: Database) -> Callable[[], None]:
    """The other batch: course c1 (its title only) with quizzes a1 and a2 and learner p1,
    whose grade of a1 is typed into the LMS and kept; a worker then takes the keys."""

    def other() -> None:
        batch = IngestBatch(
            courses=[Course(T, "c1", "Biology")],
            activities=[Activity(T, a, "c1", f"Quiz {a}", 10) for a in ("a1", "a2")],
            people=[Person(T, "p1", "Ada")],
            enrollments=[Enrollment(T, "c1", "p1")],
            sent={("courses", "c1"): frozenset({"id", "title"})},
        )
        ingest(db.uow, CLOCK, None, T, batch)
        _kept_lms_edit(db)
        _worker_takes_the_keys(db)

    return other


@pytest.mark.parametrize("field", ["time_zone", "sync_enabled", "policy", "title"])
def test_a_course_made_meanwhile_is_recomputed_for_the_grade_fields_this_batch_sets(
    db: Database, field: str
) -> None:
    add_tenant(db.uow, T)
    # nth=2: validation reads the courses the batch only names first (none here)
    racing = AfterFirstRead(db, "courses", "get_many", _course_made(db), nth=2)
    course = Course(T, "c1", "Biology", "Europe/Paris", sync_enabled=False, policy=GRADESYNC_WINS)
    new = replace(course, id="c9")  # made here: the write tells it from c1 (one statement)
    batch = IngestBatch(
        courses=[course, new],
        sent={("courses", c): frozenset({"id", field}) for c in ("c1", "c9")},
    )
    result = ingest(racing, CLOCK, None, T, batch)
    _finish(racing)
    with db.uow() as uow:
        stored = uow.courses.get(T, "c1")
    assert stored is not None and getattr(stored, field) == getattr(course, field)
    grades = field != "title"  # the title alone changes no grade
    if db.is_sqlite or not grades:
        # SQLite: this batch made the course, empty; the other's keys were taken after
        assert (result.dirty_keys, result.resent, _dirty(db)) == (0, 0, set())
    else:
        # every key of the course, which the worker computed before this change
        assert result.dirty_keys == 2
        assert _dirty(db) == {("c1", "a1", "p1"), ("c1", "a2", "p1")}
        # a grade typed into the LMS, kept by the policy before, is sent again under
        # "gradesync wins" (the other made the course with the default: keep LMS edits)
        assert result.resent == (1 if field == "policy" else 0)
    policy_set = grades and field == "policy" and not db.is_sqlite
    assert _ledger_state(db) is (DeliveryState.PENDING if policy_set else DeliveryState.DELIVERED)


def test_an_activity_made_meanwhile_sends_kept_lms_edits_again_for_the_policy_set(
    db: Database,
) -> None:
    # A new activity marks all its keys whether it was made meanwhile or not; its policy
    # before is unknown, so the grades typed into the LMS it kept are looked for.
    add_tenant(db.uow, T)
    setup = IngestBatch(
        courses=[Course(T, "c1", "Biology")],
        people=[Person(T, "p1", "Ada")],
        enrollments=[Enrollment(T, "c1", "p1")],
    )
    ingest(db.uow, CLOCK, None, T, setup)

    def other() -> None:
        made = Activity(T, "a1", "c1", "Quiz", 10)
        sent = {("activities", "a1"): ACTIVITY_FIELDS}
        ingest(db.uow, CLOCK, None, T, IngestBatch(activities=[made], sent=sent))
        _kept_lms_edit(db)
        _worker_takes_the_keys(db)

    racing = AfterFirstRead(db, "activities", "get_many", other)
    quiz = Activity(T, "a1", "c1", "Quiz", 10, policy=GRADESYNC_WINS)
    batch = IngestBatch(
        activities=[quiz], sent={("activities", "a1"): ACTIVITY_FIELDS | {"policy"}}
    )
    result = ingest(racing, CLOCK, None, T, batch)
    _finish(racing)
    with db.uow() as uow:
        assert uow.activities.get(T, "a1") == quiz
    if db.is_sqlite:  # this batch made it; the other's keys were taken after
        assert (result.dirty_keys, result.resent, _dirty(db)) == (1, 0, set())
        assert _ledger_state(db) is DeliveryState.DELIVERED
    else:
        assert (result.dirty_keys, result.resent, _dirty(db)) == (1, 1, {("c1", "a1", "p1")})
        assert _ledger_state(db) is DeliveryState.PENDING


SOON = datetime(2029, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("path", ["attempts", "enrollments", "people"])
def test_a_learner_made_meanwhile_is_recomputed_for_the_sis_id_this_batch_gives(
    db: Database, path: str
) -> None:
    # The other batch enrolls p1 in c1, which passes back to a SIS; this one gives p1 a SIS
    # id, with an attempt (the people written before it), with an enrollment elsewhere (on
    # PostgreSQL the people, enrollments and marks are one statement), or alone.
    add_tenant(db.uow, T)
    setup = IngestBatch(
        courses=[Course(T, "c1", "Biology"), Course(T, "c2", "Chemistry")],
        activities=[Activity(T, a, "c1", f"Quiz {a}", 10) for a in ("a1", "a2")],
    )
    ingest(db.uow, CLOCK, None, T, setup)
    add_destination(db.uow, T, "sis", DestinationKind.ONEROSTER_REST, links={"c1": "class-1"})

    def other() -> None:
        batch = IngestBatch(
            people=[Person(T, "p1", "Ada")],
            enrollments=[Enrollment(T, "c1", "p1")],
            sent={("people", "p1"): frozenset({"id", "name"})},
        )
        ingest(db.uow, CLOCK, None, T, batch)
        _worker_takes_the_keys(db)

    batch = IngestBatch(
        people=[Person(T, "p1", sis_id="S-1")],
        enrollments=[Enrollment(T, "c2", "p1")] if path == "enrollments" else [],
        attempts=[Attempt(T, "e1", "a1", "p1", 5, 10, SOON)] if path == "attempts" else [],
        sent={("people", "p1"): frozenset({"id", "sis_id"})},
    )
    # nth=2: validation reads the people the batch only names first
    racing = AfterFirstRead(db, "people", "get_many", other, nth=2)
    result: IngestResult = ingest(racing, CLOCK, None, T, batch)
    _finish(racing)
    with db.uow() as uow:
        assert uow.people.get(T, "p1") == Person(T, "p1", "Ada", sis_id="S-1")
    if db.is_sqlite:  # this batch made p1, enrolled in c1 after: all taken by the worker
        assert (result.dirty_keys, _dirty(db)) == (1 if path == "attempts" else 0, set())
    else:
        # p1's keys in c1, computed before p1 had a SIS id to be matched to a student by
        assert (result.dirty_keys, _dirty(db)) == (2, {("c1", "a1", "p1"), ("c1", "a2", "p1")})
