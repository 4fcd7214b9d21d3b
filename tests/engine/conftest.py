"""Fixtures for the sync engine: a small course linked to a destination, attempts posted
through the real ingest service, and an engine with short timings."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from gradesync.adapters.db.database import Database
from gradesync.adapters.queue.inprocess import EmbeddedWorker, InProcessWaker
from gradesync.adapters.queue.procrastinate_app import ProcrastinateWaker
from gradesync.cli import db as db_cli
from gradesync.domain.ledger import BackoffPolicy
from gradesync.domain.model import DeliveryState, LedgerKey, LedgerRow
from gradesync.services.clock import SystemClock
from gradesync.services.delivery import SettleWriter
from gradesync.services.engine_config import BreakerSettings, EngineSettings
from gradesync.services.wakeup import Waker
from gradesync.services.worker import Engine
from gradesync.testing import (
    TEST_SECRET,
    DoubleFactory,
    add_course,
    add_destination,
    add_tenant,
    post_attempts,
    wait_for,
    wait_for_async,
)
from gradesync.testing.processes import stop_workers, worker_env

T, COURSE, DEST = "t1", "c1", "lms"

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


def learner(i: int) -> str:
    return f"p{i:03d}"


def seed(
    db: Database,
    *,
    learners: int = 3,
    activities: Sequence[str] = ("a1",),
    linked: int | None = None,
    config: dict[str, object] | None = None,
    at: datetime | None = None,
) -> None:
    """Tenant t1, course c1 with `activities` (10 points each), `learners` learners, a
    destination `lms` linked to the course; the first `linked` learners have launched.
    `at`: when the destination was made (a run resumed counts only destinations made
    before it first started)."""
    linked = learners if linked is None else linked
    people = [learner(i) for i in range(learners)]
    add_tenant(db.uow, T, "Tenant")
    add_course(
        db.uow,
        T,
        COURSE,
        *((a, f"Quiz {a}", 10.0) for a in activities),
        title="Biology",
        learners=people,
    )
    add_destination(
        db.uow,
        T,
        DEST,
        name="Canvas test",
        config=config or {"concurrency": 4},
        links={COURSE: "https://lms/courses/1"},
        people={p: f"sub-{p}" for p in people[:linked]},
        at=at,
    )


def post(
    db: Database,
    waker: Waker | None,
    scores: Sequence[tuple[str, str, float]],
) -> None:
    """Post attempts (activity, person, score) through the ingest service."""
    post_attempts(db.uow, waker, T, scores)


async def claimed(db: Database, lease: timedelta) -> tuple[LedgerKey, datetime, str | None]:
    """One learner's grade computed into the ledger, then claimed by worker w:1 with a lease
    ending `lease` from now: its key, now, and the hash a send of it carries."""
    seed(db, learners=1)
    post(db, None, [("a1", learner(0), 7.0)])
    engine = Engine(db.uow, SystemClock(), DoubleFactory(), FAST)
    await engine.process_dirty()
    await engine.aclose()
    key = LedgerKey(T, DEST, "a1", learner(0))
    now = SystemClock().now()
    with db.uow() as uow:
        uow.ledger.lease([(key, now)], "w:1", now + lease)
        uow.commit()
        sent = uow.ledger.get_keys([key])[key].desired_hash
    return key, now, sent


def settle_writer(uow_factory: Any, owner: str = "w:1") -> SettleWriter:
    """A settle writer that writes at each flush (no gathering window)."""
    settings = replace(EngineSettings(), settle_gather=timedelta(0))
    return SettleWriter(uow_factory, SystemClock(), settings, owner)


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

    async def use(self, settings: EngineSettings, **parts: Any) -> Engine:
        """Replace the engine (before `start`) by one with other settings (and `parts`,
        Engine's keyword arguments)."""
        assert self.worker is None, "the worker already runs the first engine"
        await self.engine.aclose()
        self.engine = Engine(
            self.db.uow, SystemClock(), self.factory, settings, waker=self.waker, **parts
        )
        self.engine.on_written(self._notify)
        return self.engine

    def _notify(self, _: list[LedgerRow]) -> None:
        async def wake() -> None:
            async with self.written:
                self.written.notify_all()

        asyncio.get_running_loop().create_task(wake())

    async def until(self, predicate: Callable[[], bool], what: str = "the ledger") -> None:
        """Wait for a condition on the database, checked again after each settled batch."""
        await wait_for_async(predicate, what, changed=self.written, blocking=True)

    async def all_delivered(self, n: int) -> None:
        await self.until(
            lambda: states(self.db).get(DeliveryState.DELIVERED.value, 0) == n,
            f"{n} results delivered",
        )


@pytest.fixture
async def harness(db: Database) -> AsyncIterator[Harness]:
    factory = DoubleFactory()
    waker = InProcessWaker()
    engine = Engine(db.uow, SystemClock(), factory, FAST, waker=waker)
    h = Harness(db, factory, engine, waker)
    engine.on_written(h._notify)
    yield h
    if h.worker is not None:
        await h.worker.stop()
    else:
        await h.engine.aclose()


# --- `gradesync worker` processes on PostgreSQL ---------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def mp_url(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[str]:
    """A database of its own (workers share it with the test, not with other tests),
    emptied, then set up the way an operator does: `gradesync db upgrade`."""
    u = make_url(postgres_url)
    name = f"{u.database}_engine_mp"
    admin = u.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    url = u.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS procrastinate CASCADE")
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    for key, value in worker_env(url).items():
        monkeypatch.setenv(key, value)
    db_cli.upgrade(as_json=False)  # what `gradesync db upgrade` does, without a process
    assert "procrastinate schema installed" in capsys.readouterr().out
    yield url


@dataclass
class Processes:
    """The test's own handles on `mp_url`'s database, and the worker processes it starts
    there (`procs`), which write to `log`."""

    url: str
    db: Database
    waker: ProcrastinateWaker
    log: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait for a condition; at the deadline, fail with the workers' log."""
        wait_for(
            predicate, what, timeout=timeout, explain=lambda: f"worker log:\n{self.log.read_text()}"
        )


@pytest.fixture
def processes(mp_url: str, tmp_path: Path) -> Iterator[Processes]:
    """The workers a test starts are stopped after it, whatever happened."""
    p = Processes(
        mp_url, Database(mp_url, TEST_SECRET), ProcrastinateWaker(mp_url), tmp_path / "workers.log"
    )
    try:
        yield p
    finally:
        stop_workers(*p.procs)
        p.waker.close()
        p.db.dispose()
