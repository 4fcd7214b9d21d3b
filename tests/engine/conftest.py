"""Fixtures for the sync engine: a small course linked to a destination, attempts posted
through the real ingest service, and an engine with short timings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.queue.inprocess import EmbeddedWorker, InProcessWaker
from gradesync.domain.ledger import BackoffPolicy
from gradesync.domain.model import (
    Activity,
    Attempt,
    Course,
    CourseLink,
    DeliveryState,
    Destination,
    DestinationKind,
    Enrollment,
    LedgerRow,
    Person,
    PersonLink,
    Role,
    Tenant,
)
from gradesync.services.clock import SystemClock
from gradesync.services.engine_config import BreakerSettings, EngineSettings
from gradesync.services.ingest import IngestBatch, ingest
from gradesync.services.wakeup import Waker
from gradesync.services.worker import Engine
from tests.engine.double import DoubleFactory

T, COURSE, DEST = "t1", "c1", "lms"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

FAST = EngineSettings(
    backoff=BackoffPolicy(base_seconds=0.02, cap_seconds=0.1, max_tries=6),
    breaker=BreakerSettings(threshold=3, cooldown=timedelta(milliseconds=300)),
    default_retry_after=timedelta(milliseconds=300),
    misconfigured_pause=timedelta(milliseconds=400),
    heartbeat=timedelta(milliseconds=200),
    stale_after=timedelta(seconds=2),
    retry_patience=timedelta(seconds=5),
    poll=timedelta(milliseconds=100),
    destinations_ttl=timedelta(milliseconds=50),
    pause_check=timedelta(0),  # every send re-reads the pause: tests see it at once
)


class ManualClock:
    """A wall clock that moves only when told: pauses, backoff and breaker cool-downs then
    end exactly when a test says, however slow the machine is."""

    def __init__(self, at: datetime | None = None) -> None:
        self.at = at or datetime.now(UTC)

    def now(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta) -> None:
        self.at += delta


def learner(i: int) -> str:
    return f"p{i:03d}"


def seed(
    db: Database,
    *,
    learners: int = 3,
    activities: Sequence[str] = ("a1",),
    linked: int | None = None,
    config: dict[str, object] | None = None,
) -> None:
    """Tenant t1, course c1 with `activities` (10 points each), `learners` learners, a
    destination `lms` linked to the course; the first `linked` learners have launched."""
    linked = learners if linked is None else linked
    now = datetime.now(UTC)
    with db.uow() as uow:
        uow.tenants.upsert(Tenant(T, "Tenant"), now)
        uow.courses.upsert(Course(T, COURSE, "Biology"))
        for a in activities:
            uow.activities.upsert(Activity(T, a, COURSE, f"Quiz {a}", 10.0))
        uow.destinations.upsert(
            Destination(
                T,
                DEST,
                DestinationKind.LTI13_AGS,
                "Canvas test",
                config=dict(config or {"concurrency": 4}),
            ),
            now,
        )
        uow.links.save_course(CourseLink(T, DEST, COURSE, "https://lms/courses/1"))
        for i in range(learners):
            p = learner(i)
            uow.people.upsert(Person(T, p, f"Learner {i}"))
            uow.enrollments.upsert(Enrollment(T, COURSE, p, Role.LEARNER))
            if i < linked:
                uow.links.save_person(PersonLink(T, DEST, p, f"sub-{p}"))
        uow.commit()


_events = [0]


def post(
    db: Database,
    waker: Waker | None,
    scores: Sequence[tuple[str, str, float]],
) -> None:
    """Post attempts (activity, person, score) through the ingest service."""
    attempts = []
    for activity, person, score in scores:
        _events[0] += 1
        attempts.append(
            Attempt(
                T,
                f"ev-{_events[0]}",
                activity,
                person,
                score,
                10.0,
                completed_at=EPOCH + timedelta(seconds=_events[0]),
            )
        )
    ingest(db.uow, SystemClock(), waker, T, IngestBatch(attempts=attempts))


def ledger(db: Database) -> dict[tuple[str, str], LedgerRow]:
    with db.uow() as uow:
        return uow.ledger.get_many(T, DEST, COURSE)


def states(db: Database) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in ledger(db).values():
        out[row.state.value] = out.get(row.state.value, 0) + 1
    return out


@dataclass
class Harness:
    db: Database
    factory: DoubleFactory
    engine: Engine
    waker: InProcessWaker
    worker: EmbeddedWorker | None = None
    written: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def remote(self):  # type: ignore[no-untyped-def]
        return self.factory.remote(DEST)

    async def start(self) -> EmbeddedWorker:
        self.worker = EmbeddedWorker(self.engine, self.waker, sole_worker=self.db.is_sqlite)
        await self.worker.start()
        return self.worker

    async def until(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        """Wait for a condition on the database, re-checked after each settled batch (and
        at least every 0.25 s), failing after `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await asyncio.to_thread(predicate):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("condition not reached in time")
            async with self.written:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.written.wait(), min(0.25, remaining))

    async def all_delivered(self, n: int, timeout: float = 15.0) -> None:
        await self.until(
            lambda: states(self.db).get(DeliveryState.DELIVERED.value, 0) == n, timeout
        )


@pytest.fixture
async def harness(db: Database) -> AsyncIterator[Harness]:
    factory = DoubleFactory()
    waker = InProcessWaker()
    engine = Engine(db.uow, SystemClock(), factory, FAST, waker=waker)
    h = Harness(db, factory, engine, waker)

    def notify(_: list[LedgerRow]) -> None:
        async def wake() -> None:
            async with h.written:
                h.written.notify_all()

        asyncio.get_running_loop().create_task(wake())

    engine.on_written(notify)
    yield h
    if h.worker is not None:
        await h.worker.stop()
    else:
        await engine.aclose()
