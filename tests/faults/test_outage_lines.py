"""PostgreSQL stopped under the settle writer and under a computing pass whose caller was let
go: each says the outage once, however many tries meet it, and its end once, in the form
every part shares (`<what>: database unavailable: ..., <what next>`, then `<what>: the
database answers again`), with no traceback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from sqlalchemy.exc import OperationalError

from gradesync.adapters.db.database import Database
from gradesync.adapters.queue.inprocess import InProcessWaker
from gradesync.services.clock import SystemClock
from gradesync.services.compute import ComputeStats
from gradesync.services.delivery import Settlement
from gradesync.services.worker import Engine
from gradesync.testing import DEADLINE, DoubleFactory
from tests.engine.conftest import COURSE, FAST, claimed, learner, post, seed, settle_writer
from tests.engine.test_compute_pass import LostMidBatch
from tests.faults.postgres_server import PostgresServer

pytestmark = [pytest.mark.postgres]


def _said(caplog: pytest.LogCaptureFixture, logger: str, start: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger and r.getMessage().startswith(start)]


def _start_and_end(said: list[logging.LogRecord], what: str, then: str) -> None:
    lines = [r.getMessage() for r in said]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{what}: database unavailable: OperationalError: "), lines
    assert lines[0].endswith(f", {then}"), lines
    assert lines[1] == f"{what}: the database answers again", lines
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in said)


async def _until_it_answers(work: Callable[[], Awaitable[object]]) -> None:
    """The first tries once PostgreSQL is back may meet a pooled connection it closed."""
    for _ in range(10):
        try:
            await work()
            return
        except OperationalError:
            continue
    raise AssertionError("the database did not answer again")


async def test_the_settle_writer_says_an_outage_once_and_its_end_once(
    outage_db: Database, own_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    key, now, _ = await claimed(outage_db, timedelta(minutes=10))
    writer = settle_writer(outage_db.uow)
    try:
        own_postgres.stop()
        # gives the lease back
        writer.put(Settlement(key, COURSE, None, now + timedelta(minutes=10)))
        for _ in range(3):  # three tries, a second apart, meet the outage
            with pytest.raises(OperationalError):
                await writer.flush()
        own_postgres.start()
        await _until_it_answers(writer.flush)
    finally:
        await writer.stop()
    with outage_db.uow() as uow:
        assert uow.conn.exec_driver_sql("SELECT lease_owner FROM ledger").scalar() is None
    said = _said(caplog, "gradesync.services.delivery.settle", "writing")
    _start_and_end(said, "writing delivery outcomes", "retrying")


async def test_a_computing_pass_let_go_says_an_outage_once_and_its_end_once(
    outage_db: Database,
    own_postgres: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed(outage_db, learners=1)
    fault = LostMidBatch(monkeypatch, None)  # the batch's write meets the stopped server
    engine = Engine(outage_db.uow, SystemClock(), DoubleFactory(), FAST, waker=InProcessWaker())

    async def let_go() -> None:
        """A pass whose caller is cancelled as soon as it waits for it."""
        started = asyncio.Event()
        real = engine._process_dirty

        async def watched() -> ComputeStats:
            started.set()
            return await real()

        monkeypatch.setattr(engine, "_process_dirty", watched)
        caller = asyncio.create_task(engine.process_dirty())
        await asyncio.wait_for(started.wait(), DEADLINE)  # the pass runs in a task of its own
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller

    async def passes_ended() -> None:
        await asyncio.wait_for(asyncio.gather(*engine._passes, return_exceptions=True), DEADLINE)

    try:
        post(outage_db, None, [("a1", learner(0), 7.0)])
        caller = asyncio.create_task(engine.process_dirty())
        assert await asyncio.to_thread(fault.writing.wait, DEADLINE)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        own_postgres.stop()
        fault.lose()  # the first pass's write meets the stopped server
        await passes_ended()
        await let_go()  # a second pass let go meets it too, at its first query
        await passes_ended()
        own_postgres.start()

        async def computed() -> None:
            stats: ComputeStats = await engine.process_dirty()
            assert stats.dirty == 1

        await _until_it_answers(computed)
    finally:
        await engine.aclose()
    said = _said(caplog, "gradesync.services.worker", "computing")
    _start_and_end(said, "computing", "the dirty keys stay marked for the next pass")
