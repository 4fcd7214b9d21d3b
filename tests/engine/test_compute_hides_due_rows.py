"""On PostgreSQL a claim skips the ledger rows another transaction holds (SKIP LOCKED). A
computation holds the rows of the keys it computes: a due row it leaves as it is (a learner
moved to another SIS student: reopened by the move, and its keys marked) is skipped by a
claim made meanwhile, whose pass then ends finding nothing. The computation says the row
due once it commits, which starts a pass, or it would wait for the worker's next look."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.queue.inprocess import InProcessWaker
from gradesync.domain.ledger import reopened
from gradesync.services import compute
from gradesync.services.clock import SystemClock
from gradesync.services.worker import Engine
from gradesync.testing import DEADLINE, DoubleFactory
from tests.engine.conftest import COURSE, DEST, FAST, Harness, T, learner, ledger, post, seed

pytestmark = pytest.mark.postgres


@pytest.fixture
async def harness(postgres_db: Database) -> AsyncIterator[Harness]:
    factory, waker = DoubleFactory(), InProcessWaker()
    engine = Engine(postgres_db.uow, SystemClock(), factory, FAST, waker=waker)
    h = Harness(postgres_db, factory, engine, waker)
    yield h
    await h.engine.aclose()


def _held_computation(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """The next computation stops once its ledger rows are read under lock, until `go`."""
    holding, go = threading.Event(), threading.Event()
    write = compute._write

    def held(*args: Any, **kwargs: Any) -> None:
        holding.set()
        assert go.wait(DEADLINE), "the computation was never let go"
        write(*args, **kwargs)

    monkeypatch.setattr(compute, "_write", held)
    return holding, go


async def test_a_due_row_a_computation_held_during_a_claim_is_said_due_once_it_commits(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, engine, remote = harness.db, harness.engine, harness.remote
    seed(db, learners=1)
    post(db, None, [("a1", learner(0), 7.0)])
    await engine.process_dirty()
    assert (await engine.deliver_due()).delivered == 1

    now = SystemClock().now()
    with db.uow() as uow:  # reopened, its desired result the same, and its key marked
        row = ledger(db)[("a1", learner(0))]
        uow.ledger.save_many([(replace(reopened(row, now), delivered_hash=None), COURSE)])
        uow.dirty.mark(T, COURSE, "a1", learner(0), now)
        uow.commit()
    holding, go = _held_computation(monkeypatch)
    computing = asyncio.create_task(engine.process_dirty())
    assert await asyncio.to_thread(holding.wait, DEADLINE), "the computation began"
    # a pass meanwhile: its claim skips the row the computation holds, and it ends
    assert (await engine.deliver_due()).claimed == 0
    woken = asyncio.Event()  # what the worker's delivery loop is told (`on_idle_due`)
    engine.deliverer.on_idle_due = woken.set
    go.set()
    stats = await asyncio.wait_for(computing, DEADLINE)

    assert stats.changed == 0 and stats.due_at == {(T, DEST, COURSE, "a1")}
    assert woken.is_set()
    assert (await engine.deliver_due()).delivered == 1
    assert remote.sends == 2
