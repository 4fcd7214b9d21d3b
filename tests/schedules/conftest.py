"""Fixtures for schedule tests: a settable clock, a tenant with a course and destination,
and the schedule service wired to a run requester that records what was asked."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.model import (
    DestinationKind,
    RunScope,
    SyncRun,
    Trigger,
)
from gradesync.services import runs as engine
from gradesync.services.schedules import ScheduleService
from gradesync.testing import ManualClock, add_course, add_destination, add_tenant

T0 = datetime(2024, 11, 1, 12, 0, tzinfo=UTC)


@dataclass
class Requester:
    """The engine's `request_run` (queue a run, or join the one queued/running for the
    scope), recording each call; `fail` makes it raise as an unavailable engine would."""

    db: Database
    clock: ManualClock
    calls: list[tuple[RunScope, Trigger, str, str | None]] = field(default_factory=list)
    fail: bool = False
    called: threading.Event = field(default_factory=threading.Event)  # set after each call
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(
        self, scope: RunScope, trigger: Trigger, actor: str, *, schedule_id: str | None = None
    ) -> tuple[SyncRun, bool]:
        if self.fail:
            raise RuntimeError("the engine is unavailable")
        with self._lock:
            self.calls.append((scope, trigger, actor, schedule_id))
        result = engine.request_run(
            self.db.uow, None, self.clock, scope, trigger, actor, schedule_id=schedule_id
        )
        self.called.set()
        return result


@dataclass
class Env:
    db: Database
    clock: ManualClock
    requester: Requester
    service: ScheduleService
    changes: list[int]


def seed_tenant(db: Database, tenant_id: str = "t1") -> None:
    add_tenant(db.uow, tenant_id, at=T0)
    add_course(db.uow, tenant_id, "c1", title="Biology", time_zone="America/New_York")
    add_destination(
        db.uow, tenant_id, "sis", DestinationKind.ONEROSTER_REST, name="District SIS", at=T0
    )


@pytest.fixture
def env(db: Database) -> Iterator[Env]:
    seed_tenant(db, "t1")
    seed_tenant(db, "t2")
    clock = ManualClock(T0)
    requester = Requester(db, clock)
    changes: list[int] = []
    service = ScheduleService(db.uow, clock, requester, on_change=lambda: changes.append(1))
    yield Env(db, clock, requester, service, changes)
