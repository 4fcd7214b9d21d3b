"""Table-driven tests of the grade policy engine: one row per rule and per edge of a rule."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import (
    Activity,
    ActivityKind,
    Attempt,
    AttemptSelection,
    Course,
    Enrollment,
    EnrollmentStatus,
    ExtraCredit,
    NameRule,
    PastDueZeros,
    PolicySettings,
    Role,
    ScoreForm,
)
from gradesync.domain.policy import (
    Capabilities,
    DesiredResult,
    NoResult,
    PolicyInput,
    ResolvedPolicy,
    desired_result,
    resolve_settings,
    zero_point,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DUE = T0 + timedelta(days=7)
LAST_DAY = datetime(9999, 12, 31, tzinfo=UTC)  # courseware's "no due date"


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def attempt(
    n: int,
    score: float | None,
    hours: float,
    *,
    maximum: float | None = 10.0,
    **kw: object,
) -> Attempt:
    return Attempt(
        tenant_id="t",
        source_event_id=f"ev-{n}",
        activity_id="a1",
        person_id="p1",
        score_given=score,
        score_maximum=maximum,
        completed_at=at(hours),
        **kw,  # type: ignore[arg-type]
    )


COURSE = Course(tenant_id="t", id="c1", title="Biology 101")
ACTIVITY = Activity(
    tenant_id="t", id="a1", course_id="c1", title="Quiz 1", points_possible=10.0, due_at=DUE
)
LEARNER = Enrollment(tenant_id="t", course_id="c1", person_id="p1")
DEFAULTS = ResolvedPolicy()
NO_QUIRKS = Capabilities()
AFTER_DUE = at(1000)


@dataclass
class Case:
    name: str
    attempts: list[Attempt] = field(default_factory=list)
    policy: ResolvedPolicy = DEFAULTS
    course: Course = COURSE
    activity: Activity = ACTIVITY
    enrollment: Enrollment | None = LEARNER
    caps: Capabilities = NO_QUIRKS
    now: datetime = AFTER_DUE
    due_override: datetime | None = None
    # expectations: either a reason code, or (score_given, score_maximum, grading_progress)
    reason: str | None = None
    score: float | None = None
    maximum: float | None = None
    grading: str | None = None
    activity_progress: str | None = None
    event: str | None = None
    flags: tuple[bool, bool, bool] | None = None  # late, missing, excused
    comment: str | None = "unchecked"
    scored_at: datetime | None = None
    no_score: bool = False  # expect score_given None

    def run(self) -> DesiredResult | NoResult:
        return desired_result(
            PolicyInput(
                policy=self.policy,
                course=self.course,
                activity=self.activity,
                enrollment=self.enrollment,
                attempts=self.attempts,
                due_override=self.due_override,
                capabilities=self.caps,
                now=self.now,
            )
        )


THREE = [attempt(1, 6, 1), attempt(2, 9, 2), attempt(3, 7, 3)]
ZEROS_ON = ResolvedPolicy(past_due_zeros=PastDueZeros.ON)
ZEROS_ASSIGNED = ResolvedPolicy(past_due_zeros=PastDueZeros.ASSIGNED_ONLY)
STATUSES = Capabilities(statuses=True)
PERCENT = Capabilities(score_form=ScoreForm.PERCENT)

CASES = [
    # --- attempt selection ------------------------------------------------------------------
    Case(
        "highest is the default",
        THREE,
        score=9,
        maximum=10,
        grading="FullyGraded",
        event="ev-2",
        scored_at=at(2),
    ),
    Case(
        "highest: a tie keeps the earliest",
        [attempt(1, 9, 1), attempt(2, 9, 2)],
        score=9,
        event="ev-1",
    ),
    Case(
        "latest",
        THREE,
        policy=ResolvedPolicy(attempt_selection=AttemptSelection.LATEST),
        score=7,
        event="ev-3",
    ),
    Case(
        "latest regardless of input order",
        list(reversed(THREE)),
        policy=ResolvedPolicy(attempt_selection=AttemptSelection.LATEST),
        score=7,
        event="ev-3",
    ),
    Case(
        "first",
        list(reversed(THREE)),
        policy=ResolvedPolicy(attempt_selection=AttemptSelection.FIRST),
        score=6,
        event="ev-1",
    ),
    Case(
        "average, dated by the newest",
        THREE,
        policy=ResolvedPolicy(attempt_selection=AttemptSelection.AVERAGE),
        score=7.333333,
        event="ev-3",
        scored_at=at(3),
    ),
    Case(
        "an attempt on its own scale is rescaled to the activity's points",
        [attempt(1, 45, 1, maximum=50)],
        score=9,
        maximum=10,
    ),
    Case(
        "an attempt with no maximum is taken as points", [attempt(1, 4, 1, maximum=None)], score=4
    ),
    Case(
        "ungraded attempts do not hide a graded one",
        [attempt(1, 5, 1), attempt(2, None, 2)],
        policy=ResolvedPolicy(attempt_selection=AttemptSelection.LATEST),
        score=5,
        event="ev-1",
        grading="FullyGraded",
    ),
    Case("a graded zero is sent", [attempt(1, 0, 1)], score=0, grading="FullyGraded"),
    # --- score form and extra credit ----------------------------------------------------------
    Case(
        "percent form scales to the destination's scale",
        [attempt(1, 7.5, 1)],
        caps=PERCENT,
        score=75,
        maximum=100,
    ),
    Case(
        "percent form for LTI 1.1 (0..1)",
        [attempt(1, 7.5, 1)],
        caps=Capabilities(score_form=ScoreForm.PERCENT, percent_scale=1.0),
        score=0.75,
        maximum=1.0,
    ),
    Case(
        "extra credit capped by default: 10/5 sent as 5/5",
        [attempt(1, 10, 1, maximum=None)],
        activity=replace(ACTIVITY, points_possible=5),
        score=5,
        maximum=5,
    ),
    Case(
        "extra credit passed through where accepted",
        [attempt(1, 10, 1, maximum=None)],
        activity=replace(ACTIVITY, points_possible=5),
        policy=ResolvedPolicy(extra_credit=ExtraCredit.PASS_THROUGH),
        caps=Capabilities(extra_credit=True),
        score=10,
        maximum=5,
    ),
    Case(
        "extra credit rescaled past the largest number is not sent",
        [attempt(1, 1e10, 1, maximum=1e-300)],
        policy=ResolvedPolicy(extra_credit=ExtraCredit.PASS_THROUGH),
        caps=Capabilities(extra_credit=True),
        reason="score_out_of_range",
    ),
    Case(
        "extra credit that overflows once rescaled is not sent",
        [attempt(1, 1e308, 1, maximum=1)],
        policy=ResolvedPolicy(
            extra_credit=ExtraCredit.PASS_THROUGH, attempt_selection=AttemptSelection.AVERAGE
        ),
        caps=Capabilities(extra_credit=True),
        reason="score_out_of_range",
    ),
    Case(
        "extra credit that overflows in percent form is not sent",
        [attempt(1, 1e308, 1, maximum=None)],
        policy=ResolvedPolicy(extra_credit=ExtraCredit.PASS_THROUGH),
        caps=Capabilities(score_form=ScoreForm.PERCENT, extra_credit=True),
        reason="score_out_of_range",
    ),
    Case(
        "a score rescaled past the largest number is capped under cap",
        [attempt(1, 1e10, 1, maximum=1e-300)],
        caps=Capabilities(extra_credit=True),
        score=10,
        maximum=10,
    ),
    Case(
        "the average of scores whose sum overflows is still their mean",
        [attempt(1, 1.5e308, 1, maximum=None), attempt(2, 1.5e308, 2, maximum=None)],
        policy=ResolvedPolicy(attempt_selection=AttemptSelection.AVERAGE),
        score=10,
        maximum=10,
    ),
    Case(
        "pass-through is capped where the destination refuses extra credit",
        [attempt(1, 10, 1, maximum=None)],
        activity=replace(ACTIVITY, points_possible=5),
        policy=ResolvedPolicy(extra_credit=ExtraCredit.PASS_THROUGH),
        score=5,
        maximum=5,
    ),
    Case(
        "the cap applies to percent too",
        [attempt(1, 12, 1, maximum=None)],
        caps=PERCENT,
        score=100,
        maximum=100,
    ),
    Case(
        "percent with extra credit passed through",
        [attempt(1, 12, 1, maximum=None)],
        policy=ResolvedPolicy(extra_credit=ExtraCredit.PASS_THROUGH),
        caps=Capabilities(score_form=ScoreForm.PERCENT, extra_credit=True),
        score=120,
        maximum=100,
    ),
    Case(
        "whole points only: 7.5 points are sent doubled",
        [attempt(1, 6, 1, maximum=7.5)],
        activity=replace(ACTIVITY, points_possible=7.5),
        caps=Capabilities(integer_points=True),
        score=12,
        maximum=15,
    ),
    Case(
        "whole points only: whole points are sent as they are",
        [attempt(1, 6.5, 1)],
        caps=Capabilities(integer_points=True),
        score=6.5,
        maximum=10,
    ),
    Case(
        "whole points only: no whole factor up to the limit, nothing is sent",
        [attempt(1, 6, 1, maximum=7.3333)],
        activity=replace(ACTIVITY, points_possible=7.3333),
        caps=Capabilities(integer_points=True),
        reason="fractional_points",
    ),
    # --- items that are not sent --------------------------------------------------------------
    Case(
        "practice kind",
        THREE,
        activity=replace(ACTIVITY, kind=ActivityKind.PRACTICE),
        reason="practice_item",
    ),
    Case(
        "0 points is practice",
        THREE,
        activity=replace(ACTIVITY, points_possible=0),
        reason="practice_item",
    ),
    Case(
        "under the 1-point default minimum",
        THREE,
        activity=replace(ACTIVITY, points_possible=0.5),
        reason="below_minimum_points",
    ),
    Case(
        "exactly the minimum is sent",
        [attempt(1, 1, 1, maximum=None)],
        activity=replace(ACTIVITY, points_possible=1),
        score=1,
        maximum=1,
    ),
    Case(
        "a configurable minimum",
        THREE,
        activity=replace(ACTIVITY, points_possible=4),
        policy=ResolvedPolicy(minimum_points=5),
        reason="below_minimum_points",
    ),
    Case(
        "a minimum of 0 lets 0.5-point items through",
        [attempt(1, 0.5, 1, maximum=None)],
        activity=replace(ACTIVITY, points_possible=0.5),
        policy=ResolvedPolicy(minimum_points=0),
        score=0.5,
        maximum=0.5,
    ),
    Case("unpublished", THREE, activity=replace(ACTIVITY, published=False), reason="not_published"),
    Case(
        "activity sync box cleared",
        THREE,
        activity=replace(ACTIVITY, sync_enabled=False),
        reason="sync_disabled",
    ),
    Case(
        "course sync off",
        THREE,
        course=replace(COURSE, sync_enabled=False),
        reason="course_sync_disabled",
    ),
    # --- completion items --------------------------------------------------------------------
    Case(
        "completion item completed: full credit",
        [attempt(1, None, 1, completed=False), attempt(2, None, 2, completed=True)],
        activity=replace(ACTIVITY, kind=ActivityKind.COMPLETION, points_possible=1),
        score=1,
        maximum=1,
        event="ev-2",
        activity_progress="Completed",
    ),
    Case(
        "completion item opened, not finished",
        [attempt(1, None, 1, completed=False)],
        activity=replace(ACTIVITY, kind=ActivityKind.COMPLETION, due_at=None),
        reason="not_completed_yet",
    ),
    Case(
        "completion item not finished past due, zeros on",
        [attempt(1, None, 1, completed=False)],
        policy=ZEROS_ON,
        activity=replace(ACTIVITY, kind=ActivityKind.COMPLETION),
        score=0,
        maximum=10,
    ),
    # --- role, enrollment and course dates -----------------------------------------------------
    Case("not enrolled", THREE, enrollment=None, reason="not_enrolled"),
    Case(
        "instructor",
        THREE,
        enrollment=replace(LEARNER, role=Role.INSTRUCTOR),
        reason="not_a_learner",
    ),
    Case(
        "observer", THREE, enrollment=replace(LEARNER, role=Role.OBSERVER), reason="not_a_learner"
    ),
    Case(
        "dropped",
        THREE,
        enrollment=replace(LEARNER, status=EnrollmentStatus.DROPPED),
        reason="enrollment_inactive",
    ),
    Case(
        "inactive learner gets no past-due zero",
        [],
        policy=ZEROS_ON,
        enrollment=replace(LEARNER, status=EnrollmentStatus.INACTIVE),
        reason="enrollment_inactive",
    ),
    Case(
        "all attempts before the course start",
        THREE,
        course=replace(COURSE, starts_at=at(10)),
        reason="outside_course_dates",
    ),
    Case(
        "all attempts after the course end",
        THREE,
        course=replace(COURSE, ends_at=at(0.5)),
        reason="outside_course_dates",
    ),
    Case(
        "only attempts inside the course dates count",
        THREE,
        course=replace(COURSE, starts_at=at(0), ends_at=at(2.5)),
        score=9,
        event="ev-2",
    ),
    Case(
        "an attempt outside the dates does not count as highest",
        [attempt(1, 5, 1), attempt(2, 10, 50)],
        course=replace(COURSE, ends_at=at(10)),
        score=5,
        event="ev-1",
    ),
    Case(
        "the course end is inclusive",
        [attempt(1, 5, 1)],
        course=replace(COURSE, ends_at=at(1)),
        score=5,
    ),
    Case(
        "attempts of other activities or people are ignored",
        [
            replace(attempt(1, 10, 1), activity_id="other"),
            replace(attempt(2, 10, 1), person_id="p2"),
            attempt(3, 3, 1),
        ],
        score=3,
        event="ev-3",
    ),
    # --- past-due zeros -----------------------------------------------------------------------
    Case("zeros off: no attempt sends nothing", [], reason="no_attempt_yet"),
    Case(
        "zeros on, past due: 0, fully graded, missing",
        [],
        policy=ZEROS_ON,
        caps=STATUSES,
        score=0,
        maximum=10,
        grading="FullyGraded",
        activity_progress="Initialized",
        flags=(False, True, False),
        event=None,
        scored_at=DUE,
    ),
    Case(
        "zeros on, before due: nothing yet",
        [],
        policy=ZEROS_ON,
        now=DUE - timedelta(1),
        reason="no_attempt_yet",
    ),
    Case("zeros on, exactly at the due date: zero", [], policy=ZEROS_ON, now=DUE, score=0),
    Case(
        "grace period postpones the zero",
        [],
        policy=replace(ZEROS_ON, grace_period_minutes=60),
        now=DUE + timedelta(minutes=59),
        reason="no_attempt_yet",
    ),
    Case(
        "after the grace period: zero dated at the end of grace",
        [],
        policy=replace(ZEROS_ON, grace_period_minutes=60),
        now=DUE + timedelta(minutes=60),
        score=0,
        scored_at=DUE + timedelta(minutes=60),
    ),
    Case(
        "a per-learner extension postpones the zero",
        [],
        policy=ZEROS_ON,
        now=DUE + timedelta(days=1),
        due_override=DUE + timedelta(days=2),
        reason="no_attempt_yet",
    ),
    Case(
        "past the extension: zero",
        [],
        policy=ZEROS_ON,
        now=DUE + timedelta(days=3),
        due_override=DUE + timedelta(days=2),
        score=0,
        scored_at=DUE + timedelta(days=2),
    ),
    Case(
        "an extension can also bring the date forward",
        [],
        policy=ZEROS_ON,
        now=DUE - timedelta(days=1),
        due_override=DUE - timedelta(days=2),
        score=0,
    ),
    Case(
        "no due date: no zero",
        [],
        policy=ZEROS_ON,
        activity=replace(ACTIVITY, due_at=None),
        reason="no_attempt_yet",
    ),
    Case(
        "a later attempt replaces the zero",
        [attempt(1, 4, 200)],
        policy=ZEROS_ON,
        score=4,
        event="ev-1",
    ),
    Case("assigned-only: assigned activity gets the zero", [], policy=ZEROS_ASSIGNED, score=0),
    Case(
        "assigned-only: unassigned activity does not",
        [],
        policy=ZEROS_ASSIGNED,
        activity=replace(ACTIVITY, assigned=False),
        reason="no_attempt_yet",
    ),
    Case(
        "zeros on, unassigned activity still gets it",
        [],
        policy=ZEROS_ON,
        activity=replace(ACTIVITY, assigned=False),
        score=0,
    ),
    Case("zero in percent form", [], policy=ZEROS_ON, caps=PERCENT, score=0, maximum=100),
    Case(
        "attempts outside the dates are not turned into a zero",
        THREE,
        policy=ZEROS_ON,
        course=replace(COURSE, starts_at=at(10)),
        reason="outside_course_dates",
    ),
    # --- destinations that do not store zeros (Brightspace) ------------------------------------
    Case(
        "past-due zero where zeros are not stored",
        [],
        policy=ZEROS_ON,
        caps=Capabilities(zeros_stored=False),
        reason="zeros_not_stored",
    ),
    Case(
        "graded zero where zeros are not stored",
        [attempt(1, 0, 1)],
        caps=Capabilities(zeros_stored=False),
        reason="zeros_not_stored",
    ),
    Case(
        "non-zero where zeros are not stored",
        [attempt(1, 1, 1)],
        caps=Capabilities(zeros_stored=False),
        score=1,
    ),
    # --- pending (submitted, not graded) -----------------------------------------------------
    Case(
        "only ungraded attempts: Pending with no score",
        [attempt(1, None, 1), attempt(2, None, 2)],
        no_score=True,
        maximum=10,
        grading="Pending",
        activity_progress="Submitted",
        event="ev-2",
    ),
    Case(
        "ungraded work past due is not zeroed",
        [attempt(1, None, 1)],
        policy=ZEROS_ON,
        grading="Pending",
        no_score=True,
    ),
    Case(
        "destination without pending results",
        [attempt(1, None, 1)],
        caps=Capabilities(pending_results=False),
        reason="not_graded_yet",
    ),
    # --- statuses and comments ---------------------------------------------------------------
    Case(
        "late flag from the source",
        [attempt(1, 8, 1, late=True)],
        caps=STATUSES,
        flags=(True, False, False),
    ),
    Case(
        "late because completed after the due date",
        [attempt(1, 8, 200)],
        caps=STATUSES,
        flags=(True, False, False),
    ),
    Case(
        "not late within the grace period",
        [attempt(1, 8, 168.5)],
        caps=STATUSES,
        policy=ResolvedPolicy(grace_period_minutes=60),
        flags=(False, False, False),
    ),
    Case(
        "not late before an extended due date",
        [attempt(1, 8, 200)],
        caps=STATUSES,
        due_override=at(300),
        flags=(False, False, False),
    ),
    Case(
        "late is the counted attempt's",
        [attempt(1, 9, 1), attempt(2, 5, 200)],
        caps=STATUSES,
        flags=(False, False, False),
        score=9,
    ),
    Case(
        "statuses dropped where the destination cannot carry them",
        [attempt(1, 8, 1, late=True)],
        flags=(False, False, False),
    ),
    Case(
        "excused: no score, fully graded",
        [attempt(1, 5, 1), attempt(2, None, 2, excused=True)],
        caps=STATUSES,
        grading="FullyGraded",
        no_score=True,
        flags=(False, False, True),
    ),
    Case(
        "excused learner is not zeroed",
        [attempt(1, None, 1, excused=True)],
        policy=ZEROS_ON,
        caps=STATUSES,
        no_score=True,
        flags=(False, False, True),
    ),
    Case(
        "a later attempt lifts the excuse",
        [attempt(1, None, 1, excused=True), attempt(2, 6, 2)],
        caps=STATUSES,
        score=6,
        flags=(False, False, False),
    ),
    Case(
        "comment of the counted attempt",
        [attempt(1, 9, 1, comment="well done"), attempt(2, 5, 2, comment="hmm")],
        comment="well done",
    ),
    Case(
        "comments dropped where not accepted",
        [attempt(1, 9, 1, comment="well done")],
        caps=Capabilities(comments=False),
        comment=None,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_policy_rule(case: Case) -> None:
    out = case.run()
    if case.reason is not None:
        assert isinstance(out, NoResult), out
        assert out.reason.code == case.reason
        assert len(out.reason.text) > 20  # a sentence, not a code
        return
    assert isinstance(out, DesiredResult), out
    if case.no_score:
        assert out.score_given is None
    if case.score is not None:
        assert out.score_given == pytest.approx(case.score, abs=1e-6)
    if case.maximum is not None:
        assert out.score_maximum == case.maximum
    if case.grading is not None:
        assert out.grading_progress == case.grading
    if case.activity_progress is not None:
        assert out.activity_progress == case.activity_progress
    if case.event is not None:
        assert out.attempt_event_id == case.event
    if case.flags is not None:
        assert (out.late, out.missing, out.excused) == case.flags
    if case.comment != "unchecked":
        assert out.comment == case.comment
    if case.scored_at is not None:
        assert out.scored_at == case.scored_at
    assert out.basis  # every result says why


@pytest.mark.parametrize("caps", [NO_QUIRKS, STATUSES], ids=["lms", "sis"])
def test_an_excused_learner_is_said_excused_where_the_flag_is_not_sent(
    caps: Capabilities,
) -> None:
    """An LMS takes no excused flag (it is dropped from what is sent, and hashed), yet the
    result still says the learner is excused (`learner_excused`), for the console to say."""
    out = Case("", [attempt(1, None, 1, excused=True)], caps=caps).run()
    assert isinstance(out, DesiredResult) and out.score_given is None
    assert out.excused is caps.statuses
    assert out.learner_excused is True
    graded = Case("", [attempt(1, 7, 1)], caps=caps).run()
    assert isinstance(graded, DesiredResult) and graded.learner_excused is False


def test_basis_names_the_selection_and_attempt() -> None:
    out = Case("", THREE).run()
    assert isinstance(out, DesiredResult)
    assert out.basis.startswith("Highest of 3 graded attempt(s): 9/10 from ev-2")


def test_capped_basis_says_so() -> None:
    out = Case("", [attempt(1, 12, 1, maximum=None)]).run()
    assert isinstance(out, DesiredResult)
    assert "Capped" in out.basis and "12" in out.basis


def test_rules_checked_in_order_course_before_activity_before_person() -> None:
    case = Case(
        "",
        THREE,
        course=replace(COURSE, sync_enabled=False),
        activity=replace(ACTIVITY, published=False),
        enrollment=None,
    )
    out = case.run()
    assert isinstance(out, NoResult) and out.reason.code == "course_sync_disabled"
    out = replace(case, course=COURSE).run()
    assert isinstance(out, NoResult) and out.reason.code == "not_published"
    out = replace(case, course=COURSE, activity=ACTIVITY).run()
    assert isinstance(out, NoResult) and out.reason.code == "not_enrolled"


def test_the_practice_item_reason_says_why_the_activity_is_one() -> None:
    """A practice item is one by its kind, whatever its points, or by being worth 0 points:
    a 10-point practice item was said to be "worth 0 points"."""
    practice = Case("", THREE, activity=replace(ACTIVITY, kind=ActivityKind.PRACTICE)).run()
    assert isinstance(practice, NoResult) and practice.reason.code == "practice_item"
    assert "0 points" not in practice.reason.text
    assert "'Quiz 1' is a practice item (its kind is 'practice')" in practice.reason.text
    assert "whatever their points" in practice.reason.text
    free = Case("", THREE, activity=replace(ACTIVITY, points_possible=0)).run()
    assert isinstance(free, NoResult) and free.reason.code == "practice_item"
    assert "'Quiz 1' is worth 0 points, so it is a practice item" in free.reason.text
    assert "give it points" in free.reason.text
    both = Case(
        "", THREE, activity=replace(ACTIVITY, kind=ActivityKind.PRACTICE, points_possible=0)
    ).run()
    assert isinstance(both, NoResult) and "(its kind is 'practice')" in both.reason.text


def test_no_attempt_reason_says_when_the_zero_comes() -> None:
    out = Case("", [], policy=ZEROS_ON, now=DUE - timedelta(days=1)).run()
    assert isinstance(out, NoResult)
    assert "2025-03-08 12:00 UTC" in out.reason.text


def test_status_only_change_changes_the_result() -> None:
    plain = Case("", [attempt(1, 8, 1)], caps=STATUSES).run()
    late = Case("", [attempt(1, 8, 1, late=True)], caps=STATUSES).run()
    assert isinstance(plain, DesiredResult) and isinstance(late, DesiredResult)
    assert plain != late and plain.score_given == late.score_given


def test_result_does_not_depend_on_now_once_decided() -> None:
    # `now` only decides *whether* a zero is due; the zero itself is identical on every run,
    # otherwise each resync would make every zero pending again.
    a = Case("", [], policy=ZEROS_ON, now=DUE + timedelta(days=1)).run()
    b = Case("", [], policy=ZEROS_ON, now=DUE + timedelta(days=30)).run()
    assert a == b


# --- settings ------------------------------------------------------------------------------


def test_defaults() -> None:
    p = resolve_settings()
    assert p == ResolvedPolicy(
        attempt_selection=AttemptSelection.HIGHEST,
        extra_credit=ExtraCredit.CAP,
        past_due_zeros=PastDueZeros.OFF,
        grace_period_minutes=0,
        minimum_points=1.0,
        name_rule=NameRule.SHORTEN,
        keep_lms_edits=True,
    )


@pytest.mark.parametrize(
    ("tenant", "course", "activity", "expected"),
    [
        (PolicySettings(), PolicySettings(), PolicySettings(), AttemptSelection.HIGHEST),
        (
            PolicySettings(attempt_selection=AttemptSelection.LATEST),
            PolicySettings(),
            PolicySettings(),
            AttemptSelection.LATEST,
        ),
        (
            PolicySettings(attempt_selection=AttemptSelection.LATEST),
            PolicySettings(attempt_selection=AttemptSelection.FIRST),
            PolicySettings(),
            AttemptSelection.FIRST,
        ),
        (
            PolicySettings(attempt_selection=AttemptSelection.LATEST),
            PolicySettings(attempt_selection=AttemptSelection.FIRST),
            PolicySettings(attempt_selection=AttemptSelection.AVERAGE),
            AttemptSelection.AVERAGE,
        ),
        (
            PolicySettings(),
            PolicySettings(),
            PolicySettings(attempt_selection=AttemptSelection.AVERAGE),
            AttemptSelection.AVERAGE,
        ),
    ],
)
def test_layers_later_wins(
    tenant: PolicySettings,
    course: PolicySettings,
    activity: PolicySettings,
    expected: AttemptSelection,
) -> None:
    assert resolve_settings(tenant, course, activity).attempt_selection is expected


def test_layers_are_per_knob() -> None:
    p = resolve_settings(
        PolicySettings(past_due_zeros=PastDueZeros.ON, grace_period_minutes=30),
        PolicySettings(extra_credit=ExtraCredit.PASS_THROUGH, grace_period_minutes=0),
        PolicySettings(minimum_points=0.0, keep_lms_edits=False, name_rule=NameRule.REFUSE),
    )
    assert p == ResolvedPolicy(
        attempt_selection=AttemptSelection.HIGHEST,
        extra_credit=ExtraCredit.PASS_THROUGH,
        past_due_zeros=PastDueZeros.ON,
        grace_period_minutes=0,  # an explicit 0 overrides, it is not "unset"
        minimum_points=0.0,
        name_rule=NameRule.REFUSE,
        keep_lms_edits=False,
    )


@pytest.mark.parametrize(
    ("layer", "field_name"),
    [
        (PolicySettings(grace_period_minutes=-1), "layers[1].grace_period_minutes"),
        # stored before it was refused: a reason on each grade, not a computation that
        # overflows and stops every other one
        (PolicySettings(grace_period_minutes=10**20), "layers[1].grace_period_minutes"),
        (PolicySettings(minimum_points=-0.5), "layers[1].minimum_points"),
        (PolicySettings(minimum_points=float("nan")), "layers[1].minimum_points"),
    ],
)
def test_invalid_settings_are_refused_naming_the_field(
    layer: PolicySettings, field_name: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        resolve_settings(PolicySettings(), layer)
    assert [p.field for p in err.value.problems] == [field_name]


@pytest.mark.parametrize(
    ("zeros", "assigned", "override", "grace", "expected"),
    [
        (PastDueZeros.OFF, True, None, 0, None),
        (PastDueZeros.ON, True, None, 0, DUE),
        (PastDueZeros.ON, True, None, 90, DUE + timedelta(minutes=90)),
        (PastDueZeros.ON, True, DUE + timedelta(days=1), 90, DUE + timedelta(days=1, minutes=90)),
        (PastDueZeros.ASSIGNED_ONLY, False, None, 0, None),
        (PastDueZeros.ASSIGNED_ONLY, True, None, 0, DUE),
        # due + grace past the end of year 9999 never comes: no zero, ever
        (PastDueZeros.ON, True, LAST_DAY, 527040, None),
        (PastDueZeros.ON, True, LAST_DAY + timedelta(hours=23, minutes=30), 60, None),
        (PastDueZeros.ON, True, LAST_DAY, 60, LAST_DAY + timedelta(hours=1)),
    ],
)
def test_zero_point(
    zeros: PastDueZeros,
    assigned: bool,
    override: datetime | None,
    grace: int,
    expected: datetime | None,
) -> None:
    policy = ResolvedPolicy(past_due_zeros=zeros, grace_period_minutes=grace)
    assert zero_point(policy, replace(ACTIVITY, assigned=assigned), override) == expected


def test_a_due_date_whose_grace_ends_past_year_9999_is_never_past_due() -> None:
    far = replace(ACTIVITY, due_at=LAST_DAY)
    policy = ResolvedPolicy(past_due_zeros=PastDueZeros.ON, grace_period_minutes=527040)
    waiting = Case("", [], policy=policy, activity=far, now=LAST_DAY).run()
    assert isinstance(waiting, NoResult) and waiting.reason.code == "no_attempt_yet"
    done = Case("", [attempt(1, 7, 1)], policy=policy, activity=far, caps=STATUSES).run()
    assert isinstance(done, DesiredResult) and done.score_given == 7 and not done.late
    extended = Case(
        "",
        [attempt(1, 7, 1)],
        policy=ResolvedPolicy(past_due_zeros=PastDueZeros.ON, grace_period_minutes=60),
        due_override=LAST_DAY + timedelta(hours=23, minutes=30),
        caps=STATUSES,
    ).run()
    assert isinstance(extended, DesiredResult) and not extended.late


def test_past_due_zero_counts_no_attempt() -> None:
    out = Case("", [], policy=ZEROS_ON).run()
    assert isinstance(out, DesiredResult)
    assert out.attempt_event_id is None
    assert "past-due zero" in out.basis
