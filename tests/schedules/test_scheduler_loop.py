"""The in-process scheduler loop and the procrastinate periodic task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import procrastinate
import psycopg
import pytest
from procrastinate.testing import InMemoryConnector
from sqlalchemy.exc import OperationalError

from gradesync.adapters.db.database import Database
from gradesync.adapters.queue import scheduler
from gradesync.adapters.queue.scheduler import (
    PERIODIC_ID,
    TICK_TASK,
    SchedulerLoop,
    register_periodic_tick,
    seconds_until,
)
from gradesync.domain.model import ScheduleAction, ScheduleEvent
from gradesync.services.schedules import ScheduleService
from gradesync.testing import DEADLINE, ManualClock, wait_for_async
from tests.schedules.conftest import T0, Requester, seed_tenant


class Parts:
    def __init__(self, db: Database) -> None:
        seed_tenant(db)
        self.db = db
        self.clock = ManualClock(T0)
        self.requester = Requester(db, self.clock)
        self.service = ScheduleService(
            db.uow, self.clock, self.requester, on_change=scheduler.notify_changed
        )

    async def logged(self, schedule_id: str, action: ScheduleAction) -> ScheduleEvent:
        """The newest `action` event of the schedule, once the loop has written it."""

        def found() -> list[ScheduleEvent]:
            history = self.service.history("t1", schedule_id)
            return [h.event for h in history if h.event.action is action]

        events = await wait_for_async(found, f"a {action} event", blocking=True)
        return events[0]

    async def wait_for_run(self) -> None:
        ok = await asyncio.to_thread(self.requester.called.wait, DEADLINE)
        assert ok, "the scheduler did not request a run in time"
        self.requester.called.clear()


@pytest.fixture
async def parts(sqlite_db: Database) -> AsyncIterator[Parts]:
    yield Parts(sqlite_db)


def test_seconds_until() -> None:
    assert seconds_until(None, T0, 60) == 60
    assert seconds_until(T0 + timedelta(seconds=5), T0, 60) == 5
    assert seconds_until(T0 + timedelta(hours=1), T0, 60) == 60
    assert seconds_until(T0 - timedelta(hours=1), T0, 60) == 0


async def test_missed_run_fires_once_when_the_loop_starts(parts: Parts) -> None:
    s = parts.service.create("t1", "alice", kind="interval", spec="15m").schedule
    parts.clock.advance(timedelta(hours=5))  # the service was down for 5 hours
    loop = SchedulerLoop(parts.service, parts.clock, max_sleep=3600)
    loop.start()
    try:
        await parts.wait_for_run()
        event = await parts.logged(s.id, ScheduleAction.FIRED)
    finally:
        await loop.stop()
    assert len(parts.requester.calls) == 1
    assert event.missed == 19  # 20 slots in 5 hours, one run


async def test_a_change_wakes_the_sleeping_loop(parts: Parts) -> None:
    loop = SchedulerLoop(parts.service, parts.clock, max_sleep=3600)
    loop.start()
    try:
        # nothing scheduled: the loop sleeps up to an hour
        s = parts.service.create("t1", "alice", kind="interval", spec="15m").schedule
        parts.clock.advance(timedelta(minutes=15))
        scheduler.notify_changed()  # as an edit in this process would
        await parts.wait_for_run()
        assert parts.requester.calls[0][3] == s.id
        # an API edit (through the service's on_change) wakes it too
        parts.clock.advance(timedelta(minutes=15))
        parts.service.edit("t1", s.id, "bob", spec="15m")
        await parts.wait_for_run()
    finally:
        await loop.stop()
    assert len(parts.requester.calls) == 2


def _bug() -> RuntimeError:
    return RuntimeError("a bug")


def _refused() -> OperationalError:
    return OperationalError("SELECT ... FROM schedules", {}, psycopg.OperationalError("refused"))


def _deadlock() -> OperationalError:
    return OperationalError(
        "UPDATE schedules ...", {}, psycopg.errors.DeadlockDetected("deadlock detected")
    )


def _not_the_database() -> ConnectionError:
    return ConnectionError("database restarting")  # no database error, whatever it says


@pytest.mark.parametrize("error", ["outage", "deadlock", "bug", "not-the-database"])
async def test_the_loop_survives_failing_ticks_and_says_each_as_what_it_is(
    parts: Parts, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    parts.service.create("t1", "alice", kind="interval", spec="15m")
    parts.clock.advance(timedelta(minutes=15))
    failures = {"left": 3}
    real_tick = parts.service.tick

    def flaky_tick():  # type: ignore[no-untyped-def]
        if failures["left"]:
            failures["left"] -= 1
            raise {
                "outage": _refused,
                "deadlock": _deadlock,
                "not-the-database": _not_the_database,
            }.get(error, _bug)()
        return real_tick()

    parts.service.tick = flaky_tick  # type: ignore[method-assign]
    loop = SchedulerLoop(parts.service, parts.clock, max_sleep=3600, retry_delay=0.01)
    loop.start()
    try:
        await parts.wait_for_run()
        await wait_for_async(lambda: loop.ticks >= 4, "the tick that fired to end")
    finally:
        await loop.stop()
    assert failures["left"] == 0  # three failed ticks, then it fired
    said = [r for r in caplog.records if r.name == "gradesync.adapters.queue.scheduler"]
    if error == "outage":
        assert [r.getMessage() for r in said] == [
            "scheduler: database unavailable: OperationalError: (psycopg.OperationalError)"
            " refused, retrying",
            "scheduler: the database answers again",
        ]
        assert all(r.levelno == logging.WARNING and r.exc_info is None for r in said)
    elif error == "deadlock":  # the database answers: no outage, and no bug either
        assert [r.getMessage() for r in said] == [
            "scheduler tick: the database gave up on it for now: OperationalError:"
            " (psycopg.errors.DeadlockDetected) deadlock detected, retrying"
        ] * 3
        assert all(r.levelno == logging.WARNING and r.exc_info is None for r in said)
    else:
        assert [r.getMessage() for r in said] == ["scheduler tick failed, retrying"] * 3
        assert all(r.levelno == logging.ERROR and r.exc_info is not None for r in said)


def test_procrastinate_periodic_task_ticks_the_same_service(sqlite_db: Database) -> None:
    p = Parts(sqlite_db)
    p.service.create("t1", "alice", kind="interval", spec="15m")
    p.clock.advance(timedelta(minutes=15))
    app = procrastinate.App(connector=InMemoryConnector())
    task = register_periodic_tick(app, lambda: p.service, queue="gradesync")
    periodic = app.periodic_registry.periodic_tasks
    assert [(k, v.cron) for k, v in periodic.items()] == [((TICK_TASK, PERIODIC_ID), "* * * * *")]
    assert app.tasks[TICK_TASK].queue == "gradesync"
    assert task(int(datetime(2024, 11, 1, tzinfo=UTC).timestamp())) == 1
    assert task(0) == 0  # the slot is spent
    assert len(p.requester.calls) == 1
