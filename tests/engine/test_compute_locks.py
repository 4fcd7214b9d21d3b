"""On PostgreSQL, computing locks the activities it computes, not all computing: a run
recomputing one activity holds up only that activity's grades (live grades of other
courses go on), and a computation of the same activity waits, so a slower computation from
older facts never overwrites a newer one."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import text

from gradesync.adapters.db.database import Database
from gradesync.services.clock import SystemClock
from gradesync.services.compute import ComputeStats, compute_activity, compute_dirty
from gradesync.services.worker import Clients
from gradesync.testing import DEADLINE, DoubleFactory, wait_for
from tests.engine.conftest import COURSE, DEST, T, learner, ledger, post, seed

pytestmark = pytest.mark.postgres


def _in_thread(work: Callable[[], ComputeStats]) -> tuple[threading.Thread, list[ComputeStats]]:
    done: list[ComputeStats] = []
    t = threading.Thread(target=lambda: done.append(work()))
    t.start()
    return t, done


def _waiting_for_advisory_locks(db: Database) -> int:
    with db.uow() as uow:
        q = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        return int(uow.conn.execute(text(q)).scalar() or 0)


def test_computing_one_activity_holds_up_that_activity_only(postgres_db: Database) -> None:
    db = postgres_db
    seed(db, learners=2, activities=("a1", "a2"))
    capabilities = Clients(DoubleFactory()).capabilities
    clock = SystemClock()

    def recompute(activity: str) -> Callable[[], ComputeStats]:
        return lambda: compute_activity(
            db.uow,
            clock,
            capabilities,
            tenant_id=T,
            destination_id=DEST,
            course_id=COURSE,
            activity_id=activity,
            person_ids=[learner(0), learner(1)],
            remaster=True,
        )

    holder = db.uow().__enter__()  # a run in the middle of computing a1
    holder.dirty.lock_activities([(T, "a1")])
    try:
        other, other_done = _in_thread(recompute("a2"))
        other.join(DEADLINE)
        assert other_done and other_done[0].keys == 2  # a2 did not wait for a1's lock
        same, same_done = _in_thread(recompute("a1"))
        wait_for(lambda: _waiting_for_advisory_locks(db) == 1, "a1's computation waiting")
        assert not same_done
        post(db, None, [("a2", learner(0), 7.0), ("a1", learner(1), 4.0)])
        # a batch of dirty keys that holds one of a1's waits for a1 too
        live, live_done = _in_thread(lambda: compute_dirty(db.uow, clock, capabilities))
        wait_for(lambda: _waiting_for_advisory_locks(db) == 2, "the dirty batch waiting")
        assert not live_done
    finally:
        holder.__exit__(None, None, None)
    same.join(DEADLINE)
    live.join(DEADLINE)
    assert same_done and same_done[0].keys == 2
    assert live_done and live_done[0].dirty == 2
    rows = ledger(db)
    assert (rows[("a2", learner(0))].desired or {})["score_given"] == 7.0
    assert (rows[("a1", learner(1))].desired or {})["score_given"] == 4.0


def test_a_second_claimer_skips_keys_another_has_taken(postgres_db: Database) -> None:
    db = postgres_db
    seed(db, learners=3, activities=("a1", "a2"))
    post(db, None, [("a1", learner(0), 5.0), ("a2", learner(1), 6.0)])
    with db.uow() as first:
        taken = first.dirty.claim(1)  # the oldest key, held until this transaction ends
        assert [k[2:4] for k in taken] == [("a1", learner(0))]
        with db.uow() as second:  # another process claiming meanwhile does not wait
            assert [k[2:4] for k in second.dirty.claim(10)] == [("a2", learner(1))]
            second.commit()
        first.commit()
    with db.uow() as uow:
        assert uow.dirty.count() == 0
