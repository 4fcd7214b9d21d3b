"""A sync run whose worker loses PostgreSQL mid-run (a restart): the run is not failed, it
resumes once the database answers, from where it was (a remaster does not send again what
it had delivered), and its history says what happened."""

from __future__ import annotations

import asyncio
from pathlib import Path

import procrastinate
import psycopg
import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.queue.procrastinate_app import (
    QUEUE,
    TASK_DELIVER,
    TASK_RUN,
    ProcrastinateWaker,
    conninfo,
)
from gradesync.domain.model import RunOutcome, RunScope, RunStage, Trigger
from gradesync.services.clock import SystemClock
from gradesync.services.runs import request_run
from gradesync.testing import TEST_SECRET
from gradesync.testing.http_double import running_gradebook
from gradesync.testing.processes import LONG_LEASE, start_worker, stop_workers
from gradesync.testing.seeding import post_attempts
from tests.faults.test_worker_database_loss import (
    ROOT,
    Prepared,
    _delivered,
    _job_states,
    _learner,
    _seed,
    _wait,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LEARNERS = 200
CONCURRENCY = 4
CLAIM_BATCH = 8  # GRADESYNC_WORKER_CLAIM_BATCH of `worker_env`


@pytest.fixture
def prepared(own_postgres: object) -> Prepared:
    return Prepared(own_postgres)  # type: ignore[arg-type]


def test_a_run_resumes_after_its_database_restarts(prepared: Prepared, tmp_path: Path) -> None:
    url = prepared.url
    log = tmp_path / "worker.log"
    db = Database(url, TEST_SECRET)
    worker = start_worker(url, log, cwd=ROOT, concurrency=CONCURRENCY)
    try:
        with running_gradebook() as (base, gb):
            _seed(db, LEARNERS, base)
            waker = ProcrastinateWaker(url)
            post_attempts(db.uow, waker, "t1", [("a1", _learner(i), 5.0) for i in range(LEARNERS)])
            _wait(lambda: _delivered(db) == LEARNERS, 60, "first grades", log)

            # a remaster sends every grade again, each answered after 0.1 s: several
            # seconds of sending, and the database is restarted once a quarter has gone
            gb.latency = 0.1
            run, _ = request_run(
                db.uow,
                waker,
                SystemClock(),
                RunScope("t1", "lms", "c1"),
                Trigger.REMASTER,
                "test",
            )
            waker.close()

            def remastered() -> int:
                with gb.lock:
                    return sum(1 for n in gb.sends.values() if n >= 2)

            _wait(lambda: remastered() >= LEARNERS // 4, 60, "the remaster sending", log)
            # a restart (`pg_ctl stop -m fast`, then start) that lasts until the run has
            # noticed: a quick one may fall between the run's own queries, and the run then
            # rides it out without ever being interrupted
            prepared.server.stop()
            before = remastered()
            _wait(lambda: "the database was lost" in log.read_text(), 30, "the run to notice", log)
            prepared.server.start()
            db.engine.dispose()

            def finished() -> bool:
                with db.uow() as uow:
                    got = uow.runs.get(run.id)
                return got is not None and got.stage is RunStage.FINISHED

            _wait(finished, 80, "the run to end", log)
            with db.uow() as uow:
                done = uow.runs.get(run.id)
                stages = uow.runs.stages(run.id)
            assert done is not None
            assert done.outcome is RunOutcome.SUCCEEDED, (done.message, stages)
            with gb.lock:
                sends = dict(gb.sends)
                scores = {k: v[0] for k, v in gb.scores.items()}
            assert len(scores) == LEARNERS and set(scores.values()) == {5.0}
            # every grade was sent by the remaster; only what was claimed when the database
            # went away is sent a third time (its outcomes could not be written), not the
            # `before` grades the run had delivered. Claimed then: for the run's pass and for
            # the worker's own delivery loop, each the batch in flight and the one before it,
            # whose outcomes may still wait in the settle writer's gathering window
            assert all(n >= 2 for n in sends.values())
            resent = [k for k, n in sends.items() if n > 2]
            assert len(resent) <= 4 * CLAIM_BATCH < before, (len(resent), before, stages)
            notes = [s.get("note", "") for s in stages]
            assert any(n.startswith("database lost at ") for n in notes), stages
            assert any(n.startswith("resumed by ") for n in notes), stages
            text = log.read_text()
            assert "Task exception was never retrieved" not in text, text
            assert "failed" not in (done.message or "")
    finally:
        stop_workers(worker)
        db.dispose()


def _defer_wakeup(url: str) -> int:
    """A `gradesync.deliver` wake-up, as a worker with more than it can do defers one; its
    job id."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo(url)))
    task = app.task(name=TASK_DELIVER, queue=QUEUE)(lambda: None)

    async def go() -> int:
        async with app.open_async():
            return await task.defer_async()

    return asyncio.run(go())


def _run_job_doing(url: str) -> bool:
    with psycopg.connect(conninfo(url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = %s AND status = 'doing'",
            (TASK_RUN,),
        ).fetchone()
    return bool(row and row[0])


def _run_job_states(url: str) -> list[str]:
    with psycopg.connect(conninfo(url)) as conn:
        rows = conn.execute(
            "SELECT status FROM procrastinate_jobs WHERE task_name = %s", (TASK_RUN,)
        ).fetchall()
    return [str(status) for (status,) in rows]


def test_the_job_queue_serves_wakeups_while_a_run_outlives_a_database_restart(
    prepared: Prepared, tmp_path: Path
) -> None:
    """procrastinate's worker stops whenever it loses the database; it must not then wait
    for a run's job (as long as the run) before it reconnects and serves the queue again."""
    url = prepared.url
    log = tmp_path / "worker.log"
    db = Database(url, TEST_SECRET)
    # the worker's own look for queued runs seldom: the run is started by its job; its
    # claims outlast the sends the gradebook holds (`LONG_LEASE`)
    worker = start_worker(
        url,
        log,
        cwd=ROOT,
        concurrency=CONCURRENCY,
        GRADESYNC_WORKER_POLL_SECONDS="60",
        GRADESYNC_WORKER_LEASE_SECONDS=LONG_LEASE,
    )
    try:
        with running_gradebook() as (base, gb):
            _seed(db, 4, base)
            waker = ProcrastinateWaker(url)
            post_attempts(db.uow, waker, "t1", [("a1", _learner(i), 5.0) for i in range(4)])
            _wait(lambda: _delivered(db) == 4, 60, "first grades", log)

            # the remaster's sends are held by the gradebook until the test lets them go:
            # the run, and its `run_sync` job, stay in flight across the restart
            gb.hold = True
            run, _ = request_run(
                db.uow,
                waker,
                SystemClock(),
                RunScope("t1", "lms", "c1"),
                Trigger.REMASTER,
                "test",
            )
            _wait(lambda: gb.held > 0 and _run_job_doing(url), 60, "the run sending", log)
            waker.close()

            prepared.server.restart()  # every connection of the worker is cut
            db.engine.dispose()
            job = _defer_wakeup(url)
            _wait(lambda: job not in _job_states(url), 30, "the wake-up served", log)
            with db.uow() as uow:
                during = uow.runs.get(run.id)
            assert during is not None and during.stage is not RunStage.FINISHED, during
            assert gb.hold, "the gradebook let the run's sends go before the test did"
            # the loss is said when the queue finds the database gone, not only once
            # procrastinate's worker has let go of its jobs and ended
            text = log.read_text()
            lost, let_go = text.find("lost the database"), text.find("goes on in this worker")
            assert 0 <= lost < let_go, text

            gb.release()

            def finished() -> bool:
                with db.uow() as uow:
                    got = uow.runs.get(run.id)
                return got is not None and got.stage is RunStage.FINISHED

            _wait(finished, 60, "the run to end", log)
            with db.uow() as uow:
                done = uow.runs.get(run.id)
            assert done is not None and done.outcome is RunOutcome.SUCCEEDED, done
            assert worker.poll() is None, log.read_text()
            assert "Task exception was never retrieved" not in log.read_text()
            # the run's job was let go, and, the database back within the 10 s procrastinate
            # waits to write it, is stored as it is logged: aborted (docs/operations.md)
            assert "ended with status: Aborted" in log.read_text()
            assert _run_job_states(url) == ["aborted"]
    finally:
        stop_workers(worker)
        db.dispose()
