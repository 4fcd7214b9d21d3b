"""No send outlives its claim. A destination's timeouts may be up to 300 s (and count between
reads, with a token's fetch before), while a claim lasts two minutes by default: a send still
waiting for its answer when the claim ended let another worker claim the key and send it too,
two at once. Now a send is ended as a timeout just before its claim ends, and the row is
retried later; its outcome is written under the claim."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from gradesync.adapters.db.database import Database
from gradesync.adapters.queue.inprocess import InProcessWaker
from gradesync.domain.ledger import BackoffPolicy
from gradesync.domain.model import DeliveryState
from gradesync.services.clock import SystemClock
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory

from .conftest import DEST, FAST, ledger, post, seed


async def test_a_send_with_no_answer_ends_before_its_claim(db: Database) -> None:
    seed(db, learners=1)
    factory = DoubleFactory()
    remote = factory.remote(DEST)
    remote.hold = asyncio.Event()  # the LMS never answers
    lease = timedelta(seconds=3)
    # the retry is not due within this pass: one send, one outcome to look at
    later = BackoffPolicy(base_seconds=60, cap_seconds=60, max_tries=6)
    settings = replace(FAST, lease=lease, min_lease_left=timedelta(seconds=1), backoff=later)
    engine = Engine(db.uow, SystemClock(), factory, settings, waker=InProcessWaker())
    try:
        post(db, None, [("a1", "p000", 7.0)])
        await engine.process_dirty()
        # deliver_due returns once the send has ended and its outcome is written
        await asyncio.wait_for(engine.deliver_due(), lease.total_seconds() + 30)
        row = ledger(db)[("a1", "p000")]
        assert row.state is DeliveryState.RETRYING, row
        assert row.reason_code == "timeout"
        assert "left of the grade's claim" in (row.remote_message or row.reason_text or "")
        # what to do, for a destination slower than a claim lasts
        assert "GRADESYNC_WORKER_LEASE_SECONDS" in (row.reason_text or ""), row.reason_text
        assert remote.sends == 1 and not remote.hold.is_set()
        with db.engine.connect() as conn:  # written under the claim: no lease left behind
            owners = {o for (o,) in conn.exec_driver_sql("SELECT lease_owner FROM ledger")}
        assert owners == {None}
    finally:
        await engine.aclose()
