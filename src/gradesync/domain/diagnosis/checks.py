"""The vocabulary of diagnosis: checks, a diagnosis, the facts they are made from, and
the remote's answers in words a support engineer can act on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from gradesync.domain.capabilities import Capabilities
from gradesync.domain.course_connection import GRADE_SCOPE_REMEDY, LAUNCH_REMEDY
from gradesync.domain.model import (
    SIS_KINDS,
    Activity,
    Attempt,
    Course,
    CourseLink,
    Destination,
    DestinationKind,
    Enrollment,
    ItemLink,
    LedgerRow,
    Person,
    PersonLink,
)
from gradesync.domain.overrides import OVERRIDDEN, POINTS_KEPT
from gradesync.domain.passback import PassbackRule
from gradesync.domain.policy import (
    ResolvedPolicy,
)
from gradesync.domain.reasons import Reason, ReasonCode
from gradesync.domain.remedies import Reader, Remedy, for_reader

LTI_KINDS = (DestinationKind.LTI13_AGS, DestinationKind.LTI11_OUTCOMES)
AGS_SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
AGS_LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"

# Skips by design: a person unticked a box to leave these results out (the course's or the
# activity's sync, the activity's 'Sync to SIS', or held it for Post grades). Practice items and
# items under the minimum points are not here: course triage still names them, since "the link
# was not set to Graded" is a common mistake.
BY_DESIGN = frozenset(
    {
        ReasonCode.COURSE_SYNC_DISABLED.value,
        ReasonCode.SYNC_DISABLED.value,
        PassbackRule.NOT_SELECTED.value,
        PassbackRule.NOT_POSTED.value,
    }
)

# How to include what BY_DESIGN left out (the CLI prints it after "to include it:")
TO_INCLUDE = {
    ReasonCode.COURSE_SYNC_DISABLED.value: "Turn grade sync on for the course.",
    ReasonCode.SYNC_DISABLED.value: "Tick the activity's sync box.",
    PassbackRule.NOT_SELECTED.value: "Tick 'Sync to SIS' for the activity.",
    PassbackRule.NOT_POSTED.value: "Post its grades (Post grades, or `gradesync sis post`).",
}


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
    RATE_LIMIT = "rate_limit"
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
    # the reason code behind the remedy when the check's code does not tell it (one check,
    # several causes): what `remedies.for_instructor` says to an instructor goes by it
    reason: str | None = None
    # the remedy held as a code (a SIS's check step's), `remedy` then the command line's words
    fix: Remedy | None = None

    @property
    def remedy_code(self) -> str:
        return self.reason or self.code

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
        """Nothing is broken: every check passed, or was left out on purpose (`excluded`),
        which `doctor` does not count as a failure (docs/troubleshooting.md)."""
        return all(c.passed or c.excluded for c in self.checks)

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
        """The diagnosis in a sentence: every check passed, or how many failed and what the
        first found. A check's name says what passing means ("The grade is delivered"), so it
        is named as the check that failed, never followed by its evidence as though it held.
        A check left out on purpose is said apart; a real failure goes first."""
        failed = [c for c in self.failed if not c.excluded]
        first = failed[0] if failed else self.first_failure
        if first is None:
            return f"All {len(self.checks)} checks passed."
        if first.excluded:
            return f"Excluded on purpose ({first.name}): {first.evidence}"
        which = "" if len(failed) == 1 else ", the first"
        return (
            f"{len(failed)} of {len(self.checks)} checks failed{which} ({first.name}): "
            + first.evidence
        )

    def read_over(self, reader: Reader) -> Diagnosis:
        """The diagnosis as an administrator reads it over `reader`: a remedy naming a command
        names the API's route or the console's action instead, where one does the same
        (`remedies.for_reader`), about the course, activity and learner of its `details`."""
        ids = {
            "course_id": self.details.get("course_id"),
            "activity_id": self.details.get("activity_id"),
            "person_id": self.details.get("person_id"),
        }
        about = (ids["course_id"], ids["activity_id"])
        checks = (
            replace(c, remedy=c.fix.about(c.destination_id, *about).words(reader))
            if c.fix is not None
            else replace(
                c, remedy=for_reader(c.remedy_code, c.remedy, reader, c.destination_id, **ids)
            )
            if c.remedy
            else c
            for c in self.checks
        )
        return replace(self, checks=tuple(checks), details=self._details_over(reader, ids))

    def _details_over(self, reader: Reader, ids: dict[str, Any]) -> dict[str, Any]:
        """`details` with each ledger row's reason in the words of `reader`, as the row
        stores it (its remedy a code and its ids, or words from before)."""
        ledger = self.details.get("ledger")
        if not isinstance(ledger, dict):
            return self.details
        rows = {
            dest: {
                **row,
                "reason_text": for_reader(row.get("reason_code"), text, reader, dest, **ids),
            }
            if isinstance(row, dict) and isinstance(text := row.get("reason_text"), str)
            else row
            for dest, row in ledger.items()
        }
        return {**self.details, "ledger": rows}

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
        GRADE_SCOPE_REMEDY,
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
        "The gradebook column is gone from the destination (deleted there, or a SIS "
        "restored from an older state)",
        "Run Sync now: gradesync creates the column again (a SIS's line item under its own "
        "sourcedId); if it is still refused, remaster.",
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
        LAUNCH_REMEDY,
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
    # not the remote's: gradesync's own error while preparing or sending the grade
    ReasonCode.INTERNAL_ERROR: (
        "gradesync itself failed while preparing or sending the grade (a bug)",
        "Nothing to change in the LMS: gradesync tries again by itself, waiting longer each "
        "time. If it keeps failing, give the operator the error logged for this destination "
        "and course (`a delivery task ... failed unexpectedly`, with its traceback) to report.",
    ),
    OVERRIDDEN: (
        "An instructor changed the grade in the LMS",
        "Keep the LMS edit, or run a repair resync to send gradesync's grade again (or set "
        "the course to 'gradesync wins').",
    ),
    # the same code at every kind of destination: an LMS, an LTI 1.1 consumer, a SIS
    "connection_failed": (
        "The destination could not be reached (the connection was refused or reset, or its "
        "host name does not resolve)",
        "If it goes on, check that the destination's URLs name the right host and port (a "
        "host name that does not resolve is a typo) and that it is up; gradesync tries again "
        "by itself meanwhile.",
    ),
    POINTS_KEPT: (
        "The LMS keeps its own points for the column",
        "Set the column's points back to the activity's in the LMS (and stop whatever sets "
        "them there: a course template, another tool), or give the activity the LMS's points "
        "in the courseware; then remaster the activity to send its grades again. A new grade "
        "is sent as usual meanwhile.",
    ),
}


# failure codes an older gradesync stored, still on rows and runs until their next try ->
# the code that replaced them, whose cause and remedy they take
FORMER_CODES: dict[str, str] = {
    # a SIS's and an LTI 1.1 consumer's unreachable destination, before the one code for it
    "connection_error": "connection_failed",
}


def current_code(code: str) -> str:
    """A stored failure code as this gradesync names it (`FORMER_CODES`)."""
    return FORMER_CODES.get(code, code)


def code_said(code: str) -> str:
    """A stored failure code for evidence: a former one with the code it now reads as."""
    now = current_code(code)
    return code if now == code else f"{now}, recorded as {code} by an older gradesync"


def remote_cause(code: str | None) -> tuple[str, str] | None:
    return REMOTE_CAUSES.get(current_code(code or ""))


# REMOTE_CAUSES' titles a SIS gives in its own words: a SIS is not "the LMS"
SIS_CAUSE_TITLES: dict[str, str] = {
    "bad_credentials": "The SIS refused gradesync's credentials",
}


def cause_title(code: str, kind: DestinationKind) -> str:
    """A failure code's cause (REMOTE_CAUSES) as `kind` of destination gives it."""
    if kind in SIS_KINDS and code in SIS_CAUSE_TITLES:
        return SIS_CAUSE_TITLES[code]
    return REMOTE_CAUSES[current_code(code)][0]


def credentials_fix(d: Destination) -> Remedy | None:
    """The remedy of credentials `d` refused, where they are not an LTI 1.3 registration's
    (REMOTE_CAUSES' words, None here): an LTI 1.1 consumer's key and secret, a SIS's client id
    and secret, held as the codes their adapters refuse with, so each reader reads the words
    `destinations check` and `doctor` give them."""
    if d.kind is DestinationKind.LTI11_OUTCOMES:
        return Remedy("bad_configuration", destination=d.id)  # the consumer's settings
    if d.kind in SIS_KINDS:
        return Remedy("sis_credentials", destination=d.id)
    return None


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
class DestinationQueue:
    """What moves at a destination, read for a grade waiting there: a grade that waits long
    behind a backlog gradesync is sending is not a grade gradesync has stopped sending."""

    waiting: int = 0  # grades waiting to be sent to it (pending or retrying), this one included
    last_send: datetime | None = None  # gradesync's latest send to it, whatever the answer
    run_beat: datetime | None = None  # latest heartbeat of an unfinished run covering the grade


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
    queue: DestinationQueue = DestinationQueue()  # read when the grade waits to be sent
    # the person has a student picked by hand at this SIS (map-student's link of no course,
    # which each course's link copies): a new SIS id does not replace it
    hand_picked: bool = False


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


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 launch`, `2 launches`, `3 results` (`many` where English does not add -s or -es:
    "categories")."""
    if count == 1:
        return f"{count} {word}"
    if many is not None:
        return f"{count} {many}"
    return f"{count} {word}{'es' if word.endswith(('s', 'sh', 'ch', 'x', 'z')) else 's'}"
