"""One computing pass per process at a time, from its start to its real end.

A pass computes each batch in a thread. When its caller is cancelled (the job queue lets go
of its jobs when it loses the database; a loop stops), the thread cannot be: before, the
pass let go of the compute lock at once while its batch still ran, so a second pass started
beside it. The pass now holds the lock until its batch has really ended, however its caller
ended."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from gradesync.adapters.db.database import Database
from gradesync.adapters.db.repos.ledger import LedgerRepo
from gradesync.adapters.queue.inprocess import InProcessWaker
from gradesync.domain.model import DeliveryState, LedgerRow
from gradesync.services.clock import SystemClock
from gradesync.services.worker import Engine
from gradesync.testing import DEADLINE, DoubleFactory

from .conftest import FAST, ledger, post, seed


def _dropped() -> OperationalError:
    return OperationalError(
        "INSERT INTO ledger", {}, psycopg.OperationalError("server closed the connection")
    )


def _no_table() -> OperationalError:
    """SQLite's error for a schema behind the code: the batch is rolled back too, but it is
    not an outage."""
    return OperationalError("INSERT INTO ledger", {}, sqlite3.OperationalError("no such table"))


class LostMidBatch:
    """The database goes away while the first batch writes its rows: that write waits until
    `lose()`, then fails as a dropped connection does (or with `error`; with None it writes,
    and meets whatever the database is then). Later batches write as usual. Counts the
    batches writing at once."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        error: Callable[[], OperationalError] | None = _dropped,
    ) -> None:
        self.writing = threading.Event()
        self._lost = threading.Event()
        self._guard = threading.Lock()
        self.in_flight = self.most_at_once = 0
        self._first = True
        real = LedgerRepo.save_many

        def save_many(repo: LedgerRepo, rows: Sequence[tuple[LedgerRow, str]], **kw: Any) -> Any:
            with self._guard:
                first, self._first = self._first, False
                self.in_flight += 1
                self.most_at_once = max(self.most_at_once, self.in_flight)
            try:
                if first:
                    self.writing.set()
                    self._lost.wait(DEADLINE)
                    if error is not None:
                        raise error()
                return real(repo, rows, **kw)
            finally:
                with self._guard:
                    self.in_flight -= 1

        monkeypatch.setattr(LedgerRepo, "save_many", save_many)

    def lose(self) -> None:
        self._lost.set()


async def test_a_pass_whose_caller_is_cancelled_holds_the_lock_until_its_batch_ends(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seed(db, learners=2)
    fault = LostMidBatch(monkeypatch)
    engine = Engine(db.uow, SystemClock(), DoubleFactory(), FAST, waker=InProcessWaker())
    try:
        post(db, None, [("a1", "p000", 7.0), ("a1", "p001", 8.0)])
        first = asyncio.create_task(engine.process_dirty())
        assert await asyncio.to_thread(fault.writing.wait, DEADLINE)
        first.cancel()  # as the job queue does, 2 s after it lost the database
        with pytest.raises(asyncio.CancelledError):
            await first  # the caller is let go at once...
        # ...but its batch still runs in its thread: the pass keeps the lock
        assert engine._dirty_lock.locked()
        second = asyncio.create_task(engine.process_dirty())
        with caplog.at_level(logging.WARNING, logger="gradesync.services.worker"):
            fault.lose()
            stats = await asyncio.wait_for(second, DEADLINE)
        # the second pass started once the first had ended (its batch rolled back, the marks
        # kept), never beside it, and worked the grades out
        assert fault.most_at_once == 1
        assert stats.dirty == 2
        assert {r.state for r in ledger(db).values()} == {DeliveryState.PENDING}
        assert not engine._dirty_lock.locked()
        # the aborted pass, whose caller was gone, says how it ended, and the next its end
        said = [r for r in caplog.records if r.getMessage().startswith("computing")]
        assert [r.getMessage() for r in said] == [
            "computing: database unavailable: OperationalError: (psycopg.OperationalError) "
            "server closed the connection, the dirty keys stay marked for the next pass",
            "computing: the database answers again",
        ]
        assert all(r.levelno == logging.WARNING and r.exc_info is None for r in said)
    finally:
        await engine.aclose()


async def test_a_pass_whose_caller_is_cancelled_says_another_error_with_its_traceback(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seed(sqlite_db, learners=1)
    fault = LostMidBatch(monkeypatch, _no_table)
    engine = Engine(sqlite_db.uow, SystemClock(), DoubleFactory(), FAST, waker=InProcessWaker())
    try:
        post(sqlite_db, None, [("a1", "p000", 7.0)])
        first = asyncio.create_task(engine.process_dirty())
        assert await asyncio.to_thread(fault.writing.wait, DEADLINE)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        with caplog.at_level(logging.WARNING, logger="gradesync.services.worker"):
            fault.lose()
            await asyncio.wait_for(engine.process_dirty(), DEADLINE)
        [stopped] = [r for r in caplog.records if r.getMessage().startswith("computing")]
        assert stopped.getMessage() == (
            "computing failed, the dirty keys stay marked for the next pass"
        )
        assert stopped.levelno == logging.ERROR and stopped.exc_info is not None
        assert "no such table" in str(stopped.exc_info[1])
    finally:
        await engine.aclose()
