"""Live grades before bulk work, in CPU too.

Claims and sending slots already put live grades first. A run's computing is the other bulk
work in a process, and it is CPU: on PostgreSQL a remaster computing beside 50 live grades a
second kept their latency at 1-2 s for as long as it computed, then it fell to 0.3-0.5 s.
While live grades flow, a run's computing pauses after each chunk for as long as the chunk
took, leaving the process at least half its time for them; it is never stopped."""

from __future__ import annotations

import time
from collections.abc import Callable

RECENT = 1.0  # seconds: live grades computed this recently count as flowing
LONGEST_PAUSE = 1.0  # seconds, after any one chunk


class LiveTraffic:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._now = monotonic
        self._last = float("-inf")
        self.pauses = 0  # chunks of bulk work that paused for live grades

    def computed(self) -> None:
        """Live grades were just computed in this process."""
        self._last = self._now()

    def pause_after(self, took: float) -> float:
        """Seconds bulk work that just spent `took` on a chunk waits before its next one."""
        if self._now() - self._last > RECENT:
            return 0.0
        self.pauses += 1
        return min(took, LONGEST_PAUSE)
