"""Instructor overrides and repair resyncs.

- `record_overrides`: verify calls it with what a column holds in the LMS; grades that differ
  from what gradesync last delivered are recorded on the ledger (reason `overridden`) and in
  the delivery log. Under "gradesync wins" they become pending again and are resent with a
  timestamp later than the LMS's edit. Grades held as sent on a column whose points were
  changed in the LMS are resent after the column is written back (`column_rescaled`), once:
  a column the LMS still reads on its own points after that is left so (`points_kept`).
- `list_overrides`: a course's conflicts, for the console, the API and `gradesync doctor`.
- `repair`: a grade typed into the LMS blocks later resyncs
  (a resync sends nothing for an unchanged grade, and an older timestamp is refused). A
  repair marks the chosen results pending even though unchanged, with a score timestamp after
  both the last one gradesync sent and the one the LMS holds, and records the request in each
  result's history. Whole activities go through a `repair` run; chosen learners are
  delivered by the worker at once (a run's scope cannot name learners).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from gradesync.domain.columns import RESCALE_KEY, check_mark, marked_to_check
from gradesync.domain.errors import InvalidInput, NotFound
from gradesync.domain.held import logs_scale
from gradesync.domain.ledger import desired_from_json, reopened
from gradesync.domain.model import (
    Course,
    CourseLink,
    Destination,
    ItemLink,
    LedgerKey,
    LedgerRow,
    RunScope,
    SyncRun,
    Trigger,
)
from gradesync.domain.overrides import (
    COLUMN_RESCALED,
    OVERRIDDEN,
    OVERRIDE_SEEN,
    POINTS_KEPT,
    LastRescale,
    Override,
    RemoteResult,
    Rescaled,
    apply_kept,
    apply_override,
    cleared,
    detect_overrides,
    detect_rescaled,
    keeps_points,
    kept_text,
    later_timestamp,
    open_rescale,
    points_back,
    reads_on_points_sent,
    repaired,
    rescale_entry,
)
from gradesync.domain.policy import resolve_settings
from gradesync.services import queries
from gradesync.services.clock import Clock
from gradesync.services.destination import DestinationClient, ReadBack, ReadBackFor
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory
from gradesync.services.runs import check_scope, request_run
from gradesync.services.wakeup import Waker

log = logging.getLogger(__name__)

REPAIR_OUTCOME = "repair"  # delivery log line: a person asked to resend this result


@dataclass(slots=True)
class OverrideStats:
    found: int = 0  # grades that differ in the LMS
    kept: int = 0  # recorded, LMS edit kept
    resent: int = 0  # marked pending: gradesync wins
    overrides: list[Override] = field(default_factory=list)
    # grades held as sent on a column whose points were changed in the LMS: marked pending,
    # to go again once their column is put right
    rescaled: int = 0
    # ... on a column whose points the LMS keeps (still so after they were put right once):
    # left as the LMS holds them, and said (reason `points_kept`)
    points_kept: int = 0
    # the grades found overridden or rescaled (not read back "different" on top)
    judged: set[LedgerKey] = field(default_factory=set)

    def add(self, other: OverrideStats) -> None:
        self.found += other.found
        self.kept += other.kept
        self.resent += other.resent
        self.overrides += other.overrides
        self.rescaled += other.rescaled
        self.points_kept += other.points_kept
        self.judged |= other.judged


def keeps_lms_edits(uow: UnitOfWork, tenant_id: str, course: Course, activity_id: str) -> bool:
    tenant = uow.tenants.get(tenant_id)
    activity = uow.activities.get(tenant_id, activity_id)
    layers = [x.policy for x in (tenant, course, activity) if x is not None]
    try:
        return resolve_settings(*layers).keep_lms_edits
    except InvalidInput:
        return True  # an invalid policy never overwrites a person's edit


def _read_back_scale(
    uow: UnitOfWork, client: DestinationClient | None, tenant_id: str, activity_id: str
) -> float | None:
    """The points a fraction read back from an LTI 1.1 column is a fraction of, logged with
    its line as a send's are (`domain.held.logs_scale`): the activity's points now, which a
    send now would compute the fraction on. None elsewhere: a SIS's score reads on its line
    item's maximum, kept on the item's link."""
    if client is None or not logs_scale(client.destination.kind):
        return None
    activity = uow.activities.get(tenant_id, activity_id)
    points = activity.points_possible if activity is not None else None
    return points if points is not None and points > 0 else None


def _remote_by_person(
    uow: UnitOfWork,
    tenant_id: str,
    destination_id: str,
    course_id: str,
    person_ids: Iterable[str],
    backs: Sequence[ReadBack],
) -> dict[str, RemoteResult]:
    # the column's learners only: a SIS's student links hold every learner it has
    links = uow.links.people_for(tenant_id, destination_id, course_id, person_ids)
    person_of = {link.remote_id: pid for pid, link in links.items()}
    out: dict[str, RemoteResult] = {}
    for b in backs:
        pid = person_of.get(b.remote_person_id)
        if pid is not None:
            out[pid] = RemoteResult(
                pid, b.score_given, b.score_maximum, b.comment, b.timestamp, b.maximum_said
            )
    return out


def _open_rescale(item: ItemLink | None) -> LastRescale | None:
    """The column's open rescale once its column was written back after it (its mark
    gone); None otherwise: a column not written since proves nothing of the LMS."""
    return None if item is None or marked_to_check(item) else open_rescale(item)


def _kept_line(
    r: Rescaled, run_id: str | None, now: datetime, scale: float | None
) -> dict[str, Any]:
    return {
        "key": r.key,
        "run_id": run_id,
        "sent_at": now,
        "sent_hash": None,
        "payload": {
            "read_back": {"sent_maximum": r.sent_maximum, "remote_maximum": r.remote_maximum}
        },
        "outcome": POINTS_KEPT,
        "remote_status": None,
        "remote_message": kept_text(r),
        "latency_ms": None,
        "score_scale": scale,
    }


def record_overrides(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    tenant_id: str,
    destination_id: str,
    course_id: str,
    activity_id: str,
    backs: Sequence[ReadBack],
    *,
    run_id: str | None = None,
    client: DestinationClient | None = None,
) -> OverrideStats:
    """Compare a column read back from the destination with the ledger; record what differs.
    One transaction; rows are re-read under lock so a send settling meanwhile is not lost.
    `client`: the destination's, which says whether each line keeps the activity's points
    (an LTI 1.1 fraction's, as a send's line does)."""
    stats = OverrideStats()
    with uow_factory() as uow:
        course = uow.courses.get(tenant_id, course_id)
        if course is None:
            return stats
        rows = uow.ledger.get_many(tenant_id, destination_id, course_id, [activity_id])
        people = [p for _, p in rows]
        remote = _remote_by_person(uow, tenant_id, destination_id, course_id, people, backs)
        if not remote:
            return stats
        found = detect_overrides(remote, rows.values())
        rescaled = detect_rescaled(remote, rows.values())
        back = points_back(remote, rows.values())
        item = uow.links.item(tenant_id, destination_id, activity_id)
        # the column read back on gradesync's points: a rescale put back before is over, and
        # the same points set there again later are a new one to put back, not the LMS's own
        over = open_rescale(item) is not None and reads_on_points_sent(remote, rows.values())
        if not found and not rescaled and not back:
            if over:
                uow.links.update_item_data(
                    tenant_id, destination_id, activity_id, {RESCALE_KEY: None}
                )
                uow.commit()
            return stats
        keys = [o.key for o in found] + [r.key for r in rescaled] + back
        locked = uow.ledger.get_keys(keys, lock=True)
        fresh = detect_overrides(remote, locked.values())  # still true under the lock
        keep = keeps_lms_edits(uow, tenant_id, course, activity_id)
        scale = _read_back_scale(uow, client, tenant_id, activity_id)
        now = clock.now()
        writes: list[tuple[LedgerRow, str]] = [
            (cleared(locked[k], now), course_id) for k in points_back(remote, locked.values())
        ]
        lines: list[dict[str, Any]] = []
        moved = detect_rescaled(remote, locked.values())
        # Bounded: a column the LMS still reads on its own points after gradesync wrote them
        # back once is left as it holds it and said, not written and resent on every verify.
        last = None if over else _open_rescale(item)
        kept = [r for r in moved if keeps_points(r, locked[r.key].delivered_at, last)]
        moved = [r for r in moved if r.key not in {k.key for k in kept}]
        for r in kept:
            stats.points_kept += 1
            stats.judged.add(r.key)
            new = apply_kept(locked[r.key], r, now)
            if new is not None:
                writes.append((new, course_id))
                lines.append(_kept_line(r, run_id, now, scale))
        if moved:
            # the column is gradesync's: it is written again (whatever its details, as a
            # remaster's) before these grades go again, which the run sends
            # a mark of its own, never the run's (`Provisioner` remembers a mark whose
            # check failed, and would let these grades by the column again)
            mark = check_mark(f"{run_id or 'verify'}:rescaled:{now.timestamp():.6f}")
            uow.links.mark_items_to_check(tenant_id, destination_id, [activity_id], mark)
            # this rescale bounds `keeps_points` until a read-back finds the column on its points
            entry = rescale_entry(moved[0], now)
            uow.links.update_item_data(tenant_id, destination_id, activity_id, {RESCALE_KEY: entry})
        for r in moved:
            stats.rescaled += 1
            stats.judged.add(r.key)
            row = reopened(
                locked[r.key], now, reason_code=COLUMN_RESCALED, reason_text=r.describe()
            )
            # sent again after whatever the LMS stamped on it (as over an edit)
            row = replace(
                row, last_timestamp=later_timestamp(row.last_timestamp, r.remote_timestamp)
            )
            writes.append((row, course_id))
            lines.append(
                {
                    "key": r.key,
                    "run_id": run_id,
                    "sent_at": now,
                    "sent_hash": None,
                    "payload": {
                        "read_back": {
                            "sent_maximum": r.sent_maximum,
                            "remote_maximum": r.remote_maximum,
                        }
                    },
                    "outcome": COLUMN_RESCALED,
                    "remote_status": None,
                    "remote_message": r.describe(),
                    "latency_ms": None,
                    "score_scale": scale,
                }
            )
        for o in fresh:
            stats.found += 1
            stats.judged.add(o.key)
            stats.overrides.append(o)
            new = apply_override(locked[o.key], o, keep, now)
            if new is None:
                continue
            writes.append((new, course_id))
            if keep:
                stats.kept += 1
            else:
                stats.resent += 1
            lines.append(
                {
                    "key": o.key,
                    "run_id": run_id,
                    "sent_at": now,
                    "sent_hash": None,
                    "payload": {"read_back": o.as_json(), "keep_lms_edits": keep},
                    "outcome": OVERRIDE_SEEN,
                    "remote_status": None,
                    "remote_message": o.describe(),
                    "latency_ms": None,
                    "score_scale": scale,
                }
            )
        if over and not moved:  # after the ledger's rows, locked first as where it is marked
            uow.links.update_item_data(tenant_id, destination_id, activity_id, {RESCALE_KEY: None})
        # a column typed over in the LMS (a whole class's grades) is logged in one statement
        uow.deliveries.add_many(lines)
        uow.ledger.save_many(writes)
        uow.commit()
    if stats.points_kept:
        log.info(
            "column %s at %s/%s: the LMS keeps its own points for it; %d grade(s) left as it"
            " holds them",
            activity_id,
            tenant_id,
            destination_id,
            stats.points_kept,
        )
    if stats.rescaled:
        log.info(
            "column %s at %s/%s: its points were changed in the LMS; %d grade(s) to send again"
            " after it is put right",
            activity_id,
            tenant_id,
            destination_id,
            stats.rescaled,
        )
    if stats.found:
        log.info(
            "overrides at %s/%s %s: %d found, %d kept, %d to resend",
            tenant_id,
            destination_id,
            activity_id,
            stats.found,
            stats.kept,
            stats.resent,
        )
    return stats


def list_overrides(
    uow_factory: UnitOfWorkFactory,
    tenant_id: str,
    course_id: str,
    destination_id: str | None = None,
) -> list[dict[str, Any]]:
    """Results marked overridden in a course (what gradesync sent, what the LMS holds)."""
    out: list[dict[str, Any]] = []
    with uow_factory() as uow:
        course = uow.courses.get(tenant_id, course_id)
        if course is None:
            raise NotFound("course", course_id)
        problems = queries.filter_problems(
            uow, tenant_id, queries.given(destination_id=destination_id)
        )
        if problems:  # answered, a typo would read as "no overridden grades"
            raise InvalidInput(problems)
        links = uow.links.destinations_for_course(tenant_id, course_id)
        for link in sorted(links, key=lambda lk: lk.destination_id):
            if destination_id is not None and link.destination_id != destination_id:
                continue
            for batch in uow.ledger.iter_scope(tenant_id, link.destination_id, course_id):
                for row in batch:
                    if row.reason_code != OVERRIDDEN:
                        continue
                    want = desired_from_json(row.desired) if row.desired else None
                    out.append(
                        {
                            "destination_id": row.key.destination_id,
                            "activity_id": row.key.activity_id,
                            "person_id": row.key.person_id,
                            "state": row.state.value,
                            "sent_given": want.score_given if want else None,
                            "sent_maximum": want.score_maximum if want else None,
                            "delivered_at": row.delivered_at,
                            "lms": row.remote_message,
                            "explanation": row.reason_text,
                            "policy": "keep_lms_edit"
                            if keeps_lms_edits(uow, tenant_id, course, row.key.activity_id)
                            else "gradesync_wins",
                        }
                    )
    return out


# --- repair ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RepairSelection:
    tenant_id: str
    course_id: str
    destination_id: str | None = None
    activity_ids: tuple[str, ...] = ()  # empty: every activity of the course
    person_ids: tuple[str, ...] = ()  # empty: every learner with a result


@dataclass(frozen=True, slots=True)
class UnreadColumn:
    """A column whose results' timestamps could not be read from the destination before a
    repair: its resends carry gradesync's clock only."""

    destination_id: str
    activity_id: str
    error: str  # the transport's or the remote's words


def unread_warning(unread: Sequence[UnreadColumn]) -> str | None:
    """What unread columns mean for the repair, said the same wherever the repair answers."""
    if not unread:
        return None
    where = "; ".join(f"{u.activity_id} at {u.destination_id}: {u.error}" for u in unread)
    return (
        f"Could not read the gradebook's timestamps for {len(unread)} column(s) ({where}). "
        "Their grades are resent with gradesync's clock as the timestamp: a gradebook whose "
        "clock runs ahead of gradesync's may ignore them and keep the grade typed into it. "
        "Check the grade in the gradebook, or fix the cause and repair again."
    )


@dataclass(slots=True)
class RepairResult:
    run: SyncRun | None  # the repair run (whole activities); None for chosen learners
    joined: bool
    marked: int  # results that will be resent
    skipped: int  # selected keys with nothing to send (policy says no grade)
    keys: list[LedgerKey] = field(default_factory=list)
    # columns whose LMS timestamps could not be read: the repair went ahead without them
    unread: list[UnreadColumn] = field(default_factory=list)


def _linked_destinations(
    uow: UnitOfWork, sel: RepairSelection, chosen: Destination | None
) -> list[Destination]:
    """The selected destinations the course syncs to, in id order. `chosen`: the one the
    selection names, as its scope's check read it (not read again)."""
    links = uow.links.destinations_for_course(sel.tenant_id, sel.course_id)
    linked = sorted(lk.destination_id for lk in links)
    if sel.destination_id is not None:
        return [chosen] if chosen is not None and sel.destination_id in linked else []
    # all of them in one statement: a course may sync to several (an LMS, a SIS)
    found = uow.destinations.get_many(sel.tenant_id, linked)
    return [found[d] for d in linked if d in found]


def validate_selection(uow: UnitOfWork, sel: RepairSelection) -> tuple[Course, list[Destination]]:
    if uow.tenants.get(sel.tenant_id) is None:
        raise NotFound("tenant", sel.tenant_id)
    # the course, destination and activities are a run's scope, checked as every run's is
    # (what the check read is used here, not read again)
    scope = RunScope(sel.tenant_id, sel.destination_id, sel.course_id, sel.activity_ids)
    course, chosen = check_scope(uow, scope)
    assert course is not None  # check_scope refused an unknown course
    if sel.person_ids:
        people = uow.people.get_many(sel.tenant_id, sel.person_ids)
        for i, pid in enumerate(sel.person_ids):
            if pid not in people:
                raise InvalidInput.one(f"person_ids[{i}]", "unknown_person", f"No person {pid!r}.")
    dests = _linked_destinations(uow, sel, chosen)
    if sel.destination_id is not None and not dests:
        raise InvalidInput.one(
            "destination_id",
            "not_linked",
            f"The course {sel.course_id!r} is not connected to {sel.destination_id!r}.",
        )
    if not dests:
        raise InvalidInput.one(
            "course_id", "not_linked", f"The course {sel.course_id!r} syncs to no destination."
        )
    return course, dests


def _selected_rows(uow: UnitOfWork, sel: RepairSelection, d: Destination) -> list[LedgerRow]:
    rows = uow.ledger.get_many(sel.tenant_id, d.id, sel.course_id, sel.activity_ids or None)
    wanted = set(sel.person_ids)
    return [r for (_, pid), r in sorted(rows.items()) if not wanted or pid in wanted]


RemoteTimestamps = Mapping[LedgerKey, datetime]


ReadPlan = list[tuple[Destination, CourseLink, ItemLink, dict[str, str]]]


def _read_plan(uow: UnitOfWork, sel: RepairSelection, dests: Sequence[Destination]) -> ReadPlan:
    """The columns to read back for a checked selection: (destination, course link, column,
    LMS user id -> person id)."""
    out: ReadPlan = []
    for d in dests:
        course_link = uow.links.course(sel.tenant_id, d.id, sel.course_id)
        if course_link is None:
            continue
        acts = sorted({r.key.activity_id for r in _selected_rows(uow, sel, d)})
        people = {
            link.remote_id: pid
            for pid, link in uow.links.people(sel.tenant_id, d.id, sel.course_id).items()
        }
        # the columns of all of them in one statement: a course's repair names each
        items = uow.links.items(sel.tenant_id, d.id, acts)
        for aid in acts:
            item = items.get(aid)
            if item is not None and item.remote_id:
                out.append((d, course_link, item, people))
    return out


async def _read_back(
    plan: ReadPlan, sel: RepairSelection, read: ReadBackFor
) -> tuple[dict[LedgerKey, datetime], list[UnreadColumn]]:
    found: dict[LedgerKey, datetime] = {}
    unread: list[UnreadColumn] = []
    for d, course_link, item, people in plan:
        try:
            backs = await read(d, course_link, item)
        except Exception as exc:
            # the repair still goes ahead with gradesync's clock, and says so: a resend the
            # LMS ignores for its own later timestamp would otherwise look like a success
            error = str(exc) or type(exc).__name__
            log.info("repair: read-back of %s at %s failed: %s", item.activity_id, d.id, error)
            unread.append(UnreadColumn(d.id, item.activity_id, error))
            continue
        for b in backs:
            pid = people.get(b.remote_person_id)
            if pid is not None and b.timestamp is not None:
                found[LedgerKey(sel.tenant_id, d.id, item.activity_id, pid)] = b.timestamp
    return found, unread


async def remote_timestamps(
    uow_factory: UnitOfWorkFactory, sel: RepairSelection, read: ReadBackFor
) -> tuple[dict[LedgerKey, datetime], list[UnreadColumn]]:
    """The timestamps the LMS holds for the selected results (read back where the protocol
    allows, each column by `read`: within the destination's limits, `asked.governed_reads`),
    so the repair's timestamps come after them even if the LMS's clock is ahead; and the
    columns that could not be read, with why (a paused destination is not asked)."""
    import asyncio

    def plan() -> ReadPlan:
        with uow_factory() as uow:
            _, dests = validate_selection(uow, sel)
            return _read_plan(uow, sel, dests)

    return await _read_back(await asyncio.to_thread(plan), sel, read)


async def repair(
    uow_factory: UnitOfWorkFactory,
    waker: Waker | None,
    clock: Clock,
    read: ReadBackFor,
    selection: RepairSelection,
    actor: str,
) -> RepairResult:
    """The repair as every entrypoint asks for it: the selection is checked, in the
    transaction that reads what the read-back needs, before anything is read back (bad input
    changes nothing and costs nothing); the LMS's timestamps are read (by `read`, as
    `remote_timestamps`); then the results are
    marked as `request_repair` marks them, with the destinations that check found."""
    import asyncio

    def check() -> tuple[list[Destination], ReadPlan]:
        with uow_factory() as uow:
            _, dests = validate_selection(uow, selection)
            _check_request(selection, actor)  # after the selection's: the same first error
            return dests, _read_plan(uow, selection, dests)

    dests, plan = await asyncio.to_thread(check)
    remote, unread = await _read_back(plan, selection, read)
    return await asyncio.to_thread(
        _mark, uow_factory, waker, clock, selection, actor, remote, unread, dests
    )


def _check_request(selection: RepairSelection, actor: str) -> None:
    """InvalidInput for a repair nobody asked for, or one naming an activity or learner twice."""
    if not actor or not actor.strip():
        raise InvalidInput.one("actor", "required", "Say who asked for the repair.")
    for name, ids in (
        ("activity_ids", selection.activity_ids),
        ("person_ids", selection.person_ids),
    ):
        if len(set(ids)) != len(ids):
            raise InvalidInput.one(name, "unique", "Select each one once.")


def request_repair(
    uow_factory: UnitOfWorkFactory,
    waker: Waker | None,
    clock: Clock,
    selection: RepairSelection,
    actor: str,
    *,
    remote: RemoteTimestamps | None = None,
    unread: Sequence[UnreadColumn] = (),
) -> RepairResult:
    """Resend the selected results even though unchanged, each with a score timestamp after
    both its last send and `remote` (what the LMS holds), so the LMS applies gradesync's
    grade over one typed in by hand. Raises InvalidInput (nothing changed) for a bad or
    empty selection.

    - Whole activities (no `person_ids`): a `repair` run for the course and activities, which
      resends every result of them (the engine's repair trigger); the timestamps are moved
      past the LMS's first.
    - Chosen learners: only their results are marked pending and delivered at once (a run
      cannot be narrowed to learners), so other learners' LMS edits are left alone.

    Either way each result gets a `repair` line in its delivery history naming `actor` (and
    the run), followed by the send and the LMS's answer, and why the LMS's timestamp is
    missing when its column is in `unread`."""
    _check_request(selection, actor)
    return _mark(uow_factory, waker, clock, selection, actor, remote or {}, unread)


def _mark(
    uow_factory: UnitOfWorkFactory,
    waker: Waker | None,
    clock: Clock,
    selection: RepairSelection,
    actor: str,
    remote: RemoteTimestamps,
    unread: Sequence[UnreadColumn],
    dests: Sequence[Destination] | None = None,
) -> RepairResult:
    """`request_repair` once `_check_request` passed. `dests`: the selection's destinations,
    when the caller checked it already (else it is checked here, in the writing transaction);
    a result removed since has no row left to lock, so nothing is marked for it."""
    whole = not selection.person_ids
    now = clock.now()
    marked: list[LedgerKey] = []
    skipped = 0
    with uow_factory() as uow:
        if dests is None:
            _, dests = validate_selection(uow, selection)
        for d in dests:
            rows = _selected_rows(uow, selection, d)
            locked = uow.ledger.get_keys([r.key for r in rows], lock=True)
            writes: list[tuple[LedgerRow, str]] = []
            for key in sorted(locked, key=lambda k: (k.activity_id, k.person_id)):
                row = locked[key]
                new = repaired(row, remote.get(key), now)
                if new is None:
                    skipped += 1
                    continue
                if whole:
                    # the run marks every result pending; only the timestamp is moved here
                    new = replace(row, last_timestamp=new.last_timestamp)
                writes.append((new, selection.course_id))
                marked.append(key)
            uow.ledger.save_many(writes)
        if not marked:
            raise InvalidInput.one(
                "selection",
                "nothing_to_repair",
                "None of the selected results has a grade to send (nothing computed yet, or "
                "policy sends nothing for them): run Sync now first, or diagnose a learner.",
            )
        uow.commit()
    run: SyncRun | None = None
    joined = False
    if whole:
        scope = RunScope(
            selection.tenant_id,
            selection.destination_id if len(dests) == 1 else None,
            selection.course_id,
            selection.activity_ids,
        )
        run, joined = request_run(uow_factory, waker, clock, scope, Trigger.REPAIR, actor)
    elif waker is not None:
        waker.wake_delivery()
    who = actor.strip()
    unread_why = {(u.destination_id, u.activity_id): u.error for u in unread}
    lines: list[dict[str, Any]] = []
    for key in marked:
        payload = {"requested_by": who, "remote_timestamp": _iso(remote.get(key))}
        why = unread_why.get((key.destination_id, key.activity_id))
        if why is not None:
            payload["remote_timestamp_unread"] = why
        lines.append(
            {
                "key": key,
                "run_id": run.id if run is not None else None,
                "sent_at": now,
                "sent_hash": None,
                "payload": payload,
                "outcome": REPAIR_OUTCOME,
                "remote_status": None,
                "remote_message": f"Repair resync requested by {who}",
                "latency_ms": None,
            }
        )
    with uow_factory() as uow:
        # one statement for the whole selection: a course's repair marks every result of
        # it, and one insert each was a round trip per learner and activity on PostgreSQL
        uow.deliveries.add_many(lines)
        uow.commit()
    return RepairResult(run, joined, len(marked), skipped, marked, list(unread))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
