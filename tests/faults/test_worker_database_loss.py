"""`gradesync worker` against real database faults: a PostgreSQL restart under a running
worker, a database gone for good, and jobs that a killed worker left behind."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.db.notifications import DestinationListener
from gradesync.adapters.queue.procrastinate_app import (
    QUEUE,
    TASK_DIRTY,
    ProcrastinateWaker,
    conninfo,
    look_for_stalled_jobs,
    retry_stalled_jobs,
)
from gradesync.domain.model import DeliveryState
from gradesync.services.destination_signals import DestinationSignals
from gradesync.testing import TEST_SECRET, wait_for
from gradesync.testing.http_double import running_gradebook
from gradesync.testing.processes import GRADESYNC, start_worker, stop_workers, worker_env
from gradesync.testing.seeding import add_course, add_destination, add_tenant, post_attempts
from tests.faults.postgres_server import PostgresServer

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _learner(i: int) -> str:
    return f"p{i:03d}"


def _seed(db: Database, learners: int, gradebook: str) -> None:
    people = [_learner(i) for i in range(learners)]
    add_tenant(db.uow, "t1")
    add_course(db.uow, "t1", "c1", ("a1", "Quiz", 10.0), learners=people)
    add_destination(
        db.uow,
        "t1",
        "lms",
        config={"concurrency": 4, "base_url": gradebook},
        links={"c1": "https://lms/courses/1"},
        people={p: f"sub-{p}" for p in people},
    )


def _delivered(db: Database) -> int:
    with db.uow() as uow:
        rows = uow.ledger.get_many("t1", "lms", "c1").values()
    return sum(1 for r in rows if r.state is DeliveryState.DELIVERED)


def _upgrade(url: str) -> None:
    subprocess.run(
        [GRADESYNC, "db", "upgrade"], env=worker_env(url), cwd=ROOT, check=True, capture_output=True
    )


def _wait(predicate: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    """Wait for a condition; the deadline only ends a hang, and shows the worker's log."""
    wait_for(predicate, what, timeout=timeout, explain=lambda: f"worker log:\n{log.read_text()}")


def _registered_workers(url: str) -> int:
    try:
        with psycopg.connect(conninfo(url), connect_timeout=2) as conn:
            row = conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return 0


class Prepared:
    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.url = server.new_database()
        _upgrade(self.url)


@pytest.fixture
def prepared(own_postgres: PostgresServer) -> Prepared:
    """A migrated database of the test's own, on a server it may restart or stop."""
    return Prepared(own_postgres)


def test_worker_rides_out_a_database_restart(prepared: Prepared, tmp_path: Path) -> None:
    url = prepared.url
    log = tmp_path / "worker.log"
    db = Database(url, TEST_SECRET)
    worker = start_worker(url, log, cwd=ROOT)
    try:
        with running_gradebook() as (base, _gb):
            _seed(db, 4, base)
            waker = ProcrastinateWaker(url)
            post_attempts(db.uow, waker, "t1", [("a1", _learner(i), 5.0) for i in range(2)])
            _wait(lambda: _delivered(db) == 2, 60, "first grades", log)
            waker.close()

            prepared.server.restart()  # every connection of the worker is cut

            db.engine.dispose()
            waker = ProcrastinateWaker(url)
            post_attempts(db.uow, waker, "t1", [("a1", _learner(i), 7.0) for i in range(4)])
            _wait(lambda: _delivered(db) == 4, 90, "grades sent after the restart", log)
            # the job queue's own line: the other parts say the database answers in theirs
            resumed = "the database answers again; the worker goes on"
            _wait(lambda: resumed in log.read_text(), 60, "resumed", log)
            waker.close()
            assert worker.poll() is None, log.read_text()  # still up, not "Stopped worker"
            assert "lost the database" in log.read_text()
            # said in the worker's lines, not in procrastinate's or the heartbeat's tracebacks
            assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        stop_workers(worker)
        db.dispose()


def test_worker_without_its_database_exits_non_zero_with_one_line(
    prepared: Prepared, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    worker = start_worker(
        prepared.url, log, cwd=ROOT, GRADESYNC_WORKER_DATABASE_PATIENCE_SECONDS="2"
    )
    try:
        _wait(lambda: _registered_workers(prepared.url) == 1, 60, "the worker to start", log)
        prepared.server.stop()
        code = worker.wait(timeout=120)
    finally:
        stop_workers(worker)
    lines = log.read_text().strip().splitlines()
    assert code == 1, lines[-20:]
    assert lines[-1].startswith("error: gradesync worker stops: no database for 2 s"), lines[-5:]


def _stall_a_job_beside_its_queued_twin(url: str) -> tuple[int, int]:
    """What a worker killed while running `process_dirty` leaves: that job `doing` under a
    worker whose heartbeat stopped, and the next wake-up already queued with the same
    queueing lock."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo(url)))
    task = app.task(name=TASK_DIRTY, queue=QUEUE)(lambda: None)

    async def go() -> tuple[int, int]:
        async with app.open_async():
            dead = await app.job_manager.register_worker()
            first = await task.configure(queueing_lock=TASK_DIRTY).defer_async()
            job = await app.job_manager.fetch_job(queues=[QUEUE], worker_id=dead)
            assert job is not None and job.id == first
            twin = await task.configure(queueing_lock=TASK_DIRTY).defer_async()
            await app.connector.execute_query_async(
                "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour'"
                f" WHERE id = {int(dead)}"
            )
            return first, twin

    return asyncio.run(go())


def _job_states(url: str) -> dict[int, str]:
    with psycopg.connect(conninfo(url)) as conn:
        rows = conn.execute("SELECT id, status FROM procrastinate_jobs").fetchall()
    return {int(i): str(s) for i, s in rows}


def test_recovering_a_stalled_job_beside_its_queued_twin_ends_it(
    prepared: Prepared,
) -> None:
    url = prepared.url
    stalled, twin = _stall_a_job_beside_its_queued_twin(url)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo(url)))

    async def recover() -> int:
        async with app.open_async():
            return await retry_stalled_jobs(app)

    assert asyncio.run(recover()) == 1
    assert _job_states(url) == {stalled: "aborted", twin: "todo"}


def test_a_new_worker_starts_while_a_dead_worker_left_jobs_behind(
    prepared: Prepared, tmp_path: Path
) -> None:
    url = prepared.url
    stalled, _twin = _stall_a_job_beside_its_queued_twin(url)
    log = tmp_path / "worker.log"
    worker = start_worker(url, log, cwd=ROOT)
    try:
        # the twin runs (and is deleted as successful); the stalled one is ended, not retried
        _wait(lambda: _job_states(url) == {stalled: "aborted"}, 60, "jobs recovered", log)
        assert worker.poll() is None, log.read_text()
    finally:
        stop_workers(worker)


def _queue_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gradesync.adapters.queue.procrastinate_app"]


def test_waking_workers_without_the_database_is_one_line_and_its_end_one(
    prepared: Prepared, caplog: pytest.LogCaptureFixture
) -> None:
    waker = ProcrastinateWaker(prepared.url, timeout=1)
    try:
        waker.wake_keys()
        wait_for(lambda: _job_states(prepared.url) != {}, "the first wake-up")
        prepared.server.stop()
        waker.wake_keys()
        wait_for(lambda: _queue_lines(caplog), "the wake-up to fail")
        prepared.server.start()

        def woken() -> bool:  # a wake-up each look, till one goes through the pool's backoff
            waker.wake_delivery()
            return len(_queue_lines(caplog)) == 2

        wait_for(woken, "a wake-up to go through", timeout=60)
    finally:
        waker.close()
    said = _queue_lines(caplog)
    assert [r.getMessage().split(": ")[:2] for r in said] == [
        ["waking workers", "database unavailable"],
        ["waking workers", "the database answers again"],
    ], [r.getMessage() for r in said]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in said)


def test_a_wake_up_failing_for_another_reason_keeps_its_traceback(
    own_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    waker = ProcrastinateWaker(own_postgres.new_database())  # no queue's schema in it
    try:
        waker.wake_keys()
        wait_for(lambda: _queue_lines(caplog), "the wake-up to fail")
    finally:
        waker.close()
    [said] = _queue_lines(caplog)
    assert said.getMessage() == (
        "deferring a procrastinate job failed, retrying at the next wake-up"
    )
    assert said.levelno == logging.ERROR and said.exc_info is not None


def test_looking_for_stalled_jobs_without_the_database_is_one_line(
    prepared: Prepared, caplog: pytest.LogCaptureFixture
) -> None:
    connector = procrastinate.PsycopgConnector(conninfo=conninfo(prepared.url), timeout=1)
    app = procrastinate.App(connector=connector)

    async def look() -> None:
        async with app.open_async():
            prepared.server.stop()
            try:
                await look_for_stalled_jobs(app)
            finally:
                prepared.server.start()

    asyncio.run(look())
    [said] = _queue_lines(caplog)
    assert said.getMessage().startswith("looking for stalled jobs: database unavailable: ")
    assert said.levelno == logging.WARNING and said.exc_info is None


def test_looking_for_stalled_jobs_failing_for_another_reason_keeps_its_traceback(
    own_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = own_postgres.new_database()  # no queue's schema in it
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo(url)))

    async def look() -> None:
        async with app.open_async():
            await look_for_stalled_jobs(app)

    asyncio.run(look())
    [said] = _queue_lines(caplog)
    assert said.getMessage() == "looking for stalled jobs failed, retrying"
    assert said.levelno == logging.ERROR and said.exc_info is not None


def _count_failed_connects(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the destination listener failed to connect, counted as it happens."""
    failed = [0]
    connect = psycopg.connect

    def counted(*args: Any, **kwargs: Any) -> psycopg.Connection[Any]:
        try:
            return connect(*args, **kwargs)
        except psycopg.Error:
            if threading.current_thread().name == "gradesync-destination-listener":
                failed[0] += 1
            raise

    monkeypatch.setattr(psycopg, "connect", counted)
    return failed


def test_the_destination_listener_says_an_outage_once_and_its_end_once(
    outage_db: Database,
    own_postgres: PostgresServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failed = _count_failed_connects(monkeypatch)
    listener = DestinationListener(outage_db.url, DestinationSignals(), retry_seconds=0.05)
    listener.start()
    try:
        wait_for(listener.listening.is_set, "the listener to LISTEN")
        own_postgres.stop()
        # several retries meet the outage: one line for all of them, not one each
        wait_for(lambda: failed[0] >= 3, "the listener to fail to connect three times")
        own_postgres.start()
        wait_for(listener.listening.is_set, "the listener to LISTEN again")
    finally:
        listener.stop()
    said = [r for r in caplog.records if r.name == "gradesync.adapters.db.notifications"]
    assert [r.getMessage().split(": ")[:2] for r in said] == [
        ["listening for destination changes", "database unavailable"],
        ["listening for destination changes", "the database answers again"],
    ], [r.getMessage() for r in said]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in said)
