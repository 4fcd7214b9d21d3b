"""On PostgreSQL a claim skips the ledger rows another transaction holds (SKIP LOCKED). A
computation holds the rows of the keys it computes: a due row it leaves as it is (a learner
moved to another SIS student: reopened by the move, and its keys marked) is skipped by a
claim made meanwhile, whose pass then ends finding nothing. The computation says the row
due once it commits, or it would wait for the worker's next look (an hour here)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.queue.inprocess import InProcessWaker
from gradesync.domain.ledger import reopened
from gradesync.domain.model import LedgerKey
from gradesync.services import compute
from gradesync.services.clock import SystemClock
from gradesync.services.worker import Engine
from gradesync.testing import DEADLINE, DoubleFactory, wait_for_async
from tests.engine.conftest import COURSE, DEST, FAST, Harness, T, learner, ledger, post, seed

pytestmark = pytest.mark.postgres

KEY = LedgerKey(T, DEST, "a1", learner(0))


@pytest.fixture
async def harness(postgres_db: Database) -> AsyncIterator[Harness]:
    factory, waker = DoubleFactory(), InProcessWaker()
    settings = replace(FAST, poll=timedelta(hours=1))  # only a wake-up sends
    engine = Engine(postgres_db.uow, SystemClock(), factory, settings, waker=waker)
    h = Harness(postgres_db, factory, engine, waker)
    yield h
    if h.worker is not None:
        await h.worker.stop()
    else:
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


def _claims_seen(engine: Engine) -> Callable[[], list[int]]:
    """How many rows each claim of the engine's passes took, so far."""
    seen: list[int] = []
    claim = engine.deliverer.claim

    async def counted(*args: Any, **kwargs: Any) -> Any:
        out = await claim(*args, **kwargs)
        seen.append(len(out[0]))
        return out

    engine.deliverer.claim = counted  # type: ignore[method-assign]
    return lambda: seen


async def test_a_due_row_a_computation_held_during_a_claim_is_sent_once_it_commits(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = harness.db
    seed(db, learners=1)
    post(db, harness.waker, [("a1", learner(0), 7.0)])
    await harness.start()
    remote = harness.remote
    await remote.wait_for(lambda: remote.sends == 1, "the grade sent")
    await harness.until(lambda: ledger(db)[("a1", learner(0))].delivered_hash is not None)

    holding, go = _held_computation(monkeypatch)
    claims = _claims_seen(harness.engine)
    now = SystemClock().now()
    with db.uow() as uow:  # reopened, its desired result the same, and its key marked
        row = ledger(db)[("a1", learner(0))]
        uow.ledger.save_many([(replace(reopened(row, now), delivered_hash=None), COURSE)])
        uow.dirty.mark(T, COURSE, "a1", learner(0), now)
        uow.commit()
    harness.waker.wake_keys()
    assert await asyncio.to_thread(holding.wait, DEADLINE), "the computation began"
    # a pass meanwhile: its claim skips the row the computation holds, and it ends
    harness.waker.wake_delivery()
    await wait_for_async(lambda: claims() == [0], "a claim that found nothing")
    go.set()

    await remote.wait_for(lambda: remote.sends == 2, "the grade sent again")
    assert claims()[-1] == 1
    assert remote.order[-1][0].endswith("/a1")
