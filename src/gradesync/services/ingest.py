"""Ingest: facts in, stored in one transaction, keys marked for recompute, workers woken.

Every call validates the whole batch first against the rules below and the stored facts; any
problem raises `InvalidInput` listing every problem found and nothing is written (or all is
rolled back: an activity made meanwhile in another course is found by its write, which leaves
it as it is). Otherwise courses, activities, due-date overrides, people, enrollments and
attempts are written in that order in ONE transaction together with the `dirty_keys` rows of
each (activity, person) whose facts changed (a batch without attempts writes its people and
enrollments last, with the marks: nothing before reads them, and on PostgreSQL the three are
one statement), and the waker is told only after the commit, so a worker never looks for keys
that are not there yet and a crash before the commit loses nothing that was acknowledged.
A course, activity or person already stored keeps its value of each field its item did not
send (`IngestBatch.sent`), merged with the row read to compare it: no read more. Its write
sets only the fields it sent, so an update of the same object committed between that read
and the write (or its creation meanwhile) keeps the fields it sent. A person who only fills
blanks (`IngestBatch.fills_blanks`: an LTI 1.1 launch's) is read again once locked, and
written only where blank as the write finds it: a value stored meanwhile stays, and marks
nothing more. An object read absent that its write finds stored (made meanwhile by another
batch, with its activities and learners: the write tells an update from an insert) marks
the keys a change of the grade-relevant fields it sets would mark on a stored one, their
values before being unknown.

Field names in problems follow the batch layout: `attempts[3].score_given`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gradesync.domain.errors import FieldProblem, InvalidInput, NotFound
from gradesync.domain.identifiers import MAX_ID, id_problems, sis_id_problems
from gradesync.domain.model import (
    SIS_KINDS,
    Activity,
    Attempt,
    Course,
    DueDateOverride,
    Enrollment,
    Person,
    PersonLink,
    PolicySettings,
    Role,
    Sent,
    Tenant,
    fill_blanks,
    keep_unsent,
    written_fields,
)
from gradesync.domain.policy import settings_problems
from gradesync.services import sis
from gradesync.services.clock import Clock
from gradesync.services.lms_edits import resend_overridden, stops_keeping
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory
from gradesync.services.wakeup import Waker

MAX_BATCH = 1000  # items per request, all lists together: bounded transactions and memory
MAX_TITLE = 1024
MAX_COMMENT = 10_000

# (tenant_id, course_id, activity_id, person_id), as DirtyKeyRepo.mark_many takes them
DirtyRow = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class IngestBatch:
    """Facts for one tenant. Objects' `tenant_id` is replaced by the caller's tenant.

    `sent`: by ("courses" | "activities" | "people", id), the fields the source sent of that
    item. One stored already keeps its value of every field left out (a course re-sent with
    its title keeps the time zone, sync switch and policy an instructor set); a new one gets
    the defaults. An item not named here is sent whole: every field is written.

    `fills_blanks`: the ids of people of `people` whose sent fields only fill blanks: each
    is written where the stored person's is blank (None or "") when written, and a value
    stored by then, even by an import committed after this batch was made, stays.
    """

    courses: Sequence[Course] = ()
    activities: Sequence[Activity] = ()
    people: Sequence[Person] = ()
    enrollments: Sequence[Enrollment] = ()
    overrides: Sequence[DueDateOverride] = ()
    attempts: Sequence[Attempt] = ()
    sent: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    fills_blanks: frozenset[str] = frozenset()

    @property
    def size(self) -> int:
        return (
            len(self.courses)
            + len(self.activities)
            + len(self.people)
            + len(self.enrollments)
            + len(self.overrides)
            + len(self.attempts)
        )


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    source_event_id: str
    attempt_id: int | None
    duplicate: bool  # the event id was already stored: nothing new was recorded


@dataclass(slots=True)
class IngestResult:
    changed: dict[str, int] = field(default_factory=dict)  # per list: rows new or changed
    unchanged: dict[str, int] = field(default_factory=dict)  # per list: identical to stored
    attempts: list[AttemptOutcome] = field(default_factory=list)
    dirty_keys: int = 0
    resent: int = 0  # grades typed into the LMS sent again: the policy now says gradesync wins

    @property
    def recorded(self) -> int:
        return sum(1 for a in self.attempts if not a.duplicate)

    @property
    def duplicates(self) -> int:
        return sum(1 for a in self.attempts if a.duplicate)


# --- validation helpers --------------------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.items: list[FieldProblem] = []

    def add(self, path: str, rule: str, message: str) -> None:
        self.items.append(FieldProblem(path, rule, message))

    def ident(self, path: str, value: str, what: str) -> None:
        self.items += id_problems(path, value, what)

    def text(self, path: str, value: str | None, what: str, limit: int, required: bool) -> None:
        if value is None or not value.strip():
            if required:
                self.add(path, "required", f"{what} is required and must not be blank.")
        elif len(value) > limit:
            self.add(path, "too_long", f"{what} is at most {limit} characters.")
        else:
            self.no_nul(path, value, what)

    def no_nul(self, path: str, value: str, what: str) -> None:
        """PostgreSQL cannot store a NUL character; refused on every backend alike."""
        if "\x00" in value:
            self.add(path, "nul_character", f"{what} must not contain a NUL character (\\u0000).")

    def aware(self, path: str, value: datetime | None) -> None:
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            self.add(
                path,
                "timezone_required",
                "Give a time zone with the date-time, e.g. 2025-01-31T23:59:00Z or +01:00.",
            )
        elif value is not None:
            try:
                value.astimezone(UTC)
            except OverflowError:
                self.add(
                    path,
                    "range",
                    "The date-time must lie between years 1 and 9999 once converted to UTC.",
                )

    def number(
        self, path: str, value: float | None, *, positive: bool = False, what: str = "value"
    ) -> bool:
        if value is None:
            return True
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(path, "number", f"The {what} must be a number.")
            return False
        if not math.isfinite(value):
            self.add(path, "finite", f"The {what} must be a finite number (not NaN or infinity).")
            return False
        if positive and value <= 0:
            self.add(path, "positive", f"The {what} must be greater than 0.")
            return False
        if value < 0:
            self.add(path, "not_negative", f"The {what} must be 0 or more.")
            return False
        return True

    def order(self, path: str, first: datetime | None, second: datetime | None, msg: str) -> None:
        if first is not None and second is not None:
            try:
                bad = second < first
            except TypeError:  # naive against aware: already reported
                return
            if bad:
                self.add(path, "order", msg)


def _tz_ok(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _dupes(p: _Problems, name: str, keys: Iterable[tuple[str, ...]], what: str) -> None:
    seen: dict[tuple[str, ...], int] = {}
    for i, k in enumerate(keys):
        if k in seen:
            p.add(
                f"{name}[{i}]",
                "duplicate",
                f"The same {what} appears twice in this batch (also at {name}[{seen[k]}]).",
            )
        else:
            seen[k] = i


def _same_attempt(a: Attempt, b: Attempt) -> bool:
    return (
        a.activity_id == b.activity_id
        and a.person_id == b.person_id
        and a.score_given == b.score_given
        and a.score_maximum == b.score_maximum
        and a.completed_at == b.completed_at
    )


def _moved(p: _Problems, activities: Sequence[Activity], stored: Mapping[str, str]) -> None:
    """Each of `activities` stored in another course (`stored`: by id, its course): an
    activity cannot move."""
    for i, a in enumerate(activities):
        course_id = stored.get(a.id)
        if course_id is not None and course_id != a.course_id:
            p.add(
                f"activities[{i}].course_id",
                "immutable",
                f"Activity {a.id!r} belongs to course {course_id!r}; "
                "an activity cannot move to another course.",
            )


def _made_elsewhere(p: _Problems, activities: Sequence[Activity], ids: Collection[str]) -> None:
    """Each of `activities` in `ids`: read absent, then found by its write stored in another
    course (made meanwhile by another batch, and left there): refused as a move is."""
    for i, a in enumerate(activities):
        if a.id in ids:
            p.add(
                f"activities[{i}].course_id",
                "immutable",
                f"Activity {a.id!r} was just made in another course, by another request; "
                "an activity cannot move to another course.",
            )


def _sets(b: IngestBatch, kind: str, item: Sent, names: Collection[str]) -> bool:
    """Whether the batch's write of `item` sets one of the fields `names`."""
    written = written_fields(item, b.sent.get((kind, item.id)))
    return written is None or not written.isdisjoint(names)


def _validate(uow: UnitOfWork, tenant_id: str, b: IngestBatch) -> dict[str, Activity]:
    """Raise `InvalidInput` naming every problem; else the stored activities the batch holds
    or its overrides and attempts name (read here once: recording compares the batch's with
    them and takes the others' courses)."""
    p = _Problems()

    # shape and value rules, independent of what is stored
    for i, c in enumerate(b.courses):
        f = f"courses[{i}]"
        p.ident(f"{f}.id", c.id, "The course id")
        p.text(f"{f}.title", c.title, "The course title", MAX_TITLE, True)
        if not _tz_ok(c.time_zone):
            p.add(
                f"{f}.time_zone",
                "time_zone",
                f"{c.time_zone!r} is not an IANA time zone name such as 'America/Chicago'.",
            )
        p.aware(f"{f}.starts_at", c.starts_at)
        p.aware(f"{f}.ends_at", c.ends_at)
        p.order(f"{f}.ends_at", c.starts_at, c.ends_at, "The course ends before it starts.")
        p.items.extend(settings_problems(c.policy, f"{f}.policy"))
    for i, a in enumerate(b.activities):
        f = f"activities[{i}]"
        p.ident(f"{f}.id", a.id, "The activity id")
        p.ident(f"{f}.course_id", a.course_id, "The course id")
        p.text(f"{f}.title", a.title, "The activity title", MAX_TITLE, True)
        p.number(f"{f}.points_possible", a.points_possible, what="points possible")
        p.aware(f"{f}.due_at", a.due_at)
        if a.category is not None:
            p.text(f"{f}.category", a.category, "The category", MAX_ID, False)
        p.items.extend(settings_problems(a.policy, f"{f}.policy"))
    for i, pe in enumerate(b.people):
        f = f"people[{i}]"
        p.ident(f"{f}.id", pe.id, "The person id")
        p.text(f"{f}.name", pe.name, "The name", MAX_TITLE, False)
        p.text(f"{f}.email", pe.email, "The email", MAX_ID, False)
        p.items += sis_id_problems(f"{f}.sis_id", pe.sis_id, "The SIS id", required=False)
    for i, e in enumerate(b.enrollments):
        f = f"enrollments[{i}]"
        p.ident(f"{f}.course_id", e.course_id, "The course id")
        p.ident(f"{f}.person_id", e.person_id, "The person id")
        # a section is mapped to its own SIS class by this id (`sis map-class --section`)
        p.items += sis_id_problems(
            f"{f}.section_id", e.section_id, "The section id", required=False
        )
    for i, o in enumerate(b.overrides):
        f = f"overrides[{i}]"
        p.ident(f"{f}.activity_id", o.activity_id, "The activity id")
        p.ident(f"{f}.person_id", o.person_id, "The person id")
        p.aware(f"{f}.due_at", o.due_at)
    for i, at in enumerate(b.attempts):
        f = f"attempts[{i}]"
        p.ident(f"{f}.source_event_id", at.source_event_id, "The source event id")
        p.ident(f"{f}.activity_id", at.activity_id, "The activity id")
        p.ident(f"{f}.person_id", at.person_id, "The person id")
        given_ok = p.number(f"{f}.score_given", at.score_given, what="score given")
        top_ok = p.number(
            f"{f}.score_maximum", at.score_maximum, positive=True, what="score maximum"
        )
        if given_ok and at.score_given is not None and at.score_maximum is None:
            p.add(
                f"{f}.score_maximum",
                "required_with_score",
                "A score needs its maximum: send score_maximum with score_given.",
            )
        elif (
            given_ok
            and top_ok
            and at.score_given is not None
            and at.score_maximum is not None
            and not math.isfinite(at.score_given / at.score_maximum)
        ):
            # no grade: rescaled to the activity's points it would be infinite
            p.add(
                f"{f}.score_maximum",
                "score_ratio",
                "score_given divided by score_maximum must be a finite number; a maximum "
                "this small for this score is no grade (e.g. 1e10 of 1e-300).",
            )
        p.aware(f"{f}.completed_at", at.completed_at)
        p.aware(f"{f}.started_at", at.started_at)
        p.order(
            f"{f}.completed_at",
            at.started_at,
            at.completed_at,
            "The attempt is completed before it started.",
        )
        p.text(f"{f}.comment", at.comment, "The comment", MAX_COMMENT, False)

    if p.items:  # references below would only repeat the same problems
        raise InvalidInput(p.items)

    # the second pass (docs/api.md): a duplicate is listed with the unknown ids and reused
    # event ids below, not alone with those left for the next try
    _dupes(p, "courses", ((c.id,) for c in b.courses), "course")
    _dupes(p, "activities", ((a.id,) for a in b.activities), "activity")
    _dupes(p, "people", ((x.id,) for x in b.people), "person")
    _dupes(p, "enrollments", ((e.course_id, e.person_id) for e in b.enrollments), "enrollment")
    _dupes(p, "overrides", ((o.activity_id, o.person_id) for o in b.overrides), "override")

    # references: to this batch or to what the tenant already has (one read per kind, not
    # one per row: a roster's batch names a course a thousand times)
    courses = {c.id for c in b.courses}
    named_courses = {a.course_id for a in b.activities} | {e.course_id for e in b.enrollments}
    courses |= set(uow.courses.get_many(tenant_id, named_courses - courses))
    # the batch's activities (a stored one cannot move) and the stored ones it only names, in
    # one statement: the two sets do not overlap, so it reads the rows two read, no more
    batch_acts = {a.id for a in b.activities}
    wanted_acts = {o.activity_id for o in b.overrides} | {a.activity_id for a in b.attempts}
    stored_acts = uow.activities.get_many(tenant_id, batch_acts | wanted_acts)
    stored_named = {aid: act for aid, act in stored_acts.items() if aid not in batch_acts}
    known_acts = batch_acts | set(stored_named)
    for i, a in enumerate(b.activities):
        if a.course_id not in courses:
            p.add(
                f"activities[{i}].course_id",
                "unknown_course",
                f"No course {a.course_id!r}: create the course first or in the same batch.",
            )
    _moved(p, b.activities, {aid: act.course_id for aid, act in stored_acts.items()})
    for i, e in enumerate(b.enrollments):
        if e.course_id not in courses:
            p.add(
                f"enrollments[{i}].course_id",
                "unknown_course",
                f"No course {e.course_id!r}: create the course first or in the same batch.",
            )

    batch_people = {x.id for x in b.people}
    wanted_people = {e.person_id for e in b.enrollments} | {o.person_id for o in b.overrides}
    wanted_people |= {a.person_id for a in b.attempts}
    known_people = batch_people | set(uow.people.get_many(tenant_id, wanted_people - batch_people))

    def person_ref(path: str, person_id: str) -> None:
        if person_id not in known_people:
            p.add(
                path,
                "unknown_person",
                f"No person {person_id!r}: create the person first or in the same batch.",
            )

    def activity_ref(path: str, activity_id: str) -> None:
        if activity_id not in known_acts:
            p.add(
                path,
                "unknown_activity",
                f"No activity {activity_id!r}: create the activity first or in the same batch.",
            )

    for i, e in enumerate(b.enrollments):
        person_ref(f"enrollments[{i}].person_id", e.person_id)
    for i, o in enumerate(b.overrides):
        activity_ref(f"overrides[{i}].activity_id", o.activity_id)
        person_ref(f"overrides[{i}].person_id", o.person_id)
    in_batch: dict[str, Attempt] = {}
    stored_events = (
        uow.attempts.get_by_events(tenant_id, [at.source_event_id for at in b.attempts])
        if b.attempts
        else {}
    )
    for i, at in enumerate(b.attempts):
        f = f"attempts[{i}]"
        activity_ref(f"{f}.activity_id", at.activity_id)
        person_ref(f"{f}.person_id", at.person_id)
        # A retried post is fine; the same event id for a different attempt is a source bug
        # that would silently drop a grade, so it is refused.
        earlier = in_batch.get(at.source_event_id)
        prior = earlier or stored_events.get(at.source_event_id)
        if prior is not None and not _same_attempt(prior, at):
            where = "an earlier attempt of this batch" if earlier else "an attempt recorded before"
            p.add(
                f"{f}.source_event_id",
                "event_id_reused",
                f"Event {at.source_event_id!r} is the id of {where}, a different one (learner, "
                "activity, score or time differ); event ids must be unique.",
            )
        in_batch.setdefault(at.source_event_id, at)
    if p.items:
        raise InvalidInput(p.items)
    return stored_acts


# --- the use case --------------------------------------------------------------------------


def _own(tenant_id: str, b: IngestBatch) -> IngestBatch:
    return IngestBatch(
        courses=[replace(x, tenant_id=tenant_id) for x in b.courses],
        activities=[replace(x, tenant_id=tenant_id) for x in b.activities],
        people=[replace(x, tenant_id=tenant_id) for x in b.people],
        enrollments=[replace(x, tenant_id=tenant_id) for x in b.enrollments],
        overrides=[replace(x, tenant_id=tenant_id) for x in b.overrides],
        attempts=[replace(x, tenant_id=tenant_id) for x in b.attempts],
        sent=b.sent,
        fills_blanks=b.fills_blanks,
    )


def _as_stored(
    b: IngestBatch, kind: str, items: Sequence[Sent], old: Mapping[str, Sent]
) -> list[Sent]:
    """The items as they will be stored: a field an item left out keeps its stored value."""
    return [keep_unsent(old.get(x.id), x, b.sent.get((kind, x.id))) for x in items]


def _people_as_stored(b: IngestBatch, old: Mapping[str, Person]) -> list[Person]:
    """`_as_stored` of the people, those filling blanks (`IngestBatch.fills_blanks`) as
    `fill_blanks` leaves them."""
    return [
        (fill_blanks if x.id in b.fills_blanks else keep_unsent)(
            old.get(x.id), x, b.sent.get(("people", x.id))
        )
        for x in b.people
    ]


# a statement's people: the fields it writes over stored rows, and whether only where blank
_PeopleWrite = tuple[frozenset[str] | None, bool]


def _people_by_write(b: IngestBatch, people: Sequence[Person]) -> dict[_PeopleWrite, list[Person]]:
    """`_by_fields` of the people, those filling blanks apart: a statement each."""
    groups: dict[_PeopleWrite, list[Person]] = {}
    for fill in (False, True):
        part = [pe for pe in people if (pe.id in b.fills_blanks) is fill]
        for fields, group in _by_fields(b, "people", part).items():
            groups[(fields, fill)] = group
    return groups


def _by_fields(
    b: IngestBatch, kind: str, items: Sequence[Sent]
) -> dict[frozenset[str] | None, list[Sent]]:
    """The items to write, by the fields each writes over its stored row (`written_fields`;
    None: all), each list in id order: a statement each. An item written this way keeps
    every field it left out as the row has it when written, not as read: an update of the
    same object committed in between keeps its own, and so does one that created the
    object meanwhile. Written in more than one statement, the stored rows are locked first,
    in id order (`lock`; people, by `record_facts`, always): two batches writing the same
    rows then wait for each other, never deadlock, whatever fields each item sends. (Rows
    not stored yet cannot be locked: two batches creating the same objects at once, sending
    different fields of each, may still deadlock, and the database then refuses one, to be
    sent again.)"""
    groups: dict[frozenset[str] | None, list[Sent]] = {}
    for x in sorted(items, key=lambda x: x.id):
        groups.setdefault(written_fields(x, b.sent.get((kind, x.id))), []).append(x)
    return groups


def _write(
    uow: UnitOfWork,
    b: IngestBatch,
    tenant_id: str,
    kind: str,
    items: Sequence[Sent],
    absent: Collection[str],
) -> dict[str, bool]:
    """`items` written (`_by_fields`); of `absent` (read as not stored), those the writes
    found stored, as the repository's `upsert_many` tells them."""
    repo = getattr(uow, kind)
    groups = _by_fields(b, kind, items)
    if len(groups) > 1:
        repo.lock(tenant_id, [x.id for x in items])
    found: dict[str, bool] = {}
    for fields, group in groups.items():
        found |= repo.upsert_many(group, fields=fields, absent=absent)
    return found


def _course_dates(courses: Sequence[Course]) -> None:
    """InvalidInput when a course ends before it starts once the dates it left out are the
    stored ones (the dates it sent were checked with the batch)."""
    p = _Problems()
    for i, c in enumerate(courses):
        p.order(
            f"courses[{i}].ends_at", c.starts_at, c.ends_at, "The course ends before it starts."
        )
    if p.items:
        raise InvalidInput(p.items)


def _merged_courses(
    uow: UnitOfWork, tenant_id: str, b: IngestBatch
) -> tuple[dict[str, Course], list[Course]]:
    """The batch's stored courses (one read) and its courses as they will be stored, once
    `_course_dates` accepts them: `ingest` writes these, `check` stops here."""
    old = uow.courses.get_many(tenant_id, [c.id for c in b.courses])
    courses = _as_stored(b, "courses", b.courses, old)
    _course_dates(courses)
    return old, courses


def _dates_as_written(
    uow: UnitOfWork, tenant_id: str, b: IngestBatch, written: Sequence[Course]
) -> None:
    """InvalidInput when a course written with one of its two dates ends before it starts
    with the other as the write found it: checked on the row as read, another request may
    have set that other date since (or made the course) and committed. Read once written,
    the row holds this write's lock, so a request writing the other date after this one
    waits for it and then finds this one's date, as this one finds the other's."""
    partly = {
        c.id
        for c in written
        if (sent := b.sent.get(("courses", c.id))) is not None
        and ("starts_at" in sent) != ("ends_at" in sent)
    }
    if not partly:
        return
    stored = uow.courses.get_many(tenant_id, partly)
    p = _Problems()
    for i, c in enumerate(b.courses):
        if (now := stored.get(c.id)) is not None and c.id in partly:
            p.order(
                f"courses[{i}].ends_at",
                now.starts_at,
                now.ends_at,
                "The course ends before it starts, with the date another request stored meanwhile.",
            )
    if p.items:
        raise InvalidInput(p.items)


_GRADE_FACTS = ("time_zone", "starts_at", "ends_at", "policy", "sync_enabled")


def _grade_facts(c: Course) -> tuple[object, ...]:
    # the course fields that change desired results (the title does not)
    return tuple(getattr(c, name) for name in _GRADE_FACTS)


def _learners(uow: UnitOfWork, tenant_id: str, course_id: str) -> list[str]:
    return [e.person_id for e in uow.enrollments.for_course(tenant_id, course_id)]


def ingest(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    waker: Waker | None,
    tenant_id: str,
    batch: IngestBatch,
    *,
    max_items: int = MAX_BATCH,
) -> IngestResult:
    """Validate and store a batch of facts for `tenant_id` atomically (see module doc).

    Raises `NotFound` for an unknown tenant and `InvalidInput` (nothing written) for bad input.
    """
    check_size(batch, max_items)
    with uow_factory() as uow:
        tenant = uow.tenants.get(tenant_id)
        if tenant is None:
            raise NotFound("tenant", tenant_id)
        result = record_facts(uow, tenant_id, batch, clock.now(), tenant=tenant)
        uow.commit()
    wake_after(waker, result)
    return result


def check(
    uow_factory: UnitOfWorkFactory,
    tenant_id: str,
    batch: IngestBatch,
    *,
    max_items: int = MAX_BATCH,
) -> None:
    """Every check `ingest` makes, against what is stored now, writing nothing: InvalidInput
    names each problem (an import checks a whole file this way before storing any of it)."""
    check_size(batch, max_items)
    with uow_factory() as uow:
        if uow.tenants.get(tenant_id) is None:
            raise NotFound("tenant", tenant_id)
        b = _own(tenant_id, batch)
        _validate(uow, tenant_id, b)
        _merged_courses(uow, tenant_id, b)  # a course's dates merged with its stored ones


def check_size(batch: IngestBatch, max_items: int = MAX_BATCH) -> None:
    """InvalidInput when a batch holds more items than one request may. The limit counts
    every list together, so the batch as a whole is named, with each list's count (one list
    alone over it is named by the API's schema)."""
    if batch.size > max_items:
        lists = ("courses", "activities", "people", "enrollments", "overrides", "attempts")
        counts = ", ".join(f"{n} {len(getattr(batch, n))}" for n in lists if getattr(batch, n))
        raise InvalidInput.one(
            "body",
            "batch_too_large",
            f"A request holds at most {max_items} items, all its lists together; this one "
            f"holds {batch.size} ({counts}). Split it into smaller batches.",
        )


def wake_after(waker: Waker | None, result: IngestResult) -> None:
    """Once `record_facts`'s transaction is committed: the workers, when it gave them work."""
    if waker is None:
        return
    if result.dirty_keys:
        waker.wake_keys()
    if result.resent:
        waker.wake_delivery()


def record_facts(
    uow: UnitOfWork,
    tenant_id: str,
    batch: IngestBatch,
    now: datetime,
    *,
    also_dirty: Iterable[DirtyRow] = (),
    tenant: Tenant | None = None,
) -> IngestResult:
    """The ingest core, inside the caller's transaction (not committed): validate the batch,
    write what changed, and mark for recompute every key whose facts changed, together with
    `also_dirty` (keys the caller's own writes unblock, such as the results a learner's first
    LTI launch gives a place to go). Raises `InvalidInput` before writing anything, but for
    an activity another transaction made meanwhile in another course, found by the write of
    the activities (which leaves it as it is; the courses are written by then), and a
    course's date that, with the other stored meanwhile, ends it before it starts (found
    once the courses are written): the caller then rolls back.
    `tenant`: the tenant, when the caller has read it already (it is not read again).

    The caller commits, then wakes the workers when `dirty_keys` is not 0.
    """
    b = _own(tenant_id, batch)
    result = IngestResult()
    dirty: list[DirtyRow] = []
    stored_acts = _validate(uow, tenant_id, b)

    def count(name: str, changed: bool) -> None:
        bucket = result.changed if changed else result.unchanged
        bucket[name] = bucket.get(name, 0) + 1

    # the tenant's policy layer matters only when courses or activities change (an
    # attempts-only batch, the common one, saves the read)
    if tenant is None and (b.courses or b.activities):
        tenant = uow.tenants.get(tenant_id)
    tenant_layer = tenant.policy if tenant is not None else PolicySettings()
    overwrite: list[Activity] = []  # activities whose LMS edits gradesync now overwrites

    # Each kind of fact is read in one statement and its changed rows written in one (one
    # per set of fields its items send): on PostgreSQL every statement is a round trip, and a
    # roster's batch holds a thousand rows.

    def course_changed(c: Course, old_c: Course | None) -> None:
        """Every (activity, learner) of `c`, whose grade facts changed, marked; its
        activities whose LMS edits its policy no longer keeps, to send again. `old_c` None:
        made meanwhile, its values before unknown (each field written counts as changed)."""
        learners = _learners(uow, tenant_id, c.id)
        for act in uow.activities.for_course(tenant_id, c.id):
            dirty.extend((tenant_id, c.id, act.id, pid) for pid in learners)
            if (
                _sets(b, "courses", c, ("policy",))
                if old_c is None
                else stops_keeping(
                    (tenant_layer, old_c.policy, act.policy), (tenant_layer, c.policy, act.policy)
                )
            ):
                overwrite.append(act)

    # courses: a grade-relevant change marks every (activity, learner) of the course
    old_courses, courses = _merged_courses(uow, tenant_id, b)  # before anything is written
    for c in courses:
        old_c = old_courses.get(c.id)
        count("courses", old_c != c)
        if old_c is not None and _grade_facts(old_c) != _grade_facts(c):
            course_changed(c, old_c)
    changed_courses = [c for c in courses if old_courses.get(c.id) != c]
    new_courses = [c.id for c in changed_courses if c.id not in old_courses]
    made_courses = _write(uow, b, tenant_id, "courses", changed_courses, new_courses)
    _dates_as_written(uow, tenant_id, b, changed_courses)
    for c in changed_courses:
        # made meanwhile by another batch (read absent above), with its activities and
        # learners: the grade-relevant fields written over it change their grades
        if made_courses.get(c.id) and _sets(b, "courses", c, _GRADE_FACTS):
            course_changed(c, None)

    # activities: new or changed marks all its learners (a new one past its due date may
    # mean zeros) and everyone who attempted it. The stored ones as validation read them:
    # nothing here writes an activity before this
    activities = _as_stored(b, "activities", b.activities, stored_acts)
    changed_acts = [a for a in activities if stored_acts.get(a.id) != a]
    new_acts = [a.id for a in changed_acts if a.id not in stored_acts]
    made_acts = _write(uow, b, tenant_id, "activities", changed_acts, new_acts)
    elsewhere = {aid for aid, written in made_acts.items() if not written}
    if elsewhere:
        # made meanwhile by another batch (read absent above) in another course, and left
        # there by the write: this batch is refused as one moving it is, rolled back
        p = _Problems()
        _made_elsewhere(p, b.activities, elsewhere)
        raise InvalidInput(p.items)
    course_by_id = uow.courses.get_many(tenant_id, {a.course_id for a in changed_acts})
    for a in activities:
        old_a = stored_acts.get(a.id)
        count("activities", old_a != a)
        if old_a != a:
            course = course_by_id.get(a.course_id)
            if course is None:
                continue
            if old_a is None:
                # one made meanwhile (in this course) is marked below as a new one is; its
                # policy before is unknown: LMS edits it kept may be sent over
                if made_acts.get(a.id) and _sets(b, "activities", a, ("policy",)):
                    overwrite.append(a)
            elif stops_keeping(
                (tenant_layer, course.policy, old_a.policy),
                (tenant_layer, course.policy, a.policy),
            ):
                overwrite.append(a)
    if changed_acts:
        attempted = uow.attempts.for_activities(tenant_id, [a.id for a in changed_acts])
        for a in changed_acts:
            people = set(_learners(uow, tenant_id, a.course_id))
            people |= {pid for (aid, pid) in attempted if aid == a.id}
            dirty.extend((tenant_id, a.course_id, a.id, pid) for pid in sorted(people))

    old_people = uow.people.get_many(tenant_id, [x.id for x in b.people])
    persons = _people_as_stored(b, old_people)
    changed_people = [pe for pe in persons if old_people.get(pe.id) != pe]
    # held from here, in id order: whatever of theirs a batch writes next (keys marked,
    # links, enrollments; with or without attempts, in one statement or several) waits
    # for another batch writing the same people rather than deadlock with it
    uow.people.lock(tenant_id, [pe.id for pe in changed_people if pe.id in old_people])
    # what a person filling blanks finds blank, read again now it is held: a field set
    # since the read above (an import committed meanwhile) is no blank, and a SIS id the
    # fill then does not give marks nothing
    again = [pe.id for pe in changed_people if pe.id in old_people and pe.id in b.fills_blanks]
    if again:
        old_people = {**old_people, **uow.people.get_many(tenant_id, again)}
        persons = _people_as_stored(b, old_people)
        changed_people = [pe for pe in persons if old_people.get(pe.id) != pe]
    for pe in persons:  # names and emails do not change grades: nothing to mark
        count("people", old_people.get(pe.id) != pe)
    # ... but a SIS id does, where it matches the learner to no SIS student yet (compute
    # matches them by it) or moves their link made by the old one
    given = [
        pe
        for pe in changed_people
        if pe.sis_id and (was := old_people.get(pe.id)) is not None and was.sis_id != pe.sis_id
    ]
    moves = _given_sis_ids(uow, tenant_id, given, dirty, now)
    new_people = [pe.id for pe in changed_people if pe.id not in old_people]

    old_enrolled = uow.enrollments.for_pairs(
        tenant_id, [(e.course_id, e.person_id) for e in b.enrollments]
    )
    enrolled: list[Enrollment] = []  # new or changed: each marks its course's activities
    for e in b.enrollments:
        changed = old_enrolled.get((e.course_id, e.person_id)) != e
        count("enrollments", changed)
        if changed:
            enrolled.append(e)
    if b.attempts:  # the attempts' write marks the keys: these go with them
        activities_of: dict[str, list[Activity]] = {}  # by course, read once each
        for e in enrolled:
            if e.course_id not in activities_of:
                activities_of[e.course_id] = uow.activities.for_course(tenant_id, e.course_id)
            dirty.extend(
                (tenant_id, e.course_id, act.id, e.person_id) for act in activities_of[e.course_id]
            )

    # the course of every activity the overrides and attempts name (an activity never
    # moves to another course)
    course_of = {act.id: act.course_id for act in stored_acts.values()}
    course_of.update({a.id: a.course_id for a in b.activities})

    def course_for(activity_id: str) -> str:
        return course_of[activity_id]  # every one validated above

    old_dues = uow.overrides.for_pairs(
        tenant_id, [(o.activity_id, o.person_id) for o in b.overrides]
    )
    changed_dues: list[DueDateOverride] = []
    for o in b.overrides:
        changed = old_dues.get((o.activity_id, o.person_id)) != o.due_at
        count("overrides", changed)
        if changed:
            changed_dues.append(o)
            dirty.append((tenant_id, course_for(o.activity_id), o.activity_id, o.person_id))
    uow.overrides.upsert_many(changed_dues)

    if overwrite:
        result.resent = resend_overridden(uow, tenant_id, overwrite, now)
    dirty.extend(also_dirty)

    # The people (locked above) and the enrollments are written after the overrides and
    # the ledger rows with attempts or without, so two batches take those locks in one order
    by_write = _people_by_write(b, changed_people)
    made_people: dict[str, bool] = {}  # people read absent the write found stored
    if b.attempts:  # before the attempts, which name them
        for (fields, fill), group in by_write.items():
            made_people |= uow.people.upsert_many(
                group, fields=fields, fill_blanks=fill, absent=new_people
            )
        moves += _given_sis_ids(
            uow,
            tenant_id,
            _sis_ids_meanwhile(uow, tenant_id, b, changed_people, made_people),
            dirty,
            now,
        )
        uow.enrollments.upsert_many(enrolled)
    else:
        # the people, the enrollments (nothing before reads them) and every key marked in
        # one write: on PostgreSQL one statement, the enrollments' keys listed by the server
        # (its people the largest group written alike, any other written before)
        last = max(by_write, key=lambda write: len(by_write[write]), default=(None, False))
        for (fields, fill), group in by_write.items():
            if (fields, fill) != last:
                made_people |= uow.people.upsert_many(
                    group, fields=fields, fill_blanks=fill, absent=new_people
                )
        result.dirty_keys, made_last = uow.enrollments.upsert_many_marking(
            enrolled,
            now,
            list(dict.fromkeys(dirty)),
            people=by_write.get(last, []),
            people_fields=last[0],
            people_fill_blanks=last[1],
            people_absent=new_people,
        )
        made_people |= made_last
        meanwhile = _sis_ids_meanwhile(uow, tenant_id, b, changed_people, made_people)
        if meanwhile:  # found by that write: their keys marked after it
            late: list[DirtyRow] = []
            moves += _given_sis_ids(uow, tenant_id, meanwhile, late, now)
            marked = set(dirty)
            enrolled_pairs = {(e.course_id, e.person_id) for e in enrolled}
            late = [
                k
                for k in dict.fromkeys(late)
                if k not in marked and (k[1], k[3]) not in enrolled_pairs
            ]
            uow.dirty.mark_many(late, now)
            result.dirty_keys += len(late)
        result.resent += sis.send_to_new_sis_ids(uow, tenant_id, moves, now)  # once marked
        return result

    # the attempts, and the keys of the new ones marked with the others in the same write
    # (on PostgreSQL one statement: which attempts are new is the server's to say)
    stored = uow.attempts.add_many_marking(b.attempts, now, course_of, list(dict.fromkeys(dirty)))
    for at, (attempt_id, new) in zip(b.attempts, stored, strict=True):
        count("attempts", new)
        result.attempts.append(AttemptOutcome(at.source_event_id, attempt_id, not new))
        if new:
            dirty.append((tenant_id, course_for(at.activity_id), at.activity_id, at.person_id))
    result.dirty_keys = len(dict.fromkeys(dirty))
    result.resent += sis.send_to_new_sis_ids(uow, tenant_id, moves, now)  # once marked
    return result


def _sis_ids_meanwhile(
    uow: UnitOfWork,
    tenant_id: str,
    b: IngestBatch,
    people: Sequence[Person],
    made: Mapping[str, bool],
) -> list[Person]:
    """Of `people`, those read absent that the write found stored and wrote over (`made`:
    made meanwhile by another batch, perhaps enrolled by it) and gave a SIS id: their SIS id
    before is unknown, so each counts as given one (`_given_sis_ids`). One filling blanks
    (`IngestBatch.fills_blanks`) gave it only where the write found none: it is read back,
    and counts only if it holds the SIS id sent (else the other batch's stays, and marks)."""
    found = [
        pe for pe in people if made.get(pe.id) and pe.sis_id and _sets(b, "people", pe, ("sis_id",))
    ]
    filled = [pe.id for pe in found if pe.id in b.fills_blanks]
    if not filled:
        return found
    stored = uow.people.get_many(tenant_id, filled)
    return [
        pe
        for pe in found
        if pe.id not in b.fills_blanks or (pe.id in stored and stored[pe.id].sis_id == pe.sis_id)
    ]


def _given_sis_ids(
    uow: UnitOfWork,
    tenant_id: str,
    given: Sequence[Person],
    dirty: list[DirtyRow],
    now: datetime,
) -> list[sis.SisIdMove]:
    """The people `given` a SIS id (or another one), in the courses they learn in that pass
    back to a SIS: where they are matched to no student, their keys (added to `dirty`) are
    computed again, so they are matched by it (`compute.match_by_sis_id`) and their grades
    sent, with no `sis map-students` nor resync; where their old SIS id matched them, the
    link follows the new one (`sis.follow_sis_ids`: a course's moves as one set; a student
    picked by hand is kept) and their keys are marked too, before the links are saved.
    Returns the moves, whose results `sis.send_to_new_sis_ids` sends once the keys are
    marked. A person new here has no enrollment yet: theirs marks their keys."""
    moves: list[sis.SisIdMove] = []
    kinds: dict[str, bool] = {}  # destination id -> a SIS

    def is_sis(destination_id: str) -> bool:
        if destination_id not in kinds:
            d = uow.destinations.get(tenant_id, destination_id)
            kinds[destination_id] = d is not None and d.kind in SIS_KINDS
        return kinds[destination_id]

    recompute: set[tuple[str, str]] = set()  # (course, person)
    # the links to follow, by course (destination, course)
    linked: dict[tuple[str, str], list[tuple[PersonLink, str]]] = {}
    for pe in given:
        assert pe.sis_id  # `given` has one
        courses = [
            e.course_id
            for e in uow.enrollments.for_person(tenant_id, pe.id)
            if e.role is Role.LEARNER
        ]
        for link in uow.links.destinations_for_courses(tenant_id, courses):
            pair = (link.course_id, pe.id)
            if not is_sis(link.destination_id):
                continue
            found = uow.links.people_in_courses(tenant_id, link.destination_id, [pair])
            if pair not in found:
                recompute.add(pair)
            else:
                course = (link.destination_id, link.course_id)
                linked.setdefault(course, []).append((found[pair], pe.sis_id))
    saves: list[PersonLink] = []
    for _, links in sorted(linked.items()):
        # a course's moves as one set: SIS ids swapped in one import follow
        moved, save = sis.follow_sis_ids(uow, links)
        moves += moved
        saves += save
        recompute |= {(m.course_id, m.person_id) for m in moved}
    activities: dict[str, list[str]] = {}
    keys: list[DirtyRow] = []
    for course_id, person_id in sorted(recompute):
        if course_id not in activities:
            activities[course_id] = [a.id for a in uow.activities.for_course(tenant_id, course_id)]
        keys.extend((tenant_id, course_id, aid, person_id) for aid in activities[course_id])
    dirty.extend(keys)
    if saves:
        # the moved learners' keys marked before their links are saved (then in the links'
        # key order), the order a computation takes them in: it claims dirty rows, then
        # saves the links it matches (`compute._match_by_sis_ids`)
        uow.dirty.mark_many(keys, now)
        for saved in sorted(
            saves, key=lambda x: (x.destination_id, x.person_id, x.course_id or "")
        ):
            uow.links.save_person(saved)
    return moves


# Thin wrappers for callers that post one kind of fact.


def upsert_courses(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    waker: Waker | None,
    tenant_id: str,
    courses: Sequence[Course],
) -> IngestResult:
    return ingest(uow_factory, clock, waker, tenant_id, IngestBatch(courses=courses))


def upsert_activities(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    waker: Waker | None,
    tenant_id: str,
    activities: Sequence[Activity],
) -> IngestResult:
    return ingest(uow_factory, clock, waker, tenant_id, IngestBatch(activities=activities))


def upsert_people(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    waker: Waker | None,
    tenant_id: str,
    people: Sequence[Person],
) -> IngestResult:
    return ingest(uow_factory, clock, waker, tenant_id, IngestBatch(people=people))


def upsert_enrollments(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    waker: Waker | None,
    tenant_id: str,
    enrollments: Sequence[Enrollment],
) -> IngestResult:
    return ingest(uow_factory, clock, waker, tenant_id, IngestBatch(enrollments=enrollments))


def upsert_overrides(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    waker: Waker | None,
    tenant_id: str,
    overrides: Sequence[DueDateOverride],
) -> IngestResult:
    return ingest(uow_factory, clock, waker, tenant_id, IngestBatch(overrides=overrides))


def record_attempts(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    waker: Waker | None,
    tenant_id: str,
    attempts: Sequence[Attempt],
) -> IngestResult:
    return ingest(uow_factory, clock, waker, tenant_id, IngestBatch(attempts=attempts))
