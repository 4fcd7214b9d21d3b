"""The governor: what may be sent to each destination, and when.

Per destination it keeps:

- `RateLimiter`: a token bucket (`rate_per_second`, bursts up to one second's worth).
- `CircuitBreaker`: after `threshold` transient failures in a row the destination is paused
  for a cool-down that doubles on each re-opening (up to a cap); when it passes, one probe is
  let through; its success closes the breaker, its failure re-opens it. Nobody has to resume
  a destination by hand.
- `DestinationLimits`: the above plus a semaphore (`concurrency`) and a gate: the time before
  which nothing is sent (breaker open, the remote's Retry-After, a misconfiguration pause, an
  admin's pause).

Every request to a destination takes its slot and token in one place (`Governor.admitted`,
an `Admission`, which moves to limits that replaced those it waited on, and gives the token
back when its holder sends nothing): a score's send (`Deliverer.send`), a column's write, a
run's read-back and each page of a Deep Linking look-up (`Governor.request`, which raises
`DestinationPaused` rather than ask a paused destination anything). Whichever of them is
the breaker's probe records how it ended. A column's write or a read-back that makes
several requests (pages, a look-up then a write, LTI 1.1's one result per learner) takes a
rate token for each after its first under the one slot it holds (`Governor.further_requests`, the
adapters' `RequestGate`).

`Governor` holds the destinations and their limits in the worker process; a gate it closes
is also written to the destination's `paused_until` so other workers and the console see
it, and an admin's pause is re-read before sends (`check_pause`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from gradesync.domain.model import SIS_KINDS, Destination, DestinationKind, LedgerKey
from gradesync.domain.passback import SIS_CONCURRENCY
from gradesync.domain.pauses import PauseCause, pause_text
from gradesync.domain.remedies import without_commands
from gradesync.services import log_context
from gradesync.services.clock import Clock
from gradesync.services.database_lost import OutageNotice
from gradesync.services.delivery.background import BackgroundWrites
from gradesync.services.delivery.records import DeliveryScope, DestKey
from gradesync.services.delivery.share import Slots, WorkerShare
from gradesync.services.destination import FailureClass, RemoteFailure, reason_of
from gradesync.services.destination_admin import MIN_RATE_PER_SECOND
from gradesync.services.destination_signals import DestinationSignals
from gradesync.services.engine_config import BreakerSettings, EngineSettings
from gradesync.services.ports import UnitOfWorkFactory

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 8


class DestinationPaused(Exception):
    """A request not made: the destination is paused (by an admin, for the remote's
    Retry-After, a misconfiguration, or the breaker's cool-down). Nothing failed."""

    def __init__(self, d: Destination, reason: str | None) -> None:
        super().__init__(f"{d.tenant_id}/{d.id} is paused: {reason or 'paused by an admin'}")


class RateLimiter:
    """Token bucket. `acquire` waits until a token is free; None rate means unlimited."""

    def __init__(
        self,
        rate_per_second: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        burst: bool = True,
    ) -> None:
        self._clock = clock
        self._lock = asyncio.Lock()
        self._stamp = clock()
        self.rate: float | None = None
        self._capacity = 1.0
        self._tokens = float("inf")  # starts full
        # set when new limits replace this limiter's: its waiters stop waiting on it
        self._retired = asyncio.Event()
        # set when a token comes back (`refund`) or the limiter retires: the waiter looks again
        self._wake = asyncio.Event()
        self.set_rate(rate_per_second, burst=burst)

    def set_rate(self, rate_per_second: float | None, *, burst: bool = True) -> None:
        """Change the rate; without `burst` at most one token is saved up (a share of a
        rate other processes also send at must not add up to bursts over it)."""
        if self.rate is not None:
            self._refill()
        self.rate = rate_per_second if rate_per_second and rate_per_second > 0 else None
        self._capacity = max(1.0, self.rate or 1.0) if burst else 1.0
        self._tokens = min(self._tokens, self._capacity)

    def _refill(self) -> None:
        now = self._clock()
        assert self.rate is not None
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_acquire(self) -> float:
        """Take a token now (0.0) or say how many seconds until one is free."""
        if self.rate is None:
            return 0.0
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate

    def refund(self) -> None:
        """Give back a token taken for a request that did not go (`Admission`: a send whose
        lease ran short while it waited, one that found the destination paused): at a slow
        rate, a token lost so would be one nothing uses."""
        if self.rate is None:
            return
        self._refill()
        self._tokens = min(self._capacity, self._tokens + 1.0)
        self._wake.set()

    def take_now(self) -> bool:
        """A token at once, when one is free and no one waits for one: True when taken
        (False: wait for one with `acquire`, which also says when the limiter retired)."""
        if self._retired.is_set():
            return False
        if self.rate is None:
            return True
        return not self._lock.locked() and self.try_acquire() == 0.0

    async def acquire(self) -> bool:
        """Wait for a token: True when taken, False when the limiter was retired first (its
        limits were replaced: take one from the new limits instead)."""
        if self._retired.is_set():
            return False
        if self.rate is None:
            return True
        async with self._lock:  # first come, first served
            while (wait := self.try_acquire()) > 0:
                if self._retired.is_set():
                    return False
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
            return True

    def retire(self) -> None:
        """New limits replace this limiter's: whoever waits on it stops at once (a mistyped
        0.001/s must not hold the sends already waiting for ~1000 s once it is corrected)."""
        self._retired.set()
        self._wake.set()


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Pure state machine over a wall clock passed in (no sleeping, easy to test)."""

    def __init__(self, settings: BreakerSettings = BreakerSettings()) -> None:
        self.settings = settings
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.open_until: datetime | None = None
        self._openings = 0
        self._probe_out = False

    def allow(self, now: datetime) -> bool:
        """May a send start now? While half-open, only one probe at a time."""
        if self.state is BreakerState.OPEN:
            if self.open_until is not None and now < self.open_until:
                return False
            self.state = BreakerState.HALF_OPEN
            self._probe_out = False
        if self.state is BreakerState.HALF_OPEN:
            if self._probe_out:
                return False
            self._probe_out = True
        return True

    def record_success(self) -> bool:
        """A send succeeded (or was refused on its merits). True when this closed the breaker."""
        if self.state is BreakerState.CLOSED and not self.failures and not self._openings:
            return False  # closed with nothing counted: the usual answer, nothing to reset
        closed_now = self.state is not BreakerState.CLOSED
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._openings = 0
        self.open_until = None
        self._probe_out = False
        return closed_now

    def record_failure(self, now: datetime) -> datetime | None:
        """A transient failure. Returns the pause end when this opened the breaker."""
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.settings.threshold:
            self._openings += 1
            factor = 2 ** min(self._openings - 1, 16)
            pause = min(self.settings.cooldown * factor, self.settings.max_cooldown)
            self.state = BreakerState.OPEN
            self.open_until = now + pause
            self._probe_out = False
            self.failures = 0
            return self.open_until
        return None

    def lift(self) -> None:
        """A person resumed the destination: an open breaker's cool-down ends now, so the next
        send goes as its probe (its success closes the breaker, its failure opens it again)."""
        if self.state is BreakerState.OPEN:
            self.open_until = None

    @property
    def probing(self) -> bool:
        """Half-open with its one probe out: nothing else goes until it is answered."""
        return self.state is BreakerState.HALF_OPEN and self._probe_out

    def release_probe(self) -> None:
        """A probe that was let through was not sent after all (e.g. gated)."""
        self._probe_out = False


class DestinationLimits:
    def __init__(
        self,
        concurrency: int = DEFAULT_CONCURRENCY,
        rate_per_second: float | None = None,
        breaker: BreakerSettings = BreakerSettings(),
    ) -> None:
        # the destination's limits, for all processes together
        self.total_concurrency = max(1, concurrency)
        self.total_rate = rate_per_second
        self.concurrency = self.total_concurrency  # this process's share
        self.semaphore = Slots(self.concurrency)
        self.rate = RateLimiter(rate_per_second)
        self.breaker = CircuitBreaker(breaker)
        self.gate_until: datetime | None = None  # nothing is sent before this
        self.gate_reason: str | None = None
        # whose pause the gate is: the breaker's alone is lifted by a success (`answered`)
        self.gate_cause: PauseCause | None = None
        self.gate_set_at = 0.0  # monotonic
        # monotonic time our gate's pause was committed to the database (None: not yet): a
        # read that started after it and finds no pause means an admin resumed
        self.gate_saved_at: float | None = None
        self.waiting = 0  # claimed rows not yet settled (bounds how much more to claim)
        # an admin's pause, re-read from the database before sends (`Governor.check_pause`)
        self.disabled = False
        self.pause_checked_at = float("-inf")  # monotonic start of the last finished check
        self.pause_check: asyncio.Task[None] | None = None  # the check in flight
        self.pause_check_started = float("-inf")
        # monotonic time a signal said the destination changed: sends wait for a read that
        # started after it
        self.changed_at = float("-inf")
        # set on such a signal: what waits for a pause's end looks again (`Governor.wait_open`)
        self.news = asyncio.Event()
        self.in_flight = 0
        self.max_in_flight = 0  # observed, for tests and metrics
        # the limits that replaced these when the destination's limits changed (sends that
        # waited here go on under those)
        self.replaced_by: DestinationLimits | None = None

    def current(self) -> DestinationLimits:
        """The limits in force: these, or the newest that replaced them."""
        lim = self
        while lim.replaced_by is not None:
            lim = lim.replaced_by
        return lim

    def retire(self, new: DestinationLimits) -> None:
        """`new` replaces these limits: sends waiting on their rate limiter stop waiting and
        take a slot and a token from `new`."""
        self.replaced_by = new
        self.rate.retire()

    def gated(self, now: datetime) -> datetime | None:
        if self.gate_until is not None and now < self.gate_until:
            return self.gate_until
        return None

    def close_gate(self, until: datetime, reason: str, cause: PauseCause) -> bool:
        """Hold every send until `until`. True when this extended the gate."""
        if self.gate_until is None or until > self.gate_until:
            self.gate_until = until
            self.gate_reason = reason
            self.gate_cause = cause
            self.gate_set_at = time.monotonic()
            self.gate_saved_at = None
            return True
        return False

    async def share(self, workers: int) -> None:
        """Take this process's share of the limits when `workers` processes send (at least
        one request at a time, so more workers than `concurrency` may exceed it)."""
        self.set_share(workers)
        await self.semaphore.resize(self.concurrency)  # wakes waiters when it grew

    def set_share(self, workers: int) -> None:
        self.concurrency = max(1, self.total_concurrency // workers)
        self.semaphore.set_size(self.concurrency)
        rate = self.total_rate / workers if self.total_rate else None
        self.rate.set_rate(rate, burst=False)

    def saturated(self) -> bool:
        """Enough rows are claimed for this destination to keep it busy for a while."""
        return self.waiting >= 4 * self.concurrency


class Admission:
    """One request's slot and rate token of a destination's limits (`Governor.admitted`).
    `async with` it: entered, it holds them under the limits in force (`limits`); its
    holder calls `sending()` as its request goes, which spends the token and counts the
    request in flight until the admission ends. Left without sending (the destination
    paused, a lease run short, a failure or cancellation before the request), its token goes
    back to the bucket: at a rate slower than the sends that give up, every token would
    otherwise go to a send that sent nothing. A class rather than a generator: every send
    passes through it. A score's send (`Deliverer.send`) takes it without the `async with`
    when it can: `take_now` (most sends: a free slot and token, the pause fresh), else
    `take`, and `leave` as it ends."""

    __slots__ = ("_destination", "_governor", "_priority", "_sent", "limits")

    def __init__(
        self, governor: Governor, d: Destination, lim: DestinationLimits, priority: int
    ) -> None:
        self._governor = governor
        self._destination = d
        self._priority = priority
        self._sent = False
        self.limits = lim

    def take_now(self) -> bool:
        """The slot and token at once, without waiting, when the limits are this process's
        own, a slot and a token are free and the pause last read serves (`pause_fresh`):
        True, holding them; False, holding nothing (`take` waits for them). What `take`
        does when it need not wait, in one call rather than a coroutine."""
        governor = self._governor
        if governor.workers is not None:
            return False
        lim = self.limits.current()
        if not governor.pause_fresh(self._destination, lim):
            return False
        if not lim.semaphore.take():
            return False
        if not lim.rate.take_now():
            lim.semaphore.release()  # none waits for it (`take` succeeded): only counted back
            return False
        self.limits = lim
        return True

    async def __aenter__(self) -> Admission:
        await self.take()
        return self

    async def take(self) -> None:
        """Wait for a slot and a token of the limits in force, and a fresh read of the
        pause."""
        governor, d, priority = self._governor, self._destination, self._priority
        lim = self.limits
        while True:
            lim = lim.current()
            slots, rate = lim.semaphore, lim.rate
            # each step awaits only when it must wait (most sends take a free slot, a
            # token and the pause last read at once)
            if not slots.take():
                await slots.acquire(priority)
            try:
                taken = rate.take_now() or await rate.acquire()
                if taken:
                    try:
                        if governor.workers is not None:
                            await governor.ready_to_send(lim, priority)
                        if not governor.pause_fresh(d, lim):
                            await governor.check_pause(d, lim)
                    except BaseException:
                        rate.refund()
                        raise
            except BaseException:
                slots.release()
                raise
            if taken and lim.replaced_by is None:
                self.limits = lim
                return
            # replaced meanwhile: its rate retired, the token it gave goes to no one
            slots.release()

    def sending(self) -> None:
        """The holder's request goes now: its token is spent, and it counts in flight."""
        lim = self.limits
        self._sent = True
        lim.in_flight += 1
        if lim.in_flight > lim.max_in_flight:
            lim.max_in_flight = lim.in_flight

    async def __aexit__(self, *exc: object) -> None:
        self.leave()

    def leave(self) -> None:
        """The slot goes back, and the token too when nothing was sent."""
        lim = self.limits
        if self._sent:
            lim.in_flight -= 1
        else:
            lim.rate.refund()
        lim.semaphore.release()


def default_concurrency(kind: DestinationKind) -> int:
    """Requests in flight at once when a destination's config does not say: a SIS takes
    fewer than an LMS (the profile's default, docs/oneroster.md)."""
    if kind in SIS_KINDS:
        return SIS_CONCURRENCY
    return DEFAULT_CONCURRENCY


# set on a failure whose breaker outcome a request recorded (the breaker's probe's): read by
# `counted`, so that the caller's classifying it (`failures.outcome_of_failure`) does not
# count it on the breaker a second time
_COUNTED = "_gradesync_breaker_counted"


def counted(exc: BaseException) -> bool:
    """Whether `exc`'s failure is on the breaker already: the breaker's probe, a request
    (`Governor.request`) that ended in it, recorded it as it ended."""
    return getattr(exc, _COUNTED, False) is True


def mark_counted(exc: BaseException) -> None:
    """Say that `exc`'s failure is on the breaker already (`counted`)."""
    with contextlib.suppress(AttributeError):  # an exception that takes no attribute
        setattr(exc, _COUNTED, True)


def limits_from_config(
    config: Mapping[str, Any],
    breaker: BreakerSettings = BreakerSettings(),
    *,
    concurrency_default: int = DEFAULT_CONCURRENCY,
) -> DestinationLimits:
    """`concurrency` (default `concurrency_default`) and `rate_per_second` (optional) from a
    destination's config. Bad values fall back to the defaults rather than stopping delivery."""
    try:
        concurrency = int(config.get("concurrency") or concurrency_default)
    except (TypeError, ValueError):
        concurrency = concurrency_default
    raw_rate = config.get("rate_per_second")
    try:
        rate = float(raw_rate) if raw_rate is not None else None
    except (TypeError, ValueError):
        rate = None
    if rate is not None and 0 < rate < MIN_RATE_PER_SECOND:
        # stored before the minimum was checked: the slowest rate allowed, not one that
        # never sends
        rate = MIN_RATE_PER_SECOND
    return DestinationLimits(concurrency, rate, breaker)


def limits_signature(config: Mapping[str, Any]) -> tuple[Any, Any]:
    return (config.get("concurrency"), config.get("rate_per_second"))


class Governor:
    """The destinations known to this worker and their limits, pauses and breakers."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        settings: EngineSettings,
        background: BackgroundWrites,
        worker_id: str = "",
        signals: DestinationSignals | None = None,
    ) -> None:
        self.uow_factory = uow_factory
        # told when a destination changes (`destination_signals`): then the pause is re-read
        # on that news and on a slow poll, not before every send
        self.signals = signals
        self._unsubscribe: Callable[[], None] | None = None
        self.clock = clock
        self.settings = settings
        self._background = background
        self.limits: dict[DestKey, DestinationLimits] = {}
        self._limit_sigs: dict[DestKey, tuple[Any, Any]] = {}
        self.destinations: dict[DestKey, Destination] = {}
        self._destinations_at = -1e9
        # told of destinations found deleted (by a read of all, or of one on its signal),
        # once their limits are dropped here: what else is kept for them goes too
        self.on_gone: Callable[[set[DestKey]], None] | None = None
        # the destinations the rest of the engine holds something for (its clients): one
        # not found by a read of all that started after is deleted too
        self.held_elsewhere: Callable[[], Collection[DestKey]] | None = None
        # told when a read finds a destination's pause lifted (its held rows are due)
        self.on_open: Callable[[DestKey], None] | None = None
        # every send re-reads pauses: an outage met meanwhile is said once
        self._pause_reads = OutageNotice(
            log, "re-reading destinations' pauses", "retrying (the pauses last read hold meanwhile)"
        )
        # many processes send to one destination: each takes its share of the limits
        self.workers: WorkerShare | None = None
        if settings.shared_limits:
            self.workers = WorkerShare(
                uow_factory,
                clock,
                worker_id,
                beat=settings.worker_beat,
                alive=settings.worker_alive,
            )
            self.workers.on_change = self._reshare

    async def _reshare(self, workers: int) -> None:
        for lim in list(self.limits.values()):
            await lim.share(workers)

    async def ready_to_send(self, lim: DestinationLimits, priority: int) -> None:
        """With shared limits: wait until this process's share is known to be current, and
        the slot it holds (taken at `priority`) still fits in it."""
        if self.workers is None:
            return
        live = self.workers.live
        await self.workers.ready()
        if self.workers.live != live or lim.concurrency != max(
            1, lim.total_concurrency // self.workers.live
        ):
            await lim.share(self.workers.live)
        await lim.semaphore.refit(priority)

    def _listen(self) -> None:
        """Hear destination changes in this event loop (from the first pass on)."""
        if self.signals is None or self._unsubscribe is not None:
            return
        loop = asyncio.get_running_loop()

        def heard(tenant_id: str, destination_id: str) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody to tell
                loop.call_soon_threadsafe(self._changed, (tenant_id, destination_id))

        self._unsubscribe = self.signals.subscribe(heard)

    def _changed(self, key: DestKey) -> None:
        """A destination changed: sends wait for a read that starts now."""
        lim, d = self.limits.get(key), self.destinations.get(key)
        if lim is None or d is None:
            self._destinations_at = -1e9  # a new one: the next pass loads it
            return
        lim.changed_at = time.monotonic()
        lim.news.set()
        if lim.pause_check is None or lim.pause_check.done():
            self._start_pause_check(d, lim)

    def pause_window(self) -> float:
        """How old (seconds) a read of a destination's pause may be for a send to use it."""
        if (
            self._unsubscribe is not None
            and self.signals is not None
            and self.signals.other_processes_heard
        ):
            return self.settings.pause_poll.total_seconds()
        return self.settings.pause_check.total_seconds()

    async def aclose(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.workers is not None:
            await self.workers.leave()

    def limits_for(self, d: Destination) -> DestinationLimits:
        key = (d.tenant_id, d.id)
        # the registration as this process last read it: a copy a caller kept from before
        # (a run's, a column's waiting out a pause) must not put back limits replaced since
        d = self.destinations.get(key, d)
        sig = limits_signature(d.config)
        lim = self.limits.get(key)
        if lim is None or self._limit_sigs.get(key) != sig:
            new = limits_from_config(
                d.config, self.settings.breaker, concurrency_default=default_concurrency(d.kind)
            )
            if lim is not None:  # keep what the breaker and gate know
                new.breaker, new.gate_until, new.gate_reason, new.gate_cause = (
                    lim.breaker,
                    lim.gate_until,
                    lim.gate_reason,
                    lim.gate_cause,
                )
                new.waiting = lim.waiting
                new.gate_set_at, new.disabled = lim.gate_set_at, lim.disabled
                new.gate_saved_at = lim.gate_saved_at
            if self.workers is not None:
                new.set_share(self.workers.live)
            if lim is not None:
                lim.retire(new)
            self.limits[key] = lim = new
            self._limit_sigs[key] = sig
        return lim

    async def refresh_destinations(self, *, force: bool = False) -> None:
        self._listen()
        if (
            not force
            and time.monotonic() - self._destinations_at
            < self.settings.destinations_ttl.total_seconds()
        ):
            return

        def load() -> list[Destination]:
            with self.uow_factory() as uow:
                return uow.destinations.all()

        # what is held before the read starts: a destination held then and not found was
        # deleted (one made meanwhile may be held after and not found yet)
        before = set(self.destinations) | set(self.limits)
        if self.held_elsewhere is not None:
            before.update(self.held_elsewhere())
        started = time.monotonic()
        found = await asyncio.to_thread(load)
        self._destinations_at = time.monotonic()
        # deleted and made again under its id since the last read: the old one is gone, with
        # all kept of it (limits, client, its columns), before the new one is held
        self._forget({(d.tenant_id, d.id) for d in found if self._remade(d)})
        held = self.destinations
        self.destinations = {(d.tenant_id, d.id): self._kept(held, d) for d in found}
        now = self.clock.now()
        for d in self.destinations.values():
            self._apply_pause(d, self.limits_for(d), now, started)
        # deleted since (limits or a client made for one a run held after its deletion
        # too): a process that outlives many destinations keeps nothing of theirs
        self._forget(before - set(self.destinations))

    def _forget(self, gone: set[DestKey]) -> None:
        """`gone` are deleted: their limits go (a send still holding them sends nothing)."""
        if not gone:
            return
        for key in gone:
            self.destinations.pop(key, None)
            self._limit_sigs.pop(key, None)
            lim = self.limits.pop(key, None)
            if lim is not None:
                lim.disabled = True
        if self.on_gone is not None:
            self.on_gone(gone)

    def _remade(self, fresh: Destination) -> bool:
        """`fresh` is another registration under the id of one held: the held one was
        deleted and this made since (a destination keeps its `created_at` for life)."""
        old = self.destinations.get((fresh.tenant_id, fresh.id))
        return (
            old is not None
            and old.created_at is not None
            and fresh.created_at is not None
            and old.created_at != fresh.created_at
        )

    @staticmethod
    def _kept(held: Mapping[DestKey, Destination], fresh: Destination) -> Destination:
        """The destination already held when `fresh` (read again) is equal to it: one copy
        of each registration's settings stays in memory, not one per read, and the clients
        keyed on it know it at once (`Clients.get`)."""
        old = held.get((fresh.tenant_id, fresh.id))
        return old if old is not None and old == fresh else fresh

    def _apply_pause(
        self, d: Destination, lim: DestinationLimits, now: datetime, read_at: float
    ) -> None:
        """Honour the pause the database holds for `d` (an admin's, or another worker's),
        as read by a query that started at `read_at` (monotonic). A pause found lifted (an
        admin's resume) is told to `on_open` with the destination: what it held is due now,
        and a pass that ran
        while the pause was still held here found nothing to claim. One that ran out by
        itself is not: passes look again by then (`next_retry_in`, the poll)."""
        shut = lim.disabled or lim.gated(now) is not None
        lim.disabled = not d.enabled
        if d.paused_until is not None and d.paused_until > now:
            lim.close_gate(
                d.paused_until,
                d.pause_reason or "Paused by an admin.",
                d.pause_cause or PauseCause.ADMIN,
            )
            if lim.gate_until == d.paused_until and lim.gate_saved_at is None:
                lim.gate_saved_at = time.monotonic()  # read from the database: it is there
        elif lim.gated(now) and lim.gate_saved_at is not None and read_at > lim.gate_saved_at:
            # our pause was in the database before this read began and is gone: an admin
            # resumed the destination, so what it held goes now
            lim.gate_until = None
        if shut and not lim.disabled and lim.gated(now) is None:
            # a person's resume (the API, the console, the command line in another process)
            # lifts an open breaker too: what it held goes now, not after its cool-down
            lim.breaker.lift()
            if self.on_open is not None:
                self.on_open((d.tenant_id, d.id))

    def pause_fresh(self, d: Destination, lim: DestinationLimits) -> bool:
        """Whether the pause last read serves a send asking now (`check_pause`, which waits
        for a read otherwise); past half its window, the next read starts in the background."""
        asked = time.monotonic()
        window = self.pause_window()
        if lim.pause_checked_at < max(asked - window, lim.changed_at):
            return False
        if window > 0 and lim.pause_checked_at < asked - window / 2:
            self._start_pause_check(d, lim)
        return True

    async def check_pause(self, d: Destination, lim: DestinationLimits) -> None:
        """Re-read the destination's pause before a send, so an admin's pause stops sends
        within the requests already in flight. Checks are shared: a send uses a check that
        started at most `pause_window()` before it asked (0: only one that started after)
        and after the last signal that the destination changed, and at most one check per
        destination is in flight. Once half of that time has passed, the next check starts
        in the background: under a steady load no send waits for a read."""
        asked = time.monotonic()
        window = self.pause_window()
        fresh_from = max(asked - window, lim.changed_at)
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
            # shared by every pass that waits on it: its lines name none of their runs
            lim.pause_check = asyncio.create_task(
                self._read_pause(d, lim), context=log_context.detached()
            )

    async def _read_pause(self, d: Destination, lim: DestinationLimits) -> None:
        started = lim.pause_check_started

        def read() -> Destination | None:
            with self.uow_factory() as uow:
                return uow.destinations.get(d.tenant_id, d.id)

        try:
            fresh = await asyncio.to_thread(read)
        except Exception as exc:
            self._pause_reads.failed(exc, f"re-reading the pause of {d.tenant_id}/{d.id}")
            fresh = None
        else:
            self._pause_reads.answered()
            if fresh is None or self._remade(fresh):
                # deleted (made again, maybe): this send sends nothing, and nothing of the
                # deleted one is kept; one made again is held at the next read
                lim.disabled = True
                key = (d.tenant_id, d.id)
                if self.limits.get(key) is lim:  # not one made since for a new registration
                    self._forget({key})
            else:
                fresh = self._kept(self.destinations, fresh)
                self.destinations[(d.tenant_id, d.id)] = fresh
                self._apply_pause(fresh, lim, self.clock.now(), started)
                self.limits_for(fresh)  # changed limits take effect at once
        lim.pause_checked_at = max(lim.pause_checked_at, started)

    def may_send(self, lim: DestinationLimits, now: datetime) -> bool:
        """Not paused (by an admin, a gate) and the breaker lets a request go (taking its
        one probe while half-open: whoever asked records the outcome or releases it)."""
        return not lim.disabled and not lim.gated(now) and lim.breaker.allow(now)

    def admitted(self, d: Destination, lim: DestinationLimits, priority: int = 0) -> Admission:
        """A slot and a rate token of the limits in force for `d`, taken in `priority` order
        (live grades first), with the pause re-read: `async with` it, send under its
        `limits`, and call its `sending()` as the request goes (`Admission`). Limits
        replaced meanwhile (an admin changed them, which wakes whoever waits on the old
        rate) are left at once, and both are taken again from the new ones: every request
        to a destination (a score's send, a column's write, a read-back) waits here, so
        none goes on under limits no longer in force."""
        return Admission(self, d, lim, priority)

    @contextlib.asynccontextmanager
    async def request(self, d: Destination, priority: int = 0) -> AsyncIterator[DestinationLimits]:
        """One request to `d` other than a score's send (a column's write, a read-back), within the
        destination's limits as a send is (`admitted`). Raises `DestinationPaused` when
        paused before it asks anything (its token goes back), or when a later page of it
        (`further_requests`) finds the destination paused, the pages asked before it having spent
        their tokens. A success closes the breaker (as a send's does); a failure is for the
        caller to classify, after this ends, but when this request was the breaker's probe
        its failure is recorded here (`probe_failed`), and the caller's classifying it
        counts it no more (`counted`)."""
        async with self._held(d, priority, lambda: True) as lim:
            yield lim

    @contextlib.asynccontextmanager
    async def call(self, d: Destination, priority: int = 0) -> AsyncIterator[FurtherRequests]:
        """A call of any number of requests to `d` under one slot (a listing's pages, a
        column's look-up then its write, LTI 1.1's result per learner), within its limits as
        `request`: each request enters the gate this yields (`further_requests`). A call that
        asked nothing (a read-back with no learner to ask) is no answer: it closes no
        breaker, and a probe it held goes back, for the next request to take."""
        gate: FurtherRequests | None = None
        async with self._held(d, priority, lambda: gate is not None and gate.asked):
            gate = self.further_requests(d)
            yield gate

    @contextlib.asynccontextmanager
    async def _held(
        self, d: Destination, priority: int, asked: Callable[[], bool]
    ) -> AsyncIterator[DestinationLimits]:
        """`request` and `call`: a slot held; `asked()` says, as it ends well, whether
        anything was asked under it (an answer, for the breaker)."""
        async with self.admitted(d, self.limits_for(d), priority) as admission:
            lim = admission.limits
            if not self.may_send(lim, self.clock.now()):
                held = self.destinations.get((d.tenant_id, d.id), d)
                raise DestinationPaused(d, held.pause_reason if lim.disabled else lim.gate_reason)
            probe = lim.breaker.probing  # half-open: this request is its one probe
            admission.sending()
            try:
                yield lim
            except BaseException as exc:
                if probe:
                    self.probe_failed(d, lim, exc)
                raise
            if asked():
                self.answered(d, lim)
            elif probe:
                lim.breaker.release_probe()

    def further_requests(self, d: Destination, probe: bool | None = None) -> FurtherRequests:
        """The gate for each request of a call that holds one slot (`request`) and makes
        several: a listing's pages, a column's look-up then its write, LTI 1.1's result per
        learner. The held slot's token goes to its first request; each later one takes a
        rate token of its own and finds the destination open (not paused, gated or with its
        breaker open), or raises `DestinationPaused`, its token given back. It takes no
        second slot: the caller holds one already, and with a cap of 1 a second would wait
        for the caller's own; a slot free at once may be taken for a request beside it
        (`FurtherRequests.beside`). Entered in the holding request, so the breaker half-open
        means this call is its probe, whose further requests go on. A breaker opened and
        cooled down since (no probe out) lets a later request go as it lets a new one go:
        that request is the probe, and its answer is recorded as it ends. `probe`: whether
        the holding request is the breaker's probe, as the caller read it off the limits it
        holds just before (a score's send does); else read here. Nothing else is read
        before a second request: the first takes the held slot's token, and most calls (a
        score's send to an LMS) make none through the gate, or one."""
        if probe is None:
            probe = self.limits_for(d).breaker.probing
        return FurtherRequests(self, d, probe)

    async def another_token(self, d: Destination, probe: bool) -> tuple[DestinationLimits, bool]:
        """A rate token for a further request under a slot held (`FurtherRequests`), with the
        pause re-read: the limits it was taken of, and whether this request took the
        breaker's probe."""
        while True:
            lim = self.limits_for(d)
            rate = lim.rate
            # False: those limits were replaced while waiting; a token of the new ones
            if rate.take_now() or await rate.acquire():
                break
        try:
            if not self.pause_fresh(d, lim):
                await self.check_pause(d, lim)
            breaker, now = lim.breaker, self.clock.now()
            open_ = breaker.state is BreakerState.CLOSED or (probe and breaker.probing)
            paused = lim.disabled or lim.gated(now)
            # the breaker cooled down with no probe out: this request probes, as a new one would
            took = not open_ and not paused and breaker.allow(now)
            if paused or not (open_ or took):
                held = self.destinations.get((d.tenant_id, d.id), d)
                raise DestinationPaused(d, held.pause_reason if lim.disabled else lim.gate_reason)
        except BaseException:
            rate.refund()
            raise
        return lim, took

    def probe_failed(self, d: Destination, lim: DestinationLimits, exc: BaseException) -> None:
        """The breaker's probe, a request other than a score's send, ended in `exc`: recorded
        as a send's outcome is (`failures.outcome_of_failure`), or every request after it
        would wait for an answer nobody records. Refused on its merits (the destination
        works): the breaker closes. No answer about the destination's health (cancelled,
        a column not sent by design) or an answer asking to slow down (the caller pauses
        the destination until its Retry-After, `slowed_down`): the next request probes. Any
        other failure re-opens the breaker."""
        breaker = lim.breaker
        if isinstance(exc, DestinationPaused):  # a later page found it paused: no answer
            breaker.release_probe()
            return
        if isinstance(exc, RemoteFailure):
            if exc.failure is FailureClass.REJECTED or exc.per_key:
                self.answered(d, lim)
                return
            if exc.failure in (FailureClass.SLOW_DOWN, FailureClass.NOT_SYNCED):
                breaker.release_probe()
                return
            last = without_commands(reason_of(exc).text)
        elif isinstance(exc, Exception):
            last = f"{type(exc).__name__}: {exc}"
        else:
            breaker.release_probe()
            return
        self.failed(d, lim, last)
        mark_counted(exc)  # the caller classifies it too: counted once

    def failed(self, d: Destination, lim: DestinationLimits, last: str) -> None:
        """A request to `d` failed for a while (a server error, a timeout, the breaker's
        probe refused by a misconfiguration): counted on its breaker, and when that opens
        it, `d` is paused for the cool-down, `last` (the failure's words, no command) said."""
        opened = lim.breaker.record_failure(self.clock.now())
        if opened is not None:
            self.gate(
                d,
                lim,
                opened,
                PauseCause.CIRCUIT_OPEN,
                f" after repeated failures (last: {last}); gradesync probes the "
                "destination again by itself.",
            )

    def answered(self, d: Destination, lim: DestinationLimits) -> None:
        """A request to `d` succeeded: its breaker closes, and the breaker's pause is lifted
        for every process. Only the breaker's: a person's timed pause, or a Retry-After,
        that came while the probe was out holds on (the success says nothing of them)."""
        closed = lim.breaker.record_success()
        if closed and lim.gate_until is not None and lim.gate_cause is PauseCause.CIRCUIT_OPEN:
            lim.gate_until = None

            def lift() -> None:
                with self.uow_factory() as uow:
                    uow.destinations.lift_pause(d.tenant_id, d.id, PauseCause.CIRCUIT_OPEN)
                    uow.commit()

            self._background.start(lift, f"lifting the pause of {d.tenant_id}/{d.id}")

    async def wait_open(self, d: Destination) -> bool:
        """Returns once `d` may be asked again: its pause ended or was lifted, its breaker's
        cool-down passed (True), or it was deleted (False). Looks again when a signal says it
        changed, when a timed pause ends, and at least every `pause_poll`."""
        key = (d.tenant_id, d.id)
        poll = self.settings.pause_poll.total_seconds()
        while True:
            lim = self.limits_for(self.destinations.get(key, d))
            lim.news.clear()
            await self.check_pause(d, lim)
            if key not in self.limits:
                return False  # deleted meanwhile
            now = self.clock.now()
            until = lim.gated(now)
            b = lim.breaker
            if b.state is BreakerState.OPEN and b.open_until is not None and now < b.open_until:
                until = max(until or b.open_until, b.open_until)
            if not lim.disabled and until is None and not b.probing:
                return True
            wait = poll if until is None else min(poll, (until - now).total_seconds())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lim.news.wait(), max(wait, 0.0))

    def excluded(self, now: datetime, *, live: bool = False) -> tuple[list[DestKey], list[DestKey]]:
        """(destinations not to claim for, destinations owed one probe). A destination with
        enough rows claimed is left out, except for live grades (`live`): they go ahead of
        those rows at its slots."""
        excluded: list[DestKey] = []
        probes: list[DestKey] = []
        for key, d in self.destinations.items():
            lim = self.limits_for(d)
            if not d.enabled or lim.gated(now) or (lim.saturated() and not live):
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

    def all_excluded(self, scope: DeliveryScope, excluded: list[DestKey]) -> bool:
        """Whether every known destination in `scope` is in `excluded`."""
        out = set(excluded)
        return all(
            key in out
            for key in self.destinations
            if scope.tenant_id in (None, key[0]) and scope.destination_id in (None, key[1])
        )

    def persist_pause(
        self,
        d: Destination,
        until: datetime,
        reason: str,
        cause: PauseCause,
        lim: DestinationLimits,
    ) -> None:
        def write() -> None:
            with self.uow_factory() as uow:
                written = uow.destinations.set_pause(d.tenant_id, d.id, until, reason, cause)
                uow.commit()
            # saved only if written: under a later pause kept instead, a read finding no pause
            # (that later one lifted: a breaker's, by another process) is no person's resume
            if written and lim.gate_until == until:
                lim.gate_saved_at = time.monotonic()

        self._background.start(write, f"saving the pause of {d.tenant_id}/{d.id}")

    def gate(
        self, d: Destination, lim: DestinationLimits, until: datetime, cause: PauseCause, rest: str
    ) -> None:
        """Pause sending to `d` until `until` for `cause`, in this process at once and in the
        database for every other; the text people read is the cause's opening, then `rest`
        (`domain.pauses.pause_text`), and the cause is stored beside it."""
        reason = pause_text(cause, rest)
        if lim.close_gate(until, reason, cause):
            log.warning(
                "destination %s/%s paused until %s: %s",
                *(d.tenant_id, d.id, until, reason),
                extra=log_context.fields(tenant=d.tenant_id, destination=d.id),
            )
            self.persist_pause(d, until, reason, cause, lim)

    def _counted(self, key: LedgerKey) -> DestinationLimits | None:
        """The limits a known destination's claimed rows count on: the newest made for it
        (limits that replace them take the count along), without reading its settings
        again for every row claimed and settled."""
        dest = (key.tenant_id, key.destination_id)
        d = self.destinations.get(dest)
        if d is None:
            return None
        return self.limits.get(dest) or self.limits_for(d)

    def add_waiting(self, key: LedgerKey) -> None:
        """A row of the destination was claimed."""
        lim = self._counted(key)
        if lim is not None:
            lim.waiting += 1

    def done_waiting(self, key: LedgerKey) -> None:
        """A claimed row of the destination was settled."""
        lim = self._counted(key)
        if lim is not None and lim.waiting > 0:
            lim.waiting -= 1


class FurtherRequests:
    """`Governor.further_requests`: a call's requests after its first, under its one slot."""

    __slots__ = ("_destination", "_first", "_governor", "_probe")

    def __init__(self, governor: Governor, d: Destination, probe: bool) -> None:
        self._governor, self._destination = governor, d
        self._probe = probe  # the call holds the breaker's probe
        self._first = True

    @property
    def asked(self) -> bool:
        """Whether the first request went (it takes the held slot's token)."""
        return not self._first

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[None]:
        if self._first:
            self._first = False
            yield
            return
        governor, d = self._governor, self._destination
        lim, probing = await governor.another_token(d, self._probe)
        if not probing:
            yield
            return
        try:
            yield
        except BaseException as exc:
            governor.probe_failed(d, lim, exc)
            raise
        governor.answered(d, lim)

    @contextlib.contextmanager
    def beside(self) -> Iterator[bool]:
        """A slot of the destination's free at once, when nothing waits for one (a grade
        waiting comes first): True while held. Given back after each request, so a grade
        that starts waiting meanwhile takes the next one."""
        lim = self._governor.limits_for(self._destination)
        if not lim.semaphore.take():
            yield False
            return
        lim.in_flight += 1  # a request of its own, in flight as a send is
        lim.max_in_flight = max(lim.max_in_flight, lim.in_flight)
        try:
            yield True
        finally:
            lim.in_flight -= 1
            lim.semaphore.release()


class OwnRequests:
    """A gate whose every request takes a slot and token of its own (`Governor.request`):
    for a call nothing holds a slot for (Deep Linking's look-up of the LMS's columns)."""

    def __init__(self, governor: Governor, d: Destination, priority: int) -> None:
        self._governor, self._destination, self._priority = governor, d, priority

    def __call__(self) -> contextlib.AbstractAsyncContextManager[object]:
        return self._governor.request(self._destination, self._priority)

    def beside(self) -> contextlib.AbstractContextManager[bool]:
        return contextlib.nullcontext(False)  # each request waits for a slot of its own
