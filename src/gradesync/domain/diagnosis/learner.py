"""One learner's grade for one activity: the course, the activity and the learner, then each
destination's checks, in the order a support engineer would look."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gradesync.domain.canonical import iso
from gradesync.domain.capabilities import Capabilities
from gradesync.domain.diagnosis.checks import (
    Check,
    CheckCode,
    DestinationFacts,
    Diagnosis,
    LearnerActivityFacts,
    OtherAccount,
    plural,
    when,
)
from gradesync.domain.diagnosis.destination_checks import (
    column_check,
    course_link_check,
    delivery_check,
    destination_ready_check,
    grade_scope_check,
    last_delivery_check,
    launch_check,
    lms_agrees_check,
)
from gradesync.domain.model import (
    Activity,
    ActivityKind,
    Attempt,
    Course,
    Enrollment,
    EnrollmentStatus,
    LedgerRow,
    Person,
    Role,
)
from gradesync.domain.policy import (
    DesiredResult,
    NoResult,
    PolicyInput,
    ResolvedPolicy,
    desired_result,
)
from gradesync.domain.reasons import Reason, ReasonCode, compute_failed

# --- course and activity -------------------------------------------------------------------


def course_checks(course: Course) -> list[Check]:
    return [
        Check(
            CheckCode.COURSE_SYNC_ON,
            "Grade sync is on for the course",
            course.sync_enabled,
            f"Course {course.title!r} ({course.id}): grade sync "
            + ("on." if course.sync_enabled else "turned off."),
            None if course.sync_enabled else "Turn grade sync on in the course's settings.",
            excluded=not course.sync_enabled,
        )
    ]


def activity_checks(activity: Activity, policy: ResolvedPolicy | Reason) -> list[Check]:
    a = activity
    graded = a.kind is not ActivityKind.PRACTICE and a.points_possible > 0
    minimum = policy.minimum_points if isinstance(policy, ResolvedPolicy) else 0.0
    if not graded:
        graded_evidence = (
            f"{a.title!r} is a practice item ({a.kind.value}, {a.points_possible:g} points): "
            "practice items have no column in the gradebook."
        )
        graded_remedy: str | None = (
            "If it should count, make it a graded activity with points (in the courseware, or "
            "rebuild the LMS link as 'Graded')."
        )
    elif a.points_possible < minimum:
        graded = False
        graded_evidence = (
            f"{a.title!r} is worth {a.points_possible:g} points, under the minimum of "
            f"{minimum:g} for grade sync."
        )
        graded_remedy = "Raise the activity's points or lower the course's minimum points."
    else:
        graded_evidence = f"{a.title!r} is a {a.kind.value} activity worth {a.points_possible:g}."
        graded_remedy = None
    checks = [
        Check(
            CheckCode.ACTIVITY_PUBLISHED,
            "The activity is published",
            a.published,
            f"{a.title!r} ({a.id}) is " + ("published." if a.published else "not published."),
            None if a.published else "Publish the activity; its grades are sent once it is.",
        ),
        Check(
            CheckCode.ACTIVITY_GRADED,
            "The activity is graded",
            graded,
            graded_evidence,
            graded_remedy,
            excluded=not graded,  # practice items and items under the minimum, by policy
        ),
        Check(
            CheckCode.ACTIVITY_SYNC_ENABLED,
            "The activity is selected for grade sync",
            a.sync_enabled,
            f"{a.title!r}: sync box " + ("ticked." if a.sync_enabled else "cleared (opted out)."),
            None if a.sync_enabled else "Tick the activity in the course's grade sync settings.",
            excluded=not a.sync_enabled,
        ),
    ]
    if isinstance(policy, Reason):
        checks.append(
            Check(
                CheckCode.COUNTED_ATTEMPT,
                "The grade policy is valid",
                False,
                policy.text,
                "Fix the course's grade policy settings.",
            )
        )
    return checks


# --- the learner ---------------------------------------------------------------------------


def _enrollment_check(enrollment: Enrollment | None, course: Course) -> Check:
    name = "Enrolled in the course with a learner role"
    if enrollment is None:
        return Check(
            CheckCode.ENROLLED_AS_LEARNER,
            name,
            False,
            f"No enrollment in course {course.id!r}.",
            "The learner must be enrolled as a student: their first launch from the LMS course "
            "enrolls them, or the roster sync does.",
        )
    if enrollment.role is not Role.LEARNER:
        return Check(
            CheckCode.ENROLLED_AS_LEARNER,
            name,
            False,
            f"Enrolled as {enrollment.role.value!r}, not as a learner.",
            "Give the person the Student/Learner role in the LMS course (then they launch "
            "again); instructors, TAs and observers get no grades.",
        )
    if enrollment.status is not EnrollmentStatus.ACTIVE and enrollment.status_source == "nrps":
        when = enrollment.status_at.date().isoformat() if enrollment.status_at else "?"
        return Check(
            CheckCode.ENROLLED_AS_LEARNER,
            name,
            False,
            f"Not in the LMS course: left the course on {when} (NRPS).",
            "Nothing to do if the learner dropped the course; if not, enroll them again in "
            "the LMS course: the next roster read makes the enrollment active again.",
        )
    if enrollment.status is not EnrollmentStatus.ACTIVE:
        return Check(
            CheckCode.ENROLLED_AS_LEARNER,
            name,
            False,
            f"Enrolled as a learner, but the enrollment is {enrollment.status.value!r}.",
            "Reactivate the enrollment if the learner is still taking the course.",
        )
    section = f" (section {enrollment.section_id})" if enrollment.section_id else ""
    return Check(CheckCode.ENROLLED_AS_LEARNER, name, True, f"Active learner{section}.")


def _in_window(a: Attempt, course: Course) -> bool:
    if course.starts_at is not None and a.completed_at < course.starts_at:
        return False
    return not (course.ends_at is not None and a.completed_at > course.ends_at)


def _window(course: Course) -> str:
    if course.starts_at is None and course.ends_at is None:
        return "the course has no start or end date"
    return f"the course runs from {when(course.starts_at)} to {when(course.ends_at)}"


def _attempt_checks(
    facts: LearnerActivityFacts, outcome: DesiredResult | NoResult | None
) -> list[Check]:
    course, attempts = facts.course, facts.attempts
    out: list[Check] = []
    if attempts:
        newest = max(attempts, key=lambda a: a.completed_at)
        graded = sum(1 for a in attempts if a.score_given is not None)
        out.append(
            Check(
                CheckCode.ATTEMPT_RECORDED,
                "An attempt is recorded",
                True,
                f"{plural(len(attempts), 'attempt')} ({graded} graded); newest "
                f"{newest.source_event_id} completed {when(newest.completed_at)}.",
            )
        )
    else:
        zero = isinstance(outcome, DesiredResult) and outcome.missing
        others = [d for d in facts.duplicates if d.attempts_here]
        remedy: str | None
        if others:
            where = ", ".join(
                f"{d.person.id} ({plural(d.attempts_here, 'attempt')})" for d in others
            )
            evidence = (
                f"No attempt by {facts.person.id} on this activity, but another account of "
                f"the same person has some: {where}."
            )
            remedy = (
                "The work was done in another account. Ask the learner to always start from "
                "the LMS course link; merge the accounts in the courseware to keep the work."
            )
        else:
            evidence = f"No attempt by {facts.person.id} on {facts.activity.id} has arrived."
            if zero:
                evidence += " A past-due zero is sent instead."
            remedy = (
                None
                if zero
                else "Nothing to send until the learner submits; if they say they did, check "
                "that the courseware reports attempts to gradesync (and under which id)."
            )
        out.append(
            Check(CheckCode.ATTEMPT_RECORDED, "An attempt is recorded", zero, evidence, remedy)
        )
    if attempts:
        outside = [a for a in attempts if not _in_window(a, course)]
        if outside:
            listed = ", ".join(
                f"{a.source_event_id} at {when(a.completed_at)}" for a in outside[:5]
            )
            out.append(
                Check(
                    CheckCode.INSIDE_COURSE_DATES,
                    "The work was done inside the course dates",
                    len(outside) < len(attempts),
                    f"{plural(len(outside), 'attempt')} of {len(attempts)} outside the dates "
                    f"({_window(course)}): {listed}.",
                    "Only work completed between the course's start and end counts. Extend "
                    "the course dates (in the LMS and in gradesync) if the work should count.",
                )
            )
        else:
            out.append(
                Check(
                    CheckCode.INSIDE_COURSE_DATES,
                    "The work was done inside the course dates",
                    True,
                    f"All attempts inside the dates ({_window(course)}).",
                )
            )
    out.append(_counted_check(outcome))
    return out


# NoResult codes that an earlier check already explains (no need to say it twice)
_EXPLAINED = {
    ReasonCode.COURSE_SYNC_DISABLED,
    ReasonCode.SYNC_DISABLED,
    ReasonCode.NOT_PUBLISHED,
    ReasonCode.PRACTICE_ITEM,
    ReasonCode.BELOW_MINIMUM_POINTS,
    ReasonCode.NOT_ENROLLED,
    ReasonCode.NOT_A_LEARNER,
    ReasonCode.ENROLLMENT_INACTIVE,
    ReasonCode.LEFT_COURSE,
    ReasonCode.OUTSIDE_COURSE_DATES,
}


# Results left out because a person chose so, not because something is broken.
DELIBERATE = frozenset(
    {
        ReasonCode.COURSE_SYNC_DISABLED,
        ReasonCode.SYNC_DISABLED,
        ReasonCode.PRACTICE_ITEM,
        ReasonCode.BELOW_MINIMUM_POINTS,
    }
)


def _counted_check(outcome: DesiredResult | NoResult | None) -> Check:
    name = "Which attempt counts, and why"
    if outcome is None:
        return Check(
            CheckCode.COUNTED_ATTEMPT,
            name,
            False,
            "The grade policy is invalid.",
            "Fix the course's grade policy settings.",
        )
    if isinstance(outcome, DesiredResult):
        if outcome.score_given is not None:
            score = f"{outcome.score_given:g}/{outcome.score_maximum:g}"
        elif outcome.learner_excused:
            score = "excused, with no score"
        else:
            score = f"no score ({outcome.grading_progress})"
        return Check(CheckCode.COUNTED_ATTEMPT, name, True, f"{outcome.basis} Sent: {score}.")
    reason = outcome.reason
    return Check(
        CheckCode.COUNTED_ATTEMPT,
        name,
        reason.code in _EXPLAINED or reason.code == ReasonCode.NO_ATTEMPT_YET,
        f"No grade to send: {reason.text}",
        None if reason.code in _EXPLAINED else _reason_remedy(reason),
        excluded=reason.code in DELIBERATE,
    )


def _reason_remedy(reason: Reason) -> str | None:
    # The reason texts already say what to do; keep the remedy short and actionable.
    remedies: dict[str, str] = {
        ReasonCode.NOT_GRADED_YET: "Grade the attempt in the courseware.",
        ReasonCode.ZEROS_NOT_STORED: "Nothing to do: this LMS does not store zeros.",
        ReasonCode.NAME_TOO_LONG: "Shorten the activity name (or let the policy shorten it).",
        ReasonCode.NAME_FORBIDDEN_CHARS: "Rename the activity (or let the policy clean it).",
        ReasonCode.NAME_EMPTY: "Rename the activity.",
        ReasonCode.SCORE_OUT_OF_RANGE: "Correct the attempt's score in the courseware.",
        ReasonCode.COMPUTE_FAILED: (
            "Ask the operator for the error logged with this grade's ids; correct the attempt "
            "or setting it points at (a new attempt or policy change works the grade out again)."
        ),
    }
    return remedies.get(reason.code)


def _duplicates_check(person: Person, duplicates: Sequence[OtherAccount]) -> Check:
    name = "No duplicate accounts"
    if not duplicates:
        basis = (f"email {person.email!r}" if person.email else "") or (
            f"name {person.name!r}" if person.name else ""
        )
        evidence = f"No other account shares {basis}." if basis else "No email or name to compare."
        return Check(CheckCode.DUPLICATE_ACCOUNTS, name, True, evidence)
    listed = "; ".join(
        f"{d.person.id} (same {d.matched_on}"
        + (f", {plural(d.attempts_here, 'attempt')} here" if d.attempts_here else "")
        + (", launched from this course" if d.launched_here else "")
        + (", enrolled" if d.enrolled_here else "")
        + ")"
        for d in duplicates
    )
    return Check(
        CheckCode.DUPLICATE_ACCOUNTS,
        name,
        False,
        f"Suspected duplicate accounts of {person.id}: {listed}.",
        "The learner may have done the work in an account the LMS does not know. Ask them to "
        "always start from the LMS course link; merge the accounts in the courseware to keep "
        "the work.",
    )


def _destination_checks(facts: LearnerActivityFacts, df: DestinationFacts) -> list[Check]:
    out = [destination_ready_check(df.destination, df.capabilities, facts.now)]
    scope = grade_scope_check(df.destination)
    if scope is not None:
        out.append(scope)
    out.append(launch_check(facts, df))
    out.append(course_link_check(df, facts.course))
    out.append(column_check(df, facts.activity, policy=facts.policy))
    out.append(delivery_check(df, facts.now))
    out.append(last_delivery_check(df))
    agrees = lms_agrees_check(df)
    if agrees is not None:
        out.append(agrees)
    return out


def _outcome(facts: LearnerActivityFacts) -> DesiredResult | NoResult | None:
    if isinstance(facts.policy, Reason):
        return None
    caps = next(
        (df.capabilities for df in facts.destinations if isinstance(df.capabilities, Capabilities)),
        Capabilities(),
    )
    inp = PolicyInput(
        policy=facts.policy,
        course=facts.course,
        activity=facts.activity,
        enrollment=facts.enrollment,
        attempts=facts.attempts,
        due_override=facts.due_override,
        capabilities=caps,
        now=facts.now,
    )
    try:
        return desired_result(inp)
    except Exception as exc:  # as the worker does: say so, rather than fail the diagnosis
        return NoResult(compute_failed(type(exc).__name__))


def diagnose_learner_activity(facts: LearnerActivityFacts) -> Diagnosis:
    """Every check for one learner and one activity, in order, at every destination given."""
    outcome = _outcome(facts)
    checks: list[Check] = []
    checks += course_checks(facts.course)
    checks += activity_checks(facts.activity, facts.policy)
    checks.append(_enrollment_check(facts.enrollment, facts.course))
    checks += _attempt_checks(facts, outcome)
    checks.append(_duplicates_check(facts.person, facts.duplicates))
    for df in facts.destinations:
        checks += _destination_checks(facts, df)
    if not facts.destinations:
        checks.append(
            Check(
                CheckCode.COURSE_CONNECTED,
                "The course syncs to a destination",
                False,
                f"Course {facts.course.id!r} is not connected to any LMS or SIS.",
                "Connect the course: add gradesync to the LMS course with Deep Linking (or "
                "launch it), or map it to a SIS class.",
            )
        )
    details: dict[str, Any] = {
        "course_id": facts.course.id,
        "activity_id": facts.activity.id,
        "person_id": facts.person.id,
        "desired": _desired_json(outcome),
        "ledger": {df.destination.id: _row_json(df.ledger) for df in facts.destinations},
    }
    who = facts.person.name or facts.person.id
    return Diagnosis(
        "learner_activity",
        f"{who} · {facts.activity.title}",
        tuple(checks),
        details,
    )


def _desired_json(outcome: DesiredResult | NoResult | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    if isinstance(outcome, NoResult):
        return {"sent": False, "reason_code": outcome.reason.code, "reason": outcome.reason.text}
    return {
        "sent": True,
        "score_given": outcome.score_given,
        "score_maximum": outcome.score_maximum,
        "excused": outcome.learner_excused,
        "basis": outcome.basis,
        "attempt_event_id": outcome.attempt_event_id,
    }


def _row_json(row: LedgerRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "state": row.state.value,
        "desired": row.desired,
        "delivered_at": iso(row.delivered_at) if row.delivered_at else None,
        "last_timestamp": iso(row.last_timestamp) if row.last_timestamp else None,
        "tries": row.tries,
        "next_attempt_at": iso(row.next_attempt_at) if row.next_attempt_at else None,
        "reason_code": row.reason_code,
        "reason_text": row.reason_text,
        "remote_status": row.remote_status,
        "remote_message": row.remote_message,
    }
