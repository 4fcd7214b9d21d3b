"""Computing desired state: facts in, ledger rows out (no network).

Three entry points, one core:

- `compute_dirty`: take a batch of dirty keys (marked by ingest in the fact's transaction),
  recompute each key for every destination its course syncs to (or the one destination its
  mark names: a change that concerns no other, such as a SIS tick), write the ledger rows and
  delete the marks, all in one transaction.
- `compute_activity`: recompute one activity of one course at one destination for a chunk
  of learners (what a sync run does, an activity at a time, so memory stays bounded).
- `compute_now`: the marks of a few activities, at once, by the process that made them (a
  switch in the console: the page it goes back to shows the switch's effect).

All three lock the activities they compute (`DirtyKeyRepo.lock_activities`) and read the ledger
rows with row locks, so a slower computation from older facts never overwrites a newer one.
Every compute transaction takes its locks in one order (the dirty rows it claims, the
activities, then the SIS links it saves, then the ledger rows, each in key order), so no two
of them deadlock. A transaction that links learners to SIS students (`sis.map_course_students`,
`sis.map_student`, `sis.unmap_section`, an ingest following new SIS ids) keeps that order too:
it marks the learners' keys before it saves their links (in key order), and locks their ledger
rows after. Should the database still give up on a transaction for a deadlock, a computation
is rolled back and tried again (`database_unavailable`, below).
These are plain blocking functions: async callers run them in a thread.

A grade that cannot be worked out (computing it raises) never holds up the others: it is
set aside as SKIPPED with the reason `compute_failed` (what Diagnose and the grades show),
logged at ERROR with its ids once per failed computation (not per destination), and worked
out again when its facts are marked again. A batch that fails as a whole is worked out a
key at a time; a key failing alone is set aside by writing the reason straight over its
ledger rows, without computing it again. Its mark is deleted only if it is still the mark
that was tried (the same `marked_at`): a fact marked meanwhile is computed, not swallowed.

A database that cannot do the work for now (the connection lost, busy or locked, a conflict:
`database_unavailable`) is never the key's fault: the batch is rolled back, every mark kept,
and the error raised, so the worker waits and tries again instead of setting grades aside.
A statement the database refused (a constraint, a value it cannot hold, a missing grant) is
worked out key by key like any other failure: tried again as it is, one key's refusal would
hold up every grade behind it for ever; refused for every key, each stays marked (below).

If even the reason cannot be written, the key keeps its mark (so it is never lost, and no
stale pending row is sent as if it were current), moved behind every other dirty key (its
wait still counted from its first mark, so the alert on grades not worked out sees it), and a
timer (`DirtyKeyRepo.schedule`) to try it again `retry` later; a batch made only of such keys
ends the worker's pass, so it never spins on them nor holds the others up, and the timer
wakes the worker for them even when nothing else does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from gradesync.domain.columns import to_look_at
from gradesync.domain.ledger import due_now, reconcile, reopened
from gradesync.domain.model import (
    SIS_KINDS,
    WAITING_STATES,
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
    Role,
    Tenant,
)
from gradesync.domain.passback import BY_SIS_ID, LINKED_BY
from gradesync.domain.policy import (
    Capabilities,
    DesiredResult,
    NoResult,
    PolicyInput,
    ResolvedPolicy,
    activity_policy,
    column_for,
    column_hash,
    desired_result,
    zero_point,
)
from gradesync.domain.reasons import Reason, ReasonCode, compute_failed
from gradesync.domain.remedies import GIVE_SIS_ID, MATCH_SIS_STUDENTS, Remedy
from gradesync.services.clock import Clock
from gradesync.services.database_lost import database_unavailable
from gradesync.services.destination import CapabilitiesLookup
from gradesync.services.engine_config import EngineSettings
from gradesync.services.lti.migration import MIGRATED_KEY
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory

NO_PERSON_LINK = "no_person_link"
DESTINATION_UNAVAILABLE = "destination_unavailable"
COURSE_MIGRATED = "course_migrated"

log = logging.getLogger(__name__)

# a dirty key as claimed: (tenant_id, course_id, activity_id, person_id, destination_id), the
# destination None for every destination of the course
Claimed = tuple[str, str, str, str, str | None]
# a grade's key, whatever its destinations: (tenant_id, course_id, activity_id, person_id)
GradeKey = tuple[str, str, str, str]

# Results that change with time alone: once the past-due zero point passes, a zero is due.
WAITING_FOR_ZERO = frozenset({ReasonCode.NO_ATTEMPT_YET, ReasonCode.NOT_COMPLETED_YET})

# The destinations whose columns gradesync writes (an LTI 1.1 column is the LMS's own).
WRITES_COLUMNS = frozenset(
    {DestinationKind.LTI13_AGS, DestinationKind.ONEROSTER_REST, DestinationKind.ONEROSTER_CSV}
)


def no_person_link(
    destination: Destination,
    *,
    course_id: str | None = None,
    person_id: str | None = None,
    sis_id: str | None = None,
) -> Reason:
    """Seed 001's first cause: the destination does not know this learner yet. At a SIS, a
    learner is matched to the class's student by their SIS id (`match_by_sis_id`): one with
    none (`sis_id` None, `person_id` given) is given one or linked by hand; one with an id
    (or not known: `person_id` None) is not matched yet, which map-students (or the course's
    next sync) does."""
    if destination.kind in SIS_KINDS:
        if person_id is not None and not sis_id:
            said = (
                f"This learner has no SIS id, so they are matched to no student of the class "
                f"in {destination.name!r} and the grade has nowhere to go."
            )
            code = GIVE_SIS_ID
        else:
            whose = f"This learner (SIS id {sis_id!r})" if sis_id else "This learner"
            said = (
                f"{whose} is not matched to the SIS's student in the class in "
                f"{destination.name!r} yet, so the grade has nowhere to go."
            )
            code = MATCH_SIS_STUDENTS
        fix = Remedy(code, destination=destination.id, course=course_id, person=person_id)
        return Reason(NO_PERSON_LINK, said, fix)
    text = (
        f"This learner has never launched gradesync from this course in the LMS "
        f"({destination.name!r}), so the LMS has not told gradesync who they are there; "
        "the grade is sent automatically once they open any gradesync link in the course."
    )
    return Reason(NO_PERSON_LINK, text)


def match_by_sis_id(
    course_link: CourseLink, person: Person | None, enrollment: Enrollment | None
) -> PersonLink | None:
    """A learner of a course mapped to a SIS class, with a SIS id and matched to no student
    there, matched as `sis map-students` matches them: to the student of that sourcedId,
    with their section's class when it has its own (the caller saves the link). None:
    nothing to match them by (no SIS id), or not a learner of the course."""
    if person is None or not person.sis_id:
        return None
    if enrollment is None or enrollment.role is not Role.LEARNER:
        return None
    sections: Mapping[str, str] = course_link.data.get("sections") or {}
    klass = sections.get(enrollment.section_id or "")
    return PersonLink(
        course_link.tenant_id,
        course_link.destination_id,
        person.id,
        person.sis_id,
        course_link.course_id,
        {LINKED_BY: BY_SIS_ID, **({"class": klass} if klass else {})},
    )


def migrated_to(link: CourseLink) -> str | None:
    """The destination a course moved to (LTI 1.1 -> 1.3 migration), or None. A migrated
    course link is history: nothing is computed for it or sent through it any more."""
    target = link.data.get(MIGRATED_KEY) if link.data else None
    return str(target) if target else None


def course_migrated(destination: Destination, target: str) -> Reason:
    return Reason(
        COURSE_MIGRATED,
        f"This course moved from {destination.name!r} to the LTI 1.3 destination {target!r}; "
        "its grades are sent there now.",
    )


def destination_unavailable(destination: Destination, problem: str) -> Reason:
    return Reason(
        DESTINATION_UNAVAILABLE,
        f"gradesync cannot use the destination {destination.name!r}: {problem}. Fix its "
        "settings, then resync.",
    )


@dataclass(slots=True)
class ComputeStats:
    dirty: int = 0  # dirty keys consumed
    keys: int = 0  # (destination, activity, learner) outcomes computed
    changed: int = 0  # ledger rows written
    pending: int = 0  # rows that now need a send
    skipped: int = 0  # rows now skipped (policy says send nothing)
    reset: int = 0  # failed rows a person asked to try again (manual runs)
    # where rows became pending, or were due and held under the computation's lock (a claim
    # skips them): (tenant, destination, course, activity), so that once it commits only
    # the delivery passes whose scope holds them are woken
    due_at: set[tuple[str, str, str, str]] = field(default_factory=set)
    # LMS columns known before their first grade: (tenant, destination, course, activity)
    # of activities computed at an LTI 1.3 destination that has no line item for them yet
    # and no result to send (a pending row creates its column as it is sent)
    new_columns: set[tuple[str, str, str, str]] = field(default_factory=set)
    # columns whose details (title, due date, points, category) differ from what was last
    # written there, of activities computed with no result to send (a pending row rewrites
    # its column as it is sent): (tenant, destination, course, activity) -> the details'
    # hash wanted, so that each change is written once, promptly, without waiting for a grade
    stale_columns: dict[tuple[str, str, str, str], str] = field(default_factory=dict)
    # grades that could not be worked out (set aside as compute_failed): (tenant, activity,
    # person)
    failed: set[tuple[str, str, str]] = field(default_factory=set)
    # keys that could not even be set aside: left marked, behind every other dirty key
    kept: int = 0
    # why each of them failed, by claimed key, until logged (once, when stored)
    errors: dict[GradeKey, BaseException] = field(default_factory=dict)

    def add(self, other: ComputeStats) -> None:
        self.dirty += other.dirty
        self.keys += other.keys
        self.changed += other.changed
        self.pending += other.pending
        self.skipped += other.skipped
        self.reset += other.reset
        self.due_at |= other.due_at
        self.new_columns |= other.new_columns
        self.stale_columns.update(other.stale_columns)
        self.failed |= other.failed
        self.kept += other.kept
        self.errors.update(other.errors)


def compute_dirty(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    capabilities: CapabilitiesLookup,
    *,
    limit: int = 500,
    retry: timedelta = EngineSettings().set_aside_retry,
) -> ComputeStats:
    """Recompute one batch of dirty keys. `stats.dirty < limit` means none are left, and
    `stats.kept == stats.dirty` that none of this batch could be worked out nor set aside
    (the caller stops there rather than take them again at once: each is timed to be tried
    again `retry` later, see `_set_aside`).

    A batch that fails for any reason but the database's is worked out again a key at a
    time, so one key that cannot be computed is set aside and the others are not held up."""
    claimed: list[Claimed] = []
    try:
        stats = _compute_batch(uow_factory, clock, capabilities, limit, claimed)
    except Exception as exc:
        if not claimed or database_unavailable(exc):
            raise
        log.warning(
            "computing a batch of %d grades failed (%s); working them out one at a time",
            len(claimed),
            type(exc).__name__,
        )
    else:
        _log_failures(stats)
        return stats
    stats = ComputeStats(dirty=len(claimed))
    for key in claimed:
        stats.add(_compute_alone(uow_factory, clock, capabilities, key, retry))
    return stats


# marks `compute_now` works out in the request; more (a course of thousands) are the worker's
MARKS_NOW = 2_000


def compute_now(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    capabilities: CapabilitiesLookup,
    *,
    tenant_id: str,
    activity_ids: Sequence[str],
    limit: int = MARKS_NOW,
) -> ComputeStats:
    """Work out now, in one transaction, the marked grades of these activities (up to
    `limit`), so whoever changed them reads the result at once rather than after the
    worker's next batch. Marks a worker was taking are waited for (see `take_activities`).
    Anything that fails is rolled back and left to the worker, which sets a grade it cannot
    work out aside: the change itself is already saved."""
    stats = ComputeStats()
    try:
        with uow_factory() as uow:
            taken = uow.dirty.take_activities(tenant_id, activity_ids, limit=limit)
            if taken:
                stats.dirty = len(taken)
                _compute_claimed(uow, taken, clock.now(), capabilities, stats)
                uow.commit()
    except Exception as exc:
        log.warning(
            "working out %d grades at once failed (%s); the worker works them out",
            stats.dirty,
            type(exc).__name__,
        )
        return ComputeStats()
    _log_failures(stats)
    return stats


def _compute_batch(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    capabilities: CapabilitiesLookup,
    limit: int,
    claimed: list[Claimed],
) -> ComputeStats:
    """`compute_dirty`'s one transaction; `claimed` receives the keys it took."""
    stats = ComputeStats()
    with uow_factory() as uow:
        claimed += uow.dirty.claim(limit)
        if not claimed:
            return stats
        stats.dirty = len(claimed)
        _compute_claimed(uow, claimed, clock.now(), capabilities, stats)
        uow.commit()
    return stats


def _compute_claimed(
    uow: UnitOfWork,
    claimed: Sequence[Claimed],
    now: datetime,
    capabilities: CapabilitiesLookup,
    stats: ComputeStats,
) -> None:
    # a batch's courses are computed together, a statement of each kind per tenant (and
    # destination a mark names): on PostgreSQL every statement is a round trip, and live
    # grades span many courses
    groups: dict[tuple[str, str], dict[str, list[tuple[str, str]]]] = {}
    for tenant_id, course_id, activity_id, person_id, destination_id in sorted(
        claimed, key=lambda k: (*k[:4], k[4] or "")
    ):
        courses = groups.setdefault((tenant_id, destination_id or ""), {})
        courses.setdefault(course_id, []).append((activity_id, person_id))
    read = [
        facts
        for (tenant_id, destination_id), by_course in groups.items()
        if (facts := _read(uow, tenant_id, by_course, capabilities, destination_id or None))
        is not None
    ]
    # every group read first, then their learners matched by SIS id together, then every
    # group's ledger rows locked at once, in key order (the lock order `_match_by_sis_ids`
    # keeps): no group writes a fact another reads but those links, and no two groups
    # compute one grade (a grade has one mark), so none writes a ledger row another reads
    _match_by_sis_ids(uow, read)
    rows = uow.ledger.get_keys([key for facts in read for _, key in facts.todo], lock=True)
    for facts in read:
        _write(uow, facts, rows, now, stats, bulk=False)


def _compute_alone(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    capabilities: CapabilitiesLookup,
    key: Claimed,
    retry: timedelta,
) -> ComputeStats:
    """One key of a batch that failed, in its own transaction. If it fails alone, for a
    reason that is not the database's, it is the key's own fault: logged once, and set
    aside (see `_set_aside`)."""
    tenant_id, _, activity_id, person_id, _ = key
    stats = ComputeStats()
    seen: datetime | None = None  # the mark tried: marked again since, a fact it has not seen
    try:
        with uow_factory() as uow:
            seen = uow.dirty.marked_at(tenant_id, activity_id, person_id)
            taken = uow.dirty.take([(tenant_id, activity_id, person_id)])
            if taken:  # else another worker took it meanwhile
                _compute_claimed(uow, taken, clock.now(), capabilities, stats)
                uow.commit()
    except Exception as exc:
        if database_unavailable(exc):
            raise
        _log_failed(key[:4], exc)
        if seen is None:  # not marked when tried: nothing of it was computed
            return stats
        return _set_aside(uow_factory, clock, key, exc, seen, retry)
    _log_failures(stats)
    return stats


def _set_aside(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    key: Claimed,
    error: BaseException,
    seen: datetime,
    retry: timedelta,
) -> ComputeStats:
    """Write `key`'s compute_failed rows straight over its ledger rows, at every destination
    its course syncs to (or the one the mark taken names), and delete its mark, without
    computing it again (what failed would fail again, or worse succeed half way). Its mark is
    deleted only if it is still the one tried (marked at `seen`, the row's own time): a fact
    marked since is computed by the next batch, not set aside unseen. The mark's time is
    compared with itself, never with this process's clock: the process that marked it (the
    API, elsewhere) may run behind.

    If even that cannot be written, the key keeps its mark, moved to the back of the queue:
    no stale pending row is left to be sent as if current, and the key is tried again after
    every other dirty key (so it never holds the queue up). A timer `retry` from now tries it
    again however quiet the system is: nothing else may wake the worker for it."""
    tenant_id, course_id, activity_id, person_id, destination_id = key
    reason = compute_failed(type(error).__name__)
    stats = ComputeStats()
    try:
        with uow_factory() as uow:
            taken = uow.dirty.take([(tenant_id, activity_id, person_id)], marked_at=seen)
            if not taken:  # marked again since (a new fact), or another worker took it
                return stats
            now = clock.now()
            _write_failed(uow, taken[0], NoResult(reason), now, stats)
            uow.commit()
        return stats
    except Exception as exc:
        if database_unavailable(exc):
            raise
        log.error(
            "grade of tenant %s, course %s, activity %s, person %s cannot even be set aside "
            "as compute_failed (%s); it stays marked, to be tried again after the others and "
            "in %g s at the latest",
            tenant_id,
            course_id,
            activity_id,
            person_id,
            type(exc).__name__,
            retry.total_seconds(),
            exc_info=exc,
        )
    with uow_factory() as uow:
        now = clock.now()
        # marked as it was claimed: for the one destination its mark named, if it did
        uow.dirty.mark_many(
            [(tenant_id, course_id, activity_id, person_id)],
            now,
            destination_id=destination_id,
            behind=True,
        )
        # and its timer marks it so again, not for every destination
        uow.dirty.schedule(
            [(tenant_id, course_id, activity_id, person_id, now + retry)],
            destination_id=destination_id,
        )
        uow.commit()
    return ComputeStats(kept=1)


def _write_failed(
    uow: UnitOfWork, key: Claimed, failure: NoResult, now: datetime, stats: ComputeStats
) -> None:
    """`key`'s rows at every destination its course syncs to (or the one its mark names),
    set aside with `failure` (what `_compute` would write for it, from the rows alone: no
    fact nor policy read)."""
    tenant_id, course_id, activity_id, person_id, only = key
    activity = uow.activities.get_many(tenant_id, [activity_id]).get(activity_id)
    if activity is None or activity.course_id != course_id:
        return  # gone or moved: nothing is computed for it here
    links = [
        link
        for link in uow.links.destinations_for_courses(tenant_id, [course_id])
        if link.course_id == course_id
        and migrated_to(link) is None
        and only in (None, link.destination_id)
    ]
    destinations = uow.destinations.get_many(tenant_id, [link.destination_id for link in links])
    keys = [
        LedgerKey(tenant_id, d_id, activity_id, person_id)
        for d_id in sorted({link.destination_id for link in links})
        if d_id in destinations
    ]
    rows = uow.ledger.get_keys(keys, lock=True)
    writes: list[tuple[LedgerRow, str]] = []
    for ledger_key in keys:
        stats.keys += 1
        new = reconcile(rows.get(ledger_key), ledger_key, failure, now)
        if new is None:
            continue
        stats.changed += 1
        if new.state is DeliveryState.SKIPPED:
            stats.skipped += 1
        writes.append((new, course_id))
    uow.ledger.save_many(writes, bulk=False)
    stats.failed.add((tenant_id, activity_id, person_id))


def _log_failures(stats: ComputeStats) -> None:
    """Log the keys `_compute` set aside, once each, once their rows are stored."""
    for key, error in sorted(stats.errors.items(), key=lambda item: item[0]):
        _log_failed(key, error)
    stats.errors.clear()


def _log_failed(key: GradeKey, error: BaseException) -> None:
    tenant_id, course_id, activity_id, person_id = key
    log.error(
        "grade of tenant %s, course %s, activity %s, person %s could not be worked out "
        "(%s); it is set aside as compute_failed until its facts change",
        tenant_id,
        course_id,
        activity_id,
        person_id,
        type(error).__name__,
        exc_info=error,
    )


def compute_activity(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    capabilities: CapabilitiesLookup,
    *,
    tenant_id: str,
    destination_id: str,
    course_id: str,
    activity_id: str,
    person_ids: Sequence[str],
    remaster: bool = False,
    reset_failures: bool = False,
) -> ComputeStats:
    """Recompute one activity for some learners at one destination (one transaction).

    remaster: every result becomes pending, changed or not. reset_failures: rejected and
    retrying rows are tried again now (a person pressed "Sync now" after fixing the cause)."""
    stats = ComputeStats()
    with uow_factory() as uow:
        uow.dirty.lock_activities([(tenant_id, activity_id)])
        pairs = [(activity_id, p) for p in sorted(set(person_ids))]
        _compute(
            uow,
            tenant_id,
            {course_id: pairs},
            clock.now(),
            capabilities,
            stats,
            only_destination=destination_id,
            remaster=remaster,
            reset_failures=reset_failures,
            bulk=True,
        )
        uow.commit()
    _log_failures(stats)
    return stats


def people_of_activity(
    uow_factory: UnitOfWorkFactory,
    tenant_id: str,
    destination_id: str,
    course_id: str,
    activity_id: str,
    learner_ids: Iterable[str],
) -> list[str]:
    """Whom a run recomputes for an activity: the course's learners, anyone with an attempt,
    anyone with a ledger row (so a dropped learner's row is updated, not forgotten)."""
    with uow_factory() as uow:
        people = set(learner_ids)
        people |= {p for _, p in uow.attempts.for_activities(tenant_id, [activity_id])}
        people |= {
            p for _, p in uow.ledger.get_many(tenant_id, destination_id, course_id, [activity_id])
        }
    return sorted(people)


def learners_of(uow_factory: UnitOfWorkFactory, tenant_id: str, course_id: str) -> list[str]:
    with uow_factory() as uow:
        return [
            e.person_id
            for e in uow.enrollments.for_course(tenant_id, course_id)
            if e.role is Role.LEARNER
        ]


# --- the core ------------------------------------------------------------------------------


def _policy(tenant: Tenant, course: Course, activity: Activity) -> ResolvedPolicy | Reason:
    return activity_policy((tenant.policy, course.policy), activity)


@dataclass(slots=True)
class _Facts:
    """What computing one tenant's keys (at every destination of their courses, or the one a
    mark names) reads before it writes anything: every fact their outcomes depend on but
    the ledger rows, read under lock once the SIS links are saved (`_match_by_sis_ids`)."""

    tenant_id: str
    only_destination: str | None
    courses: Mapping[str, Course]
    links: dict[str, list[CourseLink]]
    activities: Mapping[str, Activity]
    # the (activity, person) pairs to compute, by course
    work: dict[str, list[tuple[str, str]]]
    attempts: Mapping[tuple[str, str], list[Attempt]]
    overrides: Mapping[tuple[str, str], datetime]
    enrollments: Mapping[tuple[str, str], Enrollment]
    policies: dict[str, ResolvedPolicy | Reason]
    destinations: dict[str, Destination]
    caps: dict[str, Capabilities | Reason]
    # every (link, key) to compute, and the (course, person) pairs each destination must know
    todo: list[tuple[CourseLink, LedgerKey]]
    wanted: dict[str, set[tuple[str, str]]]
    person_links: dict[str, dict[tuple[str, str], PersonLink]]
    # the learners no link matches to a student at a SIS (`_match_by_sis_ids`), by id
    people: dict[str, Person] = field(default_factory=dict)


def _compute(
    uow: UnitOfWork,
    tenant_id: str,
    by_course: Mapping[str, Sequence[tuple[str, str]]],
    now: datetime,
    capabilities: CapabilitiesLookup,
    stats: ComputeStats,
    *,
    only_destination: str | None = None,
    remaster: bool = False,
    reset_failures: bool = False,
    bulk: bool,
) -> None:
    """Compute (activity, person) pairs of one tenant's courses at every destination each
    course syncs to (or `only_destination`), reading each kind of fact once for them all.

    `bulk`: computed by a run; its pending rows wait behind live grades (auto sync), so
    a remaster of one course never delays another's new grades.

    A key whose outcome raises is set aside (`compute_failed`) and the others go on; why
    is kept in `stats.errors` for the caller to log once the rows are stored."""
    facts = _read(uow, tenant_id, by_course, capabilities, only_destination)
    if facts is None:
        return
    _match_by_sis_ids(uow, [facts])
    rows = uow.ledger.get_keys([key for _, key in facts.todo], lock=True)
    _write(
        uow, facts, rows, now, stats, remaster=remaster, reset_failures=reset_failures, bulk=bulk
    )


def _read(
    uow: UnitOfWork,
    tenant_id: str,
    by_course: Mapping[str, Sequence[tuple[str, str]]],
    capabilities: CapabilitiesLookup,
    only_destination: str | None,
) -> _Facts | None:
    """`_compute`'s reads, before any row is written; None: nothing to compute."""
    tenant = uow.tenants.get(tenant_id)
    if tenant is None:
        return None
    courses = uow.courses.get_many(tenant_id, by_course)
    links: dict[str, list[CourseLink]] = {}
    for link in uow.links.destinations_for_courses(tenant_id, courses):
        if (only_destination is None or link.destination_id == only_destination) and (
            migrated_to(link) is None
        ):
            links.setdefault(link.course_id, []).append(link)
    activities = uow.activities.get_many(tenant_id, {a for c in links for a, _ in by_course[c]})
    # a key whose activity is gone or moved to another course has nothing to compute here
    work: dict[str, list[tuple[str, str]]] = {}
    for course_id in sorted(links):
        for a, p in by_course[course_id]:
            if a in activities and activities[a].course_id == course_id:
                work.setdefault(course_id, []).append((a, p))
    if not work:
        return None
    all_pairs = [pair for pairs in work.values() for pair in pairs]
    attempts = uow.attempts.for_pairs(tenant_id, all_pairs)
    overrides = uow.overrides.for_pairs(tenant_id, all_pairs)
    enrollments = uow.enrollments.for_pairs(tenant_id, {(c, p) for c in work for _, p in work[c]})
    policies = {a: _policy(tenant, courses[c], activities[a]) for c in work for a, _ in work[c]}
    destinations: dict[str, Destination] = {}
    for d_id in sorted({link.destination_id for c in work for link in links[c]}):
        if (destination := uow.destinations.get(tenant_id, d_id)) is not None:
            destinations[d_id] = destination
    caps = {d_id: capabilities(d) for d_id, d in destinations.items()}
    todo: list[tuple[CourseLink, LedgerKey]] = []
    wanted: dict[str, set[tuple[str, str]]] = {d_id: set() for d_id in destinations}
    for course_id, pairs in work.items():
        for link in links[course_id]:
            if link.destination_id not in destinations:
                continue
            for a, p in pairs:
                todo.append((link, LedgerKey(tenant_id, link.destination_id, a, p)))
                wanted[link.destination_id].add((course_id, p))
    person_links = {
        d_id: uow.links.people_in_courses(tenant_id, d_id, pairs) for d_id, pairs in wanted.items()
    }
    return _Facts(
        tenant_id,
        only_destination,
        courses,
        links,
        activities,
        work,
        attempts,
        overrides,
        enrollments,
        policies,
        destinations,
        caps,
        todo,
        wanted,
        person_links,
    )


def _write(
    uow: UnitOfWork,
    facts: _Facts,
    rows: Mapping[LedgerKey, LedgerRow],
    now: datetime,
    stats: ComputeStats,
    *,
    remaster: bool = False,
    reset_failures: bool = False,
    bulk: bool,
) -> None:
    """`_compute`'s outcomes from `facts` and the ledger `rows` of its keys (read under
    lock): the rows worked out and written, the columns to write on their own noted, the
    past-due zeros' timers set."""
    tenant_id, destinations, caps = facts.tenant_id, facts.destinations, facts.caps
    activities, policies, links = facts.activities, facts.policies, facts.links
    writes: list[tuple[LedgerRow, str]] = []
    timers: dict[tuple[str, str, str], datetime] = {}
    # a remaster's rows pending again with the value they were waiting to send: a claim
    # may be sending it
    same_again: list[LedgerKey] = []
    for link, key in facts.todo:
        destination = destinations[key.destination_id]
        course_id = link.course_id
        pair = (key.activity_id, key.person_id)
        activity = activities[key.activity_id]
        old = rows.get(key)
        zero_at: datetime | None = None
        reason: Reason | None = None
        try:
            outcome = _outcome(
                destination,
                caps[destination.id],
                facts.courses[course_id],
                activity,
                policies[key.activity_id],
                facts.enrollments.get((course_id, key.person_id)),
                facts.attempts.get(pair, []),
                facts.overrides.get(pair),
                facts.person_links[destination.id].get((course_id, key.person_id)),
                facts.people.get(key.person_id),
                now,
            )
            zero_at = _zero_timer(
                outcome, policies[key.activity_id], activity, facts.overrides.get(pair), now
            )
            new = reconcile(old, key, outcome, now, remaster=remaster)
        except Exception as exc:  # this key's own failure: the others go on
            stats.errors.setdefault((tenant_id, course_id, *pair), exc)
            reason, zero_at = compute_failed(type(exc).__name__), None
        if reason is not None:
            stats.failed.add((tenant_id, *pair))
            new = reconcile(old, key, NoResult(reason), now)
        if zero_at is not None:
            timers[(course_id, *pair)] = zero_at
        if (
            new is not None
            and old is not None
            and old.state is DeliveryState.PENDING
            and new.state is DeliveryState.PENDING
        ):
            # still waiting: keep its place in the delivery queue (oldest first), so a
            # key that keeps changing is not pushed back for ever
            new = replace(new, updated_at=old.updated_at)
        if new is None and reset_failures and old is not None:
            new = _reset(old, now)
            if new is not None:
                stats.reset += 1
        stats.keys += 1
        if new is None:
            if old is not None and due_now(old, now):
                # unchanged, but held under this transaction's lock: a claim meanwhile
                # skipped it (SKIP LOCKED) and, finding nothing, its pass ended; said due
                # once this commits, or it would wait for the next poll
                stats.due_at.add((tenant_id, destination.id, course_id, key.activity_id))
            continue
        stats.changed += 1
        if (
            remaster
            and old is not None
            and old.state in WAITING_STATES
            and new.state is DeliveryState.PENDING
            and new.desired_hash == old.desired_hash
        ):
            same_again.append(key)
        if new.state is DeliveryState.PENDING:
            stats.pending += 1
            stats.due_at.add((tenant_id, destination.id, course_id, key.activity_id))
        elif new.state is DeliveryState.SKIPPED:
            stats.skipped += 1
        writes.append((new, course_id))
    uow.ledger.save_many(writes, bulk=bulk)
    # A send in flight of a row the remaster makes pending with the same value would settle
    # it delivered over the remaster's mark, and the grade would not go again (a hand edit
    # made in the LMS since that send stays). Its claim is ended instead: its outcome is not
    # written, and the row waits for a send of its own (of the same value, so the order of
    # the two sends changes nothing). A row whose value changed or is dropped keeps its
    # claim: its settle already leaves it pending or skipped, after the send in flight.
    uow.ledger.take_leases(same_again, now)
    for course_id, pairs in facts.work.items():
        for link in links[course_id]:
            d = destinations.get(link.destination_id)
            if d is None or d.kind not in WRITES_COLUMNS:
                continue
            quiet = _quiet(link, pairs, writes)
            if not quiet:
                continue
            # the links of the activities with no result to send, read once for both
            items = uow.links.items(link.tenant_id, link.destination_id, quiet)
            if d.kind is DestinationKind.LTI13_AGS:
                _note_new_columns(link, links[course_id], destinations, quiet, items, stats)
            _note_stale_columns(link, activities, policies, caps[d.id], quiet, items, stats)
    # without a timer a past-due zero would wait for the next fact or run; it falls due for
    # the destinations computed here, not the others (computed, they have timers of their own)
    uow.dirty.schedule(
        [(tenant_id, c, a, p, at) for (c, a, p), at in sorted(timers.items())],
        destination_id=facts.only_destination,
    )


def _match_by_sis_ids(uow: UnitOfWork, read: Sequence[_Facts]) -> None:
    """The learners of the (course, person) pairs wanted at a SIS that no link matches to a
    student there, in every group of `read`: each with a SIS id is matched now, as `sis
    map-students` would (`match_by_sis_id`), so one given their SIS id after the course's
    students were mapped is not left without a student; the link is saved and added to
    each group's `person_links`. Each group's `people` receives them, matched or not (a
    reason names their SIS id, or that they have none), read once per tenant; no SIS is
    asked.

    Called before any of the transaction's ledger rows is locked, with every group of a
    batch at once, the links saved in their key's order: on PostgreSQL a link saved is held
    until the transaction ends, so two batches saving links after ledger rows, or the same
    links in other orders, could deadlock (and each then be worked out a key at a time)."""
    missing: dict[str, list[tuple[_Facts, str, tuple[str, str]]]] = {}
    for facts in read:
        for d_id, pairs in facts.wanted.items():
            if facts.destinations[d_id].kind in SIS_KINDS:
                known = facts.person_links[d_id]
                missing.setdefault(facts.tenant_id, []).extend(
                    (facts, d_id, pair) for pair in sorted(pairs) if pair not in known
                )
    matched: dict[tuple[str, str, str, str], PersonLink] = {}
    for tenant_id, wanting in missing.items():
        if not wanting:
            continue
        people = uow.people.get_many(tenant_id, sorted({p for _, _, (_, p) in wanting}))
        for facts in read:
            if facts.tenant_id == tenant_id:
                facts.people.update(people)
        for facts, d_id, (course_id, person_id) in wanting:
            key = (tenant_id, d_id, person_id, course_id)  # the link's primary key
            link = matched.get(key)  # two groups may want the same learner at one SIS
            if link is None:
                course_link = next(x for x in facts.links[course_id] if x.destination_id == d_id)
                enrollment = facts.enrollments.get((course_id, person_id))
                link = match_by_sis_id(course_link, people.get(person_id), enrollment)
                if link is None:
                    continue
                matched[key] = link
            facts.person_links[d_id][(course_id, person_id)] = link
    for key in sorted(matched):
        uow.links.save_person(matched[key])


def _zero_timer(
    outcome: DesiredResult | NoResult,
    policy: ResolvedPolicy | Reason,
    activity: Activity,
    due_override: datetime | None,
    now: datetime,
) -> datetime | None:
    """When this key must be recomputed because a past-due zero falls due, or None."""
    if not isinstance(outcome, NoResult) or isinstance(policy, Reason):
        return None
    if outcome.reason.code not in WAITING_FOR_ZERO:
        return None
    at = zero_point(policy, activity, due_override)
    return at if at is not None and at > now else None


def _quiet(
    link: CourseLink, pairs: Sequence[tuple[str, str]], writes: Sequence[tuple[LedgerRow, str]]
) -> list[str]:
    """The activities computed with no result to send at `link`'s destination: a pending
    row creates or rewrites its column as it is sent, these none does."""
    sending = {
        r.key.activity_id
        for r, _ in writes
        if r.state is DeliveryState.PENDING and r.key.destination_id == link.destination_id
    }
    return sorted({a for a, _ in pairs} - sending)


def _note_new_columns(
    link: CourseLink,
    links: Sequence[CourseLink],
    destinations: Mapping[str, Destination],
    quiet: Sequence[str],
    items: Mapping[str, ItemLink],
    stats: ComputeStats,
) -> None:
    for other in links:
        d = destinations.get(other.destination_id)
        if d is not None and d.kind is DestinationKind.LTI11_OUTCOMES:
            # the LMS may hold these columns already, made through LTI 1.1: the course's
            # migration launch binds them, creating them here would make duplicates
            return
    stats.new_columns |= {
        (link.tenant_id, link.destination_id, link.course_id, a) for a in quiet if a not in items
    }


def _note_stale_columns(
    link: CourseLink,
    activities: Mapping[str, Activity],
    policies: Mapping[str, ResolvedPolicy | Reason],
    caps: Capabilities | Reason,
    quiet: Sequence[str],
    items: Mapping[str, ItemLink],
    stats: ComputeStats,
) -> None:
    """The columns at `link`'s destination written before with other details than the
    activity has now (renamed, its due date moved, ...), of activities with no result to
    send (`quiet`): no send would rewrite them, so they are rewritten on their own. A column
    never written (no details hash: not created yet, or asked for again by a person) is
    left to its first send or run."""
    if isinstance(caps, Reason):
        return
    for activity_id in quiet:
        item, policy = items.get(activity_id), policies.get(activity_id)
        if item is None or to_look_at(item) or not isinstance(policy, ResolvedPolicy):
            continue
        column = column_for(activities[activity_id], policy, caps)
        if isinstance(column, NoResult):
            continue
        wanted = column_hash(column)
        if wanted != item.details_hash:
            key = (link.tenant_id, link.destination_id, link.course_id, activity_id)
            stats.stale_columns[key] = wanted


def _reset(row: LedgerRow, now: datetime) -> LedgerRow | None:
    """A rejected or retrying row, tried again at once."""
    if row.state not in (DeliveryState.REJECTED, DeliveryState.RETRYING):
        return None
    if row.desired_hash is None:
        return None
    return reopened(row, now)


def _outcome(
    destination: Destination,
    caps: Capabilities | Reason,
    course: Course,
    activity: Activity,
    policy: ResolvedPolicy | Reason,
    enrollment: Enrollment | None,
    attempts: Sequence[Attempt],
    due_override: datetime | None,
    person_link: PersonLink | None,
    person: Person | None,
    now: datetime,
) -> DesiredResult | NoResult:
    if isinstance(caps, Reason):
        return NoResult(caps)
    if isinstance(policy, Reason):
        return NoResult(policy)
    column = column_for(activity, policy, caps)
    if isinstance(column, NoResult):
        return column
    outcome = desired_result(
        PolicyInput(
            policy=policy,
            course=course,
            activity=activity,
            enrollment=enrollment,
            attempts=attempts,
            due_override=due_override,
            capabilities=caps,
            now=now,
        )
    )
    if isinstance(outcome, DesiredResult) and person_link is None:
        return NoResult(
            no_person_link(
                destination,
                course_id=course.id,
                person_id=person.id if person is not None else None,
                sis_id=person.sis_id if person is not None else None,
            )
        )
    if isinstance(outcome, DesiredResult) and column.renamed:
        outcome = replace(outcome, basis=f"{outcome.basis} {column.renamed}")
    return outcome
