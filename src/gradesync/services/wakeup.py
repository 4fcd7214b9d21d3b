"""How services tell workers there is work: in-process event or a procrastinate job."""

from __future__ import annotations

from typing import Protocol

from gradesync.domain.model import RunScope


class Waker(Protocol):
    def wake_keys(self) -> None:
        """Dirty keys were committed: recompute and deliver them now."""
        ...

    def wake_run(self, run_id: str, scope: RunScope) -> None:
        """A sync run was queued: start it."""
        ...
