"""Under a backlog, delivery sends the oldest pending results first, whatever their course,
so no result (a course's first grade included) waits until the load stops."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Course, DeliveryState, LedgerKey, LedgerRow
from gradesync.services.clock import SystemClock
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory
from gradesync.testing.seeding import EPOCH
from tests.engine.conftest import DEST, FAST, Harness, T, learner, ledger, post, seed


def _pending(course: str, activity: str, person: str, minute: float) -> tuple[LedgerRow, str]:
    row = LedgerRow(
        key=LedgerKey(T, DEST, activity, person),
        state=DeliveryState.PENDING,
        desired_hash=f"h-{activity}-{person}",
        desired={"score_given": 1.0, "score_maximum": 10.0},
        updated_at=EPOCH + timedelta(minutes=minute),
    )
    return row, course


def test_claims_oldest_due_first_across_courses(db: Database) -> None:
    seed(db, learners=0)
    with db.uow() as uow:
        uow.courses.upsert(Course(T, "c2", "Chemistry"))
        # c1: a backlog pending since minutes 0..5; c2's first grade arrives at minute 2.5
        uow.ledger.save_many(
            [_pending("c1", "a1", learner(i), i) for i in range(6)]
            + [_pending("c2", "b1", learner(0), 2.5)]
        )
        # a retry that fell due at minute 1.5 counts from then, not from its failure
        retry = replace(
            _pending("c1", "a2", learner(0), -30)[0],
            state=DeliveryState.RETRYING,
            next_attempt_at=EPOCH + timedelta(minutes=1, seconds=30),
        )
        late = replace(
            _pending("c1", "a2", learner(1), -30)[0],
            state=DeliveryState.RETRYING,
            next_attempt_at=EPOCH + timedelta(hours=2),  # not due yet
        )
        uow.ledger.save_many([(retry, "c1"), (late, "c1")])
        uow.commit()
    with db.uow() as uow:
        claimed = uow.ledger.claimable(EPOCH + timedelta(hours=1), 5)
    got = [(course, r.key.activity_id, r.key.person_id) for r, course, _ in claimed]
    assert got == [
        ("c1", "a1", learner(0)),
        ("c1", "a1", learner(1)),
        ("c1", "a2", learner(0)),  # the due retry in its place
        ("c1", "a1", learner(2)),
        ("c2", "b1", learner(0)),  # c2's first grade before c1's newer backlog
    ]


async def test_a_backlog_is_delivered_oldest_first(harness: Harness, db: Database) -> None:
    seed(db, learners=8, config={"concurrency": 1})
    for i in range(8):  # one at a time: each result becomes pending after the one before
        post(db, harness.waker, [("a1", learner(i), 5.0)])
        await harness.engine.process_dirty()
    await harness.engine.deliver_due()
    sent = [person for _, person in harness.remote.order]
    assert sent == [f"sub-{learner(i)}" for i in range(8)]


async def test_a_pending_result_keeps_its_place_when_it_changes_again(
    harness: Harness, db: Database
) -> None:
    seed(db, learners=2)
    post(db, harness.waker, [("a1", learner(0), 5.0)])
    await harness.engine.process_dirty()
    post(db, harness.waker, [("a1", learner(1), 5.0)])
    await harness.engine.process_dirty()
    first = ledger(db)[("a1", learner(0))].updated_at
    post(db, harness.waker, [("a1", learner(0), 8.0)])  # changes while still waiting
    await harness.engine.process_dirty()
    row = ledger(db)[("a1", learner(0))]
    assert row.state is DeliveryState.PENDING and row.updated_at == first
    await harness.engine.deliver_due()
    assert harness.remote.order[0][1] == f"sub-{learner(0)}"
    assert harness.remote.score_of("https://lms/courses/1/items/a1", f"sub-{learner(0)}") == 8.0


async def test_two_engines_share_a_backlog_without_sending_a_key_twice(db: Database) -> None:
    """The ranked claim still hands each row to one worker (SKIP LOCKED on PostgreSQL)."""

    seed(db, learners=30, config={"concurrency": 4})
    factory = DoubleFactory()
    engines = [Engine(db.uow, SystemClock(), factory, replace(FAST, claim_batch=5)) for _ in "ab"]
    try:
        post(db, None, [("a1", learner(i), 5.0) for i in range(30)])
        await engines[0].process_dirty()
        await asyncio.gather(*(e.deliver_due() for e in engines))
    finally:
        for e in engines:
            await e.aclose()
    remote = factory.remote(DEST)
    assert remote.sends == 30 and remote.overlapping == []
    assert {r.state for r in ledger(db).values()} == {DeliveryState.DELIVERED}
