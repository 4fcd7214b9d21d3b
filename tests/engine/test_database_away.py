"""A worker while the database is away: its heartbeat and its delivery outcomes say so in one
line, no traceback (the worker's own lines say the database is lost and when it answers
again; another error keeps its traceback), and the outcomes are written once it answers, so
their rows' leases end then rather than when they run out."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from gradesync.adapters.db.database import Database
from gradesync.domain.model import LedgerKey
from gradesync.services.clock import SystemClock
from gradesync.services.delivery import Settlement, SettleWriter
from gradesync.services.delivery.share import WorkerShare
from gradesync.services.engine_config import EngineSettings
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory

from .conftest import COURSE, DEST, FAST, T, learner, post, seed


class _Flaky:
    """A unit-of-work factory that fails with `errors` first, then is the database's."""

    def __init__(self, db: Database, *errors: Exception) -> None:
        self.db = db
        self.errors = list(errors)

    def __call__(self) -> Any:
        if self.errors:
            raise self.errors.pop(0)
        return self.db.uow()


def _refused() -> OperationalError:
    return OperationalError("UPDATE worker_heartbeats ...", {}, psycopg.OperationalError("refused"))


async def test_a_heartbeat_without_the_database_is_one_line(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = _Flaky(sqlite_db, _refused())
    share = WorkerShare(
        flaky, SystemClock(), "w1", beat=timedelta(milliseconds=10), alive=timedelta(seconds=1)
    )
    await share.ready()  # the first beat fails, the next is written
    flaky.errors = [_refused()]
    await share.leave()
    said = [r for r in caplog.records if r.name == "gradesync.services.delivery.share"]
    assert [r.getMessage().split(" (")[0] for r in said] == [
        "writing the worker heartbeat: database unavailable",
        "removing the worker heartbeat: database unavailable",
    ]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in said)


async def test_another_heartbeat_error_keeps_its_traceback(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = _Flaky(sqlite_db, RuntimeError("a bug"))
    share = WorkerShare(
        flaky, SystemClock(), "w1", beat=timedelta(milliseconds=10), alive=timedelta(seconds=1)
    )
    await share.ready()
    await share.leave()
    [said] = [r for r in caplog.records if r.name == "gradesync.services.delivery.share"]
    assert said.levelno == logging.ERROR and said.exc_info is not None


def _lease_owners(db: Database) -> list[str | None]:
    with db.engine.connect() as conn:
        return [owner for (owner,) in conn.exec_driver_sql("SELECT lease_owner FROM ledger")]


async def test_outcomes_the_database_could_not_take_are_written_once_it_answers(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    seed(sqlite_db, learners=1)
    post(sqlite_db, None, [("a1", learner(0), 7.0)])
    engine = Engine(sqlite_db.uow, SystemClock(), DoubleFactory(), FAST)
    await engine.process_dirty()
    await engine.aclose()
    key = LedgerKey(T, DEST, "a1", learner(0))
    now = SystemClock().now()
    with sqlite_db.uow() as uow:  # claimed by this worker for ten minutes, then not sent
        uow.ledger.lease([(key, now)], "w:1", now + timedelta(minutes=10))
        uow.commit()
    assert _lease_owners(sqlite_db) == ["w:1"]

    flaky = _Flaky(sqlite_db, _refused())
    settings = replace(EngineSettings(), settle_gather=timedelta(0))
    writer = SettleWriter(flaky, SystemClock(), settings, "w:1")
    try:
        writer.put(Settlement(key, COURSE, None))  # give the lease back
        with pytest.raises(OperationalError):  # a pass stops as on its own queries
            await writer.flush()
        assert _lease_owners(sqlite_db) == ["w:1"]
        await writer.flush()  # kept, and written once the database answers
    finally:
        await writer.stop()
    assert _lease_owners(sqlite_db) == [None]  # due again now, not in ten minutes
    said = [r for r in caplog.records if r.name == "gradesync.services.delivery.settle"]
    assert [r.getMessage().split(" (")[0] for r in said] == [
        "writing 1 delivery outcomes: database unavailable"
    ]
    assert said[0].levelno == logging.WARNING and said[0].exc_info is None
