"""The pass loop: one pass (`Deliverer.deliver`) repeats three steps until nothing in its
scope is due:

1. **claim** a batch of due rows nobody holds (a batch that grows while the sends wait
   for the claims and no live grade arrives; live grades before runs' rows, and live
   grades computed meanwhile at once, however many rows the pass already holds; within a
   priority, courses served in turn, each course's oldest first) and lease them to this
   worker, stamping each with the score timestamp it will carry (strictly increasing per
   key by at least the destination's `timestamp_step`, even across crashes);
2. **prepare** them: the course link and the column (`Provisioner`, the column only when
   its details changed), the person link; rows that cannot be sent are settled at once;
3. **send** each row's desired state concurrently, bounded per destination by the
   `Governor` (semaphore, rate limiter, circuit breaker, gate; an admin's pause is re-read
   before each send, and a paused row is let go unchanged), then **settle** it through the
   `SettleWriter`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gradesync.domain.columns import columns_made
from gradesync.domain.held import logs_scale
from gradesync.domain.ledger import (
    Delivered,
    DeliveryOutcome,
    Rejected,
    RetryLater,
    desired_from_json,
    next_score_timestamp,
)
from gradesync.domain.model import (
    Course,
    CourseLink,
    DeliveryState,
    Destination,
    ItemLink,
    LedgerKey,
    LedgerRow,
    Tenant,
)
from gradesync.domain.pauses import PauseCause
from gradesync.domain.policy import Column, DesiredResult, NoResult, activity_policy, column_for
from gradesync.domain.reasons import Reason, internal_error
from gradesync.services import log_context
from gradesync.services.clock import Clock
from gradesync.services.compute import (
    course_migrated,
    destination_unavailable,
    migrated_to,
    no_person_link,
)
from gradesync.services.database_lost import database_unavailable, first_line
from gradesync.services.delivery.background import BackgroundWrites
from gradesync.services.delivery.clients import Clients
from gradesync.services.delivery.failures import (
    outcome_of_failure,
    reason_of,
    unexpected_failure,
)
from gradesync.services.delivery.governor import DestinationLimits, DestinationPaused, Governor
from gradesync.services.delivery.in_flight import InFlight
from gradesync.services.delivery.provisioning import Provisioner
from gradesync.services.delivery.records import (
    BatchFacts,
    Claimed,
    DeliveryScope,
    DeliveryStats,
    DestKey,
    DueAt,
    Settlement,
)
from gradesync.services.delivery.settle import SettleWriter
from gradesync.services.destination import (
    DEFAULT_TIMESTAMP_STEP,
    LINE_ITEM_GONE,
    DestinationClient,
    FailureClass,
    RemoteFailure,
    ResultTarget,
    timestamp_step_of,
)
from gradesync.services.destination_signals import DestinationSignals
from gradesync.services.engine_config import EngineSettings
from gradesync.services.live_traffic import RECENT as LIVE_RECENT
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory
from gradesync.services.ports.ledger import FAIR_COURSES, Claimable
from gradesync.services.telemetry import NULL_METER, Meter
from gradesync.services.wakeup import Waker

log = logging.getLogger(__name__)

# How far a pass's claims may grow past `claim_batch` while claiming keeps its sends waiting.
CLAIM_GROWTH = 8


def settle_margin(min_lease_left: float) -> float:
    """How long before its claim ends a send still unanswered is ended, so its outcome is
    written under the claim: a ninth of the lease a send must start with (5 s of the default
    45 s; a fraction of a second of a test's few seconds, where a fixed margin would pass the
    lease itself)."""
    return min_lease_left / 9


def _claim_ending(seconds: float) -> RemoteFailure:
    """A send ended because its claim was about to: whatever the destination's timeouts allow
    (up to 300 s, between reads, a token's fetch before), no send outlives its claim, after
    which another worker may claim the key and send it too. A timeout, as the destination's
    own would be."""
    return RemoteFailure(
        FailureClass.RETRY_LATER,
        "timeout",
        f"no answer within the {seconds:.0f} s left of the grade's claim",
        remedy=(
            "The destination did not answer before the grade's claim ran out; gradesync "
            "retries automatically. If it recurs, the destination is slower than a claim "
            "lasts: give workers a longer lease (GRADESYNC_WORKER_LEASE_SECONDS) than its "
            "timeout."
        ),
    )


def next_claim_size(size: int, claimed: int, holding: int, most: int) -> int:
    """The size of a pass's next claim. A claim came back full (`claimed` rows: more are
    due) while the sends had run almost dry (`holding` rows still in hand): claiming is what
    the sends wait for, and a claim costs about the same for more rows (on PostgreSQL a
    round trip per statement, whatever the rows), so claim twice as many, up to `most`."""
    if claimed >= size and holding < size // 2:
        return min(size * 2, most)
    return size


@dataclass(slots=True)
class Ready:
    """One claimed row, prepared: sent as soon as its destination lets it."""

    claimed: Claimed
    destination: Destination
    client: DestinationClient
    limits: DestinationLimits
    target: ResultTarget
    result: DesiredResult
    # the activity's points the score was computed on, logged where the gradebook takes a
    # fraction of them (`domain.held.logs_scale`); None elsewhere
    scale: float | None = None


def _scale(d: Destination, result: DesiredResult, column: Column) -> float | None:
    """The points `result`'s fraction was computed on, to log with its send at LTI 1.1: the
    activity's when the result was computed, not the column's now (they differ when the
    points change between the two). A result computed before it kept them has the
    column's."""
    if not logs_scale(d.kind):
        return None
    return result.points_possible if result.points_possible is not None else column.score_maximum


@dataclass(eq=False, slots=True)
class _Listening:
    """A running pass and the wakes meant for it: how often rows of its scope may have
    become due in this process (`due`), live grades among them (`live`)."""

    scope: DeliveryScope
    flight: InFlight
    due: int = 0
    live: int = 0


@dataclass(frozen=True, slots=True)
class _CourseInHand:
    """What every column of one course being prepared shares (its tenant and course known
    to exist)."""

    destination: Destination
    client: DestinationClient
    limits: DestinationLimits
    tenant: Tenant
    course: Course
    course_link: CourseLink
    facts: BatchFacts


class Deliverer:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        clients: Clients,
        settings: EngineSettings,
        worker_id: str,
        *,
        waker: Waker | None = None,
        on_written: Callable[[list[LedgerRow]], None] | None = None,
        meter: Meter = NULL_METER,
        signals: DestinationSignals | None = None,
    ) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        self.clients = clients
        self.settings = settings
        self.worker_id = worker_id
        self.waker = waker
        self.writer = SettleWriter(
            uow_factory,
            clock,
            settings,
            worker_id,
            on_written,
            on_due=lambda where: self.note_due(where=where),
            meter=meter,
        )
        # the running passes, each told when rows of its scope may have become due
        # (computed, or settled still due), so that it claims when there is something to
        # find, not after every send; live grades at once, even with a run's rows filling
        # its hands (the slots then send them first)
        self._passes: set[_Listening] = set()
        # passes over every due row (a worker's delivery loop), and whom to tell when rows
        # become due while none runs (that loop, to start one: no wake waits for its poll)
        self._sweeps = 0
        self.on_idle_due: Callable[[], None] | None = None
        # rows claimed and not settled yet, with the pass that claimed them, by claim (a row
        # whose lease ran out may be claimed again while its first claim is still in hand).
        # Each counts in its destination's `waiting` from its claim until it leaves here,
        # once however its pass ends (`_hold`, `_settled`); a pass stopped by a lost
        # database gives its own back to the ledger (`_give_back`)
        self._held: dict[int, tuple[Claimed, InFlight]] = {}
        self._background = BackgroundWrites()
        self.governor = Governor(
            uow_factory, clock, settings, self._background, worker_id, signals=signals
        )
        # a deleted destination's client, outcome counts and metric series go once no
        # claimed row of it is in hand (`_drop`): its rows held, by destination
        self.meter = meter
        self._holding: Counter[DestKey] = Counter()
        self._emptied: dict[DestKey, asyncio.Future[None]] = {}
        self._dropping: set[asyncio.Task[None]] = set()
        self.governor.on_gone = self._gone
        self.governor.held_elsewhere = clients.held
        self.governor.on_open = self._opened
        self.provisioner = Provisioner(uow_factory, settings, self._background, self.governor)
        self._help_asked = -1e9
        self._courses_after = ""  # the course a claim's round-robin starts after

    def delivered_to(self, scope: DeliveryScope) -> int:
        """Results this process has delivered to the scope's destinations so far, in any
        course: a run sees its destination taking others' results while its own wait."""
        return sum(
            n
            for (tenant, dest), n in self.writer.delivered.items()
            if scope.tenant_id in (None, tenant) and scope.destination_id in (None, dest)
        )

    def note_due(self, *, live: bool = False, where: Collection[DueAt] | None = None) -> None:
        """Rows may have become due in this process (`where`: in these columns; None: it
        is not known where): running passes whose scope may hold them claim again (`live`:
        live grades, claimed even by a pass whose hands are full)."""
        self._wake(lambda s: where is None or any(s.covers(at) for at in where), live)

    def _opened(self, key: DestKey) -> None:
        """A destination's pause was found lifted: what it held is due, for the passes whose
        scope holds it (not every pass: the others would claim for nothing)."""
        self._wake(lambda s: s.reaches(key))

    def _wake(self, holds: Callable[[DeliveryScope], bool], live: bool = False) -> None:
        for p in self._passes:
            if holds(p.scope):
                p.due += 1
                p.live += live
                p.flight.wake()
        if not self._sweeps and self.on_idle_due is not None:
            self.on_idle_due()

    # -- claiming -------------------------------------------------------------------------

    async def claim(
        self, scope: DeliveryScope, limit: int, *, live_only: bool = False
    ) -> tuple[list[Claimed], dict[tuple[str, str, str], BatchFacts], bool]:
        """Lease up to `limit` due rows (`live_only`: live grades alone), and read what
        sending them needs, in one transaction. Also says whether due rows may be left
        behind (the batch was full, or a destination was held back: saturated, paused, its
        breaker open)."""
        gov = self.governor
        await gov.refresh_destinations()
        now = self.clock.now()
        excluded, probes = gov.excluded(now, live=live_only)
        held_back = any(gov.destinations[k].enabled for k in excluded)
        if not probes and gov.all_excluded(scope, excluded):
            # Every destination in scope has enough rows claimed, or is paused. A claim
            # could only find rows of destinations not loaded yet, which prepare lets go
            # unsent, and it would read every due row to find out: the deliver loop asks
            # again after each send, so skip it.
            return [], {}, held_back
        lease_until = now + self.settings.lease

        def work() -> tuple[
            list[tuple[Claimable, datetime]], dict[tuple[str, str, str], BatchFacts]
        ]:
            with self.uow_factory() as uow:
                rows = uow.ledger.claimable(
                    now,
                    limit,
                    tenant_id=scope.tenant_id,
                    destination_id=scope.destination_id,
                    course_id=scope.course_id,
                    activity_ids=scope.activity_ids or None,
                    exclude_destinations=excluded,
                    courses_after=self._courses_after,
                    live_only=live_only,
                )
                for tenant_id, dest_id in probes:
                    if scope.tenant_id not in (None, tenant_id) or scope.destination_id not in (
                        None,
                        dest_id,
                    ):
                        continue
                    rows += uow.ledger.claimable(
                        now,
                        1,
                        tenant_id=tenant_id,
                        destination_id=dest_id,
                        course_id=scope.course_id,
                        activity_ids=scope.activity_ids or None,
                    )
                stamped = [
                    (f, next_score_timestamp(f.row.last_timestamp, now, self._step(f.row.key)))
                    for f in rows
                ]
                uow.ledger.lease(
                    [(f.row.key, ts) for f, ts in stamped], self.worker_id, lease_until
                )
                facts = (
                    self._load_facts(uow, [(f.row.key, f.course_id) for f, _ in stamped])
                    if rows
                    else {}
                )
                uow.commit()
                return stamped, facts

        stamped, facts = await asyncio.to_thread(work)
        courses = {f.course_id for f, _ in stamped}
        self._take_turns(courses)
        mono = time.monotonic()
        out = [Claimed(f.row, f.course_id, ts, mono, lease_until, f.priority) for f, ts in stamped]
        # rows may be left: the batch was full, or as many courses as one claim serves took
        # their turn (a row each from many courses: live grades, a vendor's many platforms)
        return out, facts, held_back or len(out) >= limit or len(courses) >= FAIR_COURSES

    def _take_turns(self, courses: set[str]) -> None:
        """When more courses wait than one claim serves, the next claim starts after the
        last course served in this one's turn."""
        if courses:
            later = [c for c in courses if c > self._courses_after]
            self._courses_after = max(later or courses)

    def _step(self, key: LedgerKey) -> timedelta:
        """The destination's smallest timestamp step (whole seconds for Moodle)."""
        d = self.governor.destinations.get((key.tenant_id, key.destination_id))
        if d is None:
            return DEFAULT_TIMESTAMP_STEP
        try:
            return timestamp_step_of(self.clients.get(d))
        except Exception:  # an unusable destination: its send fails on its own
            return DEFAULT_TIMESTAMP_STEP

    @staticmethod
    def _load_facts(
        uow: UnitOfWork, keys: Sequence[tuple[LedgerKey, str]]
    ) -> dict[tuple[str, str, str], BatchFacts]:
        """Course, columns and people of claimed rows, per (tenant, destination, course).
        A statement of each kind per destination, however many courses the claim spans
        (live grades come from many; on PostgreSQL each statement is a round trip)."""
        groups: dict[tuple[str, str], dict[str, tuple[set[str], set[str]]]] = {}
        for k, course_id in keys:
            by_course = groups.setdefault((k.tenant_id, k.destination_id), {})
            acts, persons = by_course.setdefault(course_id, (set(), set()))
            acts.add(k.activity_id)
            persons.add(k.person_id)
        out: dict[tuple[str, str, str], BatchFacts] = {}
        tenants: dict[str, Tenant | None] = {}
        for (tenant_id, dest_id), by_course in groups.items():
            if tenant_id not in tenants:
                tenants[tenant_id] = uow.tenants.get(tenant_id)
            all_acts = {a for acts, _ in by_course.values() for a in acts}
            courses = uow.courses.get_many(tenant_id, by_course)
            course_links = {
                link.course_id: link
                for link in uow.links.destinations_for_courses(tenant_id, by_course)
                if link.destination_id == dest_id
            }
            activities = uow.activities.get_many(tenant_id, all_acts)
            items = uow.links.items(tenant_id, dest_id, all_acts)
            links = uow.links.people_in_courses(
                tenant_id, dest_id, {(c, p) for c, (_, ps) in by_course.items() for p in ps}
            )
            for course_id, (acts, persons) in by_course.items():
                out[(tenant_id, dest_id, course_id)] = BatchFacts(
                    tenant=tenants[tenant_id],
                    course=courses.get(course_id),
                    course_link=course_links.get(course_id),
                    activities={a: activities[a] for a in acts if a in activities},
                    items={a: items[a] for a in acts if a in items},
                    people={p: links[(course_id, p)] for p in persons if (course_id, p) in links},
                )
        return out

    @staticmethod
    def _by_course(claimed: list[Claimed]) -> dict[tuple[str, str, str], list[Claimed]]:
        grouped: dict[tuple[str, str, str], list[Claimed]] = {}
        for c in claimed:
            k = c.row.key
            grouped.setdefault((k.tenant_id, k.destination_id, c.course_id), []).append(c)
        return grouped

    def _settle_all(
        self,
        items: Sequence[Claimed],
        outcome: DeliveryOutcome | Reason | None,
        stats: DeliveryStats,
        run_id: str | None,
        *,
        logged: bool = False,
    ) -> None:
        for c in items:
            self._settled(c)
            self._count(stats, outcome)
            self.writer.put(
                Settlement(
                    c.row.key,
                    c.course_id,
                    outcome,
                    c.lease_until,
                    sent_hash=c.row.desired_hash,
                    timestamp=c.timestamp,
                    run_id=run_id,
                    logged=logged,
                    claimed=c.row,
                )
            )

    def _hold(self, claimed: Sequence[Claimed], flight: InFlight) -> None:
        """`flight`'s pass has the rows in hand: their destinations count them until each
        is settled or the pass ends."""
        for c in claimed:
            self._held[id(c)] = (c, flight)
            self._holding[(c.row.key.tenant_id, c.row.key.destination_id)] += 1
            self.governor.add_waiting(c.row.key)

    def _settled(self, c: Claimed) -> None:
        """`c` leaves this process's hands: its destination counts it no more. Once per
        claim, whichever comes first: its settlement or the end of its pass."""
        if self._held.pop(id(c), None) is not None:
            self.governor.done_waiting(c.row.key)
            dest = (c.row.key.tenant_id, c.row.key.destination_id)
            self._holding[dest] -= 1
            if self._holding[dest] <= 0:
                del self._holding[dest]
                emptied = self._emptied.pop(dest, None)
                if emptied is not None and not emptied.done():
                    emptied.set_result(None)

    # -- deleted destinations -------------------------------------------------------------

    def drops_waiting(self) -> set[DestKey]:
        """The deleted destinations whose client, outcome counts and metric series wait for
        the sends still holding their rows (they go once the last is settled)."""
        return set(self._emptied)

    def _gone(self, keys: set[DestKey]) -> None:
        """The governor found `keys` deleted: what this engine keeps for them goes once no
        claimed row of theirs is in hand."""
        self.provisioner.forget(keys)
        for key in keys:
            client = self.clients.forget(key)
            task = asyncio.create_task(
                self._drop(key, client),
                name="gradesync-drop-destination",
                context=log_context.detached(),
            )
            self._dropping.add(task)
            task.add_done_callback(self._dropping.discard)

    async def _drop(self, key: DestKey, client: DestinationClient | None) -> None:
        if self._holding.get(key) and key not in self.governor.destinations:
            # its rows' sends may still use the client (their outcomes change nothing: the
            # rows went with the destination)
            emptied = self._emptied.get(key)
            if emptied is None:
                emptied = self._emptied[key] = asyncio.get_running_loop().create_future()
            await asyncio.shield(emptied)
        # outcomes written before the deletion are counted once written: then the series go
        try:
            await self.writer.flush()
        except Exception as exc:  # the database away: written (and counted) once it answers
            log.warning("dropping deleted destination %s/%s's series: %s", *key, first_line(exc))
        if key not in self.governor.destinations:
            # not registered again under its id meanwhile: a live destination's counters
            # are never reset
            self.writer.delivered.pop(key, None)
            self.meter.destinations_gone({key})
            # and what a send in flight at the deletion cached of its columns since
            self.provisioner.forget({key})
        if client is not None:
            # a no-op for every adapter today (the HTTP pool, aiohttp's sockets, is the
            # context's, closed with the process), kept as the protocol promises it: it
            # costs nothing, riding on the wait above, which the series need anyway (a send
            # in flight counts its answer under its destination)
            await self.clients.close(client)

    def _let_go(self, flight: InFlight) -> list[Claimed]:
        """The rows `flight`'s pass claimed and did not settle, out of its hands."""
        mine = [c for c, owner in self._held.values() if owner is flight]
        for c in mine:
            self._settled(c)
        return mine

    def _give_back(self, flight: InFlight) -> int:
        """The rows `flight`'s pass claimed and did not settle, let go fenced to their claims
        (written once the database answers, as any outcome kept meanwhile): they go on the
        next pass, not when their lease runs out. A send cancelled in flight may have reached
        the destination: sent again, with a newer timestamp, it changes nothing there (as
        when a stopping worker gives its leases back)."""
        mine = self._let_go(flight)
        for c in mine:
            self.writer.put(Settlement(c.row.key, c.course_id, None, c.lease_until))
        return len(mine)

    async def _fenced(
        self,
        work: Coroutine[Any, Any, None],
        rows: Sequence[Claimed],
        stats: DeliveryStats,
        run_id: str | None,
        *,
        sending: bool = False,
    ) -> None:
        """Run one task's work on `rows`. Should it fail, the rows it still holds are settled
        at once, fenced to their claims, rather than left leased until their leases run
        out: the rows a preparing task has not handed to a send task yet, or (`sending`) a
        send task's own row. An error nothing classified (a bug: a destination's errors are
        settled where they arise) leaves them retrying (`internal_error`) on the backoff of
        a failed send, so a fault that stays is met once a row per backoff step, however
        often passes claim, until the row gives up (`retries_exhausted`); a send that
        reached the destination goes again with a newer timestamp. A lost database only
        gives them back, no try counted: the pass stops at its next query, and they go
        once the database answers. A send task fences its own row (`send`)."""
        try:
            await work
        except Exception as exc:
            self._fence(exc, rows, stats, run_id, sending=sending)

    def _fence(
        self,
        exc: Exception,
        rows: Sequence[Claimed],
        stats: DeliveryStats,
        run_id: str | None,
        *,
        sending: bool,
    ) -> None:
        """A task's work on `rows` failed with `exc`: the rows it still holds are settled
        (`_fenced`)."""
        mine = [c for c in rows if c.sending == sending and id(c) in self._held]
        if database_unavailable(exc):
            for c in mine:
                self._settled(c)
                self.writer.put(Settlement(c.row.key, c.course_id, None, c.lease_until))
            # the pass stops at its next query and says so: one line here
            log.warning(
                "a delivery task stopped, the database unavailable (%s); its %d claimed "
                "results go again once the database answers",
                first_line(exc),
                len(mine),
            )
            return
        failed = RetryLater(internal_error(type(exc).__name__))
        self._settle_all(mine, failed, stats, run_id, logged=True)
        stats.failed += len(mine)
        k, course = rows[0].row.key, rows[0].course_id  # one destination and course
        log.error(
            "a delivery task for %s/%s, course %s, failed unexpectedly; its %d claimed "
            "results are tried again later (retrying, %s)",
            k.tenant_id,
            k.destination_id,
            course,
            len(mine),
            failed.reason.code,
            exc_info=exc,
            extra=log_context.fields(tenant=k.tenant_id, destination=k.destination_id),
        )

    @staticmethod
    def _count(stats: DeliveryStats, outcome: DeliveryOutcome | Reason | None) -> None:
        if isinstance(outcome, Reason):
            stats.skipped += 1
        elif isinstance(outcome, Rejected):
            stats.rejected += 1
        elif isinstance(outcome, RetryLater):
            stats.retrying += 1
        elif isinstance(outcome, Delivered):
            stats.delivered += 1

    async def _prepare_course(
        self,
        group: tuple[str, str, str],
        items: list[Claimed],
        facts: BatchFacts,
        stats: DeliveryStats,
        run_id: str | None,
        flight: InFlight,
    ) -> None:
        """Prepare one course's claimed rows and start their sends: the course link, then
        each activity's column (created on the remote when new) at the same time. A task of
        its own, so a column being created holds up only its own rows, not the claiming
        and sending of everything else."""
        tenant_id, dest_id, _ = group
        d = self.governor.destinations.get((tenant_id, dest_id))
        if d is None or facts.tenant is None or facts.course is None:
            self._settle_all(items, None, stats, run_id)  # deleted meanwhile: let go
            return
        moved = migrated_to(facts.course_link) if facts.course_link is not None else None
        if moved is not None:
            # computed before the course moved to LTI 1.3: never send through the old link
            self._settle_all(items, course_migrated(d, moved), stats, run_id)
            return
        lim = self.governor.limits_for(d)
        try:
            client = self.clients.get(d)
        except Exception as exc:
            reason = destination_unavailable(d, f"{type(exc).__name__}: {exc}")
            self.governor.gate(
                d,
                lim,
                self.clock.now() + self.settings.misconfigured_pause,
                PauseCause.MISCONFIGURED,
                reason.text,
            )
            self._settle_all(
                items,
                RetryLater(
                    reason, retry_after=self.settings.misconfigured_pause, misconfigured=True
                ),
                stats,
                run_id,
            )
            return
        try:
            course_link = await self.provisioner.course_link(
                client, d, facts.course, facts.course_link
            )
        except RemoteFailure as f:
            outcome = outcome_of_failure(self.governor, f, d, lim, course_wide=True)
            self._settle_all(items, outcome, stats, run_id, logged=True)
            return
        except Exception as exc:
            self._settle_all(
                items, unexpected_failure(self.governor, exc, d, lim), stats, run_id, logged=True
            )
            return

        by_activity: dict[str, list[Claimed]] = {}
        for c in items:
            by_activity.setdefault(c.row.key.activity_id, []).append(c)
        target = _CourseInHand(d, client, lim, facts.tenant, facts.course, course_link, facts)
        await asyncio.gather(
            *(
                self._fenced(
                    self._prepare_column(target, activity_id, rows, stats, run_id, flight),
                    rows,
                    stats,
                    run_id,
                )
                for activity_id, rows in by_activity.items()
            )
        )

    async def _prepare_column(
        self,
        t: _CourseInHand,
        activity_id: str,
        group: list[Claimed],
        stats: DeliveryStats,
        run_id: str | None,
        flight: InFlight,
    ) -> None:
        d, facts = t.destination, t.facts
        activity = facts.activities.get(activity_id)
        if activity is None:
            self._settle_all(group, None, stats, run_id)
            return
        policy = activity_policy((t.tenant.policy, t.course.policy), activity)
        if isinstance(policy, Reason):  # said as computing says it
            self._settle_all(group, policy, stats, run_id)
            return
        column = column_for(activity, policy, t.client.capabilities)
        if isinstance(column, NoResult):
            self._settle_all(group, column.reason, stats, run_id)
            return
        started = False

        def start(item_link: ItemLink) -> None:
            nonlocal started
            started = True
            self._start_sends(t, group, item_link, column, stats, run_id, flight)

        try:
            item_link, _ = await self.provisioner.ensure_column(
                t.client,
                d,
                t.course_link,
                column,
                facts.items.get(activity_id),
                priority=min(c.priority for c in group),
                then=start,
                for_grades=True,
            )
        except DestinationPaused:
            self._let_wait(group, stats, run_id)
            return
        except Exception as exc:
            if started:  # the sends hold their rows: `_fenced` settles those still here
                raise
            self._column_failed(t, group, exc, stats, run_id)
            return
        if not started:
            start(item_link)

    def _column_failed(
        self,
        t: _CourseInHand,
        group: list[Claimed],
        exc: Exception,
        stats: DeliveryStats,
        run_id: str | None,
    ) -> None:
        """The column could not be made: its rows settle with what `exc` means."""
        d = t.destination
        if isinstance(exc, RemoteFailure) and exc.failure is FailureClass.NOT_SYNCED:
            # the destination does not take this column by design (e.g. not selected for
            # SIS passback): the rows are skipped with the reason, not refused
            self._settle_all(group, reason_of(exc), stats, run_id)
            return
        outcome = (
            outcome_of_failure(self.governor, exc, d, t.limits)
            if isinstance(exc, RemoteFailure)
            else unexpected_failure(self.governor, exc, d, t.limits)
        )
        self._settle_all(group, outcome, stats, run_id, logged=True)

    def _start_sends(
        self,
        t: _CourseInHand,
        group: list[Claimed],
        item_link: ItemLink,
        column: Column,
        stats: DeliveryStats,
        run_id: str | None,
        flight: InFlight,
    ) -> None:
        d, facts = t.destination, t.facts
        for c in group:
            person = facts.people.get(c.row.key.person_id)
            if person is None:
                why = no_person_link(d, course_id=t.course_link.course_id)
                self._settle_all([c], why, stats, run_id)
                continue
            if c.row.desired is None or c.row.state is DeliveryState.SKIPPED:
                self._settle_all([c], None, stats, run_id)
                continue
            result = desired_from_json(c.row.desired)
            ready = Ready(
                c,
                d,
                t.client,
                t.limits,
                ResultTarget(t.course_link, item_link, person),
                result,
                _scale(d, result, column),
            )
            c.sending = True  # its send task holds it from here
            flight.start(self.send(ready, stats, run_id), 1)

    # -- sending --------------------------------------------------------------------------

    async def send(self, r: Ready, stats: DeliveryStats, run_id: str | None) -> None:
        """Send (or settle) `r` holding a slot and a token of the limits in force (live grades
        first; limits changed while this send waited: the new ones). A send that sends
        nothing gives its token back (`Admission`). A send task's whole work, in one
        coroutine: its admission taken at once when nothing need be waited for, and its row
        fenced here should it fail (`_fenced`)."""
        try:
            held = self.governor.admitted(r.destination, r.limits, r.claimed.priority)
            if not held.take_now():  # most sends: a free slot and token, no waiting
                await held.take()
            try:
                c, d, lim = r.claimed, r.destination, held.limits
                if not self.governor.may_send(lim, self.clock.now()):
                    # paused (by an admin, the remote's Retry-After, the breaker): the row
                    # waits as it is, due again the moment the pause ends or is lifted
                    self._let_wait([c], stats, run_id)
                    return
                left = self.settings.lease.total_seconds() - (time.monotonic() - c.claimed_at)
                least = self.settings.min_lease_left.total_seconds()
                if left < least:
                    # held too long behind others: let the lease go rather than risk two
                    # workers sending one key at once (at a rate slower than one token per lease
                    # left, each token would go to a send whose lease had run short too, and
                    # nothing would ever be sent: the token goes back)
                    lim.breaker.release_probe()
                    self._settle_one(c, None, stats, run_id, logged=False)
                    return
                probe = lim.breaker.probing  # half-open: this send is its one probe
                held.sending()
                started = time.perf_counter()
                payload: dict[str, Any] | None = None
                within = left - settle_margin(least)
                deadline = asyncio.timeout(within)  # the send ends before its claim does
                gone = False  # the destination no longer holds the column, which is made again
                try:
                    async with deadline:
                        receipt = await r.client.put_result(
                            r.target,
                            r.result,
                            c.timestamp,
                            # the slot held here takes the first request; any more a token
                            # each (a refused SIS result's look-up), the governor asked then
                            # only. `probe` was read off `lim`, whose breaker is the one
                            # `limits_for(d)` holds (limits replaced keep it; `lim` is not
                            # dropped, or `may_send` would have refused)
                            each_request=self.governor.further_requests(d, probe),
                        )
                except RemoteFailure as f:
                    gone = f.code == LINE_ITEM_GONE and columns_made(d.kind)
                    if gone and f.failure is FailureClass.REJECTED:
                        # an LMS's column deleted: the grade waits for the column made again
                        f = _after_its_column(f)
                    outcome = outcome_of_failure(self.governor, f, d, lim)
                except DestinationPaused:
                    # paused before a further request of the send (a refusal's look-up): the
                    # row waits as it is, due again the moment the pause ends or is lifted
                    outcome = None
                except asyncio.CancelledError:
                    # its pass stopped: a probe with no answer goes to the next send, or none
                    # would go to the destination again in this process
                    if probe:
                        lim.breaker.release_probe()
                    raise
                except Exception as exc:
                    if deadline.expired():
                        outcome = outcome_of_failure(self.governor, _claim_ending(within), d, lim)
                    else:
                        outcome = unexpected_failure(self.governor, exc, d, lim)
                else:
                    payload = dict(receipt.payload)
                    outcome = Delivered(receipt.status, receipt.message)
                    self.governor.answered(d, lim)
                    stats.delivered_items.add(
                        (c.row.key.tenant_id, d.id, c.course_id, c.row.key.activity_id)
                    )
                answered_at = self.clock.now()
                latency = (time.perf_counter() - started) * 1000.0
                if probe and lim.breaker.probing:
                    # answered with a pause (slow down, a misconfiguration) that records nothing
                    # on the breaker: the first request after the pause probes
                    lim.breaker.release_probe()
                stats.sent += 1
                if gone and self.provisioner.column_gone(d, r.target.item):
                    # marked before the row settles: its next try finds the mark
                    await self._column_gone(r, answered_at)
                self._settle_one(
                    c,
                    outcome,
                    stats,
                    run_id,
                    logged=True,
                    payload=payload,
                    latency=latency,
                    answered_at=answered_at,
                    scale=r.scale,
                )
            finally:
                held.leave()
        except Exception as exc:
            self._fence(exc, [r.claimed], stats, run_id, sending=True)

    async def _column_gone(self, r: Ready, now: datetime) -> None:
        """Mark the column `r` was refused for as gone, and make its delivered grades due
        again (`Provisioner.mark_gone`). The destination's answer stands whatever happens
        here: a failure is logged, and the column's next refusal marks it (or a remaster)."""
        d, item, course_id = r.destination, r.target.item, r.target.course.course_id
        try:
            again = await asyncio.to_thread(
                self.provisioner.mark_gone, d, course_id, item, now, r.claimed.row.key
            )
        except Exception:
            log.exception("marking column %s at %s as gone there failed", item.activity_id, d.id)
            self.provisioner.gone_unmarked(d, item)
            return
        if again:
            self.note_due(where={(d.tenant_id, d.id, course_id, item.activity_id)})

    def _let_wait(self, items: Sequence[Claimed], stats: DeliveryStats, run_id: str | None) -> None:
        """The destination is paused: the rows wait as they are (nothing was asked of it),
        due again the moment the pause ends or is lifted."""
        stats.gated += len(items)
        for c in items:
            self._settle_one(c, None, stats, run_id, logged=False)

    def _settle_one(
        self,
        c: Claimed,
        outcome: DeliveryOutcome | Reason | None,
        stats: DeliveryStats,
        run_id: str | None,
        *,
        logged: bool,
        payload: dict[str, Any] | None = None,
        latency: float | None = None,
        answered_at: datetime | None = None,
        scale: float | None = None,
    ) -> None:
        self._settled(c)
        if logged:
            self._count(stats, outcome)
        self.writer.put(
            Settlement(
                c.row.key,
                c.course_id,
                outcome,
                c.lease_until,
                sent_hash=c.row.desired_hash,
                timestamp=c.timestamp,
                payload=payload,
                latency_ms=latency,
                answered_at=answered_at,
                run_id=run_id,
                logged=logged,
                score_scale=scale,
                claimed=c.row,
            )
        )

    # -- the pass -------------------------------------------------------------------------

    def _ask_for_help(self) -> None:
        if self.waker is None:
            return
        if time.monotonic() - self._help_asked < 1.0:
            return
        self._help_asked = time.monotonic()
        try:
            self.waker.wake_delivery()
        except Exception:
            log.exception("asking other workers for help failed")

    async def deliver(
        self,
        scope: DeliveryScope = DeliveryScope(),
        *,
        run_id: str | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> DeliveryStats:
        """Deliver due rows in `scope` until none is left to claim; returns once every
        claimed row is settled and written."""
        stats = DeliveryStats()
        base = max(1, self.settings.claim_batch)
        batch = base  # grows while claiming is the bottleneck and no live grade arrives
        most = base * CLAIM_GROWTH
        live_at = float("-inf")  # when live grades last became due for this pass
        flight = InFlight()
        me = _Listening(scope, flight)
        # Claim when something may be found: at the start, while the last claim may have
        # left due rows behind, when rows became due in this process (note_due wakes the
        # pass), and at least every `poll` (rows computed by other processes). Not after
        # every send.
        seen = me.due - 1
        live_seen = me.live
        more = True
        claimed_at = time.monotonic()
        poll = self.settings.poll.total_seconds()
        flushed = False
        sweep = stop is None and scope == DeliveryScope()
        self._passes.add(me)
        self._sweeps += sweep
        try:
            while stop is None or not stop():
                claimed: list[Claimed] = []
                if live_seen != me.live:
                    # live grades computed: claimed now, even while a run's rows fill the
                    # pass's hands or the destination's queue (the slots send them first)
                    if me.due - seen == me.live - live_seen:
                        seen = me.due  # nothing else became due meanwhile
                    live_seen = me.live
                    # a live grade waits for the claim in progress: keep claims short
                    live_at, batch = time.monotonic(), base
                    claimed, facts, left = await self.claim(scope, batch, live_only=True)
                    if left and len(claimed) >= batch:
                        live_seen -= 1  # a full batch: more live grades may be waiting
                grown = batch
                # claim more only while in-flight tasks hold fewer rows than four batches
                room = flight.rows + batch <= batch * 4 or not flight.tasks
                due = more or seen != me.due or time.monotonic() - claimed_at >= poll
                if not claimed and room and due:
                    seen, claimed_at = me.due, time.monotonic()
                    claimed, facts, more = await self.claim(scope, batch)
                    if time.monotonic() - live_at > LIVE_RECENT:
                        grown = next_claim_size(batch, len(claimed), flight.holding, most)
                if claimed:
                    flushed = False
                    self._hold(claimed, flight)
                    stats.claimed += len(claimed)
                    if len(claimed) >= batch:
                        self._ask_for_help()
                    batch = grown
                    for group, items in self._by_course(claimed).items():
                        prepare = self._prepare_course(
                            group, items, facts[group], stats, run_id, flight
                        )
                        flight.start(self._fenced(prepare, items, stats, run_id), len(items))
                    continue
                if not flight.tasks:
                    if flushed:
                        if seen == me.due and live_seen == me.live:
                            break
                        # rows of this scope became due while the last claim read the
                        # ledger (too early to see them): claim again rather than end with
                        # them unclaimed. Only wakes for this scope count (`note_due`'s
                        # `where`), so a run's pass ends though other courses' grades keep
                        # arriving; a cap on claims again instead would still end a pass
                        # with a row of its own that became due during its last claim
                        continue
                    # write what is settled (releasing leases); a row still due after that
                    # (a newer desired state arrived during its send) is claimed next
                    await self.writer.flush()
                    flushed = True
                    continue
                # at least every `poll`, even while sends wait (on a rate limit, a slow
                # remote): retries and pauses that end, rows of other processes, and
                # changed limits (read with the destinations) are seen meanwhile
                if room:
                    timeout = max(0.0, claimed_at + poll - time.monotonic())
                else:  # hands full: nothing is claimed, but limits and pauses are read
                    await self.governor.refresh_destinations()
                    timeout = poll
                await flight.wait(timeout)
            while flight.tasks:  # stopped: finish what was claimed
                await flight.wait()
        except BaseException as exc:
            flight.cancel()
            if isinstance(exc, Exception) and database_unavailable(exc):
                given = self._give_back(flight)
                if given:
                    log.warning(
                        "a delivery pass stopped, the database unavailable; its %d claimed "
                        "results go again once the database answers",
                        given,
                    )
            raise
        finally:
            self._passes.discard(me)
            self._sweeps -= sweep
            # every row claimed and not settled (its task cancelled before or while sending,
            # or failed) counts no more: a pass that stopped must not leave its destination
            # looking busy (a stopping worker clears the leases themselves)
            self._let_go(flight)
        await self.writer.flush()
        await self._background.wait()  # pauses and links written, so callers see them
        return stats

    async def aclose(self) -> None:
        # stopping: a deleted destination's client waiting for its rows is closed with the
        # others (`Clients.aclose`), and no flush of its starts the writer again
        for task in list(self._dropping):
            task.cancel()
        await asyncio.gather(*list(self._dropping), return_exceptions=True)
        await self.writer.stop()
        await self._background.wait()
        await self.governor.aclose()


def _after_its_column(f: RemoteFailure) -> RemoteFailure:
    """A grade refused because its column is gone at a destination whose columns gradesync
    makes (an LMS's deleted): tried again by itself, a few times (`per_key`: the LMS works),
    once the column is made again, rather than refused for good on a column that returns."""
    return RemoteFailure(
        FailureClass.RETRY_LATER,
        f.code,
        f.message,
        status=f.status,
        remedy=f.remedy,
        fix=f.fix,
        per_key=True,
    )
