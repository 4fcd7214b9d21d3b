"""A run is requeued as stale only if it still is when it is requeued, on SQLite and
PostgreSQL: on PostgreSQL (read committed) a heartbeat its worker committed after the sweep
read it left the worker told the run was its own while the sweep requeued it for another
worker (the same run then ran twice at once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event

from gradesync.adapters.db.database import Database
from gradesync.domain.model import RunScope, RunStage, SyncRun, Trigger
from gradesync.testing import add_course, add_tenant
from tests.support.races import start_second

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def test_a_run_heartbeating_while_the_sweep_reads_it_stays_with_its_worker(db: Database) -> None:
    add_tenant(db.uow, "t1")
    add_course(db.uow, "t1", "c1")
    with db.uow() as uow:
        run = SyncRun("run-1", RunScope("t1", None, "c1"), Trigger.MANUAL, "ops", created_at=T0)
        uow.runs.add(run)
        assert uow.runs.claim_next("w-slow", T0, T0) is not None
        uow.commit()
    later = T0 + timedelta(minutes=5)

    def beat() -> bool:  # the worker, slow but alive, heartbeats: still its run?
        with db.uow() as uow:
            kept = uow.runs.heartbeat("run-1", "w-slow", later)
            uow.commit()
        return kept

    seconds: list[Any] = []
    with db.uow() as uow:
        sweeper = uow.conn

        # right after the sweep's read of the stale runs, before its write
        def after(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            read = statement.lstrip().startswith("SELECT") and "sync_runs" in statement
            if conn is sweeper and read and not seconds:
                seconds.append(start_second(db, beat))

        event.listen(db.engine, "after_cursor_execute", after)
        try:
            requeued = uow.runs.requeue_stale(T0 + timedelta(minutes=1), later, keep_worker="w-2")
            uow.commit()
        finally:
            event.remove(db.engine, "after_cursor_execute", after)
    assert len(seconds) == 1
    kept = seconds[0].finish()
    with db.uow() as uow:
        run = uow.runs.get("run-1")
    assert run is not None
    # one or the other (on SQLite the beat always comes after the sweep), never both: a
    # worker told the run is still its own while the run waits for another worker
    if kept:
        assert (requeued, run.stage) == ([], RunStage.COMPUTING)
    else:
        assert (requeued, run.stage) == (["run-1"], RunStage.QUEUED)
