"""The grade policy engine: facts in, the desired result for one (activity, learner) out.

Pure functions, no I/O: the clock (`now`) is an input. The order of the rules matters and is
the order a support engineer would check them: is the course/activity synced at all, is the
person a learner, which attempts count, which one is selected, how the score is shaped for the
destination. Every "send nothing" comes back as a `NoResult` with a `Reason`.

See docs/policies.md for each setting, its default and an example.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gradesync.domain import reasons
from gradesync.domain.canonical import digest, iso, number
from gradesync.domain.capabilities import Capabilities
from gradesync.domain.errors import FieldProblem, InvalidInput
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
from gradesync.domain.names import destination_name, renamed_note
from gradesync.domain.reasons import Reason

__all__ = [
    "DEFAULT_POLICY",
    "INVALID_POLICY",
    "Capabilities",
    "Column",
    "DesiredResult",
    "NoResult",
    "PolicyInput",
    "ResolvedPolicy",
    "activity_policy",
    "column_for",
    "column_hash",
    "desired_result",
    "resolve_settings",
    "settings_problems",
    "zero_point",
]

# AGS vocabulary (gradingProgress / activityProgress).
FULLY_GRADED = "FullyGraded"
PENDING = "Pending"
COMPLETED = "Completed"
SUBMITTED = "Submitted"
INITIALIZED = "Initialized"

# Scores are rounded to this many decimals so that the same facts give the same bytes (and
# hash) whatever order floating-point sums were taken in. A millionth of a point is below any
# gradebook's display precision.
SCORE_DECIMALS = 6

# The longest grace period: a year and a day. Longer is a typo, not a grace period (and
# far longer overflows a date computed from it, which stopped every computation).
MAX_GRACE_MINUTES = 366 * 24 * 60
GRACE_RULE = (
    f"The grace period is a whole number of minutes, from 0 to {MAX_GRACE_MINUTES:,} (366 days)."
)


# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvedPolicy:
    """Every `PolicySettings` knob with a concrete value."""

    attempt_selection: AttemptSelection = AttemptSelection.HIGHEST
    extra_credit: ExtraCredit = ExtraCredit.CAP
    past_due_zeros: PastDueZeros = PastDueZeros.OFF
    grace_period_minutes: int = 0
    minimum_points: float = 1.0
    name_rule: NameRule = NameRule.SHORTEN
    keep_lms_edits: bool = True

    @property
    def grace(self) -> timedelta:
        return timedelta(minutes=self.grace_period_minutes)


DEFAULT_POLICY = ResolvedPolicy()


def settings_problems(settings: PolicySettings, prefix: str = "policy") -> list[FieldProblem]:
    """What is wrong with one layer of settings (empty when it is valid)."""
    problems: list[FieldProblem] = []
    grace = settings.grace_period_minutes
    if grace is not None and not 0 <= grace <= MAX_GRACE_MINUTES:
        problems.append(
            FieldProblem(
                f"{prefix}.grace_period_minutes",
                "not_negative" if grace < 0 else "maximum",
                GRACE_RULE,
            )
        )
    minimum = settings.minimum_points
    if minimum is not None and (not math.isfinite(minimum) or minimum < 0):
        problems.append(
            FieldProblem(
                f"{prefix}.minimum_points",
                "not_negative",
                "The minimum points for sync is a finite number, 0 or more.",
            )
        )
    return problems


def resolve_settings(*layers: PolicySettings) -> ResolvedPolicy:
    """Layer settings over the defaults, in order (tenant, course, activity): for each knob
    the last layer that sets it (not None) wins. Raises `InvalidInput` for an invalid layer,
    because a wrong grade sent quietly is worse than a run that stops and says why."""
    problems = [
        p for i, layer in enumerate(layers) for p in settings_problems(layer, f"layers[{i}]")
    ]
    if problems:
        raise InvalidInput(problems)
    d = DEFAULT_POLICY
    selection, extra, zeros = d.attempt_selection, d.extra_credit, d.past_due_zeros
    grace, minimum, name_rule, keep = (
        d.grace_period_minutes,
        d.minimum_points,
        d.name_rule,
        d.keep_lms_edits,
    )
    for layer in layers:
        if layer.attempt_selection is not None:
            selection = layer.attempt_selection
        if layer.extra_credit is not None:
            extra = layer.extra_credit
        if layer.past_due_zeros is not None:
            zeros = layer.past_due_zeros
        if layer.grace_period_minutes is not None:
            grace = layer.grace_period_minutes
        if layer.minimum_points is not None:
            minimum = layer.minimum_points
        if layer.name_rule is not None:
            name_rule = layer.name_rule
        if layer.keep_lms_edits is not None:
            keep = layer.keep_lms_edits
    return ResolvedPolicy(selection, extra, zeros, grace, minimum, name_rule, keep)


INVALID_POLICY = "invalid_policy"


def activity_policy(
    layers: Sequence[PolicySettings], activity: Activity
) -> ResolvedPolicy | Reason:
    """The activity's policy over `layers` (the tenant's, the course's), or why it cannot be
    worked out (settings that contradict each other), as computing says it."""
    try:
        return resolve_settings(*layers, activity.policy)
    except InvalidInput as exc:
        return Reason(INVALID_POLICY, f"The grade policy settings are invalid: {exc}")


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DesiredResult:
    score_given: float | None  # in the destination's form (points or percent)
    score_maximum: float
    grading_progress: str  # AGS vocabulary: "FullyGraded", "Pending"
    activity_progress: str  # "Completed", "Submitted", "Initialized"
    comment: str | None
    late: bool
    missing: bool
    excused: bool
    scored_at: datetime | None  # when the counted attempt was completed (scoreDate)
    basis: str  # which attempt counts and why (not hashed: it is not sent)
    attempt_event_id: str | None  # the counted attempt's source_event_id (not hashed)
    # the activity's points the score was shaped on: what a percent form's fraction is a
    # fraction of (not hashed: it is not sent); None in results computed before it was kept
    points_possible: float | None = None
    # the learner is excused, kept where the destination takes no excused flag (`excused` is
    # then False and no score is sent) so the grade is said as excused (not hashed: it is not
    # sent; `domain.grade_words`)
    learner_excused: bool = False


@dataclass(frozen=True, slots=True)
class NoResult:
    reason: Reason


@dataclass(frozen=True, slots=True)
class PolicyInput:
    policy: ResolvedPolicy
    course: Course
    activity: Activity
    enrollment: Enrollment | None
    attempts: Sequence[Attempt]  # this learner's attempts on this activity (any order)
    due_override: datetime | None
    capabilities: Capabilities
    now: datetime


def _chronological_key(a: Attempt) -> tuple[datetime, datetime, int, str]:
    # completed_at first; ties broken by arrival, then by the source's id, so the order (and
    # thus "first", "latest" and the tie-break of "highest") never depends on input order.
    return (
        a.completed_at,
        a.recorded_at or a.completed_at,
        a.id if a.id is not None else -1,
        a.source_event_id,
    )


def _points(attempt: Attempt, points_possible: float) -> float:
    """The attempt's score in the activity's points. A source may grade on its own scale
    (score_maximum); that is rescaled. Without a maximum the score is taken as points."""
    given = attempt.score_given
    assert given is not None
    top = attempt.score_maximum
    if top is None or top <= 0 or top == points_possible:
        return given
    return given / top * points_possible


def _fmt(value: float) -> str:
    return f"{round(value, SCORE_DECIMALS):g}"


def _in_window(attempt: Attempt, course: Course) -> bool:
    if course.starts_at is not None and attempt.completed_at < course.starts_at:
        return False
    return not (course.ends_at is not None and attempt.completed_at > course.ends_at)


def zero_point(
    policy: ResolvedPolicy, activity: Activity, due_override: datetime | None
) -> datetime | None:
    """When a learner with no attempt gets a past-due zero, or None if they never do."""
    if policy.past_due_zeros is PastDueZeros.OFF:
        return None
    if policy.past_due_zeros is PastDueZeros.ASSIGNED_ONLY and not activity.assigned:
        return None
    due = due_override if due_override is not None else activity.due_at
    if due is None:
        return None
    return _plus_grace(due, policy.grace)


def _plus_grace(due: datetime, grace: timedelta) -> datetime | None:
    """The due date plus the grace period, or None when that falls after the last moment a
    date can hold (the end of year 9999): a moment that never comes. Courseware writes
    9999-12-31 for "no due date"."""
    try:
        return due + grace
    except OverflowError:
        return None


def _is_late(attempt: Attempt, inp: PolicyInput) -> bool:
    """Late when the source says so, or when completed after the (learner's) due date plus
    grace: the grace period forgives lateness as it postpones zeros."""
    if attempt.late:
        return True
    due = inp.due_override if inp.due_override is not None else inp.activity.due_at
    end = _plus_grace(due, inp.policy.grace) if due is not None else None
    return end is not None and attempt.completed_at > end


def _shape(points: float, inp: PolicyInput) -> tuple[float, float, str]:
    """Apply extra-credit handling and the destination's score form to points.
    Returns (score_given, score_maximum, a note for the basis)."""
    policy, caps, top = inp.policy, inp.capabilities, inp.activity.points_possible
    note = ""
    if points > top:
        if policy.extra_credit is ExtraCredit.PASS_THROUGH and caps.extra_credit:
            note = f" Extra credit passed through ({_fmt(points)} of {_fmt(top)})."
        else:
            why = (
                "the course caps extra credit"
                if policy.extra_credit is ExtraCredit.CAP
                else "this destination does not accept extra credit"
            )
            note = f" Capped at the maximum because {why} ({_fmt(points)} earned)."
            points = top
    if caps.score_form is ScoreForm.PERCENT:
        given = points * caps.percent_scale / top
        return (
            round(given, SCORE_DECIMALS),
            caps.percent_scale,
            note + (f" Sent as a fraction of {_fmt(caps.percent_scale)}."),
        )
    scale = points_scale(top, caps) or 1
    if scale != 1:
        note += (
            f" Sent as {_fmt(points * scale)} of {_fmt(top * scale)}: this destination takes "
            f"whole points only, so points are multiplied by {scale}."
        )
    return round(points * scale, SCORE_DECIMALS), top * scale, note


def _result(
    inp: PolicyInput,
    *,
    score_given: float | None,
    score_maximum: float,
    grading_progress: str,
    activity_progress: str,
    attempt: Attempt | None,
    late: bool,
    missing: bool,
    excused: bool,
    scored_at: datetime | None,
    basis: str,
) -> DesiredResult | NoResult:
    caps = inp.capabilities
    if score_given is not None and score_given == 0 and not caps.zeros_stored:
        return NoResult(reasons.zeros_not_stored())
    comment = attempt.comment if attempt is not None and caps.comments else None
    learner_excused = excused
    if not caps.statuses:
        # Flags this destination cannot carry are left out, so a status-only change does not
        # resend an identical payload (the hash covers exactly what is sent). The learner's
        # being excused is still said (`learner_excused`, not hashed).
        late = missing = excused = False
    return DesiredResult(
        score_given=number(score_given) if score_given is not None else None,
        score_maximum=number(score_maximum),
        grading_progress=grading_progress,
        activity_progress=activity_progress,
        comment=comment,
        late=late,
        missing=missing,
        excused=excused,
        scored_at=scored_at,
        basis=basis.strip(),
        attempt_event_id=attempt.source_event_id if attempt is not None else None,
        points_possible=number(inp.activity.points_possible),
        learner_excused=learner_excused,
    )


def _activity_skip(activity: Activity, policy: ResolvedPolicy) -> Reason | None:
    """Reasons that hold for every learner of the activity."""
    if not activity.sync_enabled:
        return reasons.sync_disabled(activity.title)
    if not activity.published:
        return reasons.not_published(activity.title)
    if activity.kind is ActivityKind.PRACTICE or activity.points_possible <= 0:
        return reasons.practice_item(
            activity.title,
            activity.points_possible,
            marked_practice=activity.kind is ActivityKind.PRACTICE,
        )
    if activity.points_possible < policy.minimum_points:
        return reasons.below_minimum_points(
            activity.title, activity.points_possible, policy.minimum_points
        )
    return None


def _person_skip(enrollment: Enrollment | None) -> Reason | None:
    if enrollment is None:
        return reasons.not_enrolled()
    if enrollment.role is not Role.LEARNER:
        return reasons.not_a_learner(enrollment.role.value)
    if enrollment.status is not EnrollmentStatus.ACTIVE:
        if enrollment.status_source == "nrps" and enrollment.status_at is not None:
            return reasons.left_course(enrollment.status_at, "NRPS")
        return reasons.enrollment_inactive(enrollment.status.value)
    return None


def _maximum(inp: PolicyInput) -> float:
    """score_maximum of a result that has no score to shape (zero, excused, pending)."""
    caps = inp.capabilities
    if caps.score_form is ScoreForm.PERCENT:
        return caps.percent_scale
    return inp.activity.points_possible * (points_scale(inp.activity.points_possible, caps) or 1)


def points_scale(points: float, caps: Capabilities) -> int | None:
    """The whole factor points are multiplied by at this destination: 1, unless it takes
    whole points only (then the smallest factor up to its limit that makes `points` whole),
    or None when no such factor exists."""
    if not caps.integer_points or caps.score_form is ScoreForm.PERCENT:
        return 1
    for factor in range(1, caps.integer_scale_limit + 1):
        scaled = points * factor
        if math.isclose(scaled, round(scaled), abs_tol=1e-9):
            return factor
    return None


def _points_skip(activity: Activity, caps: Capabilities) -> Reason | None:
    if points_scale(activity.points_possible, caps) is None:
        return reasons.fractional_points(
            activity.title, activity.points_possible, caps.integer_scale_limit
        )
    return None


def _past_due_zero(
    inp: PolicyInput, otherwise: Callable[[datetime | None], Reason]
) -> DesiredResult | NoResult:
    """A zero if its time has come, else `otherwise(zero point)` says why nothing is sent."""
    zero_at = zero_point(inp.policy, inp.activity, inp.due_override)
    if zero_at is None or inp.now < zero_at:
        return NoResult(otherwise(zero_at))
    extended = " (extended for this learner)" if inp.due_override is not None else ""
    grace = (
        f" plus {inp.policy.grace_period_minutes} minutes' grace"
        if inp.policy.grace_period_minutes
        else ""
    )
    due = zero_at - inp.policy.grace
    return _result(
        inp,
        score_given=0.0,
        score_maximum=_maximum(inp),
        grading_progress=FULLY_GRADED,
        activity_progress=INITIALIZED,
        attempt=None,
        late=False,
        missing=True,
        excused=False,
        scored_at=zero_at,
        basis=(
            f"No qualifying attempt by the due date {iso(due)}{extended}{grace}: a past-due "
            f"zero is sent ({inp.policy.past_due_zeros.value})."
        ),
    )


def _select(graded: list[Attempt], inp: PolicyInput) -> tuple[float, Attempt, str]:
    """The counted points, the attempt that carries date/comment/status, and why."""
    top = inp.activity.points_possible
    scored = [(a, _points(a, top)) for a in graded]  # graded is chronological
    n = len(scored)
    selection = inp.policy.attempt_selection
    if selection is AttemptSelection.AVERAGE:
        try:
            mean = math.fsum(p for _, p in scored) / n
        except OverflowError:  # the sum passes the largest float; the mean may not
            mean = math.fsum(p / n for _, p in scored)
        newest = scored[-1][0]
        return (
            mean,
            newest,
            (
                f"Average of {n} graded attempt(s): {_fmt(mean)}/{_fmt(top)}; date, comment and "
                f"status from the newest, {newest.source_event_id}."
            ),
        )
    if selection is AttemptSelection.LATEST:
        attempt, points = scored[-1]
        label = f"Most recent of {n} graded attempt(s)"
    elif selection is AttemptSelection.FIRST:
        attempt, points = scored[0]
        label = f"First of {n} graded attempt(s)"
    else:
        # max() keeps the first of equal maxima: on a tie the earliest attempt counts, so an
        # equal retake does not change the result (or cause a resend).
        attempt, points = max(scored, key=lambda pair: pair[1])
        label = f"Highest of {n} graded attempt(s)"
    return (
        points,
        attempt,
        (
            f"{label}: {_fmt(points)}/{_fmt(top)} from {attempt.source_event_id} completed "
            f"{iso(attempt.completed_at)}."
        ),
    )


def desired_result(inp: PolicyInput) -> DesiredResult | NoResult:
    """The result one destination should hold for one (activity, learner), or why none.

    Rules, in order:
    1. course sync off, activity sync off, unpublished, practice (0 points), under the
       minimum points: nothing, for everyone;
    2. no enrollment, not a learner, enrollment not active: nothing;
    3. only attempts completed inside the course dates count (none left: outside_course_dates);
    4. the newest counted attempt excused: an excused result with no score;
    5. completion items: full points once an attempt is completed;
    6. graded attempts: the selection (highest, latest, first, average), extra credit, form;
    7. only ungraded attempts: a Pending result (no score) where the destination takes one,
       else not_graded_yet. Handed-in work awaiting a grade is never zeroed;
    8. no attempt: a past-due zero if the policy says so and its time has come, else nothing.
    """
    course, activity, policy = inp.course, inp.activity, inp.policy
    if not course.sync_enabled:
        return NoResult(reasons.course_sync_disabled(course.title))
    skip = (
        _activity_skip(activity, policy)
        or _points_skip(activity, inp.capabilities)
        or _person_skip(inp.enrollment)
    )
    if skip is not None:
        return NoResult(skip)

    mine = [
        a
        for a in inp.attempts
        if a.activity_id == activity.id
        and (inp.enrollment is None or a.person_id == inp.enrollment.person_id)
    ]
    attempts = sorted((a for a in mine if _in_window(a, course)), key=_chronological_key)
    if mine and not attempts:
        return NoResult(reasons.outside_course_dates(len(mine), course.starts_at, course.ends_at))
    if not attempts:
        return _past_due_zero(inp, reasons.no_attempt_yet)

    newest = attempts[-1]
    if newest.excused:
        return _result(
            inp,
            score_given=None,
            score_maximum=_maximum(inp),
            grading_progress=FULLY_GRADED,
            activity_progress=COMPLETED,
            attempt=newest,
            late=False,
            missing=False,
            excused=True,
            scored_at=newest.completed_at,
            basis=f"Excused by {newest.source_event_id} ({iso(newest.completed_at)}): no score.",
        )

    if activity.kind is ActivityKind.COMPLETION:
        done = [a for a in attempts if a.completed and not a.excused]
        if not done:
            return _past_due_zero(inp, reasons.not_completed_yet)
        first = done[0]
        given, maximum, note = _shape(activity.points_possible, inp)
        return _result(
            inp,
            score_given=given,
            score_maximum=maximum,
            grading_progress=FULLY_GRADED,
            activity_progress=COMPLETED,
            attempt=first,
            late=_is_late(first, inp),
            missing=False,
            excused=False,
            scored_at=first.completed_at,
            basis=(
                f"Completion item completed by {first.source_event_id} "
                f"({iso(first.completed_at)}): full credit.{note}"
            ),
        )

    graded = [a for a in attempts if a.score_given is not None and not a.excused]
    if graded:
        points, counted, basis = _select(graded, inp)
        given, maximum, note = _shape(points, inp)
        if not math.isfinite(given):
            # extra credit passed through, rescaled past the largest number: no gradebook
            # holds it, and it is no grade anyone meant
            return NoResult(
                reasons.score_out_of_range(
                    counted.source_event_id,
                    counted.score_given or 0.0,
                    counted.score_maximum,
                    activity.points_possible,
                )
            )
        return _result(
            inp,
            score_given=given,
            score_maximum=maximum,
            grading_progress=FULLY_GRADED,
            activity_progress=COMPLETED,
            attempt=counted,
            late=_is_late(counted, inp),
            missing=False,
            excused=False,
            scored_at=counted.completed_at,
            basis=basis + note,
        )

    ungraded = [a for a in attempts if not a.excused]
    waiting = ungraded[-1]
    if not inp.capabilities.pending_results:
        return NoResult(reasons.not_graded_yet(len(ungraded)))
    return _result(
        inp,
        score_given=None,
        score_maximum=_maximum(inp),
        grading_progress=PENDING,
        activity_progress=SUBMITTED,
        attempt=waiting,
        late=_is_late(waiting, inp),
        missing=False,
        excused=False,
        scored_at=waiting.completed_at,
        basis=(
            f"{len(ungraded)} attempt(s) submitted, none graded yet; the newest, "
            f"{waiting.source_event_id}, is sent as Pending."
        ),
    )


# --- columns -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    """An activity's column (line item) as a destination should show it."""

    title: str
    score_maximum: float
    due_at: datetime | None
    category: str | None
    activity_id: str
    # why the title differs from the activity's name (the rule applied), else None; not
    # part of the column's identity or hash
    renamed: str | None = field(default=None, compare=False)


def column_for(
    activity: Activity, policy: ResolvedPolicy, capabilities: Capabilities
) -> Column | NoResult:
    """The column to create or update, or why the activity has none at this destination.

    score_maximum is the activity's points even in percent form: it is the suggested column
    size, and the LMS scales each percent to whatever the column ends up worth."""
    skip = _activity_skip(activity, policy) or _points_skip(activity, capabilities)
    if skip is not None:
        return NoResult(skip)
    name = destination_name(
        activity.title,
        policy.name_rule,
        capabilities.name_max_length,
        capabilities.forbidden_name_chars,
        capabilities.name_rules_from,
    )
    if isinstance(name, Reason):
        return NoResult(name)
    renamed = (
        None
        if name == activity.title
        else renamed_note(
            activity.title,
            name,
            capabilities.name_max_length,
            capabilities.forbidden_name_chars,
            capabilities.name_rules_from,
        )
    )
    return Column(
        title=name,
        score_maximum=number(
            activity.points_possible * (points_scale(activity.points_possible, capabilities) or 1)
        ),
        due_at=activity.due_at,
        category=activity.category,
        activity_id=activity.id,
        renamed=renamed,
    )


def column_hash(column: Column) -> str:
    return digest(
        {
            "title": column.title,
            "score_maximum": number(column.score_maximum),
            "due_at": iso(column.due_at) if column.due_at is not None else None,
            "category": column.category,
            "activity_id": column.activity_id,
        }
    )
