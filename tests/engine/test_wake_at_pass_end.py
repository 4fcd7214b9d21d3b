"""A wake-up that arrives while a delivery pass is ending is not lost: rows that became due
while the pass made its last claim (computed here after that claim read the ledger) are
claimed by the same pass, not left for the worker's next look (`poll`, longer than the test
here)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

from gradesync.adapters.db.database import Database
from gradesync.services.clock import SystemClock
from gradesync.services.delivery import DeliveryScope
from gradesync.services.worker import Engine
from gradesync.testing import DEADLINE
from tests.engine.conftest import FAST, Harness, learner, post, seed


async def test_a_row_due_during_the_last_claim_of_a_pass_is_sent_by_it(
    harness: Harness, db: Database
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
    stats = await harness.engine.deliver_due()
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
