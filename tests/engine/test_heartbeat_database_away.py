"""A worker's heartbeat while the database is away: one line saying so, no traceback (the
worker's own lines say the database is lost and when it answers again); another error
keeps its traceback."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from gradesync.adapters.db.database import Database
from gradesync.services.clock import SystemClock
from gradesync.services.delivery.share import WorkerShare


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
