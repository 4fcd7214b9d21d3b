"""What the steps of a delivery pass hand each other: the scope, a claimed row, the facts
read with a claim, a row ready to send, its settlement, and the pass's counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gradesync.domain.ledger import DeliveryOutcome
from gradesync.domain.model import (
    Course,
    CourseLink,
    ItemLink,
    LedgerKey,
    LedgerRow,
    PersonLink,
    RunScope,
    Tenant,
)
from gradesync.domain.reasons import Reason

DestKey = tuple[str, str]  # (tenant_id, destination_id)
# where rows became due: (tenant_id, destination_id, course_id, activity_id)
DueAt = tuple[str, str, str, str]


# a run's rows and its columns: after live grades at a destination's slots (0: live)
RUN_PRIORITY = 1


@dataclass(frozen=True, slots=True)
class DeliveryScope:
    tenant_id: str | None = None
    destination_id: str | None = None
    course_id: str | None = None
    activity_ids: tuple[str, ...] = ()

    @classmethod
    def of_run(cls, scope: RunScope) -> DeliveryScope:
        return cls(scope.tenant_id, scope.destination_id, scope.course_id, scope.activity_ids)

    def reaches(self, key: DestKey) -> bool:
        """Whether rows of this destination are in the scope."""
        tenant_id, destination_id = key
        return self.tenant_id in (None, tenant_id) and self.destination_id in (None, destination_id)

    def covers(self, at: DueAt) -> bool:
        """Whether rows of this column of a course at a destination are in the scope."""
        tenant_id, destination_id, course_id, activity_id = at
        return (
            self.tenant_id in (None, tenant_id)
            and self.destination_id in (None, destination_id)
            and self.course_id in (None, course_id)
            and (not self.activity_ids or activity_id in self.activity_ids)
        )


@dataclass(slots=True)
class Claimed:
    row: LedgerRow
    course_id: str
    timestamp: datetime  # the score timestamp this send carries
    claimed_at: float  # monotonic, to respect the lease
    lease_until: datetime  # the claim's lease as written: its settle is fenced to it
    priority: int = 0  # 0: a live grade, 1: a row a run made pending (sent after live ones)
    sending: bool = False  # handed to its send task (no longer its preparing task's)


@dataclass(slots=True)
class Settlement:
    key: LedgerKey
    course_id: str
    # None: only give the lease back; Reason: policy-like skip; else the remote's outcome
    outcome: DeliveryOutcome | Reason | None
    # the claim's lease as written: the outcome is written only while the row still holds
    # this lease of this worker (a later claim of the row, by anyone, writes another)
    lease_until: datetime
    sent_hash: str | None = None
    timestamp: datetime | None = None
    payload: dict[str, Any] | None = None
    latency_ms: float | None = None
    # when the destination answered: a delivery's latency ends there, not when the outcome
    # is written (a settle batch writes outcomes of several destinations at one moment)
    answered_at: datetime | None = None
    run_id: str | None = None
    logged: bool = False  # write a line to the delivery log
    score_scale: float | None = None  # logged with the send (`Ready.scale`)
    # the row as its claim read it (before the claim stamped `timestamp` on it): an outcome
    # is folded into it and written without reading the row again while the row is still
    # as that claim left it (`SettleWriter`); None: read again under lock
    claimed: LedgerRow | None = None


@dataclass(slots=True)
class DeliveryStats:
    claimed: int = 0
    sent: int = 0  # requests made
    delivered: int = 0
    retrying: int = 0
    rejected: int = 0
    skipped: int = 0
    gated: int = 0  # not sent: the destination was paused or asked to slow down
    failed: int = 0  # left retrying (`internal_error`): the task holding them failed (a bug)
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
        self.failed += other.failed
        self.delivered_items |= other.delivered_items


@dataclass(slots=True)
class BatchFacts:
    """The course, columns and people of one (tenant, destination, course) group of
    claimed rows, read in the claim's transaction."""

    tenant: Tenant | None
    course: Course | None
    course_link: CourseLink | None
    activities: dict[str, Any]
    items: dict[str, ItemLink]
    people: dict[str, PersonLink]
