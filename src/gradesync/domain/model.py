"""The facts gradesync keeps and the records it derives from them.

Plain, typed, immutable dataclasses. Nothing here talks to a database or the network:
adapters translate rows and payloads to and from these types.

Identifiers are the source's own strings (a course id, a person id, an activity id) scoped by
tenant, so a source can upsert by the ids it already has. Times are timezone-aware UTC
`datetime`s; a course's `time_zone` is an IANA name used for local-time rules (due dates shown,
schedules), never for storage.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from dataclasses import fields as dataclass_fields
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from gradesync.domain.pauses import PauseCause

JSON = dict[str, Any]

# A destination's id is in the console's URLs and in commands: letters, digits and . _ : -
DESTINATION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
DESTINATION_ID_RULE = (
    "An id is 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit."
)
DESTINATION_NAME_MAX = 255


class ActivityKind(StrEnum):
    GRADED = "graded"
    PRACTICE = "practice"  # never sent: practice items have no points
    COMPLETION = "completion"  # readings, videos: full credit once completed


class Role(StrEnum):
    LEARNER = "learner"
    INSTRUCTOR = "instructor"
    TEACHING_ASSISTANT = "teaching_assistant"
    OBSERVER = "observer"
    ADMINISTRATOR = "administrator"


class EnrollmentStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    COMPLETED = "completed"
    DROPPED = "dropped"


class RosterMatch(StrEnum):
    """How a member of an LMS roster (NRPS) is matched to a courseware learner who never
    launched: the learner's id is the LMS user id, or their SIS id is the member's
    `lis_person_sourcedid`, or their email is the member's email."""

    LMS_USER_ID = "lms_user_id"
    SIS_ID = "sis_id"
    EMAIL = "email"


class AttemptSelection(StrEnum):
    HIGHEST = "highest"
    LATEST = "latest"
    FIRST = "first"
    AVERAGE = "average"


class ScoreForm(StrEnum):
    POINTS = "points"  # scoreGiven / scoreMaximum in the activity's points
    PERCENT = "percent"  # a fraction the LMS scales to its own points


class ExtraCredit(StrEnum):
    CAP = "cap"  # 10/5 is sent as 5/5
    PASS_THROUGH = "pass_through"  # 10/5 is sent as 10/5 where the destination accepts it


class PastDueZeros(StrEnum):
    OFF = "off"
    ON = "on"
    ASSIGNED_ONLY = "assigned_only"


class NameRule(StrEnum):
    SHORTEN = "shorten"  # clean forbidden characters, truncate to the limit
    REFUSE = "refuse"  # refuse to sync the activity, with a clear error


class DestinationKind(StrEnum):
    LTI13_AGS = "lti13_ags"
    LTI11_OUTCOMES = "lti11_outcomes"
    ONEROSTER_REST = "oneroster_rest"
    ONEROSTER_CSV = "oneroster_csv"


# The student information systems (OneRoster over REST or as files), against the LMSs.
SIS_KINDS = (DestinationKind.ONEROSTER_REST, DestinationKind.ONEROSTER_CSV)


class Trigger(StrEnum):
    AUTO = "auto"
    MANUAL = "manual"
    RESYNC = "resync"
    REMASTER = "remaster"
    SCHEDULE = "schedule"
    REPAIR = "repair"


class RunStage(StrEnum):
    QUEUED = "queued"
    COMPUTING = "computing"
    PROVISIONING = "provisioning"
    SENDING = "sending"
    VERIFYING = "verifying"
    FINISHED = "finished"


class RunOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    PARTLY_FAILED = "partly_failed"
    FAILED = "failed"


class DeliveryState(StrEnum):
    PENDING = "pending"  # desired differs from delivered; will be sent
    DELIVERED = "delivered"  # the remote acknowledged the desired state
    RETRYING = "retrying"  # a transient failure; next_attempt_at says when
    REJECTED = "rejected"  # the remote refused; not retried until the facts change
    SKIPPED = "skipped"  # policy says send nothing; reason_code says why


# the states of a row waiting to be sent: those a claim takes (a retry once its time comes)
WAITING_STATES = frozenset({DeliveryState.PENDING, DeliveryState.RETRYING})


class ScheduleKind(StrEnum):
    INTERVAL = "interval"  # every N minutes
    DAILY = "daily"  # at a local time
    WEEKLY = "weekly"  # on a weekday at a local time
    CRON = "cron"  # a cron expression in the schedule's time zone


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """Grade policy knobs. `None` means "inherit": tenant, then course, then activity layer
    over the built-in defaults (see `domain.policy.resolve_settings`)."""

    attempt_selection: AttemptSelection | None = None
    extra_credit: ExtraCredit | None = None
    past_due_zeros: PastDueZeros | None = None
    grace_period_minutes: int | None = None
    minimum_points: float | None = None
    name_rule: NameRule | None = None
    keep_lms_edits: bool | None = None  # instructor overrides: keep the LMS edit (default)
    roster_match: RosterMatch | None = None  # read from the tenant's layer (default: SIS id)


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    policy: PolicySettings = PolicySettings()
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Course:
    tenant_id: str
    id: str
    title: str
    time_zone: str = "UTC"
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    policy: PolicySettings = PolicySettings()
    sync_enabled: bool = True  # the instructor's "grade sync on" switch


@dataclass(frozen=True, slots=True)
class Activity:
    tenant_id: str
    id: str
    course_id: str
    title: str
    points_possible: float
    kind: ActivityKind = ActivityKind.GRADED
    due_at: datetime | None = None
    category: str | None = None  # the activity group; aligned to SIS categories
    published: bool = True
    sync_enabled: bool = True  # per-activity opt-out ("clear the check box")
    assigned: bool = True  # MyLab "assigned" activities; matters for past-due zeros
    policy: PolicySettings = PolicySettings()


@dataclass(frozen=True, slots=True)
class Person:
    tenant_id: str
    id: str
    name: str = ""
    email: str | None = None
    sis_id: str | None = None


# a course, activity or person as a source sends it
Sent = TypeVar("Sent", Course, Activity, Person)


def keep_unsent(stored: Sent | None, sent: Sent, fields: Collection[str] | None) -> Sent:
    """What an update that names the fields it sends leaves stored: `sent`'s value of each of
    `fields` and `stored`'s of every other one (a field left out keeps its value). `sent`
    itself for a new object (`stored` None: the defaults fill what was left out) and for one
    sent whole (`fields` None)."""
    if stored is None or fields is None:
        return sent
    return replace(stored, **{name: getattr(sent, name) for name in fields})


_KEY = frozenset({"tenant_id", "id"})


def written_fields(sent: Sent, fields: Collection[str] | None) -> frozenset[str] | None:
    """The fields an update of `sent` naming `fields` writes over a stored row: those it
    names but its key, or None for every one (it names them all, or is sent whole). Only
    these are written, so another update of the object committed meanwhile keeps the fields
    it sent."""
    if fields is None:
        return None
    own = {f.name for f in dataclass_fields(sent)} - _KEY
    named = frozenset(fields) & own
    return None if named == own else named


def fill_blanks(stored: Sent | None, sent: Sent, fields: Collection[str] | None) -> Sent:
    """What an update that only fills blanks (an LTI 1.1 launch's name, email and SIS id)
    leaves stored: `stored` with `sent`'s value of each of `fields` (None: every one) that
    is blank there (None or ""); every other field, and one holding a value, as stored.
    `sent` itself for a new object."""
    if stored is None:
        return sent
    names = written_fields(sent, fields)
    if names is None:
        names = frozenset(f.name for f in dataclass_fields(sent)) - _KEY
    blank = {n: getattr(sent, n) for n in names if getattr(stored, n) in (None, "")}
    return replace(stored, **blank)


@dataclass(frozen=True, slots=True)
class Enrollment:
    tenant_id: str
    course_id: str
    person_id: str
    role: Role = Role.LEARNER
    status: EnrollmentStatus = EnrollmentStatus.ACTIVE
    section_id: str | None = None
    # Who last set the status and when, where known: "nrps" when an LMS roster said the
    # learner left the course (then `status_at` is when gradesync read that).
    status_source: str | None = None
    status_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DueDateOverride:
    """A per-learner extension: moves the point after which a past-due zero is sent."""

    tenant_id: str
    activity_id: str
    person_id: str
    due_at: datetime


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt as the source reported it. Append-only; `source_event_id` makes a retried
    post idempotent. `score_given` is None for an attempt that is not graded yet."""

    tenant_id: str
    source_event_id: str
    activity_id: str
    person_id: str
    score_given: float | None
    score_maximum: float | None
    completed_at: datetime
    started_at: datetime | None = None
    completed: bool = True  # for completion items: viewed/finished
    comment: str | None = None
    late: bool = False
    excused: bool = False
    id: int | None = None
    recorded_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Destination:
    """Where grades go: an LMS platform (AGS or LTI 1.1) or a SIS (OneRoster).

    `config` holds non-secret settings (URLs, client ids, profile knobs); `secret` holds the
    decrypted secret material only in memory (private key, client secret). Adapters encrypt
    it at rest."""

    tenant_id: str
    id: str
    kind: DestinationKind
    name: str
    profile: str = "generic"
    config: JSON = field(default_factory=dict)
    secret: JSON = field(default_factory=dict)
    enabled: bool = True
    paused_until: datetime | None = None  # circuit breaker / misconfiguration pause
    pause_reason: str | None = None
    # what made the pause, written with its reason (the metrics' label; never read back from
    # the reason, which a person may word as they like)
    pause_cause: PauseCause | None = None
    # when it was made (stored; None before): one deleted and made again under the same id
    # is another destination, which a run that sends to the first tells apart by this
    created_at: datetime | None = None

    def paused_at(self, now: datetime) -> bool:
        """Paused at `now`: by an admin (until resumed), or for a while not yet over."""
        return not self.enabled or (self.paused_until is not None and self.paused_until > now)

    def as_of(self, now: datetime) -> Destination:
        """This destination as its state reads at `now`: a timed pause that has run out is
        history (nothing clears it when it ends), so it and its reason and cause are dropped;
        an admin's pause (`enabled` false) keeps its reason and cause."""
        if self.paused_until is None or self.paused_until > now:
            return self
        if not self.enabled:
            return replace(self, paused_until=None)
        return replace(self, paused_until=None, pause_reason=None, pause_cause=None)


@dataclass(frozen=True, slots=True)
class CourseLink:
    """A course as a destination knows it (AGS line items URL, SIS class sourcedId, ...)."""

    tenant_id: str
    destination_id: str
    course_id: str
    remote_id: str
    data: JSON = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ItemLink:
    """An activity's column at a destination (line item URL or sourcedId) and the hash of the
    details (title, points, dates, category) last written there: None when never written by
    gradesync, a person's mark (`domain.columns.look_mark`) when a person's change (a launch
    linking it again, a SIS selection) asks for it to be looked at again, a run's mark
    (`domain.columns.check_mark`) when a run (a remaster's) writes it whatever its details,
    before the next grade goes to it."""

    tenant_id: str
    destination_id: str
    activity_id: str
    remote_id: str
    details_hash: str | None = None
    data: JSON = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PersonLink:
    """A person as a destination knows them: LTI `sub`, SIS sourcedId, or an LTI 1.1
    `lis_result_sourcedid` (then `course_id`/`data` say for which resource link)."""

    tenant_id: str
    destination_id: str
    person_id: str
    remote_id: str
    course_id: str | None = None
    data: JSON = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LedgerKey:
    tenant_id: str
    destination_id: str
    activity_id: str
    person_id: str


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """Per (destination, activity, learner): what we want there and what we last know is
    there. `desired_hash != delivered_hash` means pending."""

    key: LedgerKey
    state: DeliveryState
    desired_hash: str | None = None
    desired: JSON | None = None  # the desired result as computed by policy
    delivered_hash: str | None = None
    delivered_at: datetime | None = None
    last_timestamp: datetime | None = None  # newest score timestamp sent (AGS monotonic)
    tries: int = 0
    next_attempt_at: datetime | None = None
    reason_code: str | None = None
    reason_text: str | None = None
    remote_status: int | None = None
    remote_message: str | None = None
    updated_at: datetime | None = None
    # When the value being sent first became pending, kept while its sends fail and are
    # retried (`updated_at` moves with every failure); None otherwise (a PENDING row that
    # never failed became pending at `updated_at`). See `domain.ledger.waiting_since`.
    pending_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class RunScope:
    """What a sync run covers: a tenant, optionally one destination, course and a selection
    of activities. Two runs with equal scopes never run at once."""

    tenant_id: str
    destination_id: str | None = None
    course_id: str | None = None
    activity_ids: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        acts = ",".join(sorted(self.activity_ids))
        return f"{self.tenant_id}|{self.destination_id or '*'}|{self.course_id or '*'}|{acts}"

    def overlaps(self, other: RunScope) -> bool:
        """Whether a result may be in both scopes: the same tenant, destination and course
        where both name one (a scope naming none covers them all), and a shared activity
        where both choose some (activities are chosen within one course)."""
        if self.tenant_id != other.tenant_id:
            return False
        for mine, theirs in (
            (self.destination_id, other.destination_id),
            (self.course_id, other.course_id),
        ):
            if mine is not None and theirs is not None and mine != theirs:
                return False
        if self.activity_ids and other.activity_ids:
            return not set(self.activity_ids).isdisjoint(other.activity_ids)
        return True


@dataclass(frozen=True, slots=True)
class SyncRun:
    id: str
    scope: RunScope
    trigger: Trigger
    actor: str
    stage: RunStage = RunStage.QUEUED
    outcome: RunOutcome | None = None
    counts: JSON = field(default_factory=dict)
    message: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # its destination's name when it was asked for (None: every destination), kept once the
    # destination is deleted (`domain.destination_names`)
    destination_name: str | None = None


@dataclass(frozen=True, slots=True)
class DeletedDestination:
    """A destination deleted, with the name it had: its runs and sends outlive it."""

    tenant_id: str
    id: str
    name: str
    deleted_at: datetime


@dataclass(frozen=True, slots=True)
class Schedule:
    id: str
    tenant_id: str
    scope: RunScope
    kind: ScheduleKind
    spec: str  # "15" minutes, "01:30", "mon 07:00", or a cron expression
    time_zone: str
    posted_by: str
    trigger: Trigger = Trigger.SCHEDULE
    first_run_at: datetime | None = None
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    paused_at: datetime | None = None
    created_at: datetime | None = None


class ScheduleAction(StrEnum):
    CREATED = "created"
    EDITED = "edited"
    PAUSED = "paused"
    RESUMED = "resumed"
    DELETED = "deleted"
    FIRED = "fired"  # a slot came due: a run was requested (or joined, see `joined`)
    RUN_NOW = "run_now"  # a person pressed "run now"


@dataclass(frozen=True, slots=True)
class ScheduleEvent:
    """One line of a schedule's log: who did what, and which run a firing started or joined."""

    tenant_id: str
    schedule_id: str
    action: ScheduleAction
    actor: str
    at: datetime
    run_id: str | None = None
    joined: bool = False  # the run was already queued/running for the scope and was joined
    slot_at: datetime | None = None  # the due time a firing was for
    missed: int = 0  # further slots that passed unrun (service down) and collapsed into this
    message: str | None = None
    id: int | None = None


class UserRole(StrEnum):
    ADMIN = "admin"  # every course of the tenant, destinations, schedules
    INSTRUCTOR = "instructor"  # the courses listed in course_ids


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    tenant_id: str
    username: str
    display_name: str
    password_hash: str
    role: UserRole = UserRole.INSTRUCTOR
    course_ids: tuple[str, ...] = ()
    created_at: datetime | None = None

    def can_see_course(self, course_id: str) -> bool:
        return self.role is UserRole.ADMIN or course_id in self.course_ids


class ApiScope(StrEnum):
    INGEST = "ingest"  # push courses, activities, people, enrollments, attempts
    SYNC = "sync"  # trigger and follow runs, read grade state
    ADMIN = "admin"  # destinations and everything above


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A tenant's API key. Only the SHA-256 of the token is stored; the token is shown once."""

    id: str
    tenant_id: str
    name: str
    key_hash: str
    scopes: tuple[str, ...]
    created_at: datetime | None = None
    revoked_at: datetime | None = None
