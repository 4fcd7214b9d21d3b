"""SIS set-up, mapping, selection and validation on the real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.metrics import LedgerCollector
from gradesync.domain.errors import Conflict, InvalidInput, NotFound
from gradesync.domain.model import (
    Activity,
    Course,
    CourseLink,
    DeliveryState,
    DestinationKind,
    DueDateOverride,
    Enrollment,
    LedgerKey,
    LedgerRow,
    NameRule,
    Person,
    PolicySettings,
)
from gradesync.services import console_queries, destination_admin, sis
from gradesync.services.compute import compute_dirty
from gradesync.services.delivery.background import BackgroundWrites
from gradesync.services.delivery.governor import Governor
from gradesync.services.engine_config import EngineSettings
from gradesync.services.sis.selection import release_held
from gradesync.services.worker import Clients
from gradesync.testing import DoubleFactory, ManualClock
from tests.support.races import AfterFirstRead

from .facts import NOW, attempt, map_to_class, seed_school


@pytest.fixture
def school(db: Database) -> tuple[Database, ManualClock]:
    clock = ManualClock(NOW)
    seed_school(db, clock)
    sis.add_connection(
        db.uow,
        clock,
        tenant_id="t1",
        destination_id="sis",
        name="SIS",
        base_url="http://sis.example/",
        client_id="gs",
        client_secret="secret-1",
        profile={"name_max_length": 30, "due_date_inside_term": True},
    )
    map_to_class(db, "sis")
    return db, clock


@pytest.fixture
def two_sis(school: tuple[Database, ManualClock]) -> tuple[Database, ManualClock]:
    """The school's course also posting to a second SIS, `sis2`, its class mapped."""
    db, clock = school
    sis.add_connection(
        db.uow, clock, tenant_id="t1", destination_id="sis2", name="Other SIS",
        base_url="http://sis2.example/", client_id="gs", client_secret="secret-2",
    )  # fmt: skip
    sis.map_class(
        db.uow, tenant_id="t1", destination_id="sis2", course_id="c1", class_id="cls-9",
        school_id="sch-9", term_start="2025-01-06", term_end="2025-06-20",
    )  # fmt: skip
    return db, clock


def _refused(
    key: LedgerKey, reason: str, at: datetime, tries: int = 0, pending_since: datetime | None = None
) -> LedgerRow:
    """A result of 7 refused (by the SIS, or for a column's reason) with `reason`."""
    return LedgerRow(
        key, DeliveryState.REJECTED, "h", {"score_given": 7.0}, tries=tries, reason_code=reason,
        updated_at=at, pending_since=pending_since,
    )  # fmt: skip


def _save(db: Database, *rows: LedgerRow) -> None:
    """Ledger rows of course c1, as delivery or computing would have left them."""
    with db.uow() as uow:
        for row in rows:
            uow.ledger.save(row, "c1")
        uow.commit()


def _new_sis_id(db: Database, person_id: str, sis_id: str | None = None) -> None:
    """The person's SIS id changed (by default corrected: the old one with a suffix)."""
    with db.uow() as uow:
        person = uow.people.get("t1", person_id)
        assert person is not None and person.sis_id
        uow.people.upsert(replace(person, sis_id=sis_id or person.sis_id + "-corrected"))
        uow.commit()


def test_connection_is_validated_and_its_secret_kept_encrypted(
    school: tuple[Database, ManualClock],
) -> None:
    db, clock = school
    with pytest.raises(InvalidInput) as info:
        sis.add_connection(
            db.uow,
            clock,
            tenant_id="t1",
            destination_id="sis2",
            name="x",
            base_url="ftp://nope",
            client_id=None,
            client_secret=None,
            profile={"category_match": "title", "name_max_length": 0},
        )
    rules = {(p.field, p.rule) for p in info.value.problems}
    assert {
        ("base_url", "url"),
        ("client_id", "required"),
        ("client_secret", "required"),
        ("config.category_match", "one_of"),
        ("config.name_max_length", "positive_integer"),
    } <= rules
    with db.uow() as uow:
        assert uow.destinations.get("t1", "sis2") is None
        dest = uow.destinations.get("t1", "sis")
    assert dest is not None and dest.secret["client_secret"] == "secret-1"
    with db.engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT secret_ciphertext, config FROM destinations").fetchall()
    assert all("secret-1" not in str(row) for row in raw)
    # an update keeps what it does not name
    sis.add_connection(
        db.uow,
        clock,
        tenant_id="t1",
        destination_id="sis",
        name="SIS",
        base_url=None,
        profile={"category_match": "name"},
    )
    with db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
    assert dest is not None and dest.config["name_max_length"] == 30
    assert dest.config["category_match"] == "name" and dest.secret["client_secret"] == "secret-1"


def test_each_validation_error_is_named(school: tuple[Database, ManualClock]) -> None:
    db, _ = school
    with db.uow() as uow:
        uow.overrides.upsert(DueDateOverride("t1", "hw1", "p2", datetime(2025, 3, 20, tzinfo=UTC)))
        act = uow.activities.get("t1", "long")
        assert act is not None
        uow.activities.upsert(replace(act, policy=PolicySettings(name_rule=NameRule.REFUSE)))
        quiz = uow.activities.get("t1", "quiz1")
        assert quiz is not None
        uow.activities.upsert(
            replace(quiz, id="late", title="Final", due_at=datetime(2025, 8, 1, tzinfo=UTC))
        )
        uow.commit()
    checks = {
        c.activity_id: c
        for c in sis.validate(db.uow, tenant_id="t1", destination_id="sis", course_id="c1")
    }
    assert checks["quiz1"].ok
    assert [p.rule for p in checks["nodue"].problems] == ["due_date_required"]
    assert [p.rule for p in checks["long"].problems] == ["name_too_long"]
    assert "at most 30" in checks["long"].problems[0].message
    assert [p.rule for p in checks["late"].problems] == ["due_date_outside_term"]
    assert "2025-01-06..2025-06-20" in checks["late"].problems[0].message
    assert [p.rule for p in checks["hw1"].problems] == ["differentiated_due_dates"]
    # activities named with a course are that course's: another course's are not shown
    with db.uow() as uow:
        uow.courses.upsert(Course("t1", "c9", "Other"))
        uow.activities.upsert(Activity("t1", "other1", "c9", "Someone else's quiz", 10))
        uow.commit()
    with pytest.raises(NotFound):
        sis.validate(
            db.uow, tenant_id="t1", destination_id="sis", course_id="c1", activity_ids=["other1"]
        )


def test_selecting_refuses_invalid_activities_and_changes_nothing(
    school: tuple[Database, ManualClock],
) -> None:
    db, _ = school
    with pytest.raises(InvalidInput) as info:
        sis.select_activities(
            db.uow, tenant_id="t1", destination_id="sis", activity_ids=["quiz1", "nodue"]
        )
    assert [(p.field, p.rule) for p in info.value.problems] == [
        ("activities[nodue].due_at", "due_date_required")
    ]
    with db.uow() as uow:
        assert uow.links.item("t1", "sis", "quiz1") is None
    checks = sis.select_activities(
        db.uow, tenant_id="t1", destination_id="sis", activity_ids=["quiz1"]
    )
    assert checks[0].selected
    with db.uow() as uow:
        item = uow.links.item("t1", "sis", "quiz1")
    assert (
        item is not None
        and item.data == {"sync_to_sis": True}
        and item.remote_id.startswith("gs-li-")
    )
    sis.select_activities(
        db.uow, tenant_id="t1", destination_id="sis", activity_ids=["quiz1"], selected=False
    )
    with db.uow() as uow:
        again = uow.links.item("t1", "sis", "quiz1")
    assert (
        again is not None
        and again.data["sync_to_sis"] is False
        and again.remote_id == item.remote_id
    )
    with pytest.raises(InvalidInput) as info:
        sis.select_activities(db.uow, tenant_id="t1", destination_id="sis", activity_ids=["ghost"])
    assert [(p.field, p.rule) for p in info.value.problems] == [
        ("activity_ids[0]", "unknown_activity")
    ]


def test_selecting_reopens_rows_refused_for_a_column_reason(
    school: tuple[Database, ManualClock],
) -> None:
    db, clock = school
    key = LedgerKey("t1", "sis", "quiz1", "p1")
    other = LedgerKey("t1", "sis", "quiz1", "p2")
    _save(
        db,
        _refused(key, "not_selected_for_sis", clock.now()),
        _refused(other, "invalid_data", clock.now()),
    )
    sis.select_activities(db.uow, tenant_id="t1", destination_id="sis", activity_ids=["quiz1"])
    with db.uow() as uow:
        row, kept = uow.ledger.get(key), uow.ledger.get(other)
    assert row is not None and row.state is DeliveryState.PENDING and row.reason_code is None
    assert kept is not None and kept.state is DeliveryState.REJECTED  # the SIS's own refusal stays


class _AnyWaker:
    """Takes every wake-up: post grades starts a run."""

    def wake_keys(self) -> None: ...

    def wake_run(self, run_id: str, scope: object) -> None: ...

    def wake_delivery(self) -> None: ...


def _reported_wait(db: Database, at: datetime) -> tuple[object, object, float]:
    """Since when the console says the SIS's results wait (the oldest one, and the SIS's
    line), and the age /metrics gives the oldest (read now, against the real time)."""
    backlog = console_queries.backlog(db.uow, "t1", at)
    line = next(d for d in backlog.destinations if d.destination_id == "sis")
    assert backlog.oldest is not None
    ages = [
        s.value
        for family in LedgerCollector(db.engine).collect()
        if family.name == "gradesync_results_oldest_pending_age_seconds"
        for s in family.samples
        if s.labels["destination"] == "sis"
    ]
    return backlog.oldest.since, line.oldest_since, ages[0]


@pytest.mark.parametrize("how", ["select", "post", "map"])
def test_a_reopened_row_waits_from_its_reopening(
    school: tuple[Database, ManualClock], how: str
) -> None:
    """A result refused a day ago and reopened by a SIS change (ticking its activity, posting
    it, mapping its learner to another student) waits from that change: the console and
    /metrics say so, and it does not go ahead of the grades that came meanwhile."""
    db, _ = school
    clock = ManualClock(datetime.now(UTC))  # /metrics reads ages against the real time
    held = how == "post"
    sis.select_activities(
        db.uow, tenant_id="t1", destination_id="sis", activity_ids=["quiz1"], hold=held
    )
    sis.map_course_students(db.uow, tenant_id="t1", destination_id="sis", course_id="c1")
    cause = "invalid_data" if how == "map" else "not_selected_for_sis"
    day_ago = clock.now() - timedelta(days=1)
    key = LedgerKey("t1", "sis", "quiz1", "p1")
    _save(db, _refused(key, cause, day_ago, tries=3, pending_since=day_ago))
    _new_sis_id(db, "p1")

    if how == "select":
        sis.select_activities(
            db.uow, tenant_id="t1", destination_id="sis", activity_ids=["quiz1"], clock=clock
        )
    elif how == "post":
        asyncio.run(sis.post_grades(
            db.uow, _AnyWaker(), clock, None, tenant_id="t1", destination_id="sis",
            course_id="c1", actor="admin", activity_ids=["quiz1"],
        ))  # fmt: skip
    else:
        sis.map_course_students(
            db.uow, tenant_id="t1", destination_id="sis", course_id="c1", clock=clock
        )

    with db.uow() as uow:
        again = uow.ledger.get(key)
    assert again is not None and (again.state, again.tries) == (DeliveryState.PENDING, 0)
    oldest, line, age = _reported_wait(db, clock.now())
    assert (oldest, line) == (clock.now(), clock.now())
    assert 0 <= age < 3600  # not the day it was held back


def test_class_sections_and_students_are_mapped(school: tuple[Database, ManualClock]) -> None:
    db, _ = school
    with pytest.raises(InvalidInput) as info:
        sis.map_class(
            db.uow,
            tenant_id="t1",
            destination_id="sis",
            course_id="c1",
            class_id="cls-1",
            term_start="2025-07-01",
            term_end="2025-01-01",
        )
    assert info.value.problems[0].field == "term_end"
    sis.map_class(
        db.uow,
        tenant_id="t1",
        destination_id="sis",
        course_id="c1",
        class_id="cls-2",
        section_id="sec-b",
    )
    sis.map_student(
        db.uow, tenant_id="t1", destination_id="sis", person_id="p2", student_id="stu-22"
    )
    with db.uow() as uow:
        p1 = uow.people.get("t1", "p1")
        assert p1 is not None
        uow.people.upsert(replace(p1, sis_id=None))
        uow.commit()
    report = sis.map_course_students(db.uow, tenant_id="t1", destination_id="sis", course_id="c1")
    assert report.mapped == ["p2", "p3"] and report.unmapped == ["p1"]
    with db.uow() as uow:
        people = uow.links.people("t1", "sis", "c1")
        course = uow.links.course("t1", "sis", "c1")
    assert people["p2"].remote_id == "stu-22"
    assert people["p3"].data == {"by": "sis_id", "class": "cls-2"}
    assert course is not None and course.data["sections"] == {"sec-b": "cls-2"}
    assert course.data["school"] == "sch-1" and course.remote_id == "cls-1"
    # a correction afterwards holds in the course too (its own link won there before), and
    # the learner keeps the section's class
    sis.map_student(
        db.uow, tenant_id="t1", destination_id="sis", person_id="p3", student_id="stu-33"
    )
    with db.uow() as uow:
        corrected = uow.links.people("t1", "sis", "c1")["p3"]
    # linked by hand now: a new SIS id does not replace it
    assert (corrected.remote_id, corrected.data) == ("stu-33", {"by": "hand", "class": "cls-2"})


def test_a_section_mapped_before_its_learners_enrol_gets_them_once_they_do(
    school: tuple[Database, ManualClock],
) -> None:
    """A section with no learner enrolled yet could not be mapped: the first learners of an
    empty section went to the course's class unless someone came back to map it."""
    db, _ = school

    def map_sec_c(**flag: bool) -> None:
        sis.map_class(
            db.uow,
            tenant_id="t1",
            destination_id="sis",
            course_id="c1",
            class_id="cls-3",
            section_id="sec-c",
            **flag,
        )

    with pytest.raises(InvalidInput) as refused:
        map_sec_c()  # a section nobody names may be a typo: refused unless said new
    assert [(p.field, p.rule) for p in refused.value.problems] == [
        ("section_id", "unknown_section")
    ]
    assert "map it as a new section" in refused.value.problems[0].message
    map_sec_c(new_section=True)
    with db.uow() as uow:
        uow.people.upsert(Person("t1", "p4", "P4", sis_id="stu-4"))
        uow.enrollments.upsert(Enrollment("t1", "c1", "p4", section_id="sec-c"))
        uow.commit()
    sis.map_course_students(db.uow, tenant_id="t1", destination_id="sis", course_id="c1")
    with db.uow() as uow:
        people = uow.links.people("t1", "sis", "c1")
    assert people["p4"].data == {"by": "sis_id", "class": "cls-3"}
    assert people["p1"].data == {"by": "sis_id"}  # the course's class


def test_category_alignment_per_connection_and_course(school: tuple[Database, ManualClock]) -> None:
    db, clock = school
    assert sis.align_category(
        db.uow, clock, tenant_id="t1", destination_id="sis", group="Quizzes", category_id="cat-quiz"
    ) == {"Quizzes": "cat-quiz"}
    assert sis.align_category(
        db.uow,
        clock,
        tenant_id="t1",
        destination_id="sis",
        group="Quizzes",
        category_id="cat-hw",
        course_id="c1",
    ) == {"Quizzes": "cat-hw"}
    assert (
        sis.align_category(
            db.uow, clock, tenant_id="t1", destination_id="sis", group="Quizzes", category_id=None
        )
        == {}
    )
    with db.uow() as uow:
        link = uow.links.course("t1", "sis", "c1")
    assert link is not None and link.data["category_map"] == {"Quizzes": "cat-hw"}


def test_several_alignments_are_one_change_refused_whole_with_every_problem(
    school: tuple[Database, ManualClock],
) -> None:
    db, clock = school
    sis.align_category(
        db.uow, clock, tenant_id="t1", destination_id="sis", group="Quizzes", category_id="cat-q"
    )
    with pytest.raises(InvalidInput) as info:
        sis.align_categories(
            db.uow,
            clock,
            tenant_id="t1",
            destination_id="sis",
            changes={"Homework": "cat-hw", "Quizzes": None, " ": "cat-hw", "Labs": "cat-nope"},
            sis_categories=["cat-hw", "cat-q"],
        )
    assert [(p.field, p.rule) for p in info.value.problems] == [
        ("group", "required"),
        ("category_id", "category_unknown"),
    ]
    with pytest.raises(InvalidInput) as info:
        sis.align_categories(
            db.uow,
            clock,
            tenant_id="t1",
            destination_id="sis",
            changes={"Homework": "cat-hw", "Labs": "  "},
            course_id="nope",
        )
    assert [(p.field, p.rule) for p in info.value.problems] == [
        ("category_id", "required"),
        ("course_id", "unknown_course"),
    ]
    with db.uow() as uow:  # nothing changed: Quizzes kept, Homework not aligned
        dest = uow.destinations.get("t1", "sis")
    assert dest is not None and dest.config["category_map"] == {"Quizzes": "cat-q"}
    assert sis.align_categories(
        db.uow,
        clock,
        tenant_id="t1",
        destination_id="sis",
        changes={"Homework": " cat-hw ", "Quizzes": None},
        sis_categories=["cat-hw"],
    ) == {"Homework": "cat-hw"}


class _Waker:
    def __init__(self) -> None:
        self.keys = 0

    def wake_keys(self) -> None:
        self.keys += 1

    def wake_run(self, run_id: str, scope: object) -> None:
        raise AssertionError("selecting starts no run")

    def wake_delivery(self) -> None:
        raise AssertionError("selecting wakes the key workers")


def test_selecting_recomputes_rows_skipped_as_not_selected(
    school: tuple[Database, ManualClock],
) -> None:
    db, clock = school
    skipped = LedgerKey("t1", "sis", "quiz1", "p1")
    other = LedgerKey("t1", "sis", "quiz1", "p2")
    with db.uow() as uow:
        uow.ledger.save(
            LedgerRow(
                skipped,
                DeliveryState.SKIPPED,
                reason_code="not_selected_for_sis",
                reason_text="not selected",
                updated_at=clock.now(),
            ),
            "c1",
        )
        uow.ledger.save(
            LedgerRow(
                other, DeliveryState.SKIPPED, reason_code="no_attempt_yet", updated_at=clock.now()
            ),
            "c1",
        )
        before = {k[:4] for k in uow.dirty.peek(1000)}
        uow.commit()
    waker = _Waker()
    sis.select_activities(
        db.uow,
        tenant_id="t1",
        destination_id="sis",
        activity_ids=["quiz1"],
        selected=False,
        clock=clock,
        waker=waker,
    )
    with db.uow() as uow:
        assert {k[:4] for k in uow.dirty.peek(1000)} == before  # clearing recomputes nothing
    assert waker.keys == 0
    sis.select_activities(
        db.uow,
        tenant_id="t1",
        destination_id="sis",
        activity_ids=["quiz1"],
        clock=clock,
        waker=waker,
    )
    with db.uow() as uow:
        marked = {k[:4] for k in uow.dirty.peek(1000)} - before
    # the activity's every learner is recomputed: the row skipped for not being selected (a
    # skipped row keeps no desired result to reopen) and those with no row for the SIS yet;
    # the worker is told at once
    assert marked == {("t1", "c1", "quiz1", p) for p in ("p1", "p2", "p3")}
    assert waker.keys == 1


def test_a_sis_takes_four_requests_at_once_unless_its_connection_says(
    school: tuple[Database, ManualClock],
) -> None:
    """The engine's limit for a SIS is the documented default (4), not an LMS's (8); a
    connection's own `concurrency` wins."""
    db, clock = school
    sis.add_connection(
        db.uow,
        clock,
        tenant_id="t1",
        destination_id="sis-6",
        name="SIS six",
        base_url="http://sis6.example/",
        client_id="gs",
        client_secret="secret-1",
        profile={"concurrency": 6},
    )
    governor = Governor(db.uow, clock, EngineSettings(), BackgroundWrites())
    with db.uow() as uow:
        plain, six = uow.destinations.get("t1", "sis"), uow.destinations.get("t1", "sis-6")
    assert plain is not None and six is not None
    assert governor.limits_for(plain).concurrency == 4
    assert governor.limits_for(six).concurrency == 6
    lms = replace(plain, id="lms", kind=DestinationKind.LTI13_AGS, config={})
    assert governor.limits_for(lms).concurrency == 8


def test_updating_a_connection_keeps_its_pause(school: tuple[Database, ManualClock]) -> None:
    """Rotating the secret must not lift an admin's timed pause (the engine would read the
    cleared pause as a resume and send)."""
    db, clock = school
    until = NOW + timedelta(hours=2)
    destination_admin.pause(db.uow, clock, "t1", "sis", actor="ops", reason="exams", until=until)
    sis.add_connection(
        db.uow,
        clock,
        tenant_id="t1",
        destination_id="sis",
        name=None,
        base_url=None,
        client_secret="secret-2",
    )
    with db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
    assert dest is not None and dest.secret["client_secret"] == "secret-2"
    assert (dest.paused_until, dest.pause_reason) == (until, "exams")


def test_mapping_one_student_recomputes_their_results_in_ticked_activities(
    school: tuple[Database, ManualClock],
) -> None:
    """As map-students does for a course: the person's results in the activities ticked to
    send at once are computed again for the student now linked, and the workers told."""
    db, clock = school
    sis.select_activities(
        db.uow, tenant_id="t1", destination_id="sis", activity_ids=["quiz1"], clock=clock
    )
    sis.select_activities(
        db.uow, tenant_id="t1", destination_id="sis", activity_ids=["hw1"], hold=True, clock=clock
    )
    with db.uow() as uow:  # as if the worker had computed what ticking marked
        uow.dirty.claim(1000)
        uow.commit()
    waker = _Waker()
    sis.map_student(
        db.uow,
        tenant_id="t1",
        destination_id="sis",
        person_id="p2",
        student_id="stu-22",
        clock=clock,
        waker=waker,
    )
    with db.uow() as uow:
        marked = {k[:4] for k in uow.dirty.peek(1000)}
    # not hw1 (held for Post grades) nor the activities not ticked, nor other learners
    assert marked == {("t1", "c1", "quiz1", "p2")}
    assert waker.keys == 1


def test_mapping_learners_to_other_students_sends_their_results_to_the_new_one(
    school: tuple[Database, ManualClock],
) -> None:
    """`map-students` again after a learner's SIS id was corrected: what the SIS refused for
    the old student, and what it took for them (another student's record), goes to the new
    one; a learner whose student did not change keeps the SIS's refusal and record."""
    db, clock = school
    sis.map_class(db.uow, tenant_id="t1", destination_id="sis", course_id="c1", class_id="cls-1")
    sis.select_activities(
        db.uow, tenant_id="t1", destination_id="sis", activity_ids=["quiz1", "hw1"]
    )
    sis.map_course_students(db.uow, tenant_id="t1", destination_id="sis", course_id="c1")
    refused = {p: LedgerKey("t1", "sis", "quiz1", p) for p in ("p1", "p2")}
    took = {p: LedgerKey("t1", "sis", "hw1", p) for p in ("p1", "p2")}
    skipped = {p: LedgerKey("t1", "sis", "nodue", p) for p in ("p1", "p2")}
    with db.uow() as uow:
        for key in refused.values():
            uow.ledger.save(_refused(key, "invalid_data", clock.now(), tries=1), "c1")
        for key in took.values():
            row = LedgerRow(
                key, DeliveryState.DELIVERED, "h2", {"score_given": 4.0},
                delivered_hash="h2", delivered_at=clock.now(), updated_at=clock.now(),
            )  # fmt: skip
            uow.ledger.save(row, "c1")
        for key in skipped.values():  # sent once, then left out (not ticked any more)
            row = LedgerRow(
                key, DeliveryState.SKIPPED, None, {}, delivered_hash="h3",
                delivered_at=clock.now(), reason_code="not_selected_for_sis",
                updated_at=clock.now(),
            )  # fmt: skip
            uow.ledger.save(row, "c1")
        uow.commit()
    _new_sis_id(db, "p1")
    sis.map_course_students(db.uow, tenant_id="t1", destination_id="sis", course_id="c1")
    with db.uow() as uow:
        rows = {k: uow.ledger.get(k) for k in (*refused.values(), *took.values())}
        left = {p: uow.ledger.get(k) for p, k in skipped.items()}
    state = {k: (r.state, r.tries, r.reason_code, r.delivered_hash) for k, r in rows.items() if r}
    assert state[refused["p1"]] == (DeliveryState.PENDING, 0, None, None)
    assert state[took["p1"]] == (DeliveryState.PENDING, 0, None, None)  # sent to the new one
    assert state[refused["p2"]][0] is DeliveryState.REJECTED
    assert state[took["p2"]] == (DeliveryState.DELIVERED, 0, None, "h2")
    # a row not sent now forgets what went to the old student: when it is sent again it goes
    assert {p: (r.state, r.delivered_hash) for p, r in left.items() if r} == {
        "p1": (DeliveryState.SKIPPED, None),
        "p2": (DeliveryState.SKIPPED, "h3"),
    }


def _computed(db: Database, clock: ManualClock) -> tuple[set[tuple[str, ...]], int]:
    """The keys marked for recompute, then how many (destination, activity, learner)
    results computing them worked out."""
    with db.uow() as uow:
        marked = {k[:4] for k in uow.dirty.peek(1000)}
    stats = compute_dirty(db.uow, clock, Clients(DoubleFactory()).capabilities, limit=1000)
    return marked, stats.keys


def test_a_sis_change_computes_its_learners_at_that_sis_only(
    two_sis: tuple[Database, ManualClock],
) -> None:
    """A course of three learners posts to two SISes. What is done at one SIS (an activity
    ticked, one learner mapped to their student, the roster mapped again after one learner's
    SIS id changed) recomputes the results it can change, at that SIS only: not every
    learner, not the other SIS's results, which come out the same."""
    db, clock = two_sis
    for dest in ("sis", "sis2"):
        sis.map_course_students(db.uow, tenant_id="t1", destination_id=dest, course_id="c1")
    _computed(db, clock)  # what set-up marked

    sis.select_activities(
        db.uow, tenant_id="t1", destination_id="sis", activity_ids=["quiz1"], clock=clock
    )
    marked, computed = _computed(db, clock)
    assert marked == {("t1", "c1", "quiz1", p) for p in ("p1", "p2", "p3")}
    assert computed == 3  # each learner at `sis`, none at `sis2`

    sis.map_student(
        db.uow, tenant_id="t1", destination_id="sis", person_id="p2", student_id="stu-22",
        clock=clock,
    )  # fmt: skip
    assert _computed(db, clock) == ({("t1", "c1", "quiz1", "p2")}, 1)

    _new_sis_id(db, "p3", "stu-33")
    report = sis.map_course_students(
        db.uow, tenant_id="t1", destination_id="sis", course_id="c1", clock=clock
    )
    assert sorted(report.mapped) == ["p1", "p2", "p3"]
    # only p3's student changed (p2's explicit mapping wins, p1's is as it was)
    assert _computed(db, clock) == ({("t1", "c1", "quiz1", "p3")}, 1)
    assert _computed(db, clock) == (set(), 0)


def test_a_learner_relinked_at_one_sis_gets_what_that_sis_refused_sent_again_there_only(
    two_sis: tuple[Database, ManualClock],
) -> None:
    """`map-students` at one SIS after a learner's SIS id was corrected recomputes that
    learner alone, at that SIS alone, and what that SIS refused for their old student goes
    back to pending for the new one; the other SIS's refusal and another learner's stay."""
    db, clock = two_sis
    for person in ("p1", "p3"):
        attempt(db, f"e-{person}", "quiz1", person, 7.0)
    for dest in ("sis", "sis2"):
        sis.select_activities(
            db.uow, tenant_id="t1", destination_id=dest, activity_ids=["quiz1"], clock=clock
        )
        sis.map_course_students(db.uow, tenant_id="t1", destination_id=dest, course_id="c1")
    _computed(db, clock)  # what set-up marked
    refused = [LedgerKey("t1", d, "quiz1", p) for d, p in (("sis", "p3"), ("sis2", "p3"))]
    stayed = LedgerKey("t1", "sis", "quiz1", "p1")
    with db.uow() as uow:
        for key in (*refused, stayed):  # the 7 sent and refused: the student is unknown
            row = uow.ledger.get(key)
            assert row is not None and row.state is DeliveryState.PENDING
            uow.ledger.save(
                replace(row, state=DeliveryState.REJECTED, tries=1, reason_code="invalid_data"),
                "c1",
            )
        uow.commit()
    _new_sis_id(db, "p3", "stu-33")

    sis.map_course_students(
        db.uow, tenant_id="t1", destination_id="sis", course_id="c1", clock=clock
    )
    assert _computed(db, clock) == ({("t1", "c1", "quiz1", "p3")}, 1)
    with db.uow() as uow:
        again, other, kept = (uow.ledger.get(k) for k in (*refused, stayed))
    assert again is not None and (again.state, again.tries, again.reason_code) == (
        DeliveryState.PENDING, 0, None,
    )  # fmt: skip
    assert other is not None and other.state is DeliveryState.REJECTED
    assert kept is not None and kept.state is DeliveryState.REJECTED


# --- two changes of a course's SIS mapping at once: both stay (the link held from its read) ---


def _section(db: Database, section: str, klass: str) -> Callable[..., object]:
    def mapped(factory: Any = None) -> object:
        return sis.map_class(
            factory or db.uow, tenant_id="t1", destination_id="sis", course_id="c1",
            class_id=klass, section_id=section, new_section=True,
        )  # fmt: skip

    return mapped


def _course_link(db: Database) -> CourseLink:
    with db.uow() as uow:
        link = uow.links.course("t1", "sis", "c1")
    assert link is not None
    return link


def test_two_sections_mapped_at_once_both_stay(school: tuple[Database, ManualClock]) -> None:
    """Each mapping read the course's link, added its section and wrote the link back: on
    PostgreSQL (read committed) a section mapped between the other's read and write was
    written over, and its learners' grades went to the course's class."""
    db, _ = school
    racing = AfterFirstRead(db, "links", "course", _section(db, "sec-b", "cls-b"))
    _section(db, "sec-a", "cls-a")(racing)
    racing.finish()
    assert _course_link(db).data["sections"] == {"sec-a": "cls-a", "sec-b": "cls-b"}


def test_a_section_mapped_while_a_category_is_aligned_stays(
    school: tuple[Database, ManualClock],
) -> None:
    db, clock = school
    racing = AfterFirstRead(db, "links", "course", _section(db, "sec-b", "cls-b"))
    sis.align_category(
        racing, clock, tenant_id="t1", destination_id="sis", group="Quizzes",
        category_id="cat-quiz", course_id="c1",
    )  # fmt: skip
    racing.finish()
    data = _course_link(db).data
    assert (data["sections"], data["category_map"]) == ({"sec-b": "cls-b"}, {"Quizzes": "cat-quiz"})


def test_a_pause_made_while_a_category_is_aligned_stays(
    school: tuple[Database, ManualClock],
) -> None:
    """A connection-wide alignment writes the connection back whole: a pause of the SIS
    committed between its read and its write was lifted (PostgreSQL)."""
    db, clock = school
    racing = AfterFirstRead(
        db,
        "destinations",
        "get",
        lambda: destination_admin.pause(db.uow, clock, "t1", "sis", actor="registrar"),
    )
    sis.align_category(
        racing, clock, tenant_id="t1", destination_id="sis", group="Quizzes",
        category_id="cat-quiz",
    )  # fmt: skip
    racing.finish()
    with db.uow() as uow:
        d = uow.destinations.get("t1", "sis")
    assert d is not None
    assert (d.enabled, d.config["category_map"]) == (False, {"Quizzes": "cat-quiz"})


class _BetweenTransactions:
    """A unit-of-work factory that runs `other` (another process's change, committed) before
    it opens its second unit of work: a SIS connection's change reads the connection in one
    transaction and writes it in the next."""

    def __init__(self, db: Database, other: Callable[[], object]) -> None:
        self.db, self.other, self.opened = db, other, 0

    def __call__(self) -> Any:
        self.opened += 1
        if self.opened == 2:
            self.other()
        return self.db.uow()


def test_a_pause_made_while_a_connection_is_saved_stays(
    school: tuple[Database, ManualClock],
) -> None:
    """A change of the connection's settings kept its pause as read before the change was
    worked out: a pause committed between that read and the write was lifted."""
    db, clock = school
    racing = _BetweenTransactions(
        db, lambda: destination_admin.pause(db.uow, clock, "t1", "sis", actor="registrar")
    )
    sis.add_connection(
        racing, clock, tenant_id="t1", destination_id="sis", name=None, base_url=None,
        client_secret="secret-2",
    )  # fmt: skip
    assert racing.opened == 2
    with db.uow() as uow:
        d = uow.destinations.get("t1", "sis")
    assert d is not None
    assert (d.enabled, d.secret["client_secret"]) == (False, "secret-2")


def test_limits_set_while_a_connection_is_saved_without_a_version_are_not_lost(
    school: tuple[Database, ManualClock],
) -> None:
    """Settings changed between the change's read and its write are not written over: with
    no version given, the change is worked out again from them and both are kept."""
    db, clock = school
    racing = _BetweenTransactions(
        db, lambda: destination_admin.set_limits(db.uow, clock, "t1", "sis", {"concurrency": 2})
    )
    sis.add_connection(
        racing, clock, tenant_id="t1", destination_id="sis", name="Renamed", base_url=None,
    )  # fmt: skip
    assert racing.opened == 4  # read, refused at the write, read again, written
    with db.uow() as uow:
        d = uow.destinations.get("t1", "sis")
    assert d is not None
    assert (d.name, d.config["concurrency"]) == ("Renamed", 2)


def test_settings_that_keep_changing_refuse_a_change_without_a_version(
    school: tuple[Database, ManualClock],
) -> None:
    """A change worked out again each time the settings changed under it gives up after a
    few tries, refused as changed, and writes nothing."""
    db, clock = school
    limits = iter(range(2, 10))

    class ChangedBeforeEveryWrite:
        def __init__(self) -> None:
            self.opened = 0

        def __call__(self) -> Any:
            self.opened += 1
            if self.opened % 2 == 0:  # before each write: another admin sets limits
                destination_admin.set_limits(
                    db.uow, clock, "t1", "sis", {"concurrency": next(limits)}
                )
            return db.uow()

    with pytest.raises(Conflict) as refused:
        sis.add_connection(
            ChangedBeforeEveryWrite(), clock, tenant_id="t1", destination_id="sis",
            name="Renamed", base_url=None,
        )  # fmt: skip
    assert (refused.value.field, refused.value.rule) == ("version", "changed")
    with db.uow() as uow:
        d = uow.destinations.get("t1", "sis")
    assert d is not None and d.name == "SIS"


def test_an_activity_unticked_while_a_category_is_aligned_stays_unticked(
    school: tuple[Database, ManualClock],
) -> None:
    """An alignment has the connection's columns checked again: it read their links and
    wrote each back whole with a new mark. On PostgreSQL (read committed) an activity
    unticked between that read and the write was ticked again, and its grades went on to
    the SIS. Only the mark is written now."""
    db, clock = school
    select = sis.select_activities  # quiz1 ticked, then unticked while the alignment runs
    select(db.uow, tenant_id="t1", destination_id="sis", activity_ids=["quiz1"], clock=clock)

    def untick() -> object:
        return select(
            db.uow, tenant_id="t1", destination_id="sis", activity_ids=["quiz1"],
            selected=False, clock=clock,
        )  # fmt: skip

    # after the links' read (before the fix), or the mark written (after it)
    racing = AfterFirstRead(db, "links", ("items", "mark_items_to_check"), untick)
    sis.align_category(
        racing, clock, tenant_id="t1", destination_id="sis", group="Quizzes",
        category_id="cat-quiz",
    )  # fmt: skip
    racing.finish()
    with db.uow() as uow:
        item = uow.links.item("t1", "sis", "quiz1")
    assert item is not None and item.data["sync_to_sis"] is False


def _quiz1_ticked_and_held(db: Database) -> tuple[bool, bool]:
    """Whether quiz1 is ticked for the SIS, and held for Post grades, as stored."""
    with db.uow() as uow:
        item = uow.links.item("t1", "sis", "quiz1")
    assert item is not None
    return item.data["sync_to_sis"], "held" in item.data


def test_an_activity_unticked_while_its_grades_are_posted_stays_unticked(
    school: tuple[Database, ManualClock],
) -> None:
    """Posting a held activity's grades lifts its hold, written back with its link as read:
    on PostgreSQL an untick committed between that read and the write was undone, and the
    activity's grades went to the SIS."""
    db, clock = school
    select = sis.select_activities
    select(
        db.uow, tenant_id="t1", destination_id="sis", activity_ids=["quiz1"], hold=True,
        clock=clock,
    )  # fmt: skip

    def untick() -> object:
        return select(
            db.uow, tenant_id="t1", destination_id="sis", activity_ids=["quiz1"],
            selected=False, clock=clock,
        )  # fmt: skip

    racing = AfterFirstRead(db, "links", "item", untick)
    with racing() as uow:
        release_held(uow, "t1", "sis", "c1", "quiz1")
        uow.commit()
    racing.finish()
    assert _quiz1_ticked_and_held(db) == (False, False)


def test_grades_posted_while_the_selection_is_saved_again_stay_posted(
    school: tuple[Database, ManualClock],
) -> None:
    """The selection saved again (a form sends every ticked activity) wrote each link back
    as read: on PostgreSQL a post committed between that read and the write was undone, the
    activity held again and its grades kept from the SIS."""
    db, clock = school

    def tick_held(factory: Any) -> object:
        return sis.select_activities(
            factory, tenant_id="t1", destination_id="sis", activity_ids=["quiz1"], hold=True,
            clock=clock,
        )  # fmt: skip

    tick_held(db.uow)

    def post() -> None:
        with db.uow() as uow:
            release_held(uow, "t1", "sis", "c1", "quiz1")
            uow.commit()

    # after the read the link is written from (the first one checks the activity)
    racing = AfterFirstRead(db, "links", "item", post, nth=2)
    tick_held(racing)
    racing.finish()
    assert _quiz1_ticked_and_held(db) == (True, False)


def test_an_activity_ticked_to_send_while_it_is_first_ticked_to_hold_is_sent(
    school: tuple[Database, ManualClock],
) -> None:
    """An activity with no column link yet: on PostgreSQL (read committed) a tick to send at
    once committed between a tick to hold's read (none: nothing locked) and its write was
    written over as if there were no link, and the activity held: its grades kept from the
    SIS, though whichever came first the other found it ticked and it was sent."""
    db, clock = school

    def tick(factory: Any, *, hold: bool) -> object:
        return sis.select_activities(
            factory, tenant_id="t1", destination_id="sis", activity_ids=["quiz1"], hold=hold,
            clock=clock,
        )  # fmt: skip

    with db.uow() as uow:
        assert uow.links.item("t1", "sis", "quiz1") is None
    # after the read the link is written from (the first one checks the activity)
    racing = AfterFirstRead(db, "links", "item", lambda: tick(db.uow, hold=False), nth=2)
    tick(racing, hold=True)
    racing.finish()
    assert _quiz1_ticked_and_held(db) == (True, False)


def test_a_course_mapped_twice_at_once_keeps_the_term_the_second_leaves_out(
    school: tuple[Database, ManualClock],
) -> None:
    """A course with no class at a SIS yet, mapped twice at once, the second change leaving
    the term out (kept as stored): on PostgreSQL (read committed) the first mapping
    committed between the second's read (no link: nothing locked) and its write was written
    over as if there were none, and its term was lost, whichever came first."""
    db, clock = school
    sis.add_connection(
        db.uow, clock, tenant_id="t1", destination_id="sis3", name="Third SIS",
        base_url="http://sis3.example/", client_id="gs", client_secret="secret-3",
    )  # fmt: skip

    def mapped(factory: Any, klass: str, school_id: str, **term: str) -> object:
        return sis.map_class(
            factory, tenant_id="t1", destination_id="sis3", course_id="c1", class_id=klass,
            school_id=school_id, **term,
        )  # fmt: skip

    def with_term() -> object:
        return mapped(db.uow, "cls-1", "sch-1", term_start="2025-01-06", term_end="2025-06-20")

    racing = AfterFirstRead(db, "links", "course", with_term)
    mapped(racing, "cls-2", "sch-2")
    racing.finish()
    with db.uow() as uow:
        link = uow.links.course("t1", "sis3", "c1")
    assert link is not None
    assert (link.data.get("term_start"), link.data.get("term_end")) == ("2025-01-06", "2025-06-20")


def _new_connection(db: Database, clock: ManualClock, *, new: bool = False, **profile: Any) -> Any:
    def made(factory: Any = None) -> str:
        return sis.settings_version(
            sis.add_connection(
                factory or db.uow, clock, tenant_id="t1", destination_id="sis3", name=None,
                base_url="http://sis3.example/", client_id="gs", client_secret="secret-3",
                profile=profile or None, new=new,
            )
        )  # fmt: skip

    return made


def test_a_connection_made_twice_at_once_keeps_what_the_second_leaves_out(
    school: tuple[Database, ManualClock],
) -> None:
    """Two saves of one new SIS connection at once, the second leaving a profile setting
    out (kept as stored): on PostgreSQL (read committed) the one whose locked read found
    none (nothing locked) wrote over the other's, committed meanwhile, without it."""
    db, clock = school
    other = _new_connection(db, clock, name_max_length=30)
    # after the locked read the connection is written from (the first reads it unlocked)
    racing = AfterFirstRead(db, "destinations", "get", other, nth=2)
    _new_connection(db, clock)(racing)
    racing.finish()
    with db.uow() as uow:
        stored = uow.destinations.get("t1", "sis3")
    assert stored is not None and stored.config.get("name_max_length") == 30


def test_a_connection_added_twice_at_once_is_refused_the_second_time(
    school: tuple[Database, ManualClock],
) -> None:
    """The console's Add form, twice at once for one new id: each found the id free, and on
    PostgreSQL the second silently replaced the first. Its insert decides now."""
    db, clock = school
    racing = AfterFirstRead(
        db, "destinations", "get", _new_connection(db, clock, new=True, name_max_length=30), nth=2
    )
    made: list[str] = []
    with contextlib.suppress(Conflict):
        made.append(_new_connection(db, clock, new=True)(racing))
    with contextlib.suppress(Conflict):
        made.append(racing.finish())
    assert len(made) == 1, made
    with db.uow() as uow:
        stored = uow.destinations.get("t1", "sis3")
    assert stored is not None and sis.settings_version(stored) == made[0]
