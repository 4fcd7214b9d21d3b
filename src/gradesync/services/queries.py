"""Read models: what the API, CLI and console show. Reads only; every query is per tenant."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from gradesync.domain.capabilities import Capabilities
from gradesync.domain.course_connection import not_connected
from gradesync.domain.destination_names import labelled, named_then, shared_names
from gradesync.domain.diagnosis import destination_ready_check, rate_limit_check
from gradesync.domain.errors import FieldProblem, InvalidInput, NotFound
from gradesync.domain.grade_words import desired_text
from gradesync.domain.held import Held, held_score, line_item_maximum
from gradesync.domain.model import (
    SIS_KINDS,
    DeliveryState,
    Destination,
    LedgerKey,
    LedgerRow,
    Role,
    SyncRun,
)
from gradesync.domain.passback import PassbackRule
from gradesync.domain.reasons import Reason
from gradesync.domain.remedies import (
    SEPARATOR,
    Reader,
    for_reader,
    names_command,
    reason_group,
)
from gradesync.domain.run_history import shown_stages
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class GradeState:
    """One (destination, activity) cell of a learner's grade state."""

    destination_id: str
    activity_id: str
    state: str
    desired: dict[str, Any] | None
    in_sync: bool  # what was last delivered is what is desired
    delivered_at: datetime | None
    tries: int
    next_attempt_at: datetime | None
    reason_code: str | None
    reason_text: str | None
    remote_status: int | None
    remote_message: str | None
    updated_at: datetime | None
    # a grade no longer sent but sent before: the score the gradebook still holds, if known
    held: Held | None = None
    # the desired grade in the console grid's words ("8 / 10", "excused (the LMS gets no
    # score: it has no excused state)": `grade_words.desired_text`), None with no desired
    grade_text: str | None = None


@dataclass(frozen=True, slots=True)
class LearnerGrades:
    person_id: str
    name: str
    # destination id -> cells, ordered by activity id
    destinations: dict[str, list[GradeState]] = field(default_factory=dict)
    # why no destination is listed when the tenant has none (nothing is sent anywhere)
    note: str | None = None


NOT_SENT = "not_sent"  # a cell's state when nothing is computed for a gradebook
COURSE_NOT_CONNECTED = "course_not_connected"  # its reason (the diagnosis's course_connected)
NO_DESTINATION = (
    "The tenant has no destination (LMS platform or SIS connection), so no grade of this "
    "learner is sent anywhere. An administrator adds one (docs/api.md, Destinations)."
)


@dataclass(frozen=True, slots=True)
class RunDetail:
    run: SyncRun
    stages: list[dict[str, Any]]  # as people read them (`domain.run_history.shown_stages`)


# a grade waiting at a paused destination: the pause is why it is not sent (the row itself
# records no reason, it is merely pending)
DESTINATION_PAUSED = "destination_paused"


def _held_by_pause(d: Destination, now: datetime, reader: Reader) -> Reason:
    ready = destination_ready_check(d, Capabilities(), now)
    remedy = for_reader(ready.remedy_code, ready.remedy or "", reader, d.id)
    return Reason(DESTINATION_PAUSED, f"{ready.evidence}{SEPARATOR}{remedy}")


def _held_by_rate_limit(
    uow: UnitOfWork, tenant_id: str, d: Destination, reader: Reader
) -> Reason | None:
    """A grade waiting where the destination's rate limit alone makes the grades waiting
    take a minute or more: the limit is why it is not sent yet, said as the diagnosis's
    `rate_limit` check says it (None: no limit, or one that keeps up)."""
    if not d.config.get("rate_per_second"):
        return None  # no limit: nothing to count
    check = rate_limit_check(d, uow.ledger.waiting_at(tenant_id, d.id))
    if check is None or check.passed:
        return None
    remedy = for_reader(check.remedy_code, check.remedy or "", reader, d.id)
    return Reason(check.code, f"{check.evidence}{SEPARATOR}{remedy}")


def kept(row: LedgerRow) -> bool:
    """gradesync sends nothing for it now, but sent a grade the gradebook still holds (the
    console's *Kept in LMS*, *Kept in SIS* at a SIS)."""
    return row.state is DeliveryState.SKIPPED and row.delivered_hash is not None


def _cell(
    row: LedgerRow,
    held_by: Reason | None = None,
    holding: dict[str, Any] | None = None,
    scale: tuple[str, float | None, float | None] | None = None,
    read: Callable[[LedgerRow], str | None] = lambda row: row.reason_text,
) -> GradeState:
    """`scale`: the destination's kind, the activity's points and a SIS line item's maximum,
    to say a held score on the activity's scale (`Held.on_scale`); `read`: the row's reason
    as its reader reads it."""
    if held_by is not None and row.state is DeliveryState.PENDING and row.reason_code is None:
        # what holds its destination's grades (a pause, a rate limit); a row naming its own
        # reason (the send that paused the destination said why) keeps it
        row = replace(row, reason_code=held_by.code, reason_text=held_by.text)
    else:
        row = replace(row, reason_text=read(row))
    return GradeState(
        destination_id=row.key.destination_id,
        activity_id=row.key.activity_id,
        state=row.state.value,
        desired=row.desired,
        in_sync=row.desired_hash is not None and row.desired_hash == row.delivered_hash,
        delivered_at=row.delivered_at,
        tries=row.tries,
        next_attempt_at=row.next_attempt_at,
        reason_code=row.reason_code,
        reason_text=row.reason_text,
        remote_status=row.remote_status,
        remote_message=row.remote_message,
        updated_at=row.updated_at,
        held=_held(holding, scale) if holding is not None and kept(row) else None,
        grade_text=desired_text(row.desired, scale[0] if scale is not None else ""),
    )


def _held(
    line: dict[str, Any], scale: tuple[str, float | None, float | None] | None
) -> Held | None:
    held = held_score(line)
    return held.on_scale(*scale) if held is not None and scale is not None else held


def _existed(uow: UnitOfWork, tenant_id: str, destination_id: str) -> bool:
    """A destination deleted since, known by what outlives it: runs of its own, or its delivery
    log. Its runs are history a run history's filter names (none is an empty list, not an
    unknown destination); an id with neither is none the tenant ever sent to: a typo."""
    return bool(
        uow.runs.history(tenant_id, destination_id=destination_id, limit=1)
    ) or uow.deliveries.logged_to(tenant_id, destination_id)


# a filter -> (its rule, what it names, how the tenant's one is found)
_FILTERS: dict[str, tuple[str, str, Callable[[UnitOfWork, str, str], object]]] = {
    "course_id": ("unknown_course", "course", lambda uow, t, i: uow.courses.get(t, i)),
    "destination_id": (
        "unknown_destination",
        "destination",
        lambda uow, t, i: uow.destinations.get(t, i),
    ),
    "activity_id": ("unknown_activity", "activity", lambda uow, t, i: uow.activities.get(t, i)),
}
FILTERS = frozenset(_FILTERS)


def given(**filters: str | None) -> list[tuple[str, str]]:
    """The filters given (a None is no filter)."""
    return [(name, value) for name, value in filters.items() if value is not None]


def filter_problems(
    uow: UnitOfWork, tenant_id: str, filters: Iterable[tuple[str, str]], *, history: bool = False
) -> list[FieldProblem]:
    """Each filter (`course_id`, `destination_id`, `activity_id`: one of FILTERS) naming
    nothing of the tenant: answered, a typo would read as "nothing to report" (docs/api.md,
    "Query parameters"; the CLI's filters alike)."""
    problems: list[FieldProblem] = []
    for name, value in filters:
        rule, what, find = _FILTERS[name]
        if find(uow, tenant_id, value) is not None:
            continue
        # a run history still names a destination deleted since (only there)
        if not (history and name == "destination_id" and _existed(uow, tenant_id, value)):
            problems.append(FieldProblem(name, rule, f"No {what} {value!r}."))
    return problems


CATEGORY_MISSING = PassbackRule.CATEGORY_MISSING.value


def learner_grades(
    uow_factory: UnitOfWorkFactory,
    tenant_id: str,
    person_id: str,
    *,
    destination_id: str | None = None,
    course_id: str | None = None,
    now: datetime | None = None,
    reader: Reader,
) -> LearnerGrades:
    """A learner's grade state at each destination, from the ledger. Raises NotFound, and
    InvalidInput for a filter naming no destination or course (a typo would read as a
    learner with no grades there). A grade waiting at a destination paused at `now`, or
    held by its rate limit, says so, as the diagnosis does to an administrator reading over
    `reader`."""
    now = now or datetime.now(UTC)
    with uow_factory() as uow:
        person = uow.people.get(tenant_id, person_id)
        if person is None:
            raise NotFound("person", person_id)
        problems = filter_problems(
            uow, tenant_id, given(destination_id=destination_id, course_id=course_id)
        )
        if problems:
            raise InvalidInput(problems)
        rows = uow.ledger.for_person(tenant_id, person_id)
        if course_id is not None:
            acts = {a.id for a in uow.activities.for_course(tenant_id, course_id)}
            rows = [r for r in rows if r.key.activity_id in acts]
        dests = [
            d
            for d in uow.destinations.all(tenant_id)
            if destination_id is None or d.id == destination_id
        ]
        # what holds a destination's waiting grades: a pause, before any rate limit
        held_by = {d.id: _held_by_pause(d, now, reader) for d in dests if d.paused_at(now)}
        for d in dests:
            limited = None if d.id in held_by else _held_by_rate_limit(uow, tenant_id, d, reader)
            if limited is not None:
                held_by[d.id] = limited
        rows = [r for r in rows if destination_id is None or r.key.destination_id == destination_id]
        held_rows = [r for r in rows if kept(r)]
        holding = _holding(uow, tenant_id, held_rows)
        kinds = {d.id: d.kind.value for d in dests}
        points = {
            a.id: a.points_possible
            for a in uow.activities.get_many(
                tenant_id, sorted({r.key.activity_id for r in held_rows})
            ).values()
        }
        course_of = _courses_of_commands(uow, tenant_id, rows)
        line_items = _line_items(uow, tenant_id, held_rows, dests)

        missing = {r.key.activity_id for r in rows if r.reason_code == CATEGORY_MISSING}
        groups = {
            a.id: a.category for a in uow.activities.get_many(tenant_id, sorted(missing)).values()
        }
        configs = {d.id: d.config for d in dests}

        def read(r: LedgerRow) -> str | None:
            if not r.reason_text:
                return r.reason_text
            group = reason_group(
                r.reason_code,
                groups.get(r.key.activity_id),
                configs.get(r.key.destination_id, {}),
            )
            return for_reader(
                r.reason_code,
                r.reason_text,
                reader,
                r.key.destination_id,
                course_id=course_of.get(r.key.activity_id),
                activity_id=r.key.activity_id,
                person_id=r.key.person_id,
                group=group,
            )

        cells = [
            _cell(
                r,
                held_by.get(r.key.destination_id),
                holding.get(r.key),
                (
                    kinds.get(r.key.destination_id, ""),
                    points.get(r.key.activity_id),
                    line_items.get((r.key.destination_id, r.key.activity_id)),
                ),
                read,
            )
            for r in rows
        ]
        cells += _not_connected_cells(uow, tenant_id, person_id, course_id, dests, rows, reader)
        note = None if dests or destination_id is not None else NO_DESTINATION
    out: dict[str, list[GradeState]] = {}
    for c in sorted(cells, key=lambda c: (c.destination_id, c.activity_id)):
        out.setdefault(c.destination_id, []).append(c)
    return LearnerGrades(person_id=person.id, name=person.name, destinations=out, note=note)


def _courses_of_commands(
    uow: UnitOfWork, tenant_id: str, rows: Sequence[LedgerRow]
) -> dict[str, str]:
    """The course of each activity whose row's reason names a command (its reader's words
    for it may name the course)."""
    ids = sorted({r.key.activity_id for r in rows if names_command(r.reason_text or "")})
    return (
        {a.id: a.course_id for a in uow.activities.get_many(tenant_id, ids).values()} if ids else {}
    )


def _holding(
    uow: UnitOfWork, tenant_id: str, rows: Sequence[LedgerRow]
) -> dict[LedgerKey, dict[str, Any]]:
    """The delivery log line saying what the gradebook holds, per kept row's key."""
    by_destination: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        by_destination.setdefault(r.key.destination_id, []).append(
            (r.key.activity_id, r.key.person_id)
        )
    out: dict[LedgerKey, dict[str, Any]] = {}
    for dest, keys in by_destination.items():
        for (aid, pid), line in uow.deliveries.last_holding(tenant_id, dest, keys).items():
            out[LedgerKey(tenant_id, dest, aid, pid)] = line
    return out


def _line_items(
    uow: UnitOfWork, tenant_id: str, rows: Sequence[LedgerRow], dests: Sequence[Destination]
) -> dict[tuple[str, str], float | None]:
    """(destination, activity) -> the maximum its SIS line item was last written with, for
    the kept rows at a SIS (a SIS's held score reads on it)."""
    sis = {d.id for d in dests if d.kind in SIS_KINDS}
    by_destination: dict[str, set[str]] = {}
    for r in rows:
        if r.key.destination_id in sis:
            by_destination.setdefault(r.key.destination_id, set()).add(r.key.activity_id)
    return {
        (dest, aid): line_item_maximum(link)
        for dest, ids in by_destination.items()
        for aid, link in uow.links.items(tenant_id, dest, ids).items()
    }


def _not_connected_cells(
    uow: UnitOfWork,
    tenant_id: str,
    person_id: str,
    course_id: str | None,
    dests: Sequence[Destination],
    rows: Sequence[LedgerRow],
    reader: Reader,
) -> list[GradeState]:
    """A `not_sent` cell for each activity of the learner's courses with no ledger row at a
    destination the course is not connected to: nothing is computed for that gradebook, as
    the console's course grid says (Not sent, with the same reason, as `reader` reads it)."""
    have = {(r.key.destination_id, r.key.activity_id) for r in rows}
    out: list[GradeState] = []
    for e in uow.enrollments.for_person(tenant_id, person_id):
        if e.role is not Role.LEARNER or course_id not in (None, e.course_id):
            continue
        course = uow.courses.get(tenant_id, e.course_id)
        if course is None:
            continue
        activities = uow.activities.for_course(tenant_id, course.id)
        for d in dests:
            if uow.links.course(tenant_id, d.id, course.id) is not None:
                continue
            why = not_connected(course, d).read_over(reader)
            out += [
                GradeState(
                    destination_id=d.id,
                    activity_id=a.id,
                    state=NOT_SENT,
                    desired=None,
                    in_sync=False,
                    delivered_at=None,
                    tries=0,
                    next_attempt_at=None,
                    reason_code=COURSE_NOT_CONNECTED,
                    reason_text=why,
                    remote_status=None,
                    remote_message=None,
                    updated_at=None,
                )
                for a in activities
                if (d.id, a.id) not in have
            ]
    return out


def runs_with_stages(
    uow_factory: UnitOfWorkFactory,
    tenant_id: str,
    *,
    course_id: str | None = None,
    destination_id: str | None = None,
    trigger: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
) -> list[RunDetail]:
    """A tenant's runs, newest first, each with its stage history: the page's stages in one
    statement, not one per run. `until` (exclusive) must be later than `since`, as for a
    schedule's history: otherwise nothing could match, and an empty list would hide the slip."""
    if since is not None and until is not None and until <= since:
        raise InvalidInput.one("until", "after_since", "until must be later than since")
    with uow_factory() as uow:
        # a course or destination of none of the tenant's: the same slip as above
        problems = filter_problems(
            uow,
            tenant_id,
            given(course_id=course_id, destination_id=destination_id),
            history=True,
        )
        if problems:
            raise InvalidInput(problems)
        runs = uow.runs.history(
            tenant_id,
            course_id=course_id,
            destination_id=destination_id,
            trigger=trigger,
            since=since,
            until=until,
            limit=limit,
        )
        stages = uow.runs.stages_many([r.id for r in runs])
    return [RunDetail(r, shown_stages(stages.get(r.id, []))) for r in runs]


def run_detail(uow_factory: UnitOfWorkFactory, tenant_id: str, run_id: str) -> RunDetail:
    """A run of this tenant with its stage history. Another tenant's run is NotFound too."""
    with uow_factory() as uow:
        run = uow.runs.get(run_id, tenant_id)
        if run is None:
            raise NotFound("run", run_id)
        return RunDetail(run, shown_stages(uow.runs.stages(run_id)))


def destination_summary(
    uow_factory: UnitOfWorkFactory, tenant_id: str, destination_id: str
) -> tuple[Destination, dict[str, int]]:
    """A destination (secrets included: callers must not show them) and its ledger counts."""
    with uow_factory() as uow:
        dest = uow.destinations.get(tenant_id, destination_id)
        if dest is None:
            raise NotFound("destination", destination_id)
        return dest, uow.ledger.counts_by_state(tenant_id, destination_id=destination_id)


@dataclass(frozen=True, slots=True)
class RunNames:
    """What people call the things runs refer to: course titles, each run's destination
    (`destination_names.NamedThen.shown`: a deleted one by the name it had, marked deleted),
    and for scheduled runs their schedule in words."""

    courses: dict[str, str]
    destinations: dict[str, str]  # run id -> "Canvas", "Moodle (deleted)"; none: every one
    schedules: dict[str, str]  # run id -> "weekly mon,wed 07:00 (Europe/Paris)"
    # as the command line names them (`destination_names.labelled`): run id -> "Canvas",
    # "Canvas (canvas-2)" (a name two destinations have), "Moodle (moodle, deleted)"
    labels: dict[str, str] = field(default_factory=dict)
    # run id -> each destination deleted while it ran (its `destinations_deleted`) -> "Moodle
    # (moodle)", by the name it had
    deleted: dict[str, dict[str, str]] = field(default_factory=dict)


def deleted_names(
    uow_factory: UnitOfWorkFactory, tenant_id: str, runs: Sequence[SyncRun]
) -> dict[str, dict[str, str]]:
    """`RunNames.deleted` alone, for pages that name nothing else of a run; no read at all
    when no run had a destination deleted under it (nearly always)."""
    if not any(r.counts.get("destinations_deleted") for r in runs):
        return {}
    return run_names(uow_factory, tenant_id, runs).deleted


def run_names(uow_factory: UnitOfWorkFactory, tenant_id: str, runs: Sequence[SyncRun]) -> RunNames:
    run_ids = [r.id for r in runs]
    named_ids = {r.scope.destination_id for r in runs if r.scope.destination_id is not None}
    gone_ids = {d for r in runs for d in r.counts.get("destinations_deleted", {})}
    with uow_factory() as uow:
        courses = {c.id: c.title for c in uow.courses.all(tenant_id)}
        current = {d.id: d.name for d in uow.destinations.all(tenant_id)}
        deletions = uow.destinations.deleted(tenant_id, named_ids | gone_ids)
        schedules = {s.id: s for s in uow.schedules.all(tenant_id)}
        of_run = uow.runs.schedules_of(run_ids)
    shared = shared_names(current.values())
    destinations, labels, deleted = {}, {}, {}
    for r in runs:
        if (asked := r.scope.destination_id) is not None:
            then = named_then(asked, r.created_at, current, deletions, kept=r.destination_name)
            destinations[r.id], labels[r.id] = then.shown, labelled(asked, then, shared)
        if gone := r.counts.get("destinations_deleted"):
            # deleted after the run started, by the name it had (the run kept its own's)
            start = r.started_at or r.created_at
            deleted[r.id] = {
                d: labelled(
                    d,
                    named_then(
                        d,
                        start,
                        current,
                        deletions,
                        kept=r.destination_name if d == asked else None,
                    ),
                    shared,
                    marked=False,
                )
                for d in gone
            }
    named = {}
    for run_id, schedule_id in of_run.items():
        s = schedules.get(schedule_id)
        named[run_id] = (
            f"{s.kind.value} {s.spec} ({s.time_zone})" if s else f"{schedule_id} (deleted)"
        )
    return RunNames(courses, destinations, named, labels, deleted)
