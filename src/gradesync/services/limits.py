"""Per-destination limits: how many sends at once, how many per second, and when to stop.

- `RateLimiter`: a token bucket (`rate_per_second`, bursts up to one second's worth).
- `CircuitBreaker`: after `threshold` transient failures in a row the destination is paused
  for a cool-down that doubles on each re-opening (up to a cap); when it passes, one probe is
  let through; its success closes the breaker, its failure re-opens it. Nobody has to resume
  a destination by hand.
- `DestinationLimits`: the above plus a semaphore (`concurrency`) and a gate: the time before
  which nothing is sent (breaker open, the remote's Retry-After, a misconfiguration pause).

Limits live in the worker process; the gate is also written to the destination's
`paused_until` so other workers and the console see it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

DEFAULT_CONCURRENCY = 8


class RateLimiter:
    """Token bucket. `acquire` waits until a token is free; None rate means unlimited."""

    def __init__(
        self, rate_per_second: float | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate_per_second if rate_per_second and rate_per_second > 0 else None
        self._clock = clock
        self._capacity = max(1.0, self.rate or 1.0)
        self._tokens = self._capacity
        self._stamp = clock()
        self._lock = asyncio.Lock()

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

    async def acquire(self) -> None:
        if self.rate is None:
            return
        async with self._lock:  # first come, first served
            while (wait := self.try_acquire()) > 0:
                await asyncio.sleep(wait)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    threshold: int = 5  # transient failures in a row that open the breaker
    cooldown: timedelta = timedelta(seconds=30)
    max_cooldown: timedelta = timedelta(minutes=10)


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
        self.concurrency = max(1, concurrency)
        self.semaphore = asyncio.Semaphore(self.concurrency)
        self.rate = RateLimiter(rate_per_second)
        self.breaker = CircuitBreaker(breaker)
        self.gate_until: datetime | None = None  # nothing is sent before this
        self.gate_reason: str | None = None
        self.gate_set_at = 0.0  # monotonic
        self.waiting = 0  # claimed rows not yet settled (bounds how much more to claim)
        # an admin's pause, re-read from the database before sends (see Deliverer)
        self.disabled = False
        self.pause_checked_at = float("-inf")  # monotonic start of the last finished check
        self.pause_check: asyncio.Task[None] | None = None  # the check in flight
        self.pause_check_started = float("-inf")
        self.in_flight = 0
        self.max_in_flight = 0  # observed, for tests and metrics

    def gated(self, now: datetime) -> datetime | None:
        if self.gate_until is not None and now < self.gate_until:
            return self.gate_until
        return None

    def close_gate(self, until: datetime, reason: str) -> bool:
        """Hold every send until `until`. True when this extended the gate."""
        if self.gate_until is None or until > self.gate_until:
            self.gate_until = until
            self.gate_reason = reason
            self.gate_set_at = time.monotonic()
            return True
        return False

    def saturated(self) -> bool:
        """Enough rows are claimed for this destination to keep it busy for a while."""
        return self.waiting >= 4 * self.concurrency


def limits_from_config(
    config: Mapping[str, Any], breaker: BreakerSettings = BreakerSettings()
) -> DestinationLimits:
    """`concurrency` (default 8) and `rate_per_second` (optional) from a destination's config.
    Bad values fall back to the defaults rather than stopping delivery."""
    try:
        concurrency = int(config.get("concurrency") or DEFAULT_CONCURRENCY)
    except (TypeError, ValueError):
        concurrency = DEFAULT_CONCURRENCY
    raw_rate = config.get("rate_per_second")
    try:
        rate = float(raw_rate) if raw_rate is not None else None
    except (TypeError, ValueError):
        rate = None
    return DestinationLimits(concurrency, rate, breaker)


def limits_signature(config: Mapping[str, Any]) -> tuple[Any, Any]:
    return (config.get("concurrency"), config.get("rate_per_second"))
