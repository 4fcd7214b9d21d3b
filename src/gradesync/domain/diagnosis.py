"""Diagnosis rules: why a grade did or did not sync, as an ordered list of checks.

Support staff should not need a troubleshooting article: each check says what was
looked at, whether it passed, the evidence (ids, dates, the remote's own words) and what a
person should do. The rules are pure: the diagnostics service gathers the facts (attempts,
enrollment, launches, links, the ledger row, the delivery log, the destination) and these
functions turn them into checks, in the order a support engineer would look:

1. the course and the activity: sync on, published, graded, selected for sync;
2. the learner: enrolled as a learner, an attempt recorded, inside the course dates, which
   attempt counts and why, other accounts that look like the same person;
3. per destination: usable and allowed to send grades, the learner launched from this course,
   the course and the column connected, the ledger's state, the last delivery and the
   remote's answer, and whether the LMS still holds what gradesync sent.

`triage_course` sorts a whole course into three symptoms: nothing syncing at all,
only some activities, only some learners.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from gradesync.domain.canonical import iso
from gradesync.domain.capabilities import Capabilities
from gradesync.domain.ledger import desired_from_json
from gradesync.domain.model import (
    Activity,
    ActivityKind,
    Attempt,
    Course,
    CourseLink,
    DeliveryState,
    Destination,
    DestinationKind,
    Enrollment,
    EnrollmentStatus,
    ItemLink,
    LedgerRow,
    Person,
    PersonLink,
    Role,
)
from gradesync.domain.overrides import OVERRIDDEN
from gradesync.domain.policy import (
    DesiredResult,
    NoResult,
    PolicyInput,
    ResolvedPolicy,
    desired_result,
)
from gradesync.domain.reasons import Reason, ReasonCode

LTI_KINDS = (DestinationKind.LTI13_AGS, DestinationKind.LTI11_OUTCOMES)
AGS_SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
AGS_LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"


class CheckCode(StrEnum):
    COURSE_SYNC_ON = "course_sync_on"
    ACTIVITY_PUBLISHED = "activity_published"
    ACTIVITY_GRADED = "activity_graded"
    ACTIVITY_SYNC_ENABLED = "activity_sync_enabled"
    ENROLLED_AS_LEARNER = "enrolled_as_learner"
    ATTEMPT_RECORDED = "attempt_recorded"
    INSIDE_COURSE_DATES = "inside_course_dates"
    COUNTED_ATTEMPT = "counted_attempt"
    DUPLICATE_ACCOUNTS = "duplicate_accounts"
    DESTINATION_READY = "destination_ready"
    GRADE_SCOPE = "grade_scope"
    LAUNCHED_FROM_COURSE = "launched_from_course"
    MATCHED_IN_SIS = "matched_in_sis"
    COURSE_CONNECTED = "course_connected"
    COLUMN_LINKED = "column_linked"
    DELIVERY = "delivery"
    LAST_DELIVERY = "last_delivery"
    LMS_AGREES = "lms_agrees"
    # destination checks
    REGISTRATION = "registration"
    LAUNCHES_ACCEPTED = "launches_accepted"
    DELIVERIES_ACCEPTED = "deliveries_accepted"
    # activity checks
    LEARNERS_DELIVERED = "learners_delivered"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of a diagnosis."""

    code: str
    name: str
    passed: bool
    evidence: str
    remedy: str | None = None
    destination_id: str | None = None
    # not passed because a person chose so (sync turned off, a practice item): the grade is
    # not sent, and nothing is broken
    excluded: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "passed": self.passed,
            "excluded": self.excluded,
            "evidence": self.evidence,
            "remedy": self.remedy,
            "destination_id": self.destination_id,
        }


@dataclass(frozen=True, slots=True)
class Diagnosis:
    subject: str  # "learner_activity", "activity", "destination"
    title: str
    checks: tuple[Check, ...]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)

    @property
    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if not c.passed), None)

    def check(self, code: str, destination_id: str | None = None) -> Check | None:
        for c in self.checks:
            if c.code == code and (destination_id is None or c.destination_id == destination_id):
                return c
        return None

    @property
    def summary(self) -> str:
        first = self.first_failure
        if first is None:
            return f"All {len(self.checks)} checks passed."
        more = len(self.failed) - 1
        tail = f" ({more} more check(s) failed)" if more else ""
        lead = "Excluded on purpose: " if first.excluded else ""
        return f"{lead}{first.name}: {first.evidence}{tail}"

    def as_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "title": self.title,
            "ok": self.ok,
            "summary": self.summary,
            "checks": [c.as_json() for c in self.checks],
            "details": self.details,
        }


# --- what the remote said, in its own words -------------------------------------------------

# failure code (RemoteFailure.code, kept as the ledger's reason_code) -> (cause, remedy)
REMOTE_CAUSES: dict[str, tuple[str, str]] = {
    "no_grade_scope": (
        "The tool is not configured to accept grades in the LMS",
        "Enable Assignment and Grade Services for gradesync's registration in the LMS (the "
        "score and line item scopes), then run `gradesync destinations check`.",
    ),
    "bad_credentials": (
        "The LMS refused gradesync's credentials",
        "Check the client id, the deployment id and that the LMS uses gradesync's JWKS URL; "
        "then run `gradesync destinations check`.",
    ),
    "line_item_foreign": (
        "The gradebook column is locked or belongs to another tool",
        "In Canvas Blueprint courses, set the graded item to 'Unlocked' in the Blueprint; "
        "otherwise rebuild the link with gradesync (Deep Linking) so the column is "
        "gradesync's own, then resync.",
    ),
    "no_resource_link": (
        "The LMS counts grades only on a column tied to the activity's LTI link, and no "
        "launch from that link has been received",
        "Open the activity once from its gradesync link in the LMS course (as a learner or "
        "as staff): the next sync ties the column to that link and sends the grades.",
    ),
    "line_item_gone": (
        "The gradebook column was deleted in the LMS",
        "Run Sync now: gradesync creates the column again.",
    ),
    "unpublished": (
        "The assignment is not published in the LMS",
        "Publish the assignment in the LMS (Canvas: Published; Blackboard: Available), then "
        "resync.",
    ),
    "unknown_user": (
        "The LMS does not know this learner as a student of the course",
        "The learner must open gradesync from a link in this LMS course; check their "
        "enrollment and that their role there is Student/Learner.",
    ),
    "never_launched": (
        "The learner never launched gradesync from the LMS",
        "The learner must open gradesync by clicking a link in the LMS course where the grade "
        "should land.",
    ),
    "course_not_linked": (
        "The LMS course is not connected to gradesync",
        "Add gradesync activities to the LMS course with Deep Linking (or open one of its "
        "links) so the LMS tells gradesync where the gradebook is.",
    ),
    "course_concluded": (
        "The LMS course has concluded",
        "Reopen the course in the LMS (or extend its end date), then resync.",
    ),
    "attempts_exceeded": (
        "The LMS limits the attempts on the assignment",
        "Raise or remove 'Allowed attempts' on the LMS assignment, then resync.",
    ),
    "timestamp_older": (
        "The LMS holds a newer grade (often typed in by an instructor)",
        "Run a repair resync for this learner and activity: it resends gradesync's grade with "
        "a timestamp later than the LMS's, so the LMS applies it.",
    ),
    OVERRIDDEN: (
        "An instructor changed the grade in the LMS",
        "Keep the LMS edit, or run a repair resync to send gradesync's grade again (or set "
        "the course to 'gradesync wins').",
    ),
}


def remote_cause(code: str | None) -> tuple[str, str] | None:
    return REMOTE_CAUSES.get(code or "")


# --- facts ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LaunchFact:
    """One LTI launch by a person (from the `launches` table)."""

    destination_id: str
    course_id: str  # "" when the LMS context was not bound to a gradesync course
    launched_at: datetime
    roles: tuple[str, ...] = ()
    context_id: str | None = None
    context_title: str | None = None

    def where(self) -> str:
        title = self.context_title or self.context_id or "an unknown LMS course"
        bound = f"gradesync course {self.course_id!r}" if self.course_id else "no gradesync course"
        return f"{title!r} ({bound}) on {when(self.launched_at)}"


@dataclass(frozen=True, slots=True)
class DeliveryFact:
    """One line of the delivery log, newest first."""

    sent_at: datetime
    outcome: str
    remote_status: int | None = None
    remote_message: str | None = None
    payload: Mapping[str, Any] | None = None
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class RejectionFact:
    """A refused LTI launch (bad deployment, wrong platform, ...)."""

    code: str
    message: str
    at: datetime
    deployment_id: str | None = None


@dataclass(frozen=True, slots=True)
class OtherAccount:
    """Another person record that looks like the same human."""

    person: Person
    matched_on: str  # "email" or "name"
    attempts_here: int = 0  # attempts on the activity diagnosed (or in the course)
    enrolled_here: bool = False
    launched_here: bool = False


@dataclass(frozen=True, slots=True)
class DestinationFacts:
    destination: Destination
    capabilities: Capabilities | Reason  # a Reason when gradesync cannot use it
    course_link: CourseLink | None = None
    item_link: ItemLink | None = None
    person_link: PersonLink | None = None
    launches: tuple[LaunchFact, ...] = ()  # this person's launches at this destination
    ledger: LedgerRow | None = None
    deliveries: tuple[DeliveryFact, ...] = ()


@dataclass(frozen=True, slots=True)
class LearnerActivityFacts:
    now: datetime
    course: Course
    activity: Activity
    person: Person
    enrollment: Enrollment | None
    attempts: tuple[Attempt, ...]
    due_override: datetime | None
    policy: ResolvedPolicy | Reason
    duplicates: tuple[OtherAccount, ...] = ()
    destinations: tuple[DestinationFacts, ...] = ()
    other_launches: tuple[LaunchFact, ...] = ()  # launches at destinations not diagnosed


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# --- course and activity -------------------------------------------------------------------


def _course_checks(course: Course) -> list[Check]:
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
        score = (
            f"{outcome.score_given:g}/{outcome.score_maximum:g}"
            if outcome.score_given is not None
            else f"no score ({outcome.grading_progress})"
        )
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


# --- per destination -----------------------------------------------------------------------


def destination_ready_check(d: Destination, caps: Capabilities | Reason, now: datetime) -> Check:
    name = f"Destination {d.name!r} is usable"
    if not d.enabled:
        return Check(
            CheckCode.DESTINATION_READY,
            name,
            False,
            f"Paused: {d.pause_reason or 'by an administrator'}.",
            "Fix the cause, then resume it (`gradesync destinations resume`).",
            d.id,
        )
    if d.paused_until is not None and d.paused_until > now:
        return Check(
            CheckCode.DESTINATION_READY,
            name,
            False,
            f"Paused until {when(d.paused_until)}: {d.pause_reason or 'no reason recorded'}.",
            "Sending resumes by itself; if the pause names a misconfiguration, fix it and "
            "resume the destination.",
            d.id,
        )
    if isinstance(caps, Reason):
        return Check(
            CheckCode.DESTINATION_READY,
            name,
            False,
            caps.text,
            "Fix the destination's settings.",
            d.id,
        )
    return Check(
        CheckCode.DESTINATION_READY,
        name,
        True,
        f"{d.kind.value}, profile {d.profile}, enabled.",
        None,
        d.id,
    )


def grade_scope_check(d: Destination) -> Check | None:
    """AGS only: the registration must ask for the scopes that write grades."""
    if d.kind is not DestinationKind.LTI13_AGS:
        return None
    scopes = d.config.get("scopes")
    if not scopes:
        return Check(
            CheckCode.GRADE_SCOPE,
            "Configured to send grades",
            True,
            "Asks for the default AGS scopes (score, line items, results).",
            None,
            d.id,
        )
    missing = [s for s in (AGS_SCORE, AGS_LINEITEM) if s not in scopes]
    if missing:
        return Check(
            CheckCode.GRADE_SCOPE,
            "Configured to send grades",
            False,
            f"The registration does not ask for {', '.join(missing)}.",
            REMOTE_CAUSES["no_grade_scope"][1],
            d.id,
        )
    return Check(
        CheckCode.GRADE_SCOPE,
        "Configured to send grades",
        True,
        f"Asks for {', '.join(sorted(scopes))}.",
        None,
        d.id,
    )


def _launch_check(facts: LearnerActivityFacts, df: DestinationFacts) -> Check:
    d, course = df.destination, facts.course
    name = "The learner launched gradesync from this course"
    if d.kind not in LTI_KINDS:
        linked = df.person_link is not None and bool(df.person_link.remote_id)
        return Check(
            CheckCode.MATCHED_IN_SIS,
            "The learner is matched to a student in the SIS",
            linked,
            f"SIS id {df.person_link.remote_id!r}."
            if df.person_link and linked
            else f"No SIS student matched to {facts.person.id} (SIS id "
            f"{facts.person.sis_id or 'unknown'}).",
            None
            if linked
            else "Give the learner their SIS id, check the class roster in the SIS, then resync.",
            d.id,
        )
    here = [x for x in df.launches if x.course_id == course.id]
    if here:
        latest = max(here, key=lambda x: x.launched_at)
        return Check(
            CheckCode.LAUNCHED_FROM_COURSE,
            name,
            True,
            f"{plural(len(here), 'launch')}; the latest from {latest.where()}.",
            None,
            d.id,
        )
    roster = _roster_check(df, name)
    if roster is not None:
        return roster
    if df.ledger is not None and df.ledger.state is DeliveryState.DELIVERED:
        # The LMS knows the learner in this course (it took the grade): launching from
        # another link of the same LMS is enough there.
        return Check(
            CheckCode.LAUNCHED_FROM_COURSE,
            name,
            True,
            "No launch from this course recorded, but the LMS accepted the grade for this "
            "learner in it.",
            None,
            d.id,
        )
    elsewhere = [x for x in df.launches if x.course_id != course.id]
    other_lms = list(facts.other_launches)
    if elsewhere:
        latest = max(elsewhere, key=lambda x: x.launched_at)
        evidence = (
            f"Never from course {course.id!r}; {plural(len(elsewhere), 'launch')} from another "
            f"course, the latest from {latest.where()}."
        )
    elif other_lms:
        latest = max(other_lms, key=lambda x: x.launched_at)
        evidence = (
            f"Never from {d.name!r}; launched through another LMS connection "
            f"({latest.destination_id}) from {latest.where()}."
        )
    else:
        evidence = (
            f"{facts.person.id} has never launched gradesync from {d.name!r}: they entered "
            "another way (a direct login, or an account the LMS does not know)."
        )
    return Check(
        CheckCode.LAUNCHED_FROM_COURSE,
        name,
        False,
        evidence,
        "The learner must start by clicking a gradesync link in the LMS course where the "
        "grade should land; the waiting grade is sent automatically after that launch.",
        d.id,
    )


_MATCHED_BY = {"sis_id": "SIS id", "email": "email", "lms_user_id": "LMS user id"}


def _roster_check(df: DestinationFacts, name: str) -> Check | None:
    """What the LMS roster (NRPS) says of a learner who never launched: matched to an LMS
    member (grades go out without a launch), or not in the LMS course at all."""
    link, course_link = df.person_link, df.course_link
    if link is not None and link.remote_id and link.data.get("matched_by"):
        key = _MATCHED_BY.get(str(link.data["matched_by"]), str(link.data["matched_by"]))
        return Check(
            CheckCode.LAUNCHED_FROM_COURSE,
            name,
            True,
            f"Enrolled in the LMS, never launched, matched by {key} (LMS user "
            f"{link.remote_id!r}) through the course roster.",
            None,
            df.destination.id,
        )
    roster = (course_link.data.get("roster") or {}) if course_link is not None else {}
    if roster.get("read_at") and (link is None or not link.remote_id):
        return Check(
            CheckCode.LAUNCHED_FROM_COURSE,
            name,
            False,
            f"Not in the LMS course: the course roster read at {roster['read_at']} lists no "
            "member matching this learner, and they never launched.",
            "Enroll the learner in the LMS course (or give them the SIS id or email the LMS "
            "knows them by); the next roster read links them and their grades go out.",
            df.destination.id,
        )
    return None


def _course_link_check(df: DestinationFacts, course: Course) -> Check:
    d, link = df.destination, df.course_link
    name = "The course is connected at the destination"
    if link is None or not link.remote_id:
        why = (
            "no launch from the LMS course has been received yet"
            if link is None
            else "its launches carry no grade service endpoint (AGS not granted)"
        )
        return Check(
            CheckCode.COURSE_CONNECTED,
            name,
            False,
            f"Course {course.id!r} is not connected to {d.name!r}: {why}.",
            REMOTE_CAUSES["course_not_linked"][1]
            if link is None
            else REMOTE_CAUSES["no_grade_scope"][1],
            d.id,
        )
    ctx = link.data.get("context") if isinstance(link.data.get("context"), dict) else {}
    title = (ctx or {}).get("title") or (ctx or {}).get("id")
    dep = link.data.get("deployment_id")
    extra = "".join(
        part
        for part in (
            f" (LMS course {title!r})" if title else "",
            f", deployment {dep}" if dep else "",
        )
    )
    return Check(CheckCode.COURSE_CONNECTED, name, True, f"{link.remote_id}{extra}.", None, d.id)


def _column_check(
    df: DestinationFacts, activity: Activity, refused: tuple[str, int] | None = None
) -> Check:
    """`refused`: (reason code, learners) when the destination refused the column's results
    (locked, gone, unpublished in the LMS)."""
    d, link = df.destination, df.item_link
    name = "The activity is linked to a gradebook column"
    if refused is None and df.ledger is not None and df.ledger.reason_code in _COLUMN_CODES:
        refused = (df.ledger.reason_code, 1)
    caps = df.capabilities
    unlinked = (
        isinstance(caps, Capabilities)
        and caps.needs_resource_link
        and not (link is not None and link.data.get("resourceLinkId"))
    )
    if unlinked and (link is None or not link.remote_id):
        return Check(
            CheckCode.COLUMN_LINKED,
            name,
            False,
            f"No column for {activity.title!r} at {d.name!r}: it counts grades only on a "
            "column tied to the activity's LTI link, and no launch from that link has been "
            "received.",
            REMOTE_CAUSES["no_resource_link"][1],
            d.id,
        )
    if link is None or not link.remote_id:
        return Check(
            CheckCode.COLUMN_LINKED,
            name,
            False,
            f"No column for {activity.title!r} at {d.name!r} yet"
            + (f" (the LMS refused it: {refused[0]})." if refused else "."),
            REMOTE_CAUSES[refused[0]][1]
            if refused
            else "Post grades: gradesync creates the line item in the SIS class."
            if d.kind not in LTI_KINDS
            else "If the LMS link was not created as 'Graded', rebuild it with gradesync's "
            "Deep Linking; otherwise Sync now creates the column.",
            d.id,
        )
    label = link.data.get("label")
    shown = f"{link.remote_id}" + (f" ({label!r})" if label else "")
    if unlinked:
        return Check(
            CheckCode.COLUMN_LINKED,
            name,
            False,
            f"Column {shown} is not tied to the activity's LTI link, so {d.name!r} counts no "
            "grade sent to it.",
            REMOTE_CAUSES["no_resource_link"][1],
            d.id,
        )
    if refused:
        code, n = refused
        return Check(
            CheckCode.COLUMN_LINKED,
            name,
            False,
            f"Column {shown} refuses grades ({code}, {plural(n, 'learner')}): "
            f"{REMOTE_CAUSES[code][0]}.",
            REMOTE_CAUSES[code][1],
            d.id,
        )
    return Check(CheckCode.COLUMN_LINKED, name, True, f"{shown}.", None, d.id)


_COLUMN_CODES = ("line_item_foreign", "line_item_gone", "unpublished", "no_resource_link")


def _score_of(desired: Mapping[str, Any] | None) -> str:
    if not desired:
        return "nothing"
    given = desired.get("score_given")
    top = desired.get("score_maximum")
    if given is None:
        return f"no score ({desired.get('grading_progress')})"
    return f"{float(given):g}/{float(top or 0):g}"


def _delivery_check(df: DestinationFacts, now: datetime) -> Check:
    d, row = df.destination, df.ledger
    name = "The grade is delivered"
    if row is None:
        return Check(
            CheckCode.DELIVERY,
            name,
            False,
            "Not worked out for this destination yet (no ledger row).",
            "Run Sync now for the course; if it stays empty, the course is not connected to "
            "this destination.",
            d.id,
        )
    want = _score_of(row.desired)
    if row.state is DeliveryState.DELIVERED:
        return Check(
            CheckCode.DELIVERY,
            name,
            True,
            f"{want} delivered {when(row.delivered_at)}.",
            None,
            d.id,
        )
    if row.state is DeliveryState.PENDING:
        since = f" since {when(row.updated_at)}" if row.updated_at else ""
        return Check(
            CheckCode.DELIVERY,
            name,
            False,
            f"{want} is waiting to be sent{since}.",
            "Nothing to do if this is recent (seconds). If it stays pending, check that a "
            "gradesync worker is running and the destination is not paused.",
            d.id,
        )
    cause = remote_cause(row.reason_code)
    remote = (
        " The destination answered"
        + (f" HTTP {row.remote_status}" if row.remote_status is not None else "")
        + (f": {row.remote_message}" if row.remote_message else ".")
        if row.remote_status is not None or row.remote_message
        else ""
    )
    if row.state is DeliveryState.RETRYING:
        return Check(
            CheckCode.DELIVERY,
            name,
            False,
            f"{want} failed {plural(row.tries, 'time')} ({row.reason_code}); next try "
            f"{when(row.next_attempt_at)}.{remote}",
            cause[1] if cause else "gradesync retries by itself; see the reason.",
            d.id,
        )
    if row.state is DeliveryState.REJECTED:
        title = f"{cause[0]}. " if cause else ""
        return Check(
            CheckCode.DELIVERY,
            name,
            False,
            f"{title}{want} was refused ({row.reason_code}): {row.reason_text or ''}{remote}",
            cause[1] if cause else "Fix what the destination's message says, then resync.",
            d.id,
        )
    # SKIPPED
    return Check(
        CheckCode.DELIVERY,
        name,
        False,
        f"Nothing is sent ({row.reason_code}): {row.reason_text or ''}",
        cause[1] if cause else None,
        d.id,
    )


# delivery log lines that record an event, not a send
_NOT_SENDS = ("overridden", "repair")


def _last_delivery_check(df: DestinationFacts) -> Check:
    d, row = df.destination, df.ledger
    name = "Last delivery"
    sends = [x for x in df.deliveries if x.outcome not in _NOT_SENDS]
    if not sends:
        delivered = row is not None and row.state is DeliveryState.DELIVERED
        return Check(
            CheckCode.LAST_DELIVERY,
            name,
            row is None or delivered or row.state in (DeliveryState.SKIPPED, DeliveryState.PENDING),
            f"Delivered {when(row.delivered_at)}; the delivery log keeps no older send."
            if delivered and row is not None
            else "Nothing has been sent for this learner and activity yet.",
            None,
            d.id,
        )
    last = sends[0]
    sent = ""
    if last.payload:
        given = last.payload.get("scoreGiven", last.payload.get("score_given"))
        top = last.payload.get("scoreMaximum", last.payload.get("score_maximum"))
        stamp = last.payload.get("timestamp")
        if given is not None or top is not None:
            sent = f" sent {given}/{top}" + (f" with timestamp {stamp}" if stamp else "")
    answer = (
        "; the destination answered"
        + (f" HTTP {last.remote_status}" if last.remote_status is not None else "")
        + (f": {last.remote_message}" if last.remote_message else "")
    )
    run = f" (run {last.run_id})" if last.run_id else " (auto sync)"
    retry = ""
    if row is not None and row.state is DeliveryState.RETRYING:
        retry = f"; next retry {when(row.next_attempt_at)}"
    ok = last.outcome == "delivered"
    event = df.deliveries[0]
    if event is not last:
        retry += f"; since then: {event.outcome} on {when(event.sent_at)} ({event.remote_message})"
    return Check(
        CheckCode.LAST_DELIVERY,
        name,
        ok,
        f"{when(last.sent_at)}{run}: {last.outcome}{sent}{answer}{retry}.",
        None if ok else "See the delivery check above for what to do.",
        d.id,
    )


def _lms_agrees_check(df: DestinationFacts) -> Check | None:
    row = df.ledger
    if row is None or row.reason_code != OVERRIDDEN:
        return None
    return Check(
        CheckCode.LMS_AGREES,
        "The LMS still holds gradesync's grade",
        False,
        f"{row.reason_text or 'Changed in the LMS.'} {row.remote_message or ''}".strip(),
        REMOTE_CAUSES[OVERRIDDEN][1],
        df.destination.id,
    )


def _destination_checks(facts: LearnerActivityFacts, df: DestinationFacts) -> list[Check]:
    out = [destination_ready_check(df.destination, df.capabilities, facts.now)]
    scope = grade_scope_check(df.destination)
    if scope is not None:
        out.append(scope)
    out.append(_launch_check(facts, df))
    out.append(_course_link_check(df, facts.course))
    out.append(_column_check(df, facts.activity))
    out.append(_delivery_check(df, facts.now))
    out.append(_last_delivery_check(df))
    agrees = _lms_agrees_check(df)
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
    return desired_result(
        PolicyInput(
            policy=facts.policy,
            course=facts.course,
            activity=facts.activity,
            enrollment=facts.enrollment,
            attempts=facts.attempts,
            due_override=facts.due_override,
            capabilities=caps,
            now=facts.now,
        )
    )


def diagnose_learner_activity(facts: LearnerActivityFacts) -> Diagnosis:
    """Every check for one learner and one activity, in order, at every destination given."""
    outcome = _outcome(facts)
    checks: list[Check] = []
    checks += _course_checks(facts.course)
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


# --- one activity, every learner ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyState:
    """One ledger row, reduced to what triage needs."""

    destination_id: str
    activity_id: str
    person_id: str
    state: DeliveryState
    reason_code: str | None = None
    reason_text: str | None = None


@dataclass(frozen=True, slots=True)
class ActivityDestinationFacts:
    destination: Destination
    capabilities: Capabilities | Reason
    course_link: CourseLink | None
    item_link: ItemLink | None
    rows: tuple[KeyState, ...]


@dataclass(frozen=True, slots=True)
class ActivityFacts:
    now: datetime
    course: Course
    activity: Activity
    policy: ResolvedPolicy | Reason
    learners: int
    destinations: tuple[ActivityDestinationFacts, ...]


def _state_summary(rows: Sequence[KeyState]) -> tuple[str, list[str], Counter[str]]:
    states = Counter(r.state.value for r in rows)
    problems: Counter[str] = Counter(
        r.reason_code or r.state.value
        for r in rows
        if r.state in (DeliveryState.REJECTED, DeliveryState.RETRYING)
        or (r.state is DeliveryState.SKIPPED and r.reason_code not in BENIGN_SKIPS)
    )
    text = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no rows"
    lines = []
    for code, n in problems.most_common():
        who = sorted(r.person_id for r in rows if (r.reason_code or r.state.value) == code)
        shown = ", ".join(who[:5]) + (f" and {len(who) - 5} more" if len(who) > 5 else "")
        lines.append(f"{code}: {n} ({shown})")
    return text, lines, problems


# Skips that are not a fault: the learner simply has nothing to send yet.
BENIGN_SKIPS = {
    ReasonCode.NO_ATTEMPT_YET.value,
    ReasonCode.NOT_COMPLETED_YET.value,
    ReasonCode.NOT_GRADED_YET.value,
    ReasonCode.ZEROS_NOT_STORED.value,
    ReasonCode.ENROLLMENT_INACTIVE.value,
    ReasonCode.LEFT_COURSE.value,
}


def diagnose_activity(facts: ActivityFacts) -> Diagnosis:
    checks: list[Check] = []
    checks += _course_checks(facts.course)
    checks += activity_checks(facts.activity, facts.policy)
    for af in facts.destinations:
        d = af.destination
        checks.append(destination_ready_check(d, af.capabilities, facts.now))
        scope = grade_scope_check(d)
        if scope is not None:
            checks.append(scope)
        dfacts = DestinationFacts(d, af.capabilities, af.course_link, af.item_link)
        checks.append(_course_link_check(dfacts, facts.course))
        refused = Counter(r.reason_code for r in af.rows if r.reason_code in _COLUMN_CODES)
        top = refused.most_common(1)
        col = _column_check(dfacts, facts.activity, (str(top[0][0]), top[0][1]) if top else None)
        checks.append(col)
        text, lines, problems = _state_summary(af.rows)
        delivered = sum(1 for r in af.rows if r.state is DeliveryState.DELIVERED)
        checks.append(
            Check(
                CheckCode.LEARNERS_DELIVERED,
                f"Learners' grades delivered to {d.name!r}",
                not problems,
                f"{facts.learners} learner(s); ledger: {text}."
                + (" Problems: " + "; ".join(lines) + "." if lines else "")
                + ("" if delivered or problems else " Nothing delivered yet."),
                "Diagnose one of the learners listed for the exact cause "
                "(`gradesync doctor --learner ... --activity ...`)."
                if problems
                else None,
                d.id,
            )
        )
    if not facts.destinations:
        checks.append(
            Check(
                CheckCode.COURSE_CONNECTED,
                "The course syncs to a destination",
                False,
                f"Course {facts.course.id!r} is not connected to any LMS or SIS.",
                "Connect the course to an LMS (Deep Linking or a launch) or a SIS class.",
            )
        )
    return Diagnosis(
        "activity",
        facts.activity.title,
        tuple(checks),
        {"course_id": facts.course.id, "activity_id": facts.activity.id},
    )


# --- one destination -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeStep:
    """One step of the destination's own check (token, scopes, listing, test result)."""

    name: str
    passed: bool
    evidence: str
    remedy: str | None = None


@dataclass(frozen=True, slots=True)
class DestinationDiagnosisFacts:
    now: datetime
    destination: Destination
    capabilities: Capabilities | Reason
    courses: int  # courses connected to it
    launches: int  # launches received through it
    last_launch_at: datetime | None
    rejections: tuple[RejectionFact, ...]
    failures: Mapping[str, int]  # ledger rows by failure reason (rejected/retrying)
    delivered: int
    last_delivery: DeliveryFact | None
    probe: tuple[ProbeStep, ...] = ()


# Launch refusals that mean the platform or deployment is not the one registered (seed:
# "deployment scope problems", a Canvas shared between institutions).
DEPLOYMENT_CODES = {
    "unknown_deployment",
    "wrong_issuer",
    "wrong_audience",
    "unknown_platform",
    "unknown_client",
}

_REQUIRED = {
    DestinationKind.LTI13_AGS: ("issuer", "client_id", "auth_token_url", "key_set_url"),
    DestinationKind.LTI11_OUTCOMES: (),
    DestinationKind.ONEROSTER_REST: ("base_url", "token_url", "client_id"),
    DestinationKind.ONEROSTER_CSV: (),
}


def diagnose_destination(facts: DestinationDiagnosisFacts) -> Diagnosis:
    d = facts.destination
    checks = [destination_ready_check(d, facts.capabilities, facts.now)]
    missing = [k for k in _REQUIRED.get(d.kind, ()) if not d.config.get(k)]
    if d.kind is DestinationKind.LTI13_AGS and not d.config.get("deployment_ids"):
        missing.append("deployment_ids")
    checks.append(
        Check(
            CheckCode.REGISTRATION,
            "The registration is complete",
            not missing,
            "Every required setting is present."
            if not missing
            else f"Missing: {', '.join(missing)}.",
            None if not missing else "Complete the destination's settings.",
            d.id,
        )
    )
    scope = grade_scope_check(d)
    if scope is not None:
        checks.append(scope)
    if d.kind in LTI_KINDS:
        deployment = [r for r in facts.rejections if r.code in DEPLOYMENT_CODES]
        if deployment:
            latest = max(deployment, key=lambda r: r.at)
            deps = sorted({r.deployment_id for r in deployment if r.deployment_id})
            checks.append(
                Check(
                    CheckCode.LAUNCHES_ACCEPTED,
                    "Launches come from the registered platform and deployment",
                    False,
                    f"{plural(len(deployment), 'launch')} refused ({latest.code}), the latest on "
                    f"{when(latest.at)}: {latest.message}"
                    + (f" Deployments seen: {', '.join(deps)}." if deps else ""),
                    "Deployment scope problem: the LMS is using a deployment (or an issuer) "
                    "gradesync does not know — common in a Canvas shared between "
                    "institutions. Add the deployment id to this platform's registration if "
                    "it is yours, or install the tool in the right sub-account.",
                    d.id,
                )
            )
        else:
            others = [r for r in facts.rejections if r.code not in DEPLOYMENT_CODES]
            checks.append(
                Check(
                    CheckCode.LAUNCHES_ACCEPTED,
                    "Launches come from the registered platform and deployment",
                    True,
                    f"{plural(facts.launches, 'launch')} received, the latest "
                    f"{when(facts.last_launch_at)}; {plural(len(others), 'other refusal')}.",
                    None,
                    d.id,
                )
            )
    for step in facts.probe:
        checks.append(
            Check(
                f"probe_{_slug(step.name)}",
                step.name,
                step.passed,
                step.evidence,
                step.remedy,
                d.id,
            )
        )
    config_codes = {k: v for k, v in facts.failures.items() if k in REMOTE_CAUSES}
    other_codes = {k: v for k, v in facts.failures.items() if k not in REMOTE_CAUSES}
    if facts.failures:
        parts = [
            f"{code}: {n} ({REMOTE_CAUSES[code][0]})" for code, n in sorted(config_codes.items())
        ] + [f"{code}: {n}" for code, n in sorted(other_codes.items())]
        worst = max(facts.failures.items(), key=lambda kv: kv[1])[0]
        checks.append(
            Check(
                CheckCode.DELIVERIES_ACCEPTED,
                "The destination accepts gradesync's results",
                False,
                f"{facts.delivered} delivered; failing: " + "; ".join(parts) + ".",
                REMOTE_CAUSES[worst][1]
                if worst in REMOTE_CAUSES
                else "Diagnose an affected learner for the exact message.",
                d.id,
            )
        )
    else:
        last = facts.last_delivery
        checks.append(
            Check(
                CheckCode.DELIVERIES_ACCEPTED,
                "The destination accepts gradesync's results",
                True,
                f"{facts.delivered} delivered, none failing"
                + (f"; last send {when(last.sent_at)} ({last.outcome})" if last else "")
                + ".",
                None,
                d.id,
            )
        )
    return Diagnosis(
        "destination",
        d.name,
        tuple(checks),
        {"destination_id": d.id, "kind": d.kind.value, "courses": facts.courses},
    )


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text.lower()).strip("_")


def desired_score(row: LedgerRow | None) -> str:
    """'7/10' for a row's desired result (used in the CLI and the API)."""
    if row is None or row.desired is None:
        return "-"
    d = desired_from_json(row.desired)
    return f"{d.score_given:g}/{d.score_maximum:g}" if d.score_given is not None else "-"
