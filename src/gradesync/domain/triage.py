"""Course triage in the shape of a vendor's troubleshooting page: is nothing syncing at all
(configuration, scope, credentials, deployment), nothing at some destinations while others
deliver, only some activities (column missing, unpublished, not graded), or only some learners
(not launched from the course, role, dates, duplicate accounts), or only some grades (a
destination failed them, gradesync tries them again by itself, or refused them)? A pause
gradesync lifts by itself (the circuit breaker's, a Retry-After's) is said as such, not as
one to resume. Every problem counted is listed under a cause. Results left out by design
(`BY_DESIGN`: an activity not ticked for the SIS or excluded from sync) are listed apart, as
excluded, and are not problems.

Pure: the diagnostics service gathers the course's ledger rows, links, launches and
rejections; `triage_course` groups the problems into causes, each with its evidence (which
activities, which learners) and what to do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from gradesync.domain.capabilities import Capabilities
from gradesync.domain.columns import no_column
from gradesync.domain.course_connection import not_connected, sis_class_remedy
from gradesync.domain.diagnosis import (
    BENIGN_SKIPS,
    BY_DESIGN,
    DEPLOYMENT_CODES,
    LTI_KINDS,
    REMOTE_CAUSES,
    SIS_CAUSE_TITLES,
    CheckCode,
    KeyState,
    LaunchFact,
    OtherAccount,
    RejectionFact,
    activity_checks,
    credentials_fix,
    current_code,
    grade_scope_check,
    left_out_by_design,
    pause_said,
    plural,
    when,
)
from gradesync.domain.model import (
    SIS_KINDS,
    Activity,
    ActivityKind,
    Course,
    CourseLink,
    DeliveryState,
    Destination,
    DestinationKind,
    ItemLink,
)
from gradesync.domain.overrides import OVERRIDDEN, POINTS_KEPT
from gradesync.domain.passback import PassbackRule
from gradesync.domain.policy import ResolvedPolicy
from gradesync.domain.reasons import Reason, ReasonCode, as_clause
from gradesync.domain.remedies import (
    GIVE_SIS_ID,
    MATCH_SIS_STUDENTS,
    Reader,
    Remedy,
    for_reader,
    lti11_column_remedy,
    stored_reason,
)


class Symptom(StrEnum):
    NOTHING_SYNCING = "nothing_syncing"
    SOME_DESTINATIONS = "some_destinations"  # nothing reaches one destination, another delivers
    SOME_ACTIVITIES = "some_activities"
    SOME_LEARNERS = "some_learners"
    # sending paused for a while (the breaker's cool-down, a Retry-After, a person's pause
    # until a time): gradesync tries again by itself, nobody needs to act
    SENDING_PAUSED = "sending_paused"
    # delivered but for some grades a destination failed (retried) or refused, for no cause of
    # the course, an activity or a learner
    SOME_GRADES = "some_grades"
    ALL_SYNCING = "all_syncing"
    NOTHING_TO_SYNC = "nothing_to_sync"  # no attempts yet, nothing failing


SYMPTOM_TEXT = {
    Symptom.NOTHING_SYNCING: "No grades are syncing in the course at all",
    Symptom.SOME_DESTINATIONS: "Grades sync to some destinations, but none reach the others",
    Symptom.SOME_ACTIVITIES: "Some grades sync, but the problem affects specific activities",
    Symptom.SOME_LEARNERS: "Some grades sync, but the problem affects specific learners",
    Symptom.SENDING_PAUSED: "Sending is paused for a while; gradesync tries again by itself",
    Symptom.SOME_GRADES: "Some grades sync, but a destination failed or refused others",
    Symptom.ALL_SYNCING: "Grades are syncing",
    Symptom.NOTHING_TO_SYNC: "Nothing to sync yet (no graded work has arrived)",
}
# a destination's own symptom, said of it alone
DESTINATION_SYMPTOM_TEXT = {
    **SYMPTOM_TEXT,
    Symptom.NOTHING_SYNCING: "No grades are syncing to this destination",
    Symptom.SENDING_PAUSED: "Sending to this destination is paused for a while; gradesync "
    "tries again by itself",
    Symptom.SOME_GRADES: "Some grades sync, but this destination failed or refused others",
}


class Scope(StrEnum):
    COURSE = "course"
    ACTIVITIES = "activities"
    LEARNERS = "learners"
    # grades a destination failed (retrying) or refused for no cause of the scopes above
    GRADES = "grades"


@dataclass(frozen=True, slots=True)
class Cause:
    code: str
    scope: Scope
    title: str
    evidence: str
    remedy: str
    destination_id: str | None = None
    activities: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()
    excluded: bool = False  # left out by design: said, but not a problem
    # a pause gradesync lifts by itself (`diagnosis.pause_said`), a grade it tries again: a
    # problem, but nobody needs to act for sending to resume
    tries_again_by_itself: bool = False
    # the remedy held as a code (`remedy` then the command line's words), worded per reader
    fix: Remedy | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "scope": self.scope.value,
            "title": self.title,
            "evidence": self.evidence,
            "remedy": self.remedy,
            "destination_id": self.destination_id,
            "activities": list(self.activities),
            "learners": list(self.learners),
            "excluded": self.excluded,
            "tries_again_by_itself": self.tries_again_by_itself,
        }


# a cause whose remedy is a reason's of another code (`remedies.FOR_READERS`): a course not
# connected names a command only at a SIS, where it is mapped to a class
_REMEDY_CODES = {"course_not_connected": PassbackRule.CLASS_NOT_MAPPED.value}


@dataclass(frozen=True, slots=True)
class CourseTriage:
    course_id: str
    symptom: Symptom
    causes: tuple[Cause, ...]
    counts: dict[str, int]
    # destination id -> its own symptom; they differ when one is paused and another delivers
    destinations: Mapping[str, Symptom] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        return SYMPTOM_TEXT[self.symptom]

    @property
    def problems(self) -> tuple[Cause, ...]:
        return tuple(c for c in self.causes if not c.excluded)

    @property
    def excluded(self) -> tuple[Cause, ...]:
        return tuple(c for c in self.causes if c.excluded)

    def by_scope(self, scope: Scope) -> tuple[Cause, ...]:
        return tuple(c for c in self.problems if c.scope is scope)

    def cause(self, code: str) -> Cause | None:
        return next((c for c in self.causes if c.code == code), None)

    def read_over(self, reader: Reader) -> CourseTriage:
        """The triage as an administrator reads it over `reader`: a remedy naming a command
        names the API's route or the console's action instead, where one does the same
        (`remedies.for_reader`, as `Diagnosis.read_over`)."""
        causes = tuple(
            replace(c, remedy=c.fix.about(c.destination_id, self.course_id).words(reader))
            if c.fix is not None
            else replace(
                c,
                remedy=for_reader(
                    _REMEDY_CODES.get(c.code, c.code),
                    c.remedy,
                    reader,
                    c.destination_id,
                    course_id=self.course_id,
                ),
            )
            for c in self.causes
        )
        return replace(self, causes=causes)

    def as_json(self) -> dict[str, Any]:
        return {
            "course_id": self.course_id,
            "symptom": self.symptom.value,
            "summary": self.summary,
            "counts": self.counts,
            "destinations": {
                d: {"symptom": s.value, "summary": DESTINATION_SYMPTOM_TEXT[s]}
                for d, s in self.destinations.items()
            },
            "causes": {s.value: [c.as_json() for c in self.by_scope(s)] for s in Scope},
            "excluded": [c.as_json() for c in self.excluded],
        }


@dataclass(frozen=True, slots=True)
class CourseDestinationFacts:
    destination: Destination
    capabilities: Capabilities | Reason
    course_link: CourseLink | None
    item_links: Mapping[str, ItemLink]
    rejections: tuple[RejectionFact, ...] = ()


@dataclass(frozen=True, slots=True)
class CourseFacts:
    now: datetime
    course: Course
    activities: tuple[Activity, ...]
    policy: Mapping[str, ResolvedPolicy | Reason]  # per activity id
    destinations: tuple[CourseDestinationFacts, ...]
    rows: tuple[KeyState, ...]
    # learners with a problem row -> where they launched from (course ids at each destination)
    launched_elsewhere: Mapping[tuple[str, str], tuple[LaunchFact, ...]] = field(
        default_factory=dict
    )
    duplicates: Mapping[str, tuple[OtherAccount, ...]] = field(default_factory=dict)
    # learners with a problem row -> their SIS id now (None: none); not given, a SIS's
    # unmatched learner is judged by what their row's reason said when it was computed
    sis_ids: Mapping[str, str | None] | None = None


# reason codes -> (cause code, scope) for rows. Course-wide codes are judged per destination.
_COURSE_CODES = {
    "no_grade_scope": "not_configured_for_grades",
    "bad_credentials": "bad_credentials",
    "course_not_linked": "course_not_connected",
    PassbackRule.CLASS_NOT_MAPPED.value: "course_not_connected",
    "course_concluded": "course_concluded",
    "destination_unavailable": "destination_unavailable",
    ReasonCode.COURSE_SYNC_DISABLED.value: "course_sync_off",
}
_ACTIVITY_CODES = {
    ReasonCode.NOT_PUBLISHED.value: "activity_unpublished",
    "unpublished": "activity_unpublished",
    ReasonCode.PRACTICE_ITEM.value: "not_graded",
    ReasonCode.BELOW_MINIMUM_POINTS.value: "not_graded",
    ReasonCode.SYNC_DISABLED.value: "sync_disabled",
    "line_item_foreign": "column_locked",
    "line_item_gone": "column_gone",
    ReasonCode.NAME_TOO_LONG.value: "column_name",
    ReasonCode.NAME_FORBIDDEN_CHARS.value: "column_name",
    ReasonCode.NAME_EMPTY.value: "column_name",
    "attempts_exceeded": "attempts_limited",
    PassbackRule.NOT_SELECTED.value: "not_selected_for_sis",
    PassbackRule.NOT_POSTED.value: "waiting_for_post",
    PassbackRule.OTHER_INSTALLATION.value: "column_of_another_installation",
    POINTS_KEPT: "column_points_kept",
}
_LEARNER_CODES = {
    "no_person_link": "not_launched",
    "never_launched": "not_launched",
    "unknown_user": "not_a_student_in_lms",
    ReasonCode.NOT_ENROLLED.value: "not_enrolled",
    ReasonCode.NOT_A_LEARNER.value: "wrong_role",
    ReasonCode.OUTSIDE_COURSE_DATES.value: "outside_course_dates",
    "timestamp_older": "newer_grade_in_lms",
    OVERRIDDEN: "overridden",
}

# a paused destination's title and remedy are its pause's (`diagnosis.pause_said`), by kind
CAUSE_TEXT: dict[str, tuple[str, str]] = {
    "not_configured_for_grades": REMOTE_CAUSES["no_grade_scope"],
    "bad_credentials": REMOTE_CAUSES["bad_credentials"],
    "deployment_problem": (
        "Deployment scope problem: launches come from a deployment or platform gradesync does "
        "not know",
        "Add the deployment id to the platform's registration if it is yours (or install the "
        "tool in the right sub-account), then relaunch.",
    ),
    "course_not_connected": REMOTE_CAUSES["course_not_linked"],
    "course_concluded": REMOTE_CAUSES["course_concluded"],
    "destination_unavailable": (
        "gradesync cannot use the destination",
        "Fix the destination's settings, then resync.",
    ),
    "course_sync_off": (
        "Grade sync is turned off for the course",
        "Turn grade sync on in the course's settings.",
    ),
    "activity_unpublished": (
        "The assignment is not published (Canvas: Published; Blackboard: Available)",
        "Publish it (in the LMS and in the courseware), then resync.",
    ),
    "not_graded": (
        "The link was not set to 'Graded' (no points, no gradebook column)",
        "Rebuild the link with gradesync's Deep Linking as a graded item, then resync.",
    ),
    "no_column": (
        "The activity has no gradebook column",
        "Rebuild the link as 'Graded' with Deep Linking, or run Sync now to create the column.",
    ),
    "sync_disabled": (
        "The activity is excluded from grade sync",
        "Tick it in the course's grade sync settings.",
    ),
    "not_selected_for_sis": (
        "The activity is not selected for SIS passback",
        "Tick 'Sync to SIS' for it if its grades belong in the SIS (gradesync sis select).",
    ),
    "waiting_for_post": (
        "The activity is ticked for the SIS and held until its grades are posted",
        "Post its grades when they are ready (gradesync sis post).",
    ),
    "column_locked": REMOTE_CAUSES["line_item_foreign"],
    "column_points_kept": REMOTE_CAUSES[POINTS_KEPT],
    "column_gone": REMOTE_CAUSES["line_item_gone"],
    "column_of_another_installation": (
        "The SIS line item under the activity's id is another gradesync installation's",
        "Settle which gradesync installation passes these activities back to the SIS class: "
        "if the other no longer does, delete its line items in the SIS; if it is this one "
        "under the GRADESYNC_BASE_URL it had before, set that again; if both pass back here, "
        "one passes them back through a SIS connection whose id the other does not use "
        "(docs/oneroster.md, 'Two installations, one SIS'). Then tick 'Sync to SIS' for them "
        "again on the course's SIS passback page: their grades are sent.",
    ),
    "column_name": (
        "The activity's name is not accepted by the destination",
        "Rename the activity (or let the policy shorten/clean names).",
    ),
    "attempts_limited": REMOTE_CAUSES["attempts_exceeded"],
    "not_launched": (
        "The learner did not start from an LTI link in this course",
        "A learner must start their session by clicking a gradesync link in the LMS course "
        "where grades should land; waiting grades are sent after that launch.",
    ),
    # at a SIS (no launches there): the learner is matched to no student of the class
    "not_matched_in_sis": (
        "The learner is not matched to the SIS's student yet (a SIS has no LTI launches: "
        "learners are matched to its students by their SIS ids)",
        "Match the course's learners to the SIS's students by their SIS ids "
        "(gradesync sis map-students); the course's next sync matches them too.",
    ),
    "no_sis_id": (
        "The learner has no SIS id, so gradesync cannot match them to a SIS student",
        "Give the learner their SIS id (the sis_id of PUT /api/v1/people/PERSON_ID or of an "
        "ingest), or link them to their SIS student (gradesync sis map-student).",
    ),
    "launched_elsewhere": (
        "The learner launched from a different LMS course than intended",
        "Ask the learner to open gradesync from the link in this course.",
    ),
    "duplicate_accounts": (
        "The learner has several accounts, and the work is in one the LMS does not know",
        "Ask the learner to start from the LMS course link; merge the accounts in the "
        "courseware to keep the work.",
    ),
    "not_a_student_in_lms": REMOTE_CAUSES["unknown_user"],
    "not_enrolled": (
        "The learner is not enrolled in the course",
        "Enroll them as a student; their first launch from the LMS course does it.",
    ),
    "wrong_role": (
        "Not learners in the course (teachers and other staff get no grades)",
        "Nothing to do for staff. A student listed here needs the Student/Learner role in the "
        "LMS course, then a new launch.",
    ),
    "outside_course_dates": (
        "The work was completed outside the start/end dates of the course",
        "Extend the course dates if the work should count, then resync.",
    ),
    "newer_grade_in_lms": REMOTE_CAUSES["timestamp_older"],
    "overridden": REMOTE_CAUSES[OVERRIDDEN],
}


_ACTIVITY_CHECK_CAUSES: dict[str, str] = {
    CheckCode.ACTIVITY_PUBLISHED: "activity_unpublished",
    CheckCode.ACTIVITY_GRADED: "not_graded",
    CheckCode.ACTIVITY_SYNC_ENABLED: "sync_disabled",
}


# A SIS has no LTI links: where the LMS remedy speaks of Deep Linking or launches, a SIS
# admin is told what to do on the SIS side instead.
SIS_REMEDIES: dict[str, str] = {
    "not_graded": "Give the activity points (practice items and items under the minimum "
    "points are not passed back), then post grades again.",
    "no_column": "Tick 'Sync to SIS' for the activity and post grades: gradesync creates its "
    "line item in the SIS class.",
    "column_gone": "Post grades again: gradesync creates the line item in the SIS again.",
    "column_locked": "The SIS refused to let gradesync change the line item; check with the "
    "SIS admin that gradesync's client may write it, then post grades again.",
    # said with the destination and the course where known (sis_class_remedy)
    "course_not_connected": "Map the course to its SIS class (gradesync sis map-class).",
}
# ... and is told so in its own words: a SIS course is mapped to a class, not launched
SIS_TITLES: dict[str, str] = {
    "course_not_connected": "The course is not mapped to a class in the SIS",
    **SIS_CAUSE_TITLES,
}


def sis_role_remedy(course_id: str, learners: tuple[str, ...]) -> str:
    """A SIS's non-learner: the role is their enrollment's in the course as gradesync gets
    it, not one a SIS launch gives (a SIS has no launches). The HTTP API sets it (no gradesync
    command does), or a launch from an LMS the course syncs to brings the role given there."""
    person = quote(learners[0], safe="") if len(learners) == 1 else "PERSON_ID"
    return (
        "Nothing to do for staff. A student listed here needs the learner role in their "
        "enrollment in the course: set it over the HTTP API with "
        f"`PUT /api/v1/courses/{quote(course_id, safe='')}/enrollments/{person}` and "
        '`{"role": "learner"}` (an API key with the `ingest` scope; no gradesync command sets '
        "a role; the PUT sets the whole enrollment, so send their `section_id` too if they are "
        "in a section, or they leave it), or give them the Student/Learner role in an LMS "
        "the course syncs to: their next launch from there brings it (a SIS has no launches)."
    )


def lti11_remedy(code: str, activities: tuple[str, ...]) -> str | None:
    """LTI 1.1 has no Deep Linking, and gradesync cannot create its columns: a missing or
    ungraded column is the LMS's graded link naming the activity, opened once (as `doctor`
    says it, `remedies.lti11_column_remedy`). None: the cause's remedy holds there too."""
    if code in ("no_column", "column_gone") and activities:
        return lti11_column_remedy(*activities)
    if code == "not_graded" and activities:
        return (
            "If it should count, give the activity points in the courseware (practice items "
            "and items under the minimum points are not sent). " + lti11_column_remedy(*activities)
        )
    return None


def _fit_to_destinations(
    causes: list[Cause], course: Course, destinations: Mapping[str, Destination]
) -> None:
    """Give causes at a SIS (or at a course that syncs only to SISs) the SIS title and
    remedy, and those at an LTI 1.1 LMS (or at a course that syncs only to such LMSs) the
    LTI 1.1 remedy."""
    kinds = {d.kind for d in destinations.values()}
    all_sis = bool(kinds) and kinds <= set(SIS_KINDS)
    all_lti11 = kinds == {DestinationKind.LTI11_OUTCOMES}
    for i, c in enumerate(causes):
        d = destinations.get(c.destination_id) if c.destination_id else None
        sis = d.kind in SIS_KINDS if d is not None else all_sis
        lti11 = d.kind is DestinationKind.LTI11_OUTCOMES if d is not None else all_lti11
        if c.code == "bad_credentials" and d is not None and (fix := credentials_fix(d)):
            # an LTI 1.1 consumer's key and secret, a SIS's client: not LTI 1.3's words
            title = SIS_TITLES[c.code] if sis else c.title
            causes[i] = replace(c, title=title, remedy=fix.words(Reader.CLI), fix=fix)
            continue
        if lti11 and (remedy := lti11_remedy(c.code, c.activities)) is not None:
            causes[i] = replace(c, remedy=remedy)
            continue
        if not sis:
            continue
        if c.code in _SIS_LEARNER_FIXES and d is not None:
            fix = Remedy(_SIS_LEARNER_FIXES[c.code], destination=d.id, course=course.id)
            if len(c.learners) == 1:
                fix = replace(fix, person=c.learners[0])
            causes[i] = replace(c, remedy=fix.words(Reader.CLI), fix=fix)
            continue
        if c.code == "course_not_connected" and d is not None:
            remedy = sis_class_remedy(d.id, course)
        elif c.code == "wrong_role":
            remedy = sis_role_remedy(course.id, c.learners)
        else:
            remedy = SIS_REMEDIES.get(c.code, c.remedy)
        causes[i] = replace(c, title=SIS_TITLES.get(c.code, c.title), remedy=remedy)


def _sis_unmatched(r: KeyState, sis_ids: Mapping[str, str | None] | None) -> str:
    """The cause of a SIS's `no_person_link` row: a learner with no SIS id (`no_sis_id`), or
    one not matched to the SIS's student yet (`not_matched_in_sis`), by their SIS id now
    when known, else by their row's reason (a row stored before the two were told apart is
    taken as not matched yet)."""
    if sis_ids is not None:
        return "not_matched_in_sis" if sis_ids.get(r.person_id) else "no_sis_id"
    held = stored_reason(r.reason_text or "")
    given = held.fix is not None and held.fix.code == GIVE_SIS_ID
    return "no_sis_id" if given else "not_matched_in_sis"


# the remedies of a SIS's learners matched to no student, held as codes (`_fit_to_destinations`)
_SIS_LEARNER_FIXES = {"not_matched_in_sis": MATCH_SIS_STUDENTS, "no_sis_id": GIVE_SIS_ID}


def _cause(code: str, scope: Scope, evidence: str, **kw: Any) -> Cause:
    title, remedy = CAUSE_TEXT[code]
    return Cause(code, scope, title, evidence, remedy, **kw)


def _problem(r: KeyState) -> bool:
    if r.state in (DeliveryState.REJECTED, DeliveryState.RETRYING):
        return True
    if r.state is DeliveryState.SKIPPED:
        return r.reason_code not in BENIGN_SKIPS and r.reason_code not in BY_DESIGN
    # delivered, but the LMS does not hold it as sent: an edit, or its column's own points
    return r.state is DeliveryState.DELIVERED and r.reason_code in (OVERRIDDEN, POINTS_KEPT)


def _not_a_learner(r: KeyState) -> bool:
    return r.state is DeliveryState.SKIPPED and r.reason_code == ReasonCode.NOT_A_LEARNER.value


# a destination's symptoms under which none of its grades reach it now
_NOTHING_REACHES = (Symptom.NOTHING_SYNCING, Symptom.SENDING_PAUSED)


def _symptom(causes: list[Cause], rows: tuple[KeyState, ...] | list[KeyState]) -> Symptom:
    problems = [c for c in causes if not c.excluded]
    scopes = {c.scope for c in problems}
    if any(c.scope is Scope.COURSE and not c.tries_again_by_itself for c in problems):
        return Symptom.NOTHING_SYNCING
    if Scope.COURSE in scopes:  # only pauses gradesync lifts by itself
        return Symptom.SENDING_PAUSED
    if Scope.ACTIVITIES in scopes:
        return Symptom.SOME_ACTIVITIES
    if Scope.LEARNERS in scopes:
        return Symptom.SOME_LEARNERS
    if any(r.state is DeliveryState.DELIVERED for r in rows):
        return Symptom.SOME_GRADES if Scope.GRADES in scopes else Symptom.ALL_SYNCING
    if any(_problem(r) for r in rows):
        return Symptom.NOTHING_SYNCING
    return Symptom.NOTHING_TO_SYNC


# the reason codes a cause above names (a row with another is said by `_unnamed_failures`)
_NAMED_CODES = frozenset({*_COURSE_CODES, *_ACTIVITY_CODES, *_LEARNER_CODES})


def _who(people: tuple[str, ...]) -> str:
    return ", ".join(people[:10]) + (f" and {len(people) - 10} more" if len(people) > 10 else "")


def _unnamed_failures(
    rows: tuple[KeyState, ...], dests: Mapping[str, Destination], now: datetime
) -> list[Cause]:
    """Every problem counted is listed: the results a destination failed (`retrying`: its
    failure's words, when gradesync tries again by itself) or refused, or gradesync could not
    send (`not_delivered`), for a reason no cause above names, grouped per destination and
    reason."""
    groups: dict[tuple[bool, str, str], list[KeyState]] = {}
    for r in rows:
        if _problem(r) and (r.reason_code or "") not in _NAMED_CODES:
            retrying = r.state is DeliveryState.RETRYING
            # a row an older gradesync stored under a former code is one with the current code
            code = current_code(r.reason_code or "")
            groups.setdefault((retrying, r.destination_id, code), []).append(r)
    causes: list[Cause] = []
    for (retrying, dest_id, code), hit in sorted(groups.items(), key=lambda kv: kv[0][1:]):
        d = dests.get(dest_id)
        name = repr(d.name) if d is not None else repr(dest_id)
        kind = "SIS" if d is not None and d.kind in SIS_KINDS else "LMS"
        remote = f"the {kind}"
        activities = tuple(sorted({r.activity_id for r in hit}))
        people = tuple(sorted({r.person_id for r in hit}))
        sample = max(hit, key=lambda r: r.tries)
        known = REMOTE_CAUSES.get(code)
        former = sorted({r.reason_code for r in hit if r.reason_code and r.reason_code != code})
        # the stored code, as its rows hold it, is said beside the one it is read as
        code_words = (
            f"{code}; as {', '.join(former)} where an older gradesync recorded it"
            if former
            else code
        )
        what = f"{plural(len(hit), 'result')} for {', '.join(activities)} ({_who(people)})"
        # the remote's own words, once (the reason usually quotes them)
        answer = as_clause(sample.said or code or sample.state.value)
        if sample.remote_message and sample.remote_message not in answer:
            answer = f"{as_clause(sample.remote_message)}; {answer}"
        if sample.remote_status is not None:
            answer = f"{remote} answered HTTP {sample.remote_status}: {answer}"
        if retrying:
            next_at = _next_try(hit, d, now)
            held = d is not None and not d.enabled  # an administrator's pause holds them
            at = (
                "once an administrator resumes the destination"
                if held
                else "as soon as it can (the next try is due)"
                if next_at is None
                else f"at {when(next_at)}"
            )
            next_said = (
                "once the destination is resumed"
                if held
                else "due now"
                if next_at is None
                else when(next_at)
            )
            times = plural(sample.tries, "time") if len(hit) == 1 else f"up to {sample.tries} times"
            # a destination's asking to wait (a 429) is not a failed try
            failed = f"failed {times}" if sample.tries else ("waits" if len(hit) == 1 else "wait")
            title = (
                known[0]
                if known
                else f"The {kind} failed to take these grades; gradesync tries them again by itself"
            )
            remedy = (
                f"Nothing is needed for them to be sent: gradesync tries again by itself {at}."
                if not held
                else f"They are tried again {at}: nothing is sent to a paused destination."
            )
            remedy += (
                f" {known[1]}"
                if known
                else f" If the failures go on, look into {remote}'s failure quoted here on its "
                "side: after repeated failures gradesync pauses sending to the destination for "
                "a while, and a grade that fails every try is given up (retries_exhausted)."
            )
            causes.append(
                Cause(
                    "retrying",
                    Scope.GRADES,
                    title,
                    f"{what} at {name} {failed} ({code_words}); {answer}; next try {next_said}.",
                    remedy,
                    destination_id=dest_id,
                    activities=activities,
                    learners=people,
                    tries_again_by_itself=not held,
                )
            )
            continue
        if known:
            title, remedy = known
        elif code == ReasonCode.RETRIES_EXHAUSTED:
            title = f"gradesync gave up sending these grades: {remote} failed every try"
            remedy = (
                f"Look into {remote}'s failure quoted here on its side. The grades are sent "
                "again when they change, or on a remaster once it works again."
            )
        else:
            title = (
                f"The {kind} refused these grades"
                if sample.state is DeliveryState.REJECTED
                else "gradesync sends no grade for these results"
            )
            remedy = (
                "Diagnose one of the learners listed (their grade for the activity) for the "
                "exact cause and what to do."
            )
        causes.append(
            Cause(
                "not_delivered",
                Scope.GRADES,
                title,
                f"{what} at {name} {sample.state.value} ({code_words}); {answer}.",
                remedy,
                destination_id=dest_id,
                activities=activities,
                learners=people,
            )
        )
    return causes


def _next_try(hit: list[KeyState], d: Destination | None, now: datetime) -> datetime | None:
    """When gradesync tries the `hit` results again by itself: the first one's next try, or
    the end of the destination's timed pause if later; None when one is due now."""
    due = [r.next_attempt_at for r in hit if r.next_attempt_at is not None]
    first = min(due) if due else None
    pause = pause_said(d, now) if d is not None else None
    if pause is not None and pause.until is not None and (first is None or first < pause.until):
        first = pause.until
    return first if first is not None and first > now else None


def triage_course(facts: CourseFacts) -> CourseTriage:
    """Sort a course's problems into the three symptoms, each cause with its evidence."""
    course = facts.course
    rows = facts.rows
    counts = Counter(r.state.value for r in rows)
    causes: list[Cause] = []

    # -- the course as a whole, per destination --
    if not course.sync_enabled:
        causes.append(_cause("course_sync_off", Scope.COURSE, f"Course {course.id!r}: sync off."))
    for cd in facts.destinations:
        d = cd.destination
        paused = pause_said(d, facts.now)
        if paused is not None:
            causes.append(
                Cause(
                    "destination_paused",
                    Scope.COURSE,
                    paused.title,
                    paused.evidence,
                    paused.remedy,
                    destination_id=d.id,
                    tries_again_by_itself=paused.lifts_by_itself,
                )
            )
        elif isinstance(cd.capabilities, Reason):
            causes.append(
                _cause(
                    "destination_unavailable",
                    Scope.COURSE,
                    cd.capabilities.text,
                    destination_id=d.id,
                )
            )
        scope = grade_scope_check(d)
        if scope is not None and not scope.passed:
            causes.append(
                _cause(
                    "not_configured_for_grades", Scope.COURSE, scope.evidence, destination_id=d.id
                )
            )
        deployment = [r for r in cd.rejections if r.code in DEPLOYMENT_CODES]
        if deployment:
            latest = max(deployment, key=lambda r: r.at)
            causes.append(
                _cause(
                    "deployment_problem",
                    Scope.COURSE,
                    f"{plural(len(deployment), 'launch')} refused at {d.name!r}, the latest "
                    f"{when(latest.at)}: {latest.message}",
                    destination_id=d.id,
                )
            )
        if d.kind in LTI_KINDS + SIS_KINDS and (
            cd.course_link is None or not cd.course_link.remote_id
        ):
            # until then no grade of the course can reach it, whatever its activities; said as
            # the course_connected check, the console and the grades API say it
            missing = not_connected(course, d, cd.course_link)
            causes.append(
                replace(
                    _cause(
                        "course_not_connected", Scope.COURSE, missing.evidence, destination_id=d.id
                    ),
                    remedy=missing.remedy,
                )
            )
        mine = [r for r in rows if r.destination_id == d.id]
        by_code: dict[str, list[KeyState]] = {}
        for r in mine:
            if _problem(r) and r.reason_code in _COURSE_CODES:
                by_code.setdefault(_COURSE_CODES[r.reason_code], []).append(r)
        for code, hit in sorted(by_code.items()):
            if any(c.code == code and c.destination_id in (d.id, None) for c in causes):
                continue
            sample = hit[0]
            causes.append(
                _cause(
                    code,
                    Scope.COURSE,
                    f"{plural(len(hit), 'result')} at {d.name!r}: {sample.said or code}",
                    destination_id=d.id,
                )
            )

    # -- specific activities --
    acts = {a.id: a for a in facts.activities}
    for a in facts.activities:
        policy = facts.policy.get(a.id)
        local = activity_checks(a, policy if policy is not None else Reason("", ""))
        for check in local:
            if check.passed:
                continue
            cause = _ACTIVITY_CHECK_CAUSES.get(check.code)
            if cause is None or (cause == "not_graded" and a.kind is ActivityKind.PRACTICE):
                continue  # a practice item is meant to stay out of the gradebook
            causes.append(
                _cause(
                    cause,
                    Scope.ACTIVITIES,
                    check.evidence,
                    activities=(a.id,),
                    # unticked on purpose: said, not a problem
                    excluded=check.code is CheckCode.ACTIVITY_SYNC_ENABLED,
                )
            )
    for cd in facts.destinations:
        d = cd.destination
        if cd.course_link is None or not cd.course_link.remote_id:
            continue
        # an activity left out by design (e.g. not ticked for the SIS) needs no column there
        with_rows = {
            r.activity_id for r in rows if r.destination_id == d.id and not left_out_by_design(r)
        }
        delivered_any = any(
            r.state is DeliveryState.DELIVERED for r in rows if r.destination_id == d.id
        )
        no_col = sorted(
            aid
            for aid in with_rows
            if aid in acts
            and aid not in cd.item_links
            and acts[aid].published
            and acts[aid].sync_enabled
            and acts[aid].kind is not ActivityKind.PRACTICE
            # none is ever made for it (under the minimum points, ...): said as not_graded
            and (policy := facts.policy.get(aid)) is not None
            and no_column(acts[aid], policy, cd.capabilities) is None
        )
        if no_col and delivered_any:
            causes.append(
                _cause(
                    "no_column",
                    Scope.ACTIVITIES,
                    f"No gradebook column at {d.name!r} for: {', '.join(no_col)}.",
                    destination_id=d.id,
                    activities=tuple(no_col),
                )
            )
    grouped: dict[tuple[str, str | None, bool], list[KeyState]] = {}
    for r in rows:
        if r.reason_code in _ACTIVITY_CODES and (_problem(r) or left_out_by_design(r)):
            code = _ACTIVITY_CODES[r.reason_code]
            if code in ("activity_unpublished", "not_graded", "sync_disabled") and any(
                c.code == code and r.activity_id in c.activities for c in causes
            ):
                continue  # already said from the activity's own settings
            grouped.setdefault((code, r.destination_id, left_out_by_design(r)), []).append(r)
    for (code, dest, excluded), hit in sorted(
        grouped.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2])
    ):
        activities = tuple(sorted({r.activity_id for r in hit}))
        sample = hit[0]
        causes.append(
            _cause(
                code,
                Scope.ACTIVITIES,
                f"{plural(len(hit), 'result')} for {', '.join(activities)}: "
                f"{sample.said or sample.reason_code}",
                destination_id=dest,
                activities=activities,
                excluded=excluded,
            )
        )

    # -- specific learners --
    sis_ids = {cd.destination.id for cd in facts.destinations if cd.destination.kind in SIS_KINDS}
    lgroups: dict[tuple[str, str | None], list[KeyState]] = {}
    for r in rows:
        # a non-learner (a course's teacher, say) is said apart, never a problem
        if not _problem(r) and not _not_a_learner(r):
            continue
        found = _LEARNER_CODES.get(r.reason_code or "")
        if found is None:
            continue
        code = found
        if r.reason_code == "no_person_link" and r.destination_id in sis_ids:
            code = _sis_unmatched(r, facts.sis_ids)
        elif code in ("not_launched", "not_a_student_in_lms"):
            elsewhere = facts.launched_elsewhere.get((r.destination_id, r.person_id))
            if elsewhere:
                code = "launched_elsewhere"
            elif facts.duplicates.get(r.person_id):
                code = "duplicate_accounts"
        lgroups.setdefault((code, r.destination_id), []).append(r)
    for (code, dest), hit in sorted(lgroups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        people = tuple(sorted({r.person_id for r in hit}))
        activities = tuple(sorted({r.activity_id for r in hit}))
        noun = "user" if code == "wrong_role" else "learner"
        evidence = f"{plural(len(people), noun)}: {', '.join(people[:10])}" + (
            f" and {len(people) - 10} more" if len(people) > 10 else ""
        )
        if code == "launched_elsewhere":
            where = [
                x.where()
                for p in people
                for x in facts.launched_elsewhere.get((dest or "", p), ())[:1]
            ]
            if where:
                evidence += f"; e.g. launched from {where[0]}"
        if code == "not_matched_in_sis" and facts.sis_ids:
            ids = [f"{p} {facts.sis_ids[p]!r}" for p in people[:10] if facts.sis_ids.get(p)]
            evidence += f"; their SIS ids: {', '.join(ids)}" if ids else ""
        if code == "duplicate_accounts":
            dup = [
                f"{p} ~ {', '.join(o.person.id for o in facts.duplicates.get(p, ()))}"
                for p in people[:5]
            ]
            evidence += f"; other accounts: {'; '.join(dup)}"
        causes.append(
            _cause(
                code,
                Scope.LEARNERS,
                evidence + ".",
                destination_id=dest,
                activities=activities,
                learners=people,
                excluded=code == "wrong_role",
            )
        )

    # -- grades a destination failed or refused, for none of the causes above --
    dests = {cd.destination.id: cd.destination for cd in facts.destinations}
    causes += _unnamed_failures(rows, dests, facts.now)

    problems = sum(1 for r in rows if _problem(r))
    # Each destination on its own: a paused LMS does not stop the SIS, so "nothing syncing at
    # all" is said only when no destination delivers.
    per_destination: dict[str, Symptom] = {}
    delivering = False
    for cd in facts.destinations:
        d_id = cd.destination.id
        mine = [r for r in rows if r.destination_id == d_id]
        s = _symptom([c for c in causes if c.destination_id in (d_id, None)], mine)
        per_destination[d_id] = s
        if s not in _NOTHING_REACHES and any(r.state is DeliveryState.DELIVERED for r in mine):
            delivering = True
    if Symptom.NOTHING_SYNCING in per_destination.values():
        symptom = Symptom.SOME_DESTINATIONS if delivering else Symptom.NOTHING_SYNCING
    elif Symptom.SENDING_PAUSED in per_destination.values():
        symptom = Symptom.SOME_DESTINATIONS if delivering else Symptom.SENDING_PAUSED
    else:
        symptom = _symptom(causes, rows)
    _fit_to_destinations(
        causes, course, {cd.destination.id: cd.destination for cd in facts.destinations}
    )
    order = {Scope.COURSE: 0, Scope.ACTIVITIES: 1, Scope.LEARNERS: 2, Scope.GRADES: 3}
    causes.sort(key=lambda c: order[c.scope])
    return CourseTriage(
        course.id,
        symptom,
        tuple(causes),
        {**dict(counts), "problems": problems, "activities": len(facts.activities)},
        per_destination,
    )
