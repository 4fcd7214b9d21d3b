"""What the engine counts, through a port it owns: `Meter`.

`adapters/metrics.py` implements it with Prometheus; tests and tools that count nothing use
`NULL_METER`. Labels stay bounded: tenant, destination, reason codes, failure classes,
triggers and outcomes; never a learner, course or activity id.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Protocol

from gradesync.domain.ledger import (
    Delivered,
    DeliveryOutcome,
    Rejected,
    RetryLater,
    waiting_since,
)
from gradesync.domain.model import DeliveryState, LedgerRow


class Meter(Protocol):
    def result_delivered(
        self, tenant: str, destination: str, latency_seconds: float | None
    ) -> None: ...

    def result_rejected(self, tenant: str, destination: str, reason: str) -> None: ...

    def result_retried(
        self, tenant: str, destination: str, failure_class: str, reason: str
    ) -> None: ...

    def run_finished(self, tenant: str, trigger: str, outcome: str) -> None: ...

    def destinations_gone(self, keys: Collection[tuple[str, str]]) -> None:
        """These (tenant, destination) are deleted: their series go."""
        ...

    def claims_ended(self, count: int) -> None:
        """`count` outcomes of sends were not written: their claim had ended first (the
        lease ran out and the result was claimed again, a redone write found them
        written, or gradesync ended the claim so the result goes again: a remaster, a
        column gone at the destination, a learner's new SIS student)."""
        ...

    def leases_gone(self, count: int) -> None:
        """`count` results let go unsent had no lease of their claim left to give back."""
        ...


class NullMeter:
    def result_delivered(
        self, tenant: str, destination: str, latency_seconds: float | None
    ) -> None:
        pass

    def result_rejected(self, tenant: str, destination: str, reason: str) -> None:
        pass

    def result_retried(
        self, tenant: str, destination: str, failure_class: str, reason: str
    ) -> None:
        pass

    def run_finished(self, tenant: str, trigger: str, outcome: str) -> None:
        pass

    def destinations_gone(self, keys: Collection[tuple[str, str]]) -> None:
        pass

    def claims_ended(self, count: int) -> None:
        pass

    def leases_gone(self, count: int) -> None:
        pass


NULL_METER: Meter = NullMeter()


def count_outcome(
    meter: Meter,
    outcome: DeliveryOutcome,
    before: LedgerRow,
    after: LedgerRow,
    sent_hash: str | None,
    answered_at: datetime,
) -> None:
    """Count one written outcome of a send. `before` is the row as re-read just before the
    outcome was folded in, `after` the row written, `answered_at` when the destination
    answered the send.

    Latency runs from when the sent value became pending (the ledger row changes in the
    transaction that computes it from the stored attempt) to the acknowledgement, so a pause,
    a queue or the retries after a failed send show in it (`domain.ledger.waiting_since`).
    """
    k = before.key
    if isinstance(outcome, Delivered):
        latency: float | None = None
        since = waiting_since(before) if before.desired_hash == sent_hash else None
        if since is not None:
            latency = max(0.0, (answered_at - since).total_seconds())
        meter.result_delivered(k.tenant_id, k.destination_id, latency)
    elif isinstance(outcome, Rejected):
        meter.result_rejected(k.tenant_id, k.destination_id, outcome.reason.code)
    elif isinstance(outcome, RetryLater):
        if after.state is DeliveryState.REJECTED:  # tries exhausted: given up
            meter.result_rejected(k.tenant_id, k.destination_id, after.reason_code or "unknown")
        else:
            if outcome.misconfigured:
                failure = "misconfigured"
            elif outcome.retry_after is not None:
                failure = "slow_down"
            else:
                failure = "retry_later"
            meter.result_retried(k.tenant_id, k.destination_id, failure, outcome.reason.code)
