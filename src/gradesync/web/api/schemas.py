"""Request and response bodies of the JSON API.

Strict on purpose: unknown fields are refused, numbers must be JSON numbers (not strings) and
finite, booleans must be true/false, date-times must carry a zone. A request that breaks a
rule is answered 422 naming the field and the rule, and nothing is stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from gradesync.domain.identifiers import MAX_ID
from gradesync.domain.model import (
    Activity,
    ActivityKind,
    AttemptSelection,
    Course,
    DueDateOverride,
    Enrollment,
    EnrollmentStatus,
    ExtraCredit,
    NameRule,
    PastDueZeros,
    Person,
    PolicySettings,
    Role,
    RosterMatch,
)
from gradesync.domain.model import Attempt as AttemptFact
from gradesync.domain.policy import MAX_GRACE_MINUTES
from gradesync.services.destination_admin import (
    MAX_RATE_PER_SECOND,
    MIN_RATE_PER_SECOND,
    MOST_CONCURRENCY,
    concurrency_wrong,
    rate_wrong,
)
from gradesync.services.ingest import MAX_BATCH, MAX_COMMENT, MAX_TITLE
from gradesync.services.runs import REQUESTABLE

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID, strict=True)]
Title = Annotated[str, Field(min_length=1, max_length=MAX_TITLE, strict=True)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Bool = Annotated[bool, Field(strict=True)]
# a character that is not white space as Python's str.strip() sees it, spelled out so that the
# document's regex (ECMA), pydantic's (Rust) and the server's strip() agree
NOT_BLANK = r"[^\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"

# RFC 3339, as the document's `format: date-time` says: pydantic alone would also take a number
# of seconds (`1700000000`, `until=0.5`) or a date-time without its `T`
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_LOCAL = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}(:\d{2}(\.\d+)?)?", re.ASCII)
_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def _rfc3339(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and (_LOCAL.fullmatch(value) or _FULL_DATE.fullmatch(value)):
        raise PydanticCustomError("timezone_aware", "Give a time zone with the date-time.")
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise PydanticCustomError(
            "datetime_format",
            "Must be an RFC 3339 date-time with its zone, e.g. 2025-01-31T23:59:00Z or +01:00.",
        )
    try:
        date.fromisoformat(value[:10])
    except ValueError:
        raise PydanticCustomError("calendar", "No such day (e.g. 31 February).") from None
    return value


_WALL = (
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d+)?)?"
    r"([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)?"
)


def _iso(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not re.fullmatch(_WALL, value, re.ASCII):
        raise PydanticCustomError(
            "datetime_format",
            "Must be an ISO 8601 date-time, with its zone or read in the schedule's zone.",
        )
    try:
        datetime.fromisoformat(value.upper())
    except ValueError:
        raise PydanticCustomError("calendar", "No such day (e.g. 31 February).") from None
    return value


def _whole(value: object) -> object:
    # JSON Schema's integer is any whole number, 27.0 included; a string or a bool is not one
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _full_date(value: object) -> object:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _FULL_DATE.fullmatch(value):
        raise PydanticCustomError("date_format", "Must be a date as YYYY-MM-DD.")
    return value


# The triggers a person or program may ask for (the others are gradesync's own), those of
# `REQUESTABLE`: a Literal, so validation refuses the others with the one message naming
# these three, and OpenAPI lists them alone (a Trigger field listed all six, then the
# service refused two in other words).
Requestable = Literal["manual", "resync", "remaster"]
assert set(get_args(Requestable)) == {t.value for t in REQUESTABLE}
# after the constraints, or pydantic leaves them out of the JSON schema
Whole = BeforeValidator(_whole)
ZonedDateTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
# a wall-clock time read in a zone given elsewhere, or a date-time with its own zone
LocalDateTime = Annotated[
    datetime,
    BeforeValidator(_iso),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": f"^{_WALL}$",
        }
    ),
]
FullDate = Annotated[date, BeforeValidator(_full_date)]


class InputModel(BaseModel):
    """The base of the API's request bodies and query models: a field it does not know, and
    a NaN or infinite number, are refused rather than ignored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Upsert(InputModel):
    """A course, activity or person: a field left out of the body keeps its stored value (the
    default is only for a new one); a field sent, `null` included, sets it."""

    def sent(self) -> frozenset[str]:
        """The fields the body gave (as `IngestBatch.sent` takes them)."""
        return frozenset(self.model_fields_set)


class _PolicyKeys(InputModel):
    """A grade policy's body: a key that is no setting is refused as `unknown_setting` (as
    `gradesync policy set` and docs/policies.md name it), located at that key."""

    @model_validator(mode="wrap")
    @classmethod
    def _unknown_setting(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            settings = ", ".join(n for n in cls.model_fields if n != "roster_match")
            problems: list[Any] = []
            for e in exc.errors():
                problem: dict[str, Any] = dict(e)
                if e["type"] == "extra_forbidden" and len(e["loc"]) == 1:
                    problem["type"] = PydanticCustomError(
                        "unknown_setting",
                        "No setting {key}; settings: {settings}.",
                        {"key": repr(e["loc"][0]), "settings": settings},
                    )
                elif e["type"] not in _PYDANTIC_ERRORS:  # a rule of ours, its message made
                    problem["type"] = PydanticCustomError(e["type"], e["msg"])
                problems.append(problem)
            raise ValidationError.from_exception_data(exc.title, problems) from None


_PYDANTIC_ERRORS = frozenset(get_args(core_schema.ErrorType))


def _roster_match_not_here(rule: str, message: str) -> Callable[[object], object]:
    """The check of `roster_match` accepted by name where it is not set, so that a body that
    sends it is told why and where it is set (`null`, which holds nothing, is let through)."""

    def check(value: object) -> object:
        if value is not None:
            raise PydanticCustomError(rule, message)
        return value

    return check


# a setting only the tenant holds, given in a course's or activity's policy (its body, or a
# PATCH of it)
TenantOnly = Annotated[
    RosterMatch | None,
    BeforeValidator(
        _roster_match_not_here(
            "tenant_only",
            "roster_match is set for the whole tenant (`PATCH /api/v1/tenant/policy`), not "
            "per course or activity.",
        )
    ),
    WithJsonSchema({"type": "null"}),
]
GraceMinutes = Annotated[int, Field(ge=0, le=MAX_GRACE_MINUTES, strict=True), Whole]


class PolicyIn(_PolicyKeys):
    """Grade policy knobs; omitted ones inherit (tenant, then course, then activity)."""

    attempt_selection: AttemptSelection | None = None
    extra_credit: ExtraCredit | None = None
    past_due_zeros: PastDueZeros | None = None
    grace_period_minutes: GraceMinutes | None = None
    minimum_points: Annotated[Number, Field(ge=0)] | None = None
    name_rule: NameRule | None = None
    keep_lms_edits: Bool | None = None
    roster_match: TenantOnly = None

    def to_domain(self) -> PolicySettings:
        return PolicySettings(**self.model_dump())


def _policy(p: PolicyIn | None) -> PolicySettings:
    return p.to_domain() if p is not None else PolicySettings()


class CourseBody(_Upsert):
    title: Title
    time_zone: Annotated[str, Field(max_length=64, strict=True)] = "UTC"
    starts_at: ZonedDateTime | None = None
    ends_at: ZonedDateTime | None = None
    policy: PolicyIn | None = None
    sync_enabled: Bool = True

    def to_domain(self, tenant_id: str, course_id: str) -> Course:
        return Course(
            tenant_id=tenant_id,
            id=course_id,
            title=self.title,
            time_zone=self.time_zone,
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            policy=_policy(self.policy),
            sync_enabled=self.sync_enabled,
        )


class CourseIn(CourseBody):
    id: Id


class ActivityBody(_Upsert):
    course_id: Id
    title: Title
    points_possible: Annotated[Number, Field(ge=0)]
    kind: ActivityKind = ActivityKind.GRADED
    due_at: ZonedDateTime | None = None
    category: Annotated[str, Field(max_length=MAX_ID, strict=True)] | None = None
    published: Bool = True
    sync_enabled: Bool = True
    assigned: Bool = True
    policy: PolicyIn | None = None

    def to_domain(self, tenant_id: str, activity_id: str) -> Activity:
        return Activity(
            tenant_id=tenant_id,
            id=activity_id,
            course_id=self.course_id,
            title=self.title,
            points_possible=float(self.points_possible),
            kind=self.kind,
            due_at=self.due_at,
            category=self.category,
            published=self.published,
            sync_enabled=self.sync_enabled,
            assigned=self.assigned,
            policy=_policy(self.policy),
        )


class ActivityIn(ActivityBody):
    id: Id


class PersonBody(_Upsert):
    name: Annotated[str, Field(max_length=MAX_TITLE, strict=True)] = ""
    email: Annotated[str, Field(max_length=MAX_ID, strict=True)] | None = None
    sis_id: Annotated[str, Field(max_length=MAX_ID, strict=True)] | None = None

    def to_domain(self, tenant_id: str, person_id: str) -> Person:
        return Person(tenant_id, person_id, self.name, self.email, self.sis_id)


class PersonIn(PersonBody):
    id: Id


class EnrollmentBody(InputModel):
    role: Role = Role.LEARNER
    status: EnrollmentStatus = EnrollmentStatus.ACTIVE
    section_id: Id | None = None

    def to_domain(self, tenant_id: str, course_id: str, person_id: str) -> Enrollment:
        return Enrollment(tenant_id, course_id, person_id, self.role, self.status, self.section_id)


class EnrollmentIn(EnrollmentBody):
    course_id: Id
    person_id: Id


class OverrideBody(InputModel):
    due_at: ZonedDateTime

    def to_domain(self, tenant_id: str, activity_id: str, person_id: str) -> DueDateOverride:
        return DueDateOverride(tenant_id, activity_id, person_id, self.due_at)


class OverrideIn(OverrideBody):
    activity_id: Id
    person_id: Id


class AttemptIn(InputModel):
    """One attempt. `source_event_id` is your own id for it: posting the same event again is
    harmless (answered as a duplicate), so retry freely."""

    source_event_id: Id
    activity_id: Id
    person_id: Id
    score_given: Annotated[Number, Field(ge=0)] | None = None
    score_maximum: Annotated[Number, Field(gt=0)] | None = None
    completed_at: ZonedDateTime
    started_at: ZonedDateTime | None = None
    completed: Bool = True
    comment: Annotated[str, Field(max_length=MAX_COMMENT, strict=True)] | None = None
    late: Bool = False
    excused: Bool = False

    def to_domain(self, tenant_id: str) -> AttemptFact:
        return AttemptFact(
            tenant_id=tenant_id,
            source_event_id=self.source_event_id,
            activity_id=self.activity_id,
            person_id=self.person_id,
            score_given=self.score_given,
            score_maximum=self.score_maximum,
            completed_at=self.completed_at,
            started_at=self.started_at,
            completed=self.completed,
            comment=self.comment,
            late=self.late,
            excused=self.excused,
        )


class AttemptBatchIn(InputModel):
    attempts: Annotated[list[AttemptIn], Field(min_length=1, max_length=MAX_BATCH)]


class IngestIn(InputModel):
    """Any mix of facts, stored together or not at all (at most MAX_BATCH items in all)."""

    courses: Annotated[list[CourseIn], Field(max_length=MAX_BATCH)] = []
    activities: Annotated[list[ActivityIn], Field(max_length=MAX_BATCH)] = []
    people: Annotated[list[PersonIn], Field(max_length=MAX_BATCH)] = []
    enrollments: Annotated[list[EnrollmentIn], Field(max_length=MAX_BATCH)] = []
    overrides: Annotated[list[OverrideIn], Field(max_length=MAX_BATCH)] = []
    attempts: Annotated[list[AttemptIn], Field(max_length=MAX_BATCH)] = []


class AttemptOutcomeOut(BaseModel):
    source_event_id: str
    attempt_id: int | None
    duplicate: bool


class IngestOut(BaseModel):
    stored: bool = True  # always true: the answer is sent only after the commit
    changed: dict[str, int]
    unchanged: dict[str, int]
    recorded: int
    duplicates: int
    dirty_keys: int
    attempts: list[AttemptOutcomeOut]


class SyncIn(InputModel):
    """What to sync: `manual` recomputes and sends what differs; `resync` is the same on
    request of a person ("Sync now"); `remaster` resends everything, column details included."""

    trigger: Requestable = "manual"
    course_id: Id | None = None
    destination_id: Id | None = None
    activity_ids: Annotated[list[Id], Field(max_length=MAX_BATCH)] = []


class CourseSyncIn(InputModel):
    trigger: Requestable = "manual"
    destination_id: Id | None = None
    activity_ids: Annotated[list[Id], Field(max_length=MAX_BATCH)] = []


class HeldOut(BaseModel):
    score_given: float | None = Field(
        description="The score the gradebook holds; null: it holds no score (removed)."
    )
    score_maximum: float | None = Field(
        description="Its maximum, on the activity's scale: the points sent (LTI 1.3); for LTI "
        "1.1 (which holds a fraction of the column, shown rescaled) the activity's points the "
        "fraction was computed on, or when a readback found it, so a later change of the "
        "activity's points does not rescale it (a grade logged without those points reads on "
        "the activity's points now); at a SIS, its line item's maximum (resultValueMax) as "
        "gradesync last wrote it, which the SIS reads every result of the item on (a line item "
        "not written since gradesync kept it reads on the activity's points now). An activity "
        "without points (unknown, or 0) leaves the score as held: 1 for LTI 1.1 (the "
        "fraction), null at a SIS."
    )
    read_back: bool = Field(
        description="true: found by reading the gradebook back (a grade changed there); false: "
        "the grade gradesync last delivered."
    )


class GradeCellOut(BaseModel):
    activity_id: str
    state: str
    desired: dict[str, Any] | None
    in_sync: bool
    delivered_at: datetime | None
    tries: int
    next_attempt_at: datetime | None
    reason_code: str | None
    reason_text: str | None
    remote_status: int | None
    remote_message: str | None
    updated_at: datetime | None
    held: HeldOut | None = Field(
        None,
        description="A grade gradesync no longer sends but sent before (`skipped`, the "
        "console's *Kept in LMS*, *Kept in SIS* at a SIS): the score the gradebook still "
        "holds, when the delivery log says it; null otherwise.",
    )
    grade_text: str | None = Field(
        None,
        description='`desired` in the console grid\'s words: "8 / 10", "0 / 10 missing" '
        'for a past-due zero, "no score" for work not graded yet, "excused" for an excused '
        "learner at a SIS (sent as exempt) and, at an LMS, which has no excused state, "
        '"excused (the LMS gets no score: it has no excused state)" (LTI 1.3: a result '
        "with no `scoreGiven`) or \"excused (the LMS's grade is removed: it has no excused "
        'state)" (LTI 1.1); null when nothing is desired.',
    )


class LearnerGradesOut(BaseModel):
    person_id: str
    name: str
    destinations: dict[str, list[GradeCellOut]]
    note: str | None = None  # set when the tenant has no destination at all


def _in_range(wrong: Callable[[object], str | None]) -> AfterValidator:
    """A bound checked beside the types (every problem of a body at once), with the rule
    `range` the service gives when it checks the destination's own bound."""

    def check(value: object) -> object:
        why = wrong(value)
        if why:
            raise PydanticCustomError("range", why)
        return value

    return AfterValidator(check)


class LimitsIn(InputModel):
    """New limits; a limit left out keeps its value, `null` clears it."""

    # the largest bounds here, beside the types; a SIS's lower concurrency bound is checked
    # with the stored destination (also `range`)
    concurrency: Annotated[int, Field(strict=True), Whole, _in_range(concurrency_wrong)] | None = (
        Field(
            None,
            description="Requests in flight at once, for all workers together.",
            json_schema_extra={"minimum": 1, "maximum": MOST_CONCURRENCY},
        )
    )
    rate_per_second: Annotated[Number, _in_range(rate_wrong)] | None = Field(
        None,
        description="Requests per second, for all workers together; null: no rate limit.",
        json_schema_extra={"minimum": MIN_RATE_PER_SECOND, "maximum": MAX_RATE_PER_SECOND},
    )

    def changes(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class PauseIn(InputModel):
    reason: Annotated[str, Field(max_length=1000, strict=True)] | None = None
    until: ZonedDateTime | None = None  # pause until then; without it, until resumed


class CourseOut(BaseModel):
    id: str
    title: str
    time_zone: str
    starts_at: datetime | None
    ends_at: datetime | None
    sync_enabled: bool
    policy: dict[str, Any]


class ActivityOut(BaseModel):
    id: str
    course_id: str
    title: str
    points_possible: float
    kind: str
    due_at: datetime | None
    category: str | None
    published: bool
    sync_enabled: bool
    assigned: bool
    policy: dict[str, Any]
