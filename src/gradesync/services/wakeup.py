"""How services tell workers there is work: in-process event or a procrastinate job.

Waking is only ever a hint that makes work start sooner: the work itself is in the database
(dirty keys, due ledger rows, queued runs), and workers also look for it on their own every
few seconds, so a lost wake-up delays work, it never loses it.
"""

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

    def wake_delivery(self) -> None:
        """Due ledger rows are waiting: any idle worker may help deliver them."""
        ...


class NullWaker:
    """For processes that run no worker and have nobody to tell (a CLI command writing a run
    that a running `gradesync serve` or `gradesync worker` will find on its next look)."""

    def wake_keys(self) -> None:
        return None

    def wake_run(self, run_id: str, scope: RunScope) -> None:
        return None

    def wake_delivery(self) -> None:
        return None
