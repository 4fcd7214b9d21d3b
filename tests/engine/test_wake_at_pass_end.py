"""A wake-up that arrives while a delivery pass is ending is not lost: rows that became due
while the pass made its last claim (computed here after that claim read the ledger) are
claimed by the same pass, not left for the worker's next look (`poll`, longer than the test
here). A wake for rows outside a pass's scope does not keep it claiming."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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


async def _after_each_claim_once_flushed(
    harness: Harness, db: Database, then: Callable[[Any], Awaitable[None]]
) -> None:
    """A pass that claims once more once its sends are settled and written (poll 0: its
    last claim, unless a wake keeps it claiming), with learner 0's grade of a1 due; `then`
    runs with each claim's result that the pass gets after that write, before the claim
    returns to it."""
    await harness.use(replace(FAST, poll=timedelta(0)))
    post(db, None, [("a1", learner(0), 5.0)])
    await harness.engine.process_dirty()
    d = harness.engine.deliverer
    real_claim, real_flush = d.claim, d.writer.flush
    flushed = False

    async def flush() -> None:
        nonlocal flushed
        await real_flush()
        flushed = True

    async def claim(scope: DeliveryScope, limit: int, **kw: Any) -> Any:
        out = await real_claim(scope, limit, **kw)
        if flushed:
            await then(out)
        return out

    d.claim = claim  # type: ignore[method-assign]
    d.writer.flush = flush  # type: ignore[method-assign]


@pytest.mark.parametrize(
    "scope",
    [DeliveryScope(), DeliveryScope(T, DEST, COURSE), DeliveryScope(T, DEST, COURSE, ("a1",))],
    ids=["every-row", "a-course", "an-activity"],
)
async def test_a_row_due_during_the_last_claim_of_a_pass_is_sent_by_it(
    harness: Harness, db: Database, scope: DeliveryScope
) -> None:
    seed(db, learners=2)
    woken = False

    async def a_new_row_at_the_last_claim(claimed: Any) -> None:
        nonlocal woken
        if not claimed[0] and not woken:
            # the claim read the ledger before this row was computed; the wake (note_due)
            # comes before the claim returns
            woken = True
            post(db, None, [("a1", learner(1), 6.0)])
            await harness.engine.process_dirty()

    await _after_each_claim_once_flushed(harness, db, a_new_row_at_the_last_claim)
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
    elsewhere = 0  # the other course's grades computed during the pass's claims
    most = 200  # the other course's traffic is bounded; the pass ends long before

    async def c2_computes(claimed: Any) -> None:
        nonlocal elsewhere
        if elsewhere < most:
            # a grade of c2 becomes due (and wakes) while this claim is in progress
            elsewhere += 1
            post(db, None, [("b1", learner(0), 10.0 * elsewhere / most)])  # a new grade
            await harness.engine.process_dirty()

    await _after_each_claim_once_flushed(harness, db, c2_computes)
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
