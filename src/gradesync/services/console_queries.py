"""Read models for the web console: a course page, a grade grid, a learner/activity evidence
file and the delivery dashboard's numbers. Reads only; every query is per tenant.

The grid speaks the instructor's words: a ledger row DELIVERED is "sent", a rejection that
diagnostics attributed to an instructor's edit in the gradebook is "overridden", and a grade
gradesync no longer sends but sent before is "kept in the LMS" (the LMS still holds it:
gradesync never deletes a grade), not "not sent".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gradesync.domain import course_connection, remedies
from gradesync.domain.capabilities import Capabilities
from gradesync.domain.columns import column_written, no_column
from gradesync.domain.destination_names import NamedThen, named_then
from gradesync.domain.diagnosis import DestinationQueue, pending_said
from gradesync.domain.errors import NotFound
from gradesync.domain.grade_words import desired_text
from gradesync.domain.held import Held, held_score, line_item_maximum
from gradesync.domain.model import (
    SIS_KINDS,
    Activity,
    Attempt,
    Course,
    DeletedDestination,
    DeliveryState,
    Destination,
    DestinationKind,
    Enrollment,
    ItemLink,
    LedgerKey,
    LedgerRow,
    Person,
    Role,
    SyncRun,
)
from gradesync.domain.natural_order import natural_key
from gradesync.domain.policy import activity_policy
from gradesync.services.destination import CapabilitiesLookup
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory
from gradesync.services.queue_facts import destination_queue
from gradesync.services.rate_limit_holds import RateLimitHold, rate_limit_hold

# Reason codes diagnostics use for a grade someone typed into the gradebook (kept there).
OVERRIDE_CODES = frozenset({"overridden", "instructor_override", "lms_override", "kept_lms_edit"})

# The statuses a grid cell can show, in the order legends list them.
STATUSES = ("sent", "pending", "retrying", "rejected", "overridden", "kept", "not_sent", "none")
STATUS_LABELS = {
    "sent": "Sent",
    "pending": "Pending",
    "retrying": "Retrying",
    "rejected": "Rejected",
    "overridden": "Overridden",
    "kept": "Kept in LMS",
    "not_sent": "Not sent",
    "none": "Not worked out yet",
}
# A SIS keeps the grades gradesync stopped sending as an LMS does: said of the SIS.
SIS_STATUS_LABELS = {**STATUS_LABELS, "kept": "Kept in SIS"}


def status_labels(kind: DestinationKind | str | None) -> dict[str, str]:
    """The statuses' words at a destination of `kind` (a grade kept is "Kept in SIS" at a
    SIS, "Kept in LMS" at an LMS)."""
    return SIS_STATUS_LABELS if kind in SIS_KINDS else STATUS_LABELS


def _status(state: DeliveryState, sent_before: bool, overridden: bool) -> str:
    if overridden:
        return "overridden"
    return {
        DeliveryState.DELIVERED: "sent",
        DeliveryState.PENDING: "pending",
        DeliveryState.RETRYING: "retrying",
        DeliveryState.REJECTED: "rejected",
        # skipped now, but a grade sent earlier is still in the LMS
        DeliveryState.SKIPPED: "kept" if sent_before else "not_sent",
    }[state]


def cell_status(row: LedgerRow | None) -> str:
    if row is None:
        return "none"
    return _status(row.state, row.delivered_hash is not None, row.reason_code in OVERRIDE_CODES)


def status_counts(
    uow: UnitOfWork, tenant_id: str, destination: Destination
) -> list[tuple[str, int]]:
    """A destination's grades counted in the grid's words ("Sent 10, Not sent 11"), in the
    order legends list them: the same words the course page uses for it (`status_labels`),
    not the ledger's states."""
    counts: dict[str, int] = {}
    for state, sent_before, overridden, n in uow.ledger.counts_by_outcome(
        tenant_id, destination.id, sorted(OVERRIDE_CODES)
    ):
        status = _status(DeliveryState(state), sent_before, overridden)
        counts[status] = counts.get(status, 0) + n
    labels = status_labels(destination.kind)
    return [(labels[s], counts[s]) for s in STATUSES if counts.get(s)]


def lms_holds(row: LedgerRow | None) -> str:
    """What the LMS holds of this grade, for the grid: 'ours' (the grade gradesync sent,
    `delivered_at`), 'edit' (a grade typed into the LMS) or 'nothing' (nothing from
    gradesync)."""
    if row is None or row.delivered_hash is None:
        return "nothing"
    if row.reason_code in OVERRIDE_CODES:
        return "edit"
    return "ours"


def not_worked_out_text(destination: Destination) -> str:
    return (
        f"gradesync has not worked out this grade for {destination.name} yet, so nothing is "
        "sent. Sync now works it out."
    )


def unrecorded(destination: Destination, not_connected: str | None) -> tuple[str, str]:
    """Status and reason of a grade with no ledger row at the destination: nothing is
    computed for a gradebook the course is not connected to (`not_connected`, its reason:
    "Not sent"); else the pair is not worked out yet."""
    if not_connected:
        return "not_sent", not_connected
    return "none", not_worked_out_text(destination)


def score_text(row: LedgerRow | None, kind: DestinationKind | str) -> str | None:
    """'8 / 10' from the desired result at a destination of `kind` ('0 / 10 missing' for a
    past-due zero; for an excused learner 'excused', with what an LMS, which has no excused
    state, gets instead: `grade_words.desired_text`), or None when there is nothing to
    send."""
    return desired_text(row.desired if row is not None else None, kind)


def _held(
    line: dict[str, Any] | None,
    destination: Destination,
    activity: Activity,
    column: ItemLink | None,
) -> Held | None:
    """What the gradebook holds, on the activity's scale (`Held.on_scale`; a SIS's on its
    line item's maximum, kept on the activity's link `column`)."""
    held = held_score(line) if line is not None else None
    if held is None:
        return None
    return held.on_scale(destination.kind, activity.points_possible, line_item_maximum(column))


def why_text(
    row: LedgerRow | None,
    *,
    instructor: bool = False,
    course_id: str | None = None,
    group: remedies.Group = remedies.Unsaid.GROUP,
) -> str | None:
    """One paragraph a person can act on: our reason, then the destination's own words. A
    command in the remedy reads, to an `instructor` (a console viewer who is not an admin),
    as who can do it, to an admin as the console's action where one does it
    (`remedies.in_console`, about the row's destination, `course_id` and the activity
    `group` a missing category names, `remedies.reason_group`)."""
    if row is None:
        return None
    parts: list[str] = []
    reason = _reason_words(row, instructor, course_id, group)
    if reason:
        parts.append(reason)
    if row.remote_status is not None or row.remote_message:
        said = row.remote_message or ""
        status = f"HTTP {row.remote_status}" if row.remote_status is not None else ""
        parts.append(f"The destination answered {status}{': ' if status and said else ''}{said}")
    if row.state is DeliveryState.RETRYING and row.next_attempt_at is not None:
        # a destination's "slow down" (429, Retry-After) is not this grade's failure: it
        # counts no try (`domain.ledger.after_delivery`), so "tried 0 time(s)" said nothing
        tried = (
            f"tried {row.tries} time(s)"
            if row.tries
            else "no failed try counted: the destination asked gradesync to wait"
        )
        parts.append(
            f"Next try at {row.next_attempt_at.strftime('%Y-%m-%d %H:%M:%S UTC')} ({tried})."
        )
    return " ".join(parts) or None


def _reason_words(
    row: LedgerRow | None,
    instructor: bool,
    course_id: str | None = None,
    group: remedies.Group = remedies.Unsaid.GROUP,
) -> str | None:
    """The row's reason as a console viewer acts on it (`why_text`)."""
    if row is None or not row.reason_text:
        return None
    return remedies.in_console(
        row.reason_code,
        row.reason_text,
        instructor=instructor,
        destination_id=row.key.destination_id,
        course_id=course_id,
        person_id=row.key.person_id,
        group=group,
    )


def waiting_text(
    destination: Destination,
    row: LedgerRow,
    now: datetime,
    queue: DestinationQueue,
    *,
    instructor: bool = False,
) -> str:
    """A grade waiting to be sent, with nothing said of it: what holds it and when it goes
    (the diagnosis's words, `pending_said`, from what moves at its destination: `queue`), an
    `instructor`'s remedy without a command, an admin's with the console's action."""
    said, remedy, code = pending_said(destination, row, "This grade", now, queue)
    text = f"{said}{remedies.SEPARATOR}{remedy}"
    return remedies.in_console(code, text, instructor=instructor, destination_id=destination.id)


@dataclass(frozen=True, slots=True)
class GridCell:
    activity_id: str
    status: str
    score: str | None
    why: str | None
    row: LedgerRow | None
    holds: str = "nothing"  # what the LMS holds: ours | edit | nothing (see `lms_holds`)
    last_try: datetime | None = None  # when gradesync last sent it, whatever the answer
    held: Held | None = None  # a kept grade's score as the LMS holds it, when known


@dataclass(frozen=True, slots=True)
class GridRow:
    person: Person
    cells: list[GridCell]


@dataclass(frozen=True, slots=True)
class ActivityRow:
    activity: Activity
    column: ItemLink | None  # the activity's link at the selected destination
    counts: dict[str, int]  # status -> learners
    written: bool = False  # the destination holds its column (`columns.column_written`)
    # why no column is made for it there (a practice item, under the minimum points, ...)
    no_column: str | None = None


@dataclass(frozen=True, slots=True)
class CoursePage:
    course: Course
    destinations: list[Destination]
    destination: Destination | None  # the one the grid shows
    activities: list[ActivityRow]
    grid: list[GridRow]
    counts: dict[str, int]  # status -> cells, for the selected destination
    latest_run: SyncRun | None
    active_run: SyncRun | None
    recent_runs: list[SyncRun]
    # why the course sends nothing to the destination shown (not connected to it), or None
    not_connected: str | None = None


def course_destinations(uow: UnitOfWork, tenant_id: str, course_id: str) -> list[Destination]:
    """Destinations this course's grades go to: those linked to the course or holding ledger
    rows for it; before any sync, every destination of the tenant."""
    every = uow.destinations.all(tenant_id)
    linked = {
        link.destination_id for link in uow.links.destinations_for_course(tenant_id, course_id)
    }
    for d in every:
        if d.id not in linked and uow.ledger.counts_by_state(
            tenant_id, destination_id=d.id, course_id=course_id
        ):
            linked.add(d.id)
    chosen = [d for d in every if d.id in linked]
    return sorted(chosen or every, key=lambda d: d.name.lower())


def _learners(uow: UnitOfWork, tenant_id: str, course_id: str) -> list[Person]:
    ids = [
        e.person_id
        for e in uow.enrollments.for_course(tenant_id, course_id)
        if e.role is Role.LEARNER
    ]
    people = uow.people.get_many(tenant_id, ids)
    found = [people.get(pid) or Person(tenant_id, pid) for pid in ids]
    return sorted(found, key=lambda p: (natural_key(p.name or p.id), p.id))


RECENT_RUNS = 10  # runs the course page lists under "Recent syncs"


def _course_runs(
    uow: UnitOfWork, tenant_id: str, course_id: str, dests: Sequence[Destination]
) -> list[SyncRun]:
    # a run of every course included this one too: its Last sync, not an older course run
    return uow.runs.covering_course(tenant_id, course_id, [d.id for d in dests], limit=RECENT_RUNS)


def run_includes_a_course(
    uow_factory: UnitOfWorkFactory, tenant_id: str, run: SyncRun, course_ids: Sequence[str]
) -> bool:
    """Whether `run` is among the runs a page of one of `course_ids` lists (`recent_runs`):
    scoped to it, or to every course at every destination or at one of the course's."""
    scope = run.scope
    if scope.course_id is not None:
        return scope.course_id in course_ids
    if scope.destination_id is None:
        return bool(course_ids)
    with uow_factory() as uow:
        return any(
            scope.destination_id in {d.id for d in course_destinations(uow, tenant_id, c)}
            for c in course_ids
        )


def recent_runs(uow_factory: UnitOfWorkFactory, tenant_id: str, course_id: str) -> list[SyncRun]:
    """The latest runs that included the course (scoped to it, or to every course of its
    destinations), newest first, as the course page lists them."""
    with uow_factory() as uow:
        dests = course_destinations(uow, tenant_id, course_id)
        return _course_runs(uow, tenant_id, course_id, dests)


def course_page(
    uow_factory: UnitOfWorkFactory,
    tenant_id: str,
    course_id: str,
    *,
    capabilities: CapabilitiesLookup,
    destination_id: str | None = None,
    instructor: bool = False,
    now: datetime | None = None,
) -> CoursePage:
    """Everything the course page shows, its reasons in words for an `instructor` when the
    viewer is one (`why_text`); a grade waiting to be sent says what holds it at `now`
    (`waiting_text`). Why no column is made for an activity is worked out over what the
    destination takes as the engine's client for it says (`capabilities`), as computing
    does. Raises NotFound for an unknown course."""
    now = now or datetime.now(UTC)
    with uow_factory() as uow:
        course = uow.courses.get(tenant_id, course_id)
        if course is None:
            raise NotFound("course", course_id)
        dests = course_destinations(uow, tenant_id, course_id)
        dest = next((d for d in dests if d.id == destination_id), dests[0] if dests else None)
        activities = sorted(
            uow.activities.for_course(tenant_id, course_id),
            key=lambda a: (a.due_at is None, a.due_at or datetime.min, a.title.lower(), a.id),
        )
        learners = _learners(uow, tenant_id, course_id)
        ledger: dict[tuple[str, str], LedgerRow] = {}
        columns: dict[str, ItemLink] = {}
        tries: dict[tuple[str, str], datetime] = {}
        holding: dict[tuple[str, str], dict[str, Any]] = {}
        not_connected: str | None = None
        queue = DestinationQueue()
        if dest is not None:
            if uow.links.course(tenant_id, dest.id, course_id) is None:
                missing = course_connection.not_connected(course, dest)
                not_connected = missing.in_console(instructor=instructor)
            ledger = uow.ledger.get_many(tenant_id, dest.id, course_id)
            columns = uow.links.items(tenant_id, dest.id, [a.id for a in activities])
            tries = uow.deliveries.last_tries(tenant_id, dest.id, [a.id for a in activities])
            kept = [k for k, r in ledger.items() if cell_status(r) == "kept"]
            holding = uow.deliveries.last_holding(tenant_id, dest.id, kept)
            if any(r.state is DeliveryState.PENDING for r in ledger.values()):
                queue = destination_queue(uow, tenant_id, dest.id, course_id, now)
        runs = _course_runs(uow, tenant_id, course_id, dests)
        tenant = uow.tenants.get(tenant_id)
    layers = [x.policy for x in (tenant, course) if x is not None]
    active = next((r for r in runs if r.finished_at is None), None)
    grid: list[GridRow] = []
    per_activity: dict[str, dict[str, int]] = {a.id: {} for a in activities}
    totals: dict[str, int] = {}
    for person in learners:
        cells = []
        for a in activities:
            row = ledger.get((a.id, person.id))
            status = cell_status(row)
            group = remedies.reason_group(
                row.reason_code if row else None, a.category, dest.config if dest else {}
            )
            why = why_text(row, instructor=instructor, course_id=course_id, group=group)
            if row is None and dest is not None:
                status, why = unrecorded(dest, not_connected)
            elif why is None and row is not None and dest is not None and status == "pending":
                why = waiting_text(dest, row, now, queue, instructor=instructor)
            cells.append(
                GridCell(
                    a.id,
                    status,
                    score_text(row, dest.kind) if dest is not None else None,
                    why,
                    row,
                    lms_holds(row),
                    tries.get((a.id, person.id)),
                    _held(holding.get((a.id, person.id)), dest, a, columns.get(a.id))
                    if dest
                    else None,
                )
            )
            per_activity[a.id][status] = per_activity[a.id].get(status, 0) + 1
            totals[status] = totals.get(status, 0) + 1
        grid.append(GridRow(person, cells))
    caps = capabilities(dest) if dest is not None else Capabilities()
    rows = []
    for a in activities:
        never = no_column(a, activity_policy(layers, a), caps)
        link = columns.get(a.id)
        written = dest is not None and column_written(dest.kind, link)
        no_col = never.text if never is not None and not written else None
        rows.append(ActivityRow(a, link, per_activity[a.id], written, no_col))
    return CoursePage(
        course=course,
        destinations=dests,
        destination=dest,
        activities=rows,
        grid=grid,
        counts=totals,
        latest_run=runs[0] if runs else None,
        active_run=active,
        recent_runs=runs,
        not_connected=not_connected,
    )


# --- diagnosis evidence ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DestinationEvidence:
    destination: Destination
    row: LedgerRow | None
    status: str
    why: str | None
    column: ItemLink | None
    deliveries: list[dict[str, Any]]
    # the row's reason as the viewer acts on it (`remedies.in_console`)
    reason: str | None = None
    # the status in the destination's words (`status_labels`: "Kept in SIS" at a SIS)
    label: str = ""
    # the grade wanted there, in the grid's words (`score_text`: "excused (the LMS gets no
    # score: ...)"), None when nothing is to be sent
    score: str | None = None


@dataclass(frozen=True, slots=True)
class PairEvidence:
    """What the records say about one learner and one activity, for the diagnosis page."""

    course: Course
    activity: Activity
    person: Person
    enrollment: Enrollment | None
    attempts: list[Attempt]
    destinations: list[DestinationEvidence] = field(default_factory=list)


def pair_evidence(
    uow_factory: UnitOfWorkFactory,
    tenant_id: str,
    activity_id: str,
    person_id: str,
    *,
    instructor: bool = False,
) -> PairEvidence:
    """Ledger rows, delivery log and attempts of one (activity, learner), its reasons in
    words for an `instructor` when the viewer is one. Raises NotFound."""
    with uow_factory() as uow:
        activity = uow.activities.get(tenant_id, activity_id)
        if activity is None:
            raise NotFound("activity", activity_id)
        course = uow.courses.get(tenant_id, activity.course_id)
        if course is None:
            raise NotFound("course", activity.course_id)
        person = uow.people.get(tenant_id, person_id)
        if person is None:
            raise NotFound("person", person_id)
        enrollment = uow.enrollments.get(tenant_id, course.id, person_id)
        attempts = uow.attempts.for_key(tenant_id, activity_id, person_id)
        out = []
        for dest in course_destinations(uow, tenant_id, course.id):
            key = LedgerKey(tenant_id, dest.id, activity_id, person_id)
            row = uow.ledger.get(key)
            status = cell_status(row)
            group = remedies.reason_group(
                row.reason_code if row else None, activity.category, dest.config
            )
            why = why_text(row, instructor=instructor, course_id=course.id, group=group)
            reason = _reason_words(row, instructor, course.id, group)
            if row is None:
                connected = uow.links.course(tenant_id, dest.id, course.id) is not None
                missing = course_connection.not_connected(course, dest)
                status, why = unrecorded(
                    dest,
                    None if connected else missing.in_console(instructor=instructor),
                )
            out.append(
                DestinationEvidence(
                    destination=dest,
                    row=row,
                    status=status,
                    why=why,
                    column=uow.links.item(tenant_id, dest.id, activity_id),
                    deliveries=uow.deliveries.for_key(key, limit=20),
                    reason=reason,
                    label=status_labels(dest.kind)[status],
                    score=score_text(row, dest.kind),
                )
            )
    return PairEvidence(course, activity, person, enrollment, attempts, out)


# --- the delivery dashboard ------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True, slots=True)
class TimeBucket:
    start: datetime
    sends: int
    delivered: int
    rejected: int
    retrying: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True, slots=True)
class DestinationRates:
    destination_id: str
    name: str  # the name it had when its grades were sent (`destination_names.named_then`)
    sends: int
    delivered: int
    rejected: int
    retrying: int
    deleted: bool = False  # deleted since those sends: the log outlives it

    @property
    def shown(self) -> str:
        return NamedThen(self.name, self.deleted).shown

    @property
    def success_rate(self) -> float:
        return self.delivered / self.sends if self.sends else 0.0

    @property
    def rejection_rate(self) -> float:
        return self.rejected / self.sends if self.sends else 0.0


@dataclass(frozen=True, slots=True)
class Dashboard:
    since: datetime
    until: datetime
    bucket: timedelta
    buckets: list[TimeBucket]
    destinations: list[DestinationRates]
    sends: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


def summarise_deliveries(
    deliveries: Iterable[dict[str, Any]],
    names: dict[str, str],
    since: datetime,
    until: datetime,
    buckets: int,
    deletions: Sequence[DeletedDestination] = (),
) -> Dashboard:
    """Pure: fold delivery log rows (sent_at, outcome, latency_ms, destination_id) into
    `buckets` equal time slices between `since` and `until` and per-destination rates, named
    by `names` (id -> name now) and, for a destination deleted since a send, by the name its
    `deletions` record: it is listed after the others, apart from one made again under its
    id (`destination_names.named_then`)."""
    gone = {d.id for d in deletions}
    width = (until - since) / buckets
    slots: list[dict[str, Any]] = [
        {"sends": 0, "delivered": 0, "rejected": 0, "retrying": 0, "lat": []}
        for _ in range(buckets)
    ]
    per_dest: dict[tuple[str, str, bool], dict[str, int]] = {}
    every_latency: list[float] = []
    for d in deliveries:
        at: datetime = d["sent_at"]
        if at < since or at > until:
            continue
        i = min(buckets - 1, int((at - since) / width))
        slot = slots[i]
        outcome = str(d["outcome"])
        slot["sends"] += 1
        if outcome in ("delivered", "rejected", "retrying"):
            slot[outcome] += 1
        if d.get("latency_ms") is not None:
            slot["lat"].append(float(d["latency_ms"]))
            every_latency.append(float(d["latency_ms"]))
        did = str(d["destination_id"])
        if did in names and did not in gone:
            named = NamedThen(names[did], False)
        else:
            named = named_then(did, at, names, deletions)
        counts = per_dest.setdefault(
            (did, named.name, named.deleted),
            {"sends": 0, "delivered": 0, "rejected": 0, "retrying": 0},
        )
        counts["sends"] += 1
        if outcome in counts:
            counts[outcome] += 1
    out = []
    for i, s in enumerate(slots):
        lat = sorted(s["lat"])
        out.append(
            TimeBucket(
                start=since + width * i,
                sends=s["sends"],
                delivered=s["delivered"],
                rejected=s["rejected"],
                retrying=s["retrying"],
                p50_ms=percentile(lat, 50),
                p95_ms=percentile(lat, 95),
                p99_ms=percentile(lat, 99),
            )
        )
    rates = sorted(
        (
            DestinationRates(
                did,
                name,
                c["sends"],
                c["delivered"],
                c["rejected"],
                c["retrying"],
                deleted=deleted,
            )
            for (did, name, deleted), c in per_dest.items()
        ),
        key=lambda r: (r.deleted, r.name.lower(), r.destination_id),
    )
    every_latency.sort()
    return Dashboard(
        since=since,
        until=until,
        bucket=width,
        buckets=out,
        destinations=rates,
        sends=sum(s.sends for s in out),
        p50_ms=percentile(every_latency, 50),
        p95_ms=percentile(every_latency, 95),
        p99_ms=percentile(every_latency, 99),
    )


def dashboard(
    uow_factory: UnitOfWorkFactory,
    tenant_id: str,
    now: datetime,
    *,
    window: timedelta = timedelta(hours=24),
    buckets: int = 24,
) -> Dashboard:
    with uow_factory() as uow:
        since = now - window
        rows = uow.deliveries.since(tenant_id, since)
        names = {d.id: d.name for d in uow.destinations.all(tenant_id)}
        sent_to = {str(r["destination_id"]) for r in rows}
        deletions = uow.destinations.deleted(tenant_id, sent_to)
    return summarise_deliveries(rows, names, since, now, buckets, deletions)


@dataclass(frozen=True, slots=True)
class DestinationBacklog:
    destination_id: str
    name: str
    waiting: int  # pending or retrying
    oldest_since: datetime | None  # when the result waiting longest last changed
    paused: bool
    pause_reason: str | None
    paused_until: datetime | None  # a timed pause (None: until resumed, or not paused)
    # its rate limit alone makes the grades waiting take a minute or more (not paused)
    rate_limit: RateLimitHold | None = None


@dataclass(frozen=True, slots=True)
class OldestWaiting:
    destination: str
    course: str
    activity: str
    learner: str
    course_id: str
    since: datetime | None
    state: str  # pending or retrying
    why: str | None  # a retry's reason


@dataclass(frozen=True, slots=True)
class Backlog:
    destinations: list[DestinationBacklog]  # every destination waiting or paused
    waiting: int
    oldest: OldestWaiting | None
    # grades marked to be worked out (a new attempt, a policy change, a resync) and not yet:
    # a worker that fails to compute leaves them here, where the ledger's counts cannot see
    to_compute: int = 0
    to_compute_since: datetime | None = None

    @property
    def paused(self) -> list[DestinationBacklog]:
        return [d for d in self.destinations if d.paused]

    @property
    def rate_limited(self) -> list[DestinationBacklog]:
        return [d for d in self.destinations if d.rate_limit is not None]


def backlog(uow_factory: UnitOfWorkFactory, tenant_id: str, now: datetime) -> Backlog:
    """What waits right now, per destination, with the destinations that are paused and why
    or held by their rate limit, and the grade that has waited longest."""
    with uow_factory() as uow:
        to_compute, to_compute_since = uow.dirty.waiting(tenant_id)
        waiting = {d: (n, since) for d, n, since in uow.ledger.waiting(tenant_id)}
        dests = {d.id: d for d in uow.destinations.all(tenant_id)}
        found = uow.ledger.oldest_waiting(tenant_id)
        oldest = None
        if found is not None:
            row, course_id = found
            k = row.key
            person = uow.people.get(tenant_id, k.person_id)
            activity = uow.activities.get(tenant_id, k.activity_id)
            course = uow.courses.get(tenant_id, course_id)
            d = dests.get(k.destination_id)
            oldest = OldestWaiting(
                # deleted between the reads (its ledger goes with it)
                destination=d.name if d else NamedThen(k.destination_id, True).shown,
                course=course.title if course else course_id,
                activity=activity.title if activity else k.activity_id,
                learner=(person.name or k.person_id) if person else k.person_id,
                course_id=course_id,
                since=row.updated_at,
                state=row.state.value,
                # the dashboard is an administrator's
                why=_reason_words(row, False, course_id)
                if row.state is DeliveryState.RETRYING
                else None,
            )
    lines = []
    for d in sorted(dests.values(), key=lambda d: d.name.lower()):
        timed = d.paused_until is not None and d.paused_until > now
        paused = not d.enabled or timed
        n, since = waiting.get(d.id, (0, None))
        if n or paused:
            lines.append(
                DestinationBacklog(
                    d.id,
                    d.name,
                    n,
                    since,
                    paused,
                    d.pause_reason if paused else None,
                    d.paused_until if timed else None,
                    None if paused else rate_limit_hold(d, n),
                )
            )
    return Backlog(lines, sum(n for n, _ in waiting.values()), oldest, to_compute, to_compute_since)
