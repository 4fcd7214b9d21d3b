"""The delivery workers alive, as their own heartbeats tell."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class WorkerRepo(Protocol):
    def beat(self, worker_id: str, now: datetime, alive_since: datetime) -> int:
        """Record that `worker_id` is alive at `now`; returns how many workers (this one
        included) were heard from at or after `alive_since`. Beats are taken one at a time:
        each counts every beat written before it."""

    def leave(self, worker_id: str) -> None:
        """The worker stops: others need not wait for its heartbeat to age."""
