"""A wake-up that arrives while a delivery pass is ending is not lost: rows that became due
while the pass made its last claim (computed here after that claim read the ledger) are
claimed by the same pass, not left for the worker's next look (`poll`, longer than the test
here). A wake for rows outside a pass's scope does not keep it claiming."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.model import CourseLink
from gradesync.services.clock import SystemClock
from gradesync.services.delivery import DeliveryScope
from gradesync.services.worker import Engine
from gradesync.testing import DEADLINE, add_course
from tests.engine.conftest import COURSE, DEST, FAST, Harness, T, learner, post, seed


@pytest.mark.parametrize(
    "scope",
    [DeliveryScope(), DeliveryScope(T, DEST, COURSE), DeliveryScope(T, DEST, COURSE, ("a1",))],
    ids=["every-row", "a-course", "an-activity"],
)
async def test_a_row_due_during_the_last_claim_of_a_pass_is_sent_by_it(
    harness: Harness, db: Database, scope: DeliveryScope
) -> None:
    seed(db, learners=2)
    # poll 0: once its sends are settled and written, the pass claims once more (its last)
    await harness.use(replace(FAST, poll=timedelta(0)))
    post(db, None, [("a1", learner(0), 5.0)])
    await harness.engine.process_dirty()
    d = harness.engine.deliverer
    real_claim, real_flush = d.claim, d.writer.flush
    flushed = woken = False

    async def flush() -> None:
        nonlocal flushed
        await real_flush()
        flushed = True

    async def last_claim_then_a_new_row(scope: DeliveryScope, limit: int, **kw: Any) -> Any:
        nonlocal woken
        out = await real_claim(scope, limit, **kw)
        if flushed and not out[0] and not woken:
            # the claim read the ledger before this row was computed; the wake (note_due)
            # comes before the claim returns
            woken = True
            post(db, None, [("a1", learner(1), 6.0)])
            await harness.engine.process_dirty()
        return out

    d.claim = last_claim_then_a_new_row  # type: ignore[method-assign]
    d.writer.flush = flush  # type: ignore[method-assign]
    stats = await harness.engine.deliver_due(scope)
    assert woken
    assert stats.delivered == 2
    assert harness.remote.score_of("https://lms/courses/1/items/a1", "sub-p001") == 6.0


async def test_rows_due_while_no_pass_runs_start_one_at_once(
    harness: Harness, db: Database
) -> None:
    """Rows become due in this process (an outcome written late, a run's row reopened
    during its send) while the worker's delivery loop waits: it starts a pass at once."""
    seed(db, learners=1)
    engine = await harness.use(replace(FAST, poll=timedelta(hours=1)))
    passes = asyncio.Condition()
    ended = 0
    real = engine.deliver_due

    async def counted(scope: DeliveryScope | None = None) -> Any:
        nonlocal ended
        try:
            return await real(scope)
        finally:
            async with passes:
                ended += 1
                passes.notify_all()

    engine.deliver_due = counted  # type: ignore[method-assign]
    await harness.start()
    async with passes:  # the sweep on start is over; nothing wakes the loop since
        await asyncio.wait_for(passes.wait_for(lambda: ended == 1), DEADLINE)
    # a row made due behind this process's back (another engine computes it, telling no
    # one), then this process's own signal that rows became due
    other = Engine(db.uow, SystemClock(), harness.factory, FAST)
    post(db, None, [("a1", learner(0), 5.0)])
    await other.process_dirty()
    await other.aclose()
    engine.deliverer.note_due()
    await harness.remote.wait_for(lambda: harness.remote.sends == 1, "the send")


async def test_a_scoped_pass_ends_while_another_course_keeps_computing(
    harness: Harness, db: Database
) -> None:
    """A run's pass over one course ends after one claim that finds nothing of its own,
    although another course's grades at the same destination become due during each of its
    claims (continuous ingest elsewhere)."""
    seed(db, learners=1)
    add_course(db.uow, T, "c2", ("b1", "Essay", 10.0), learners=[learner(0)])
    with db.uow() as uow:
        uow.links.save_course(CourseLink(T, DEST, "c2", "https://lms/courses/2"))
        uow.commit()
    # poll 0: once its sends are settled and written, the pass claims once more (its last)
    await harness.use(replace(FAST, poll=timedelta(0)))
    post(db, None, [("a1", learner(0), 5.0)])
    await harness.engine.process_dirty()
    d = harness.engine.deliverer
    real_claim, real_flush = d.claim, d.writer.flush
    flushed = False
    elsewhere = 0  # the other course's grades computed during the pass's claims
    most = 200  # the other course's traffic is bounded; the pass ends long before

    async def flush() -> None:
        nonlocal flushed
        await real_flush()
        flushed = True

    async def claim_while_c2_computes(scope: DeliveryScope, limit: int, **kw: Any) -> Any:
        nonlocal elsewhere
        out = await real_claim(scope, limit, **kw)
        if flushed and elsewhere < most:
            # a grade of c2 becomes due (and wakes) while this claim is in progress
            elsewhere += 1
            post(db, None, [("b1", learner(0), 10.0 * elsewhere / most)])  # a new grade
            await harness.engine.process_dirty()
        return out

    d.claim = claim_while_c2_computes  # type: ignore[method-assign]
    d.writer.flush = flush  # type: ignore[method-assign]
    stats = await asyncio.wait_for(
        harness.engine.deliver_due(DeliveryScope(T, DEST, COURSE)), DEADLINE
    )
    assert stats.delivered == 1
    assert elsewhere == 1, f"the pass claimed again after {elsewhere} wakes for c2"
    assert harness.remote.sends == 1  # c2's grades are not the pass's to send


async def test_a_scoped_pass_sends_its_row_again_when_it_changed_during_the_send(
    harness: Harness, db: Database
) -> None:
    """A run's pass over one course: its row's grade changes while the row is being sent,
    so the row is due again once its outcome is written. The writer's wake names the
    course, and the pass claims the row again rather than ending (nothing else claims
    here: the poll is an hour and no worker runs)."""
    seed(db, learners=1)
    await harness.use(replace(FAST, poll=timedelta(hours=1)))
    post(db, None, [("a1", learner(0), 5.0)])
    await harness.engine.process_dirty()
    remote = harness.remote
    remote.hold = asyncio.Event()
    sending = asyncio.create_task(harness.engine.deliver_due(DeliveryScope(T, DEST, COURSE)))
    await asyncio.wait_for(remote.arrived.wait(), DEADLINE)
    post(db, None, [("a1", learner(0), 6.0)])
    await harness.engine.process_dirty()
    remote.hold.set()
    stats = await asyncio.wait_for(sending, DEADLINE)
    assert stats.delivered == 2
    assert remote.score_of("https://lms/courses/1/items/a1", "sub-p000") == 6.0
