"""A refused address (or a URL outside the registration) is a misconfiguration that no retry
can fix: the row is refused at once and the destination paused for an admin."""

from __future__ import annotations

from gradesync.adapters.db.database import Database
from gradesync.domain.model import DeliveryState
from gradesync.services.outbound import OutboundRefused
from gradesync.services.worker import Engine
from gradesync.testing import ManualClock
from tests.engine.conftest import (
    DEST,
    FAST,
    Harness,
    T,
    learner,
    ledger,
    post,
    seed,
)


async def test_refused_address_is_rejected_at_once_and_pauses(
    harness: Harness, db: Database
) -> None:
    seed(db, learners=1, config={"concurrency": 1})
    clock = ManualClock()
    engine = Engine(db.uow, clock, harness.factory, FAST)
    try:
        harness.remote.fail_next(1, OutboundRefused("https://10.0.0.5/x", "10.0.0.5 is private"))
        post(db, harness.waker, [("a1", learner(0), 5.0)])
        await engine.process_dirty()
        await engine.deliver_due()
        row = ledger(db)[("a1", learner(0))]
        assert row.state is DeliveryState.REJECTED
        assert row.reason_code == "address_refused" and row.tries <= 1
        with db.uow() as uow:
            dest = uow.destinations.get(T, DEST)
        assert dest is not None and (dest.pause_reason or "").startswith("Misconfigured")
        clock.advance(FAST.misconfigured_pause)
        await engine.deliver_due()
        assert harness.remote.sends == 1  # never sent again
    finally:
        await engine.aclose()
