"""A clock that moves only when a test moves it.

Pauses, backoff, breaker cool-downs, schedules, key rotation and cache lifetimes then end
exactly when the test says, however slow the machine is. It serves both kinds of time the
product reads: `now()` (an aware UTC datetime, the services' `Clock`) and `monotonic()`
(seconds, for code that takes a `Callable[[], float]` such as `RateLimiter` or
`PlatformKeyCache`). Both move together. Safe to read and move from several threads.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class ManualClock:
    def __init__(self, at: datetime | None = None) -> None:
        at = at or datetime.now(UTC)
        if at.tzinfo is None:
            raise ValueError("at: must be timezone-aware (the product's clock reads UTC)")
        self._at = at
        self._seconds = 1000.0  # monotonic time has no meaningful origin; never zero
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._at

    def monotonic(self) -> float:
        with self._lock:
            return self._seconds

    def advance(self, delta: timedelta | float) -> datetime:
        """Move both times forward by `delta` (a timedelta or seconds); returns the new now."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            raise ValueError("delta: a clock does not go backwards; use set() to jump")
        with self._lock:
            self._at += step
            self._seconds += step.total_seconds()
            return self._at

    def set(self, at: datetime) -> None:
        """Jump to `at` (either way); monotonic time moves forward by the distance only."""
        if at.tzinfo is None:
            raise ValueError("at: must be timezone-aware (the product's clock reads UTC)")
        with self._lock:
            self._seconds += abs((at - self._at).total_seconds())
            self._at = at
