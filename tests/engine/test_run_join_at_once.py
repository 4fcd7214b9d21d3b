"""A request that upgrades a queued run of its scope (a remaster asked while a manual run waits)
upgrades it only while it is still queued. A worker's claim does not wait for the request's
lock on the scope: on PostgreSQL (read committed) a claim committed between the request's
read of the scope's runs and its upgrade left the run running as manual while its record said
remaster, and the request answered `joined` to a remaster that never happened (its columns
not rewritten, its unchanged results not sent again). The run is left as it runs, and the
remaster is queued behind it, as for a run found running."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gradesync.adapters.db.database import Database
from gradesync.domain.model import RunScope, RunStage, SyncRun, Trigger
from gradesync.services.runs import request_run
from gradesync.testing import ManualClock, add_course, add_tenant
from tests.support.races import AfterFirstRead

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
SCOPE = RunScope("t1", None, "c1")


def test_a_run_claimed_while_a_remaster_joins_it_is_not_upgraded_behind_its_worker(
    db: Database,
) -> None:
    add_tenant(db.uow, "t1")
    add_course(db.uow, "t1", "c1")
    clock = ManualClock(T0)
    queued, _ = request_run(db.uow, None, clock, SCOPE, Trigger.MANUAL, "ada")

    def claim() -> SyncRun | None:  # a worker takes the queued run
        with db.uow() as uow:
            run = uow.runs.claim_next("w-1", T0, T0 - timedelta(seconds=60))
            uow.commit()
        return run

    # the worker claims right after the request read the scope's active runs
    racing = AfterFirstRead(db, "runs", "active_for_scope", claim)
    asked, joined = request_run(racing, None, clock, SCOPE, Trigger.REMASTER, "bob")
    claimed = racing.finish()
    assert claimed is not None and claimed.id == queued.id
    with db.uow() as uow:
        stored = {r.id: r for r in uow.runs.history("t1")}
    # the claimed run is stored as its worker runs it
    assert stored[claimed.id].trigger is claimed.trigger
    assert asked.trigger is Trigger.REMASTER
    if db.is_sqlite:
        # the claim waited for the request's write lock: it took the upgraded run
        assert joined and asked.id == claimed.id and claimed.trigger is Trigger.REMASTER
    else:
        # it committed between the read and the upgrade (it waits for no lock of the
        # request's): the remaster is a run of its own, queued behind the running one
        assert racing.second is not None and not racing.second.blocked
        assert not joined and asked.id != claimed.id
        assert claimed.trigger is Trigger.MANUAL
        assert (stored[asked.id].stage, stored[asked.id].trigger) == (
            RunStage.QUEUED,
            Trigger.REMASTER,
        )
