"""On SQLite, ingests that arrive together share one transaction: every caller returns
once its batch is committed, a refused batch changes nothing and takes nothing of the
others with it, and many ingests cost a few commits, not one each."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from gradesync.adapters.db.database import Database
from gradesync.domain.errors import InvalidInput, NotFound
from gradesync.domain.model import Attempt
from gradesync.services import ingest_group
from gradesync.services.clock import SystemClock
from gradesync.services.ingest import IngestBatch
from gradesync.services.ingest_group import GroupedIngest
from gradesync.testing import add_course, add_tenant
from gradesync.testing.seeding import EPOCH
from gradesync.testing.waiting import wait_for

T = "t1"
LEARNERS = [f"p{i}" for i in range(12)]


def _batch(person: str, event_id: str, activity: str = "a1") -> IngestBatch:
    attempt = Attempt(
        T, event_id, activity, person, 7.0, 10.0, completed_at=EPOCH + timedelta(minutes=1)
    )
    return IngestBatch(attempts=[attempt])


def _stored(db: Database) -> set[str]:
    with db.reads() as uow:
        found = uow.attempts.for_pairs(T, [("a1", p) for p in LEARNERS])
    return {a.source_event_id for attempts in found.values() for a in attempts}


@pytest.mark.parametrize(("group_size", "commits_expected"), [(64, 2), (4, 5)])
def test_ingests_queued_behind_a_write_share_one_commit_and_a_refusal_stays_alone(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch, group_size: int, commits_expected: int
) -> None:
    monkeypatch.setattr(ingest_group, "GROUP", group_size)
    db = sqlite_db
    add_tenant(db.uow, T, "Tenant")
    add_course(db.uow, T, "c1", ("a1", "Quiz", 10.0), learners=LEARNERS)
    group = GroupedIngest(db.uow, SystemClock())
    commits: list[int] = []
    event.listen(db.engine, "commit", lambda conn: commits.append(1))

    path = db.sqlite_file
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None, timeout=30)
    other.execute("BEGIN IMMEDIATE")  # another process writes: the first ingest waits
    with ThreadPoolExecutor(len(LEARNERS) + 4) as pool:
        first = pool.submit(group.ingest, None, T, _batch(LEARNERS[0], "e0"))
        # the first ingest took its group and waits for the other writer
        wait_for(lambda: group._writing and not group._queue, "the first ingest writing")
        rest: list[Any] = [
            pool.submit(group.ingest, None, T, _batch(p, f"e{i}"))
            for i, p in enumerate(LEARNERS[1:], start=1)
        ]
        refused = pool.submit(group.ingest, None, T, _batch("nobody", "e-bad"))
        unknown = pool.submit(group.ingest, None, "no-such-tenant", _batch(LEARNERS[0], "e-x"))
        wait_for(lambda: len(group._queue) == len(rest) + 2, "every other ingest queued")
        other.rollback()  # the writer is free
        other.close()
        results = [f.result(timeout=60) for f in [first, *rest]]
        with pytest.raises(InvalidInput):
            refused.result(timeout=60)
        with pytest.raises(NotFound):
            unknown.result(timeout=60)

    assert all(r.recorded == 1 for r in results)
    assert _stored(db) == {f"e{i}" for i in range(len(LEARNERS))}  # nothing of the refused
    # the first ingest's transaction, then the thirteen queued behind it in groups: one of
    # 64, or four of at most 4 (each written by the first caller still queued)
    assert len(commits) == commits_expected, commits


def test_a_batch_too_large_is_refused_before_it_queues(sqlite_db: Database) -> None:
    group = GroupedIngest(sqlite_db.uow, SystemClock())
    attempts = [Attempt(T, f"e{i}", "a1", "p0", 1.0, 10.0, completed_at=EPOCH) for i in range(1001)]
    with pytest.raises(InvalidInput, match="at most 1000"):
        group.ingest(None, T, IngestBatch(attempts=attempts))
    assert not group._queue and not group._writing


def test_a_failed_transaction_fails_every_batch_in_it_and_the_next_ingest_writes(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = sqlite_db
    add_tenant(db.uow, T, "Tenant")
    add_course(db.uow, T, "c1", ("a1", "Quiz", 10.0), learners=LEARNERS)
    group = GroupedIngest(db.uow, SystemClock())
    broken = threading.Event()
    broken.set()
    real = group.uow_factory

    def factory() -> Any:
        uow = real()
        if broken.is_set():

            def commit() -> None:
                raise sqlite3.OperationalError("disk I/O error")

            uow.commit = commit
        return uow

    monkeypatch.setattr(group, "uow_factory", factory)
    with pytest.raises(sqlite3.OperationalError):
        group.ingest(None, T, _batch(LEARNERS[0], "e0"))
    assert _stored(db) == set()
    broken.clear()
    assert group.ingest(None, T, _batch(LEARNERS[0], "e0")).recorded == 1
    assert _stored(db) == {"e0"}
