"""Delivery: send the current desired state of due ledger rows, and record what happened.

One pass (`Deliverer.deliver`) repeats three steps until nothing in its scope is due:

1. **claim** a batch of due rows nobody holds (oldest due first, whatever the course)
   and lease them to this worker, stamping each with the score timestamp it will carry
   (strictly increasing per key by at least the destination's `timestamp_step`, even
   across crashes);
2. **prepare** them: the course link (`ensure_course`), the column (`ensure_column`, only
   when its details changed), the person link; rows that cannot be sent are settled at once;
3. **send** each row's desired state concurrently, bounded per destination by its
   semaphore, rate limiter, circuit breaker and gate (an admin's pause is re-read before
   each send, `check_pause`; a paused row is let go unchanged), then **settle**: the
   outcome is folded into the row *re-read under lock* (`domain.ledger.after_delivery`), so
   a newer desired state that arrived during the send stays pending and goes next.

Settlements are written by one writer task in batches (group commit), never while an HTTP
call is open. The remote's failure class decides what happens next:

| class         | the row                      | the destination                                  |
|---------------|------------------------------|--------------------------------------------------|
| RETRY_LATER   | retrying, backoff + jitter   | counts towards the circuit breaker               |
| SLOW_DOWN     | retrying at Retry-After      | gated until Retry-After (paused_until)           |
| REJECTED      | rejected, remote's words kept| none (the destination works)                     |
| MISCONFIGURED | retrying after the pause     | paused (`misconfigured_pause`), admin told       |
| NOT_SYNCED    | skipped with the reason      | none (the column is not sent by design)          |
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gradesync.domain.ledger import (
    Delivered,
    DeliveryOutcome,
    Rejected,
    RetryLater,
    after_delivery,
    desired_from_json,
    next_score_timestamp,
    reconcile,
)
from gradesync.domain.model import (
    Course,
    CourseLink,
    DeliveryState,
    Destination,
    ItemLink,
    LedgerKey,
    LedgerRow,
    PersonLink,
    RunScope,
    Tenant,
)
from gradesync.domain.policy import (
    Capabilities,
    Column,
    DesiredResult,
    NoResult,
    column_for,
    column_hash,
    resolve_settings,
)
from gradesync.domain.reasons import Reason
from gradesync.services.clock import Clock
from gradesync.services.compute import (
    INVALID_POLICY,
    course_migrated,
    destination_unavailable,
    migrated_to,
    no_person_link,
)
from gradesync.services.destination import (
    DEFAULT_TIMESTAMP_STEP,
    DestinationClient,
    DestinationFactory,
    FailureClass,
    RemoteFailure,
    ResultTarget,
    timestamp_step_of,
)
from gradesync.services.engine_config import EngineSettings
from gradesync.services.limits import (
    BreakerState,
    DestinationLimits,
    limits_from_config,
    limits_signature,
)
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory
from gradesync.services.wakeup import Waker

log = logging.getLogger(__name__)

DestKey = tuple[str, str]  # (tenant_id, destination_id)


# --- clients -------------------------------------------------------------------------------


def _fingerprint(d: Destination) -> str:
    """Changes when anything a client is built from changes (settings, secret, kind)."""
    blob = json.dumps(
        [d.kind.value, d.profile, d.config, d.secret], sort_keys=True, default=str
    ).encode()
    return hashlib.sha256(blob).hexdigest()


class Clients:
    """One client per destination, rebuilt when the destination's settings change.
    Thread-safe: computing (in a thread) asks for capabilities too."""

    def __init__(self, factory: DestinationFactory) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._clients: dict[DestKey, tuple[str, DestinationClient]] = {}
        self._retired: list[DestinationClient] = []

    def get(self, destination: Destination) -> DestinationClient:
        key = (destination.tenant_id, destination.id)
        fp = _fingerprint(destination)
        with self._lock:
            cached = self._clients.get(key)
            if cached is not None and cached[0] == fp:
                return cached[1]
            client = self._factory(destination)
            if cached is not None:
                self._retired.append(cached[1])
            self._clients[key] = (fp, client)
            return client

    def capabilities(self, destination: Destination) -> Capabilities | Reason:
        try:
            return self.get(destination).capabilities
        except Exception as exc:  # an unknown kind or unusable settings
            return destination_unavailable(destination, f"{type(exc).__name__}: {exc}")

    async def aclose(self) -> None:
        with self._lock:
            clients = [c for _, c in self._clients.values()] + self._retired
            self._clients.clear()
            self._retired = []
        for client in clients:
            try:
                await client.aclose()
            except Exception:
                log.exception("closing a destination client failed")


# --- records passed between the steps ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryScope:
    tenant_id: str | None = None
    destination_id: str | None = None
    course_id: str | None = None
    activity_ids: tuple[str, ...] = ()

    @classmethod
    def of_run(cls, scope: RunScope) -> DeliveryScope:
        return cls(scope.tenant_id, scope.destination_id, scope.course_id, scope.activity_ids)


@dataclass(slots=True)
class Claimed:
    row: LedgerRow
    course_id: str
    timestamp: datetime  # the score timestamp this send carries
    claimed_at: float  # monotonic, to respect the lease


@dataclass(slots=True)
class Settlement:
    key: LedgerKey
    course_id: str
    # None: only give the lease back; Reason: policy-like skip; else the remote's outcome
    outcome: DeliveryOutcome | Reason | None
    sent_hash: str | None = None
    timestamp: datetime | None = None
    payload: dict[str, Any] | None = None
    latency_ms: float | None = None
    run_id: str | None = None
    logged: bool = False  # write a line to the delivery log


@dataclass(slots=True)
class Ready:
    claimed: Claimed
    destination: Destination
    client: DestinationClient
    limits: DestinationLimits
    target: ResultTarget
    result: DesiredResult


@dataclass(slots=True)
class DeliveryStats:
    claimed: int = 0
    sent: int = 0  # requests made
    delivered: int = 0
    retrying: int = 0
    rejected: int = 0
    skipped: int = 0
    gated: int = 0  # not sent: the destination was paused or asked to slow down
    # (tenant, destination, course, activity) where something was delivered
    delivered_items: set[tuple[str, str, str, str]] = field(default_factory=set)

    def add(self, other: DeliveryStats) -> None:
        self.claimed += other.claimed
        self.sent += other.sent
        self.delivered += other.delivered
        self.retrying += other.retrying
        self.rejected += other.rejected
        self.skipped += other.skipped
        self.gated += other.gated
        self.delivered_items |= other.delivered_items


# --- settling: group commit of outcomes ----------------------------------------------------


class SettleWriter:
    """Writes settlements in batches from one task: whatever piled up while the previous
    transaction ran goes in the next one, so a burst costs a few commits, not one each."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        settings: EngineSettings,
        worker_id: str,
        on_written: Callable[[list[LedgerRow]], None] | None = None,
        on_due: Callable[[], None] | None = None,
    ) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._settings = settings
        self._worker_id = worker_id
        self._on_written = on_written
        self._on_due = on_due
        self._queue: list[Settlement] = []
        self._more = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="gradesync-settle")

    def put(self, s: Settlement) -> None:
        self._queue.append(s)
        self._idle.clear()
        self._more.set()
        self.start()

    async def flush(self) -> None:
        """Wait until everything put so far is written."""
        while self._queue or not self._idle.is_set():
            self.start()
            await self._idle.wait()

    async def stop(self) -> None:
        """Write what is queued, but never hang a shutdown on a database that does not
        answer: after `stop_grace` the rest is let go (its leases run out and the rows are
        claimed and sent again, so nothing is lost)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._settings.stop_grace.total_seconds()):
                await self.flush()
        if self._task is not None:
            self._task.cancel()  # a write in flight goes back to the queue
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._queue:
            log.error(
                "stopping with %d delivery outcomes unwritten; they will be sent again",
                len(self._queue),
            )
            self._queue = []

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._more.clear()
                await self._more.wait()
                continue
            batch, self._queue = self._queue, []
            try:
                rows, let_go = await asyncio.to_thread(self._write, batch)
            except asyncio.CancelledError:
                self._queue = batch + self._queue
                raise
            except Exception:
                # The leases run out and the rows are claimed again: nothing is lost, but
                # do not spin on a database that is down.
                log.exception(
                    "writing %d delivery outcomes failed; they will be retried", len(batch)
                )
                await asyncio.sleep(1.0)
                continue
            if self._on_due is not None and (
                let_go or any(r.state is DeliveryState.PENDING for r in rows)
            ):
                # a newer desired state arrived during its send, or a row was let go
                # unsent: it is due again now
                self._on_due()
            if self._on_written is not None:
                self._on_written(rows)

    def _write(self, batch: list[Settlement]) -> tuple[list[LedgerRow], bool]:
        """Write the outcomes; (rows written, whether any row was let go unwritten)."""
        with self._uow_factory() as uow:
            now = self._clock.now()
            keys = sorted({s.key for s in batch}, key=_sort_key)
            rows = uow.ledger.get_keys(keys, lock=True)
            writes: dict[LedgerKey, tuple[LedgerRow, str]] = {}
            logs: list[dict[str, Any]] = []
            for s in batch:
                row = rows.get(s.key)
                if row is None or s.outcome is None:
                    continue
                new: LedgerRow | None
                if isinstance(s.outcome, Reason):
                    new = reconcile(row, s.key, NoResult(s.outcome), now)
                else:
                    new = after_delivery(
                        row,
                        s.sent_hash or "",
                        s.outcome,
                        now,
                        sent_timestamp=s.timestamp,
                        rng_value=self._rng.random(),
                        backoff=self._settings.backoff,
                    )
                if new is None:
                    continue
                rows[s.key] = new
                writes[s.key] = (new, s.course_id)
                if s.logged and not isinstance(s.outcome, Reason):
                    logs.append(_log_entry(s, now))
            # rows written give their lease back in the same upsert; only the others need
            # a release of their own
            let_go = [k for k in keys if k not in writes]
            uow.ledger.save_many(list(writes.values()), release_for=self._worker_id)
            uow.ledger.release(let_go, self._worker_id)
            uow.deliveries.add_many(logs)
            uow.commit()
        return [r for r, _ in writes.values()], bool(let_go)


def _sort_key(k: LedgerKey) -> tuple[str, str, str, str]:
    return (k.tenant_id, k.destination_id, k.activity_id, k.person_id)


def _log_entry(s: Settlement, now: datetime) -> dict[str, Any]:
    o = s.outcome
    assert o is not None and not isinstance(o, Reason)
    outcome = (
        "delivered"
        if isinstance(o, Delivered)
        else "retrying"
        if isinstance(o, RetryLater)
        else "rejected"
    )
    return {
        "key": s.key,
        "run_id": s.run_id,
        "sent_at": now,
        "sent_hash": s.sent_hash,
        "payload": s.payload,
        "outcome": outcome,
        "remote_status": o.remote_status,
        "remote_message": o.remote_message,
        "latency_ms": s.latency_ms,
    }


# --- the deliverer -------------------------------------------------------------------------


@dataclass(slots=True)
class _BatchFacts:
    tenant: Tenant | None
    course: Course | None
    course_link: CourseLink | None
    activities: dict[str, Any]
    items: dict[str, ItemLink]
    people: dict[str, PersonLink]


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
    facts: _BatchFacts


class _InFlight:
    """The tasks of one delivery pass (preparing a course, or sending one row) and the
    claimed rows they hold. `wait()` returns once one of them has ended or `wake()` was
    called (rows became due), whichever is first."""

    def __init__(self) -> None:
        self.tasks: dict[asyncio.Task[None], int] = {}
        self.rows = 0
        self._ended: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()

    def start(self, work: Coroutine[Any, Any, None], rows: int) -> None:
        task = asyncio.create_task(work)
        self.tasks[task] = rows
        self.rows += rows
        task.add_done_callback(self._ended_one)

    def _ended_one(self, task: asyncio.Task[None]) -> None:
        self._ended.append(task)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def wait(self) -> None:
        await self._wake.wait()
        self._wake.clear()
        ended, self._ended = self._ended, []
        for task in ended:
            self.rows -= self.tasks.pop(task, 0)
            if not task.cancelled() and task.exception() is not None:
                log.error("a delivery task failed unexpectedly", exc_info=task.exception())

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()


def _reason_of(f: RemoteFailure) -> Reason:
    text = f.message.strip() or f.code
    if f.remedy:
        text = f"{text} — {f.remedy}"
    return Reason(f.code, text)


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
    ) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        self.clients = clients
        self.settings = settings
        self.worker_id = worker_id
        self.waker = waker
        self.writer = SettleWriter(
            uow_factory, clock, settings, worker_id, on_written, on_due=self.note_due
        )
        # bumped whenever rows may have become due (computed, or settled still due), so
        # a pass claims when there is something to find, not after every send
        self._due_signal = 0
        self._passes: set[_InFlight] = set()
        self.limits: dict[DestKey, DestinationLimits] = {}
        self._limit_sigs: dict[DestKey, tuple[Any, Any]] = {}
        self.destinations: dict[DestKey, Destination] = {}
        self._destinations_at = -1e9
        self._course_links: dict[tuple[str, str, str], tuple[CourseLink, float]] = {}
        self._column_locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        # columns this process created or updated, until the claim's own read has them
        self._item_links: dict[tuple[str, str, str], ItemLink] = {}
        self._help_asked = -1e9
        self._background: set[asyncio.Task[None]] = set()

    def note_due(self) -> None:
        """Rows may have become due in this process: running passes claim again."""
        self._due_signal += 1
        for flight in self._passes:
            flight.wake()

    # -- destinations and their limits ----------------------------------------------------

    def limits_for(self, d: Destination) -> DestinationLimits:
        key = (d.tenant_id, d.id)
        sig = limits_signature(d.config)
        lim = self.limits.get(key)
        if lim is None or self._limit_sigs.get(key) != sig:
            new = limits_from_config(d.config, self.settings.breaker)
            if lim is not None:  # keep what the breaker and gate know
                new.breaker, new.gate_until, new.gate_reason = (
                    lim.breaker,
                    lim.gate_until,
                    lim.gate_reason,
                )
                new.waiting = lim.waiting
                new.gate_set_at, new.disabled = lim.gate_set_at, lim.disabled
            self.limits[key] = lim = new
            self._limit_sigs[key] = sig
        return lim

    async def refresh_destinations(self, *, force: bool = False) -> None:
        if (
            not force
            and time.monotonic() - self._destinations_at
            < self.settings.destinations_ttl.total_seconds()
        ):
            return

        def load() -> list[Destination]:
            with self.uow_factory() as uow:
                return uow.destinations.all()

        found = await asyncio.to_thread(load)
        self._destinations_at = time.monotonic()
        self.destinations = {(d.tenant_id, d.id): d for d in found}
        now = self.clock.now()
        for d in found:
            self._apply_pause(d, self.limits_for(d), now)

    def _apply_pause(self, d: Destination, lim: DestinationLimits, now: datetime) -> None:
        """Honour the pause the database holds for `d` (an admin's, or another worker's)."""
        lim.disabled = not d.enabled
        settle_time = 5 * self.settings.destinations_ttl.total_seconds() + 1.0
        if d.paused_until is not None and d.paused_until > now:
            lim.close_gate(d.paused_until, d.pause_reason or "Paused by an admin.")
        elif lim.gated(now) and time.monotonic() - lim.gate_set_at > settle_time:
            # our pause was written long ago and is gone from the database: an admin
            # resumed the destination
            lim.gate_until = None

    async def check_pause(self, d: Destination, lim: DestinationLimits) -> None:
        """Re-read the destination's pause before a send, so an admin's pause stops sends
        within the requests already in flight. Checks are shared: a send uses a check that
        started at most `pause_check` before it asked (0: only one that started after),
        and at most one check per destination is in flight. Once half of that time has
        passed, the next check starts in the background: under a steady load no send
        waits for a read."""
        asked = time.monotonic()
        window = self.settings.pause_check.total_seconds()
        fresh_from = asked - window
        while True:
            if lim.pause_checked_at >= fresh_from:
                if window > 0 and lim.pause_checked_at < asked - window / 2:
                    self._start_pause_check(d, lim)
                return
            task = lim.pause_check
            if task is not None and not task.done():
                started = lim.pause_check_started
                with contextlib.suppress(Exception):
                    await asyncio.shield(task)
                if started >= fresh_from:
                    return
                continue
            self._start_pause_check(d, lim)

    def _start_pause_check(self, d: Destination, lim: DestinationLimits) -> None:
        if lim.pause_check is None or lim.pause_check.done():
            lim.pause_check_started = time.monotonic()
            lim.pause_check = asyncio.create_task(self._read_pause(d, lim))

    async def _read_pause(self, d: Destination, lim: DestinationLimits) -> None:
        started = lim.pause_check_started

        def read() -> Destination | None:
            with self.uow_factory() as uow:
                return uow.destinations.get(d.tenant_id, d.id)

        try:
            fresh = await asyncio.to_thread(read)
        except Exception:
            log.exception("re-reading the pause of %s/%s failed", d.tenant_id, d.id)
            fresh = None
        else:
            if fresh is None:  # deleted: send nothing more
                lim.disabled = True
            else:
                self.destinations[(d.tenant_id, d.id)] = fresh
                self._apply_pause(fresh, lim, self.clock.now())
        lim.pause_checked_at = max(lim.pause_checked_at, started)

    def _excluded(self, now: datetime) -> tuple[list[DestKey], list[DestKey]]:
        """(destinations not to claim for, destinations owed one probe)."""
        excluded: list[DestKey] = []
        probes: list[DestKey] = []
        for key, d in self.destinations.items():
            lim = self.limits_for(d)
            if not d.enabled or lim.gated(now) or lim.saturated():
                excluded.append(key)
                continue
            b = lim.breaker
            if b.state is not BreakerState.CLOSED:
                excluded.append(key)
                if b.state is BreakerState.OPEN and b.open_until is not None and now < b.open_until:
                    continue
                if lim.waiting == 0:
                    probes.append(key)
        return excluded, probes

    def _all_excluded(self, scope: DeliveryScope, excluded: list[DestKey]) -> bool:
        """Whether every known destination in `scope` is in `excluded`."""
        out = set(excluded)
        return all(
            key in out
            for key in self.destinations
            if scope.tenant_id in (None, key[0]) and scope.destination_id in (None, key[1])
        )

    def _persist_pause(self, d: Destination, until: datetime | None, reason: str | None) -> None:
        def write() -> None:
            with self.uow_factory() as uow:
                uow.destinations.set_pause(d.tenant_id, d.id, until, reason)
                uow.commit()

        self._in_background(write, f"saving the pause of {d.tenant_id}/{d.id}")

    def _in_background(self, write: Callable[[], None], what: str) -> None:
        """Run a database write in a thread without waiting for it; a pass waits for all of
        them before it returns."""

        async def run() -> None:
            try:
                await asyncio.to_thread(write)
            except Exception:
                log.exception("%s failed", what)

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _gate(self, d: Destination, lim: DestinationLimits, until: datetime, reason: str) -> None:
        if lim.close_gate(until, reason):
            log.warning("destination %s/%s paused until %s: %s", d.tenant_id, d.id, until, reason)
            self._persist_pause(d, until, reason)

    # -- claiming -------------------------------------------------------------------------

    async def claim(
        self, scope: DeliveryScope, limit: int
    ) -> tuple[list[Claimed], dict[tuple[str, str, str], _BatchFacts], bool]:
        """Lease up to `limit` due rows, and read what sending them needs, in one
        transaction. Also says whether due rows may be left behind (the batch was full, or
        a destination was held back: saturated, paused, its breaker open)."""
        await self.refresh_destinations()
        now = self.clock.now()
        excluded, probes = self._excluded(now)
        held_back = any(self.destinations[k].enabled for k in excluded)
        if not probes and self._all_excluded(scope, excluded):
            # Every destination in scope has enough rows claimed, or is paused. A claim
            # could only find rows of destinations not loaded yet, which prepare lets go
            # unsent, and it would read every due row to find out: the deliver loop asks
            # again after each send, so skip it.
            return [], {}, held_back
        lease_until = now + self.settings.lease

        def work() -> tuple[
            list[tuple[LedgerRow, str, datetime]], dict[tuple[str, str, str], _BatchFacts]
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
                    (r, c, next_score_timestamp(r.last_timestamp, now, self._step(r.key)))
                    for r, c in rows
                ]
                uow.ledger.lease([(r.key, ts) for r, _, ts in stamped], self.worker_id, lease_until)
                facts = self._load_facts(uow, [(r.key, c) for r, c, _ in stamped]) if rows else {}
                uow.commit()
                return stamped, facts

        stamped, facts = await asyncio.to_thread(work)
        mono = time.monotonic()
        out = [Claimed(row, course_id, ts, mono) for row, course_id, ts in stamped]
        for c in out:
            d = self.destinations.get((c.row.key.tenant_id, c.row.key.destination_id))
            if d is not None:
                self.limits_for(d).waiting += 1
        return out, facts, held_back or len(out) >= limit

    def _step(self, key: LedgerKey) -> timedelta:
        """The destination's smallest timestamp step (whole seconds for Moodle)."""
        d = self.destinations.get((key.tenant_id, key.destination_id))
        if d is None:
            return DEFAULT_TIMESTAMP_STEP
        try:
            return timestamp_step_of(self.clients.get(d))
        except Exception:  # an unusable destination: its send fails on its own
            return DEFAULT_TIMESTAMP_STEP

    def _done_waiting(self, c: Claimed) -> None:
        d = self.destinations.get((c.row.key.tenant_id, c.row.key.destination_id))
        if d is not None:
            lim = self.limits_for(d)
            lim.waiting = max(0, lim.waiting - 1)

    # -- failures -------------------------------------------------------------------------

    def outcome_of_failure(
        self, f: RemoteFailure, d: Destination, lim: DestinationLimits, *, course_wide: bool = False
    ) -> DeliveryOutcome | Reason:
        """Act on a failure's class for the destination; return the row's outcome (a Reason:
        the row is skipped with it)."""
        now = self.clock.now()
        reason = _reason_of(f)
        if f.failure is FailureClass.NOT_SYNCED:
            # not sent by design (normally settled before this, from ensure_column): a skip,
            # which says nothing about the destination's health
            return reason
        if f.failure is FailureClass.REJECTED:
            lim.breaker.record_success()  # the destination works; it refused this one
            return Rejected(reason, remote_status=f.status, remote_message=f.message)
        if f.failure is FailureClass.SLOW_DOWN:
            wait = (
                timedelta(seconds=f.retry_after)
                if f.retry_after is not None and f.retry_after >= 0
                else self.settings.default_retry_after
            )
            self._gate(
                d,
                lim,
                now + wait,
                f"The destination asked gradesync to slow down ({f.message.strip() or f.code}); "
                "sending resumes by itself.",
            )
            return RetryLater(
                reason, retry_after=wait, remote_status=f.status, remote_message=f.message
            )
        if f.failure is FailureClass.MISCONFIGURED:
            wait = self.settings.misconfigured_pause
            if not course_wide:
                self._gate(
                    d,
                    lim,
                    now + wait,
                    f"Misconfigured: {reason.text} gradesync tries again by itself at the end "
                    "of the pause, or when an admin resumes the destination.",
                )
            return RetryLater(
                reason, retry_after=wait, remote_status=f.status, remote_message=f.message
            )
        opened = lim.breaker.record_failure(now)
        if opened is not None:
            self._gate(
                d,
                lim,
                opened,
                f"Circuit breaker open after repeated failures (last: {reason.text}); "
                "gradesync probes the destination again by itself.",
            )
        return RetryLater(reason, remote_status=f.status, remote_message=f.message)

    def _unexpected(self, exc: BaseException, d: Destination, lim: DestinationLimits) -> RetryLater:
        log.exception(
            "unexpected error talking to destination %s/%s", d.tenant_id, d.id, exc_info=exc
        )
        f = RemoteFailure(
            FailureClass.RETRY_LATER, "unexpected_error", f"{type(exc).__name__}: {exc}"
        )
        outcome = self.outcome_of_failure(f, d, lim)
        assert isinstance(outcome, RetryLater)
        return outcome

    # -- provisioning ---------------------------------------------------------------------

    async def course_link(
        self, client: DestinationClient, d: Destination, course: Course, link: CourseLink | None
    ) -> CourseLink:
        key = (d.tenant_id, d.id, course.id)
        cached = self._course_links.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        ensured = await client.ensure_course(course, link)
        if ensured != link:
            await asyncio.to_thread(self._save_course_link, ensured)
        self._course_links[key] = (
            ensured,
            time.monotonic() + self.settings.course_link_ttl.total_seconds(),
        )
        return ensured

    def _save_course_link(self, link: CourseLink) -> None:
        with self.uow_factory() as uow:
            uow.links.save_course(link)
            uow.commit()

    async def ensure_column(
        self,
        client: DestinationClient,
        d: Destination,
        course_link: CourseLink,
        column: Column,
        link: ItemLink | None,
        *,
        force: bool = False,
    ) -> tuple[ItemLink, bool]:
        """The activity's column, created or updated when needed. (link, whether written).
        One at a time per column in this process: a pass that waited finds the link the
        other wrote in `_item_links`, so two passes never create the same column twice
        (another process that races is stopped by the remote lookup by resourceId). The
        link is saved in the background: the scores need only the remote's answer."""
        wanted = column_hash(column)
        if not force and link is not None and link.details_hash == wanted:
            return link, False
        key = (d.tenant_id, d.id, column.activity_id)
        lock = self._column_locks.setdefault(key, asyncio.Lock())
        async with lock:
            current = self._item_links.get(key) or link
            if not force and current is not None and current.details_hash == wanted:
                return current, False
            ensured = await client.ensure_column(course_link, column, current, force=force)
            self._item_links[key] = ensured

            def save() -> None:
                with self.uow_factory() as uow:
                    uow.links.save_item(ensured)
                    uow.commit()

            self._in_background(save, f"saving the line item link of {column.activity_id}")
            return ensured, True

    @staticmethod
    def _load_facts(
        uow: UnitOfWork, keys: Sequence[tuple[LedgerKey, str]]
    ) -> dict[tuple[str, str, str], _BatchFacts]:
        """Course, columns and people of claimed rows, per (tenant, destination, course)."""
        groups: dict[tuple[str, str, str], tuple[set[str], set[str]]] = {}
        for k, course_id in keys:
            acts, people = groups.setdefault(
                (k.tenant_id, k.destination_id, course_id), (set(), set())
            )
            acts.add(k.activity_id)
            people.add(k.person_id)
        out: dict[tuple[str, str, str], _BatchFacts] = {}
        tenants: dict[str, Tenant | None] = {}
        for (tenant_id, dest_id, course_id), (activity_ids, person_ids) in groups.items():
            if tenant_id not in tenants:
                tenants[tenant_id] = uow.tenants.get(tenant_id)
            out[(tenant_id, dest_id, course_id)] = _BatchFacts(
                tenant=tenants[tenant_id],
                course=uow.courses.get(tenant_id, course_id),
                course_link=uow.links.course(tenant_id, dest_id, course_id),
                activities=uow.activities.get_many(tenant_id, activity_ids),
                items=uow.links.items(tenant_id, dest_id, activity_ids),
                people=uow.links.people_for(tenant_id, dest_id, course_id, person_ids),
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
            self._done_waiting(c)
            self._count(stats, outcome)
            self.writer.put(
                Settlement(
                    c.row.key,
                    c.course_id,
                    outcome,
                    sent_hash=c.row.desired_hash,
                    timestamp=c.timestamp,
                    run_id=run_id,
                    logged=logged,
                )
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
        facts: _BatchFacts,
        stats: DeliveryStats,
        run_id: str | None,
        flight: _InFlight,
    ) -> None:
        """Prepare one course's claimed rows and start their sends: the course link, then
        each activity's column (created on the remote when new) at the same time. A task of
        its own, so a column being created holds up only its own rows, not the claiming
        and sending of everything else."""
        tenant_id, dest_id, _ = group
        d = self.destinations.get((tenant_id, dest_id))
        if d is None or facts.tenant is None or facts.course is None:
            self._settle_all(items, None, stats, run_id)  # deleted meanwhile: let go
            return
        moved = migrated_to(facts.course_link) if facts.course_link is not None else None
        if moved is not None:
            # computed before the course moved to LTI 1.3: never send through the old link
            self._settle_all(items, course_migrated(d, moved), stats, run_id)
            return
        lim = self.limits_for(d)
        try:
            client = self.clients.get(d)
        except Exception as exc:
            reason = destination_unavailable(d, f"{type(exc).__name__}: {exc}")
            self._gate(d, lim, self.clock.now() + self.settings.misconfigured_pause, reason.text)
            self._settle_all(
                items,
                RetryLater(reason, retry_after=self.settings.misconfigured_pause),
                stats,
                run_id,
            )
            return
        try:
            course_link = await self.course_link(client, d, facts.course, facts.course_link)
        except RemoteFailure as f:
            outcome = self.outcome_of_failure(f, d, lim, course_wide=True)
            self._settle_all(items, outcome, stats, run_id, logged=True)
            return
        except Exception as exc:
            self._settle_all(items, self._unexpected(exc, d, lim), stats, run_id, logged=True)
            return

        by_activity: dict[str, list[Claimed]] = {}
        for c in items:
            by_activity.setdefault(c.row.key.activity_id, []).append(c)
        target = _CourseInHand(d, client, lim, facts.tenant, facts.course, course_link, facts)
        await asyncio.gather(
            *(
                self._prepare_column(target, activity_id, rows, stats, run_id, flight)
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
        flight: _InFlight,
    ) -> None:
        d, facts = t.destination, t.facts
        activity = facts.activities.get(activity_id)
        if activity is None:
            self._settle_all(group, None, stats, run_id)
            return
        try:
            policy = resolve_settings(t.tenant.policy, t.course.policy, activity.policy)
        except Exception as exc:
            self._settle_all(group, Reason(INVALID_POLICY, str(exc)), stats, run_id)
            return
        column = column_for(activity, policy, t.client.capabilities)
        if isinstance(column, NoResult):
            self._settle_all(group, column.reason, stats, run_id)
            return
        try:
            item_link, _ = await self.ensure_column(
                t.client, d, t.course_link, column, facts.items.get(activity_id)
            )
        except RemoteFailure as f:
            if f.failure is FailureClass.NOT_SYNCED:
                # the destination does not take this column by design (e.g. not selected
                # for SIS passback): the rows are skipped with the reason, not refused
                self._settle_all(group, _reason_of(f), stats, run_id)
            else:
                self._settle_all(
                    group, self.outcome_of_failure(f, d, t.limits), stats, run_id, logged=True
                )
            return
        except Exception as exc:
            self._settle_all(group, self._unexpected(exc, d, t.limits), stats, run_id, logged=True)
            return
        for c in group:
            person = facts.people.get(c.row.key.person_id)
            if person is None:
                self._settle_all([c], no_person_link(d), stats, run_id)
                continue
            if c.row.desired is None or c.row.state is DeliveryState.SKIPPED:
                self._settle_all([c], None, stats, run_id)
                continue
            ready = Ready(
                c,
                d,
                t.client,
                t.limits,
                ResultTarget(t.course_link, item_link, person),
                desired_from_json(c.row.desired),
            )
            flight.start(self.send(ready, stats, run_id), 1)

    # -- sending --------------------------------------------------------------------------

    async def send(self, r: Ready, stats: DeliveryStats, run_id: str | None) -> None:
        c, d, lim = r.claimed, r.destination, r.limits
        try:
            async with lim.semaphore:
                await lim.rate.acquire()
                await self.check_pause(d, lim)
                now = self.clock.now()
                if lim.disabled or lim.gated(now) or not lim.breaker.allow(now):
                    # paused (by an admin, the remote's Retry-After, the breaker): the row
                    # waits as it is, due again the moment the pause ends or is lifted
                    stats.gated += 1
                    self._settle_one(c, None, stats, run_id, logged=False)
                    return
                left = self.settings.lease.total_seconds() - (time.monotonic() - c.claimed_at)
                if left < self.settings.min_lease_left.total_seconds():
                    # held too long behind others: let the lease go rather than risk two
                    # workers sending one key at once
                    lim.breaker.release_probe()
                    self._settle_one(c, None, stats, run_id, logged=False)
                    return
                lim.in_flight += 1
                lim.max_in_flight = max(lim.max_in_flight, lim.in_flight)
                started = time.perf_counter()
                payload: dict[str, Any] | None = None
                try:
                    receipt = await r.client.put_result(r.target, r.result, c.timestamp)
                except RemoteFailure as f:
                    outcome = self.outcome_of_failure(f, d, lim)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    outcome = self._unexpected(exc, d, lim)
                else:
                    payload = dict(receipt.payload)
                    outcome = Delivered(receipt.status, receipt.message)
                    if lim.breaker.record_success() and lim.gate_until is not None:
                        lim.gate_until = None
                        self._persist_pause(d, None, None)
                    stats.delivered_items.add(
                        (c.row.key.tenant_id, d.id, c.course_id, c.row.key.activity_id)
                    )
                finally:
                    lim.in_flight -= 1
                stats.sent += 1
                latency = (time.perf_counter() - started) * 1000.0
                self._settle_one(
                    c, outcome, stats, run_id, logged=True, payload=payload, latency=latency
                )
        except asyncio.CancelledError:
            self._done_waiting(c)
            raise

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
    ) -> None:
        self._done_waiting(c)
        if logged:
            self._count(stats, outcome)
        self.writer.put(
            Settlement(
                c.row.key,
                c.course_id,
                outcome,
                sent_hash=c.row.desired_hash,
                timestamp=c.timestamp,
                payload=payload,
                latency_ms=latency,
                run_id=run_id,
                logged=logged,
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
        batch = max(1, self.settings.claim_batch)
        high_water = batch * 4  # claim more only while in-flight tasks hold fewer rows
        flight = _InFlight()
        # Claim when something may be found: at the start, while the last claim may have
        # left due rows behind, when rows became due in this process (note_due wakes the
        # pass), and at least every `poll` (rows computed by other processes). Not after
        # every send.
        seen = self._due_signal - 1
        more = True
        claimed_at = time.monotonic()
        poll = self.settings.poll.total_seconds()
        flushed = False
        self._passes.add(flight)
        try:
            while stop is None or not stop():
                claimed: list[Claimed] = []
                room = flight.rows + batch <= high_water or not flight.tasks
                due = more or seen != self._due_signal or time.monotonic() - claimed_at >= poll
                if room and due:
                    seen, claimed_at = self._due_signal, time.monotonic()
                    claimed, facts, more = await self.claim(scope, batch)
                if claimed:
                    flushed = False
                    stats.claimed += len(claimed)
                    if len(claimed) >= batch:
                        self._ask_for_help()
                    for group, items in self._by_course(claimed).items():
                        prepare = self._prepare_course(
                            group, items, facts[group], stats, run_id, flight
                        )
                        flight.start(prepare, len(items))
                    continue
                if not flight.tasks:
                    if flushed:
                        break
                    # write what is settled (releasing leases); a row still due after that
                    # (a newer desired state arrived during its send) is claimed next
                    await self.writer.flush()
                    flushed = True
                    continue
                await flight.wait()
            while flight.tasks:  # stopped: finish what was claimed
                await flight.wait()
        except BaseException:
            flight.cancel()
            raise
        finally:
            self._passes.discard(flight)
        await self.writer.flush()
        if self._background:  # pauses and links written, so callers see what it decided
            await asyncio.gather(*list(self._background), return_exceptions=True)
        return stats

    async def aclose(self) -> None:
        await self.writer.stop()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
