"""Fact gathering, override recording and repair on the real database (SQLite and
PostgreSQL): what the diagnostics read, and what overrides and repairs write."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.errors import InvalidInput, NotFound
from gradesync.domain.ledger import desired_to_json, result_hash
from gradesync.domain.model import (
    Activity,
    Attempt,
    Course,
    CourseLink,
    DeliveryState,
    Destination,
    DestinationKind,
    Enrollment,
    ItemLink,
    LedgerKey,
    LedgerRow,
    Person,
    PersonLink,
    PolicySettings,
    Role,
    RunStage,
    Tenant,
    Trigger,
)
from gradesync.domain.policy import DesiredResult
from gradesync.services import diagnostics, overrides
from gradesync.services.destination import ReadBack, RequestGate
from gradesync.services.ports.lti import LaunchRecord, Rejection
from gradesync.testing import ManualClock
from tests.support.statements import statements, transactions

T, C, D = "t1", "c1", "lms"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _add_rejection(db: Database, rejection: Rejection) -> None:
    with db.uow() as uow:
        uow.launches.add_rejection(rejection)
        uow.commit()


def _result(given: float) -> DesiredResult:
    return DesiredResult(
        given,
        10.0,
        "FullyGraded",
        "Completed",
        None,
        False,
        False,
        False,
        NOW - timedelta(days=1),
        "Highest of 1",
        "e1",
    )


def _delivered(person: str, given: float, activity: str = "a1") -> LedgerRow:
    r = _result(given)
    h = result_hash(r)
    return LedgerRow(
        key=LedgerKey(T, D, activity, person),
        state=DeliveryState.DELIVERED,
        desired_hash=h,
        desired=desired_to_json(r),
        delivered_hash=h,
        delivered_at=NOW - timedelta(hours=1),
        last_timestamp=NOW - timedelta(hours=1),
        updated_at=NOW - timedelta(hours=1),
    )


def seed(db: Database, *, keep: bool | None = None) -> None:
    with db.uow() as uow:
        uow.tenants.upsert(Tenant(T, "Tenant"), NOW)
        uow.courses.upsert(Course(T, C, "Biology", policy=PolicySettings(keep_lms_edits=keep)))
        uow.courses.upsert(Course(T, "c2", "Chemistry"))
        uow.activities.upsert(Activity(T, "a1", C, "Quiz 1", 10.0))
        uow.activities.upsert(Activity(T, "a2", C, "Quiz 2", 10.0))
        uow.destinations.upsert(
            Destination(
                T,
                D,
                DestinationKind.LTI13_AGS,
                "Canvas",
                config={"issuer": "https://lms", "client_id": "cid"},
            ),
            NOW,
        )
        uow.links.save_course(
            CourseLink(
                T,
                D,
                C,
                "https://lms/api/c1/line_items",
                {"context": {"id": "ctx1", "title": "Bio 101"}},
            )
        )
        uow.links.save_item(ItemLink(T, D, "a1", "https://lms/api/c1/line_items/1"))
        for pid, email in (("ada", "ada@x.edu"), ("bo", "bo@x.edu"), ("ada2", "ADA@x.edu")):
            uow.people.upsert(Person(T, pid, f"Name {pid}", email))
            uow.enrollments.upsert(Enrollment(T, C, pid, Role.LEARNER))
        for pid in ("ada", "bo"):
            uow.links.save_person(PersonLink(T, D, pid, f"sub-{pid}"))
        uow.attempts.add(Attempt(T, "e1", "a1", "ada", 7.0, 10.0, NOW - timedelta(days=1)), NOW)
        uow.attempts.add(Attempt(T, "e2", "a1", "ada2", 9.0, 10.0, NOW - timedelta(days=1)), NOW)
        uow.ledger.save_many([(_delivered("ada", 7.0), C), (_delivered("bo", 5.0), C)])
        uow.launches.add(
            LaunchRecord(
                T,
                D,
                C,
                "ada",
                "rl1",
                ["Learner"],
                {
                    "https://purl.imsglobal.org/spec/lti/claim/context": {
                        "id": "ctx1",
                        "title": "Bio 101",
                    }
                },
                NOW - timedelta(days=2),
            ),
        )
        uow.launches.add(
            LaunchRecord(
                T,
                D,
                "c2",
                "bo",
                "rl9",
                ["Learner"],
                {
                    "https://purl.imsglobal.org/spec/lti/claim/context": {
                        "id": "ctx2",
                        "title": "Chem 200",
                    }
                },
                NOW - timedelta(days=2),
            ),
        )
        uow.commit()
    _add_rejection(
        db,
        Rejection(
            "unknown_deployment",
            "deployment_id: 'd9' is not registered",
            NOW - timedelta(hours=3),
            issuer="https://lms",
            client_id="cid",
            deployment_id="d9",
        ),
    )


def test_launch_repo_reads_launches_and_rejections(db: Database) -> None:
    seed(db)
    with db.uow() as uow:
        ada = uow.launches.for_person(T, "ada")
        assert [(x.course_id, x.context_title) for x in ada] == [(C, "Bio 101")]
        both = uow.launches.for_people(T, D, ["ada", "bo", "nobody"])
        assert set(both) == {"ada", "bo"} and both["bo"][0].course_id == "c2"
        assert uow.launches.summary(T, D) == (2, NOW - timedelta(days=2))
        # recorded before the tenant was known: matched by issuer and client id
        rej = uow.launches.rejections(T, D, issuer="https://lms", client_id="cid")
        assert [(r.code, r.deployment_id) for r in rej] == [("unknown_deployment", "d9")]
        assert uow.launches.rejections(T, D) == []
        assert uow.launches.rejections(T, D, issuer="https://lms", client_id="cid", since=NOW) == []


def test_learner_diagnosis_gathers_every_fact(db: Database) -> None:
    seed(db)
    d = diagnostics.diagnose_learner_activity(db.uow, ManualClock(NOW), T, "ada", "a1")
    assert [c.code for c in d.failed] == ["duplicate_accounts"]  # ada2 has ada's email
    assert d.check("counted_attempt").passed  # type: ignore[union-attr]
    assert "Bio 101" in d.check("launched_from_course", D).evidence  # type: ignore[union-attr]
    # the other account with the same email (case aside) and an attempt here is suspected
    ada2 = diagnostics.diagnose_learner_activity(db.uow, ManualClock(NOW), T, "ada2", "a1")
    dup = ada2.check("duplicate_accounts")
    assert dup is not None and not dup.passed and "ada" in dup.evidence
    launched = ada2.check("launched_from_course", D)
    assert launched is not None and "never launched" in launched.evidence
    # bo's grade is delivered although bo launched from another course: the LMS took it
    bo = diagnostics.diagnose_learner_activity(db.uow, ManualClock(NOW), T, "bo", "a1")
    assert bo.check("launched_from_course", D).passed  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        diagnostics.diagnose_learner_activity(db.uow, ManualClock(NOW), T, "ghost", "a1")
    with pytest.raises(NotFound):
        diagnostics.diagnose_learner_activity(db.uow, ManualClock(NOW), T, "ada", "a1", "nowhere")


def test_destination_and_course_diagnosis_on_the_database(db: Database) -> None:
    seed(db)
    dest = diagnostics.destination_facts(db.uow, ManualClock(NOW), T, D)
    assert dest.courses == 1 and dest.delivered == 2 and dest.launches == 2
    assert [r.code for r in dest.rejections] == ["unknown_deployment"]
    t = diagnostics.diagnose_course(db.uow, ManualClock(NOW), T, C)
    assert t.symptom.value == "nothing_syncing"  # the refused deployment is course-wide
    assert t.cause("deployment_problem") is not None


@pytest.mark.parametrize("rate", [0.01, 10.0], ids=["holds", "keeps-up"])
def test_the_destination_diagnosis_names_a_rate_limit_holding_grades_as_a_grade_s_does(
    db: Database, rate: float
) -> None:
    """Two grades wait at a destination limited to 0.01 requests per second: its diagnosis
    names the limit and how long they take, in the words a waiting grade's diagnosis says.
    Before, only the grade's did; the destination's said nothing of the limit."""
    seed(db)
    with db.uow() as uow:
        d = uow.destinations.get(T, D)
        assert d is not None
        uow.destinations.upsert(replace(d, config={**d.config, "rate_per_second": rate}), NOW)
        waiting = [
            LedgerRow(
                LedgerKey(T, D, "a1", p),
                DeliveryState.PENDING,
                desired=desired_to_json(_result(7.0)),
                updated_at=NOW - timedelta(seconds=20),
            )
            for p in ("ada", "ada2")
        ]
        uow.ledger.save_many([(row, C) for row in waiting])
        uow.commit()
    dest = asyncio.run(diagnostics.diagnose_destination(db.uow, ManualClock(NOW), T, D))
    check = dest.check("rate_limit")
    assert check is not None
    grade = diagnostics.diagnose_learner_activity(db.uow, ManualClock(NOW), T, "ada", "a1")
    delivery = grade.check("delivery", D)
    assert delivery is not None and not delivery.passed
    if rate == 10.0:
        assert check.passed and "within a minute" in check.evidence, check
        assert "rate limit" not in delivery.evidence
        return
    said = (
        "'Canvas' has a rate limit of 0.01 requests per second, so sending them takes about "
        "3 minutes."
    )
    assert not check.passed
    assert check.evidence == f"2 grades wait to be sent to 'Canvas': {said}"
    assert delivery.evidence.endswith(f": {said}"), delivery.evidence
    assert check.remedy == delivery.remedy and "raise or clear the rate limit" in check.remedy


def _backs(**scores: float | None) -> list[ReadBack]:
    return [
        ReadBack(f"sub-{p}", s, 10.0, None, NOW - timedelta(minutes=5)) for p, s in scores.items()
    ]


def test_overrides_kept_by_default_and_listed(db: Database) -> None:
    seed(db)
    stats = overrides.record_overrides(
        db.uow, ManualClock(NOW), T, D, C, "a1", _backs(ada=2.0, bo=5.0), run_id="run_1"
    )
    assert (stats.found, stats.kept, stats.resent) == (1, 1, 0)
    # recorded once: seeing it again writes nothing new
    again = overrides.record_overrides(db.uow, ManualClock(NOW), T, D, C, "a1", _backs(ada=2.0))
    assert (again.found, again.kept) == (1, 0)
    with db.uow() as uow:
        row = uow.ledger.get(LedgerKey(T, D, "a1", "ada"))
        log = uow.deliveries.for_key(LedgerKey(T, D, "a1", "ada"))
    assert row is not None and row.state is DeliveryState.DELIVERED
    assert row.reason_code == "overridden" and "2/10" in (row.remote_message or "")
    assert [(e["outcome"], e["run_id"]) for e in log] == [("overridden", "run_1")]
    listed = overrides.list_overrides(db.uow, T, C)
    assert [(o["person_id"], o["policy"], o["sent_given"]) for o in listed] == [
        ("ada", "keep_lms_edit", 7.0)
    ]


def test_gradesync_wins_marks_pending_past_the_lms_timestamp(db: Database) -> None:
    seed(db, keep=False)
    lms_time = NOW + timedelta(minutes=30)  # an LMS clock ahead of ours
    backs = [ReadBack("sub-ada", None, 10.0, None, lms_time)]  # cleared in the LMS
    stats = overrides.record_overrides(db.uow, ManualClock(NOW), T, D, C, "a1", backs)
    assert (stats.found, stats.resent) == (1, 1)
    with db.uow() as uow:
        row = uow.ledger.get(LedgerKey(T, D, "a1", "ada"))
    assert row is not None and row.state is DeliveryState.PENDING
    assert row.last_timestamp == lms_time and "cleared" in (row.reason_text or "")


def test_repair_of_chosen_learners_marks_only_them(db: Database) -> None:
    seed(db)
    sel = overrides.RepairSelection(T, C, None, ("a1",), ("ada",))
    remote = {LedgerKey(T, D, "a1", "ada"): NOW + timedelta(minutes=1)}
    result = overrides.request_repair(
        db.uow, None, ManualClock(NOW), sel, "cli:support", remote=remote
    )
    assert result.run is None and result.marked == 1
    with db.uow() as uow:
        ada = uow.ledger.get(LedgerKey(T, D, "a1", "ada"))
        bo = uow.ledger.get(LedgerKey(T, D, "a1", "bo"))
        log = uow.deliveries.for_key(LedgerKey(T, D, "a1", "ada"))
    assert ada is not None and ada.state is DeliveryState.PENDING
    assert ada.last_timestamp == NOW + timedelta(minutes=1)
    assert bo is not None and bo.state is DeliveryState.DELIVERED  # left alone
    assert log[0]["outcome"] == "repair" and "cli:support" in log[0]["remote_message"]


def test_repair_of_an_activity_starts_a_repair_run(db: Database) -> None:
    seed(db)
    sel = overrides.RepairSelection(T, C, D, ("a1",))
    result = overrides.request_repair(db.uow, None, ManualClock(NOW), sel, "api-key:support")
    assert result.run is not None and result.run.trigger is Trigger.REPAIR
    assert result.run.stage is RunStage.QUEUED and result.marked == 2
    with db.uow() as uow:
        run = uow.runs.get(result.run.id, T)
        ada = uow.ledger.get(LedgerKey(T, D, "a1", "ada"))
    assert run is not None and run.actor == "api-key:support"
    assert ada is not None and ada.state is DeliveryState.DELIVERED  # the run marks it


@pytest.mark.parametrize(
    ("sel", "field", "rule"),
    [
        (overrides.RepairSelection(T, "nope"), "course_id", "unknown_course"),
        (
            overrides.RepairSelection(T, C, None, ("a1", "zz")),
            "activity_ids[1]",
            "unknown_activity",
        ),
        (overrides.RepairSelection(T, C, None, (), ("ghost",)), "person_ids[0]", "unknown_person"),
        (overrides.RepairSelection(T, C, "other"), "destination_id", "unknown_destination"),
        (overrides.RepairSelection(T, C, None, ("a2",)), "selection", "nothing_to_repair"),
        (overrides.RepairSelection(T, C, None, ("a1", "a1")), "activity_ids", "unique"),
    ],
)
def test_bad_repair_selection_names_the_field_and_changes_nothing(
    db: Database, sel: overrides.RepairSelection, field: str, rule: str
) -> None:
    seed(db)
    with db.uow() as uow:
        before = uow.ledger.get_many(T, D, C)
    with pytest.raises(InvalidInput) as exc:
        overrides.request_repair(db.uow, None, ManualClock(NOW), sel, "cli:support")
    assert [(p.field, p.rule) for p in exc.value.problems] == [(field, rule)]
    # the full repair (the API's, the CLI's) answers the same
    with pytest.raises(InvalidInput) as exc:
        asyncio.run(
            overrides.repair(db.uow, None, ManualClock(NOW), _Gradebook(), sel, "cli:support")
        )
    assert [(p.field, p.rule) for p in exc.value.problems] == [(field, rule)]
    with db.uow() as uow:
        assert uow.ledger.get_many(T, D, C) == before
        assert uow.runs.history(T) == []


def test_record_overrides_ignores_rows_not_delivered(db: Database) -> None:
    seed(db)
    with db.uow() as uow:
        row = uow.ledger.get(LedgerKey(T, D, "a1", "bo"))
        assert row is not None
        uow.ledger.save(replace(row, state=DeliveryState.PENDING, desired_hash="other"), C)
        uow.commit()
    stats = overrides.record_overrides(db.uow, ManualClock(NOW), T, D, C, "a1", _backs(bo=1.0))
    assert stats.found == 0


def _class_of(db: Database, learners: int, **row: Any) -> list[str]:
    """`learners` more learners of c1, each with a delivered a1 grade (its ledger row's
    fields replaced by `row`) and a person link."""
    people = [f"p{i}" for i in range(learners)]
    rows = [_delivered(p, 5.0) for p in people]
    with db.uow() as uow:
        uow.people.upsert_many([Person(T, p, f"Learner {p}", f"{p}@x.edu") for p in people])
        uow.enrollments.upsert_many([Enrollment(T, C, p, Role.LEARNER) for p in people])
        for p in people:
            uow.links.save_person(PersonLink(T, D, p, f"sub-{p}"))
        uow.ledger.save_many([(replace(r, **row), C) for r in rows])
        uow.commit()
    return people


def test_a_class_typed_over_or_repaired_is_logged_in_a_few_statements(db: Database) -> None:
    """Overrides found in a column and a repair write one delivery-history line per grade:
    all of them in one statement, not one each (a round trip per learner on PostgreSQL)."""
    seed(db, keep=False)
    people = _class_of(db, 60)
    with statements(db) as seen:
        stats = overrides.record_overrides(
            db.uow, ManualClock(NOW), T, D, C, "a1", _backs(**dict.fromkeys(people, 2.0))
        )
    assert stats.resent == 60
    # 9 here (8 on PostgreSQL); a line each made 68
    assert len(seen) <= 12, "\n".join(s.split("\n")[0][:90] for s in seen)

    # the whole activity (a run; ada and bo too), then every one of the class chosen
    for chosen, marked in (((), 62), (tuple(people), 60)):
        sel = overrides.RepairSelection(T, C, D, ("a1",), chosen)
        with statements(db) as seen:
            result = overrides.request_repair(db.uow, None, ManualClock(NOW), sel, "cli:support")
        assert result.marked == marked
        assert len(seen) <= 24, "\n".join(s.split("\n")[0][:90] for s in seen)
    with db.uow() as uow:
        log = uow.deliveries.for_key(LedgerKey(T, D, "a1", "p7"))
    assert [e["outcome"] for e in log] == ["repair", "repair", "overridden"]
    assert "cli:support" in log[0]["remote_message"] and log[1]["run_id"] is not None


class _Gradebook:
    """Each column's read-back: ada's grade, with the LMS's timestamp."""

    def __init__(self) -> None:
        self.read: list[str] = []

    async def read_results(
        self, course: CourseLink, item: ItemLink, *, each_request: RequestGate | None = None
    ) -> list[ReadBack]:
        self.read.append(item.activity_id)
        return [ReadBack("sub-ada", 7.0, 10.0, None, NOW + timedelta(minutes=5))]

    async def __call__(self, d: Destination, course: CourseLink, item: ItemLink) -> list[ReadBack]:
        """As a repair reads a column (`asked.ReadBackFor`)."""
        return await self.read_results(course, item)


def test_a_course_repair_reads_its_columns_in_one_statement(db: Database) -> None:
    """The repair reads the LMS's timestamps column by column: the columns' links are read
    in one statement for the whole course, not one per activity."""
    seed(db)
    quizzes = [f"q{i}" for i in range(10)]
    with db.uow() as uow:
        for q in quizzes:
            uow.activities.upsert(Activity(T, q, C, f"Quiz {q}", 10.0))
            uow.links.save_item(ItemLink(T, D, q, f"https://lms/api/c1/line_items/{q}"))
        uow.ledger.save_many([(_delivered("ada", 7.0, q), C) for q in quizzes])
        uow.commit()
    lms = _Gradebook()
    sel = overrides.RepairSelection(T, C, D)
    with statements(db) as seen:
        found, unread = asyncio.run(overrides.remote_timestamps(db.uow, sel, lms))
    assert lms.read == ["a1", *quizzes] and unread == []
    assert found == {LedgerKey(T, D, a, "ada"): NOW + timedelta(minutes=5) for a in lms.read}
    # 11 here (10 on PostgreSQL); a statement per activity (11 of them) made 21
    assert len(seen) <= 12, "\n".join(s.split("\n")[0][:90] for s in seen)


def test_a_repair_reads_its_course_and_destination_once(db: Database) -> None:
    """Checking a repair's selection reads the course and the destination it names as a
    run's scope (do they exist?) and again as what is repaired: once is enough."""
    seed(db)
    lms = _Gradebook()
    sel = overrides.RepairSelection(T, C, D, ("a1",))
    with statements(db) as seen:
        found, unread = asyncio.run(overrides.remote_timestamps(db.uow, sel, lms))
    assert lms.read == ["a1"] and unread == []
    assert found == {LedgerKey(T, D, "a1", "ada"): NOW + timedelta(minutes=5)}
    # one read of each; the scope's check and the selection's each reading them made two
    courses = [s for s in seen if "FROM courses" in s]
    dests = [s for s in seen if "FROM destinations" in s]
    assert (len(courses), len(dests)) == (1, 1), "\n".join(s.split("\n")[0][:90] for s in seen)


def test_a_full_repair_checks_its_selection_once(db: Database) -> None:
    """`repair` (the API's and the CLI's) checked its selection in a transaction of its own,
    again before reading the LMS's timestamps and again as it marked the results: the check
    before the read-back is enough, and the marking uses what it found."""
    seed(db)
    lms = _Gradebook()
    sel = overrides.RepairSelection(T, C, D, ("a1",))
    with statements(db) as seen, transactions(db) as begun:
        result = asyncio.run(
            overrides.repair(db.uow, None, ManualClock(NOW), lms, sel, "cli:support")
        )
    assert lms.read == ["a1"] and result.marked == 2 and result.unread == []
    assert result.run is not None and result.run.trigger is Trigger.REPAIR
    with db.uow() as uow:
        ada = uow.ledger.get(LedgerKey(T, D, "a1", "ada"))
    assert ada is not None and ada.last_timestamp == NOW + timedelta(minutes=5)
    # the selection's check, and the repair run's request (every run's scope is checked);
    # checking it in a transaction of its own, again before the read-back and again while
    # marking made 4 reads of the course, 5 transactions and 34 statements (23 here now)
    courses = [s for s in seen if "FROM courses" in s]
    assert len(courses) == 2, "\n".join(s.split("\n")[0][:90] for s in seen)
    assert len(begun) == 4  # check and plan the read-back, mark, queue the run, log it

    # nobody named as asking: refused before the LMS is asked anything, as before marking
    unasked = _Gradebook()
    with pytest.raises(InvalidInput) as exc:
        asyncio.run(overrides.repair(db.uow, None, ManualClock(NOW), unasked, sel, " "))
    assert [(p.field, p.rule) for p in exc.value.problems] == [("actor", "required")]
    assert unasked.read == []


def _seed_six_destinations(db: Database) -> list[str]:
    """The scenario, its course synced to five more LMS destinations (their ids)."""
    seed(db)
    others = [f"lms{i}" for i in range(2, 7)]
    with db.uow() as uow:
        for d in others:
            uow.destinations.upsert(Destination(T, d, DestinationKind.LTI13_AGS, d), NOW)
            uow.links.save_course(CourseLink(T, d, C, f"https://{d}/api/c1/line_items"))
        uow.commit()
    return others


def test_a_repair_reads_the_destinations_of_its_course_in_one_statement(db: Database) -> None:
    """A repair of a course covers each destination it syncs to: they are read in one
    statement, not one each."""
    _seed_six_destinations(db)
    sel = overrides.RepairSelection(T, C)
    with statements(db) as seen:
        result = overrides.request_repair(db.uow, None, ManualClock(NOW), sel, "cli:support")
    assert result.run is not None and result.run.scope.destination_id is None
    assert result.marked == 2  # ada's and bo's a1 grades at lms; the others hold none
    # one read of the destinations; one per destination made 6
    reads = [s for s in seen if "FROM destinations" in s]
    assert len(reads) == 1, "\n".join(s.split("\n")[0][:90] for s in seen)


def test_a_course_synced_to_several_destinations_reads_them_in_one_statement(
    db: Database,
) -> None:
    """A diagnosis covers each destination the course syncs to: they are read in one
    statement, not one each."""
    others = _seed_six_destinations(db)
    with statements(db) as seen:
        learner = diagnostics.learner_activity_facts(db.uow, ManualClock(NOW), T, "ada", "a1")
        activity = diagnostics.diagnose_activity(db.uow, ManualClock(NOW), T, "a1")
        course = diagnostics.diagnose_course(db.uow, ManualClock(NOW), T, C)
    assert [f.destination.id for f in learner.destinations] == [D, *others]
    assert activity.subject == "activity" and set(course.destinations) == {D, *others}
    # one read of the destinations per diagnosis (83 statements in all here); one per
    # destination made 18 (98 in all)
    reads = [s for s in seen if "FROM destinations" in s]
    assert len(reads) == 3, "\n".join(s.split("\n")[0][:90] for s in seen)


def test_a_course_triage_searches_its_learners_for_other_accounts_at_once(db: Database) -> None:
    """Every learner whose grade is not delivered is searched for another account (same
    email or full name): all of them in one statement, not one or two each."""
    seed(db)
    _class_of(db, 60, state=DeliveryState.REJECTED, reason_code="unknown_user")
    with db.uow() as uow:  # 20 have a second account, by the same email in another case
        uow.people.upsert_many([Person(T, f"p{i}-old", "P", f"P{i}@X.edu") for i in range(20)])
        # p7's other account did the work and is enrolled; the others did nothing here
        uow.enrollments.upsert(Enrollment(T, C, "p7-old", Role.LEARNER))
        uow.attempts.add(Attempt(T, "e-old", "a1", "p7-old", 6.0, 10.0, NOW), NOW)
        uow.commit()
    with statements(db) as seen:
        t = diagnostics.diagnose_course(db.uow, ManualClock(NOW), T, C)
    # 20 here; two searches for each of the 60 learners and three reads per other account
    # (more per activity) made more than 200
    assert len(seen) <= 25, "\n".join(s.split("\n")[0][:90] for s in seen)
    cause = t.cause("duplicate_accounts")
    assert cause is not None and {"p7", "p8"} <= set(cause.learners)
    # what each other account did in the course, as one learner's diagnosis shows it
    seven = diagnostics.learner_activity_facts(db.uow, ManualClock(NOW), T, "p7", "a1")
    assert [(o.person.id, o.attempts_here, o.enrolled_here) for o in seven.duplicates] == [
        ("p7-old", 1, True)
    ]
    eight = diagnostics.learner_activity_facts(db.uow, ManualClock(NOW), T, "p8", "a1")
    assert [(o.person.id, o.attempts_here, o.enrolled_here) for o in eight.duplicates] == [
        ("p8-old", 0, False)
    ]
