"""A delivery task that fails with an error nothing classified (a bug, neither a destination's
error nor a lost database) gives the rows it holds back to the ledger at once, fenced to
their claims, and says why with the traceback: they go on the next pass, not two minutes
later when their leases run out."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.capabilities import Capabilities
from gradesync.domain.model import DeliveryState, Destination
from gradesync.domain.policy import DesiredResult
from gradesync.services.destination import Receipt, ResultTarget
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory, ManualClock
from gradesync.testing.double import DoubleClient, Remote

from .conftest import FAST, learner, ledger, post, seed

# a pass looks for rows other processes made due once a poll: not within these tests, so
# only the passes they run claim
SLOW_POLL = replace(FAST, poll=timedelta(minutes=10))


class _Faults:
    """Errors the adapter raises, once each, when delivery reads its capabilities."""

    def __init__(self) -> None:
        self.armed: list[Exception] = []
        self.bad_receipts = 0


class _FaultyClient(DoubleClient):
    """The strict double with an adapter's bugs, once each when armed: its `capabilities`
    raise (read as a course's rows are prepared), or a send answers with a receipt that is
    no receipt (its payload no mapping: the send reached the gradebook)."""

    def __init__(self, destination: Destination, remote: Remote, faults: _Faults) -> None:
        super().__init__(destination, remote)
        self._faults = faults

    @property
    def capabilities(self) -> Capabilities:
        if self._faults.armed:
            raise self._faults.armed.pop()
        return self.remote.capabilities

    async def put_result(
        self, target: ResultTarget, result: DesiredResult, timestamp: datetime
    ) -> Receipt:
        said = await super().put_result(target, result, timestamp)
        if self._faults.bad_receipts:
            self._faults.bad_receipts -= 1
            return Receipt(None, said.status, said.message)  # type: ignore[arg-type]
        return said


def _lease_owners(db: Database) -> list[str | None]:
    with db.engine.connect() as conn:
        return [owner for (owner,) in conn.exec_driver_sql("SELECT lease_owner FROM ledger")]


async def test_rows_of_a_task_that_failed_go_on_the_next_pass(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    seed(db, learners=3)
    post(db, None, [("a1", learner(i), 5.0 + i) for i in range(3)])
    factory, faults = DoubleFactory(), _Faults()
    clock = ManualClock()  # never moves: no lease (120 s) can run out
    engine = Engine(
        db.uow, clock, lambda d: _FaultyClient(d, factory.remote(d.id), faults), SLOW_POLL
    )
    try:
        await engine.process_dirty()
        faults.armed.append(RuntimeError("a bug in the adapter"))
        with caplog.at_level(logging.ERROR):
            first = await engine.deliver_due()
        # not claimed back at once by the pass that failed them (a fault that stays would
        # loop)
        assert (first.claimed, first.delivered) == (3, 0)
        assert factory.remote("lms").sends == 0
        assert _lease_owners(db) == [None, None, None]  # claimable again at once
        with db.uow() as uow:
            assert len(uow.ledger.claimable(clock.now(), 10)) == 3
        assert first.failed == 3

        second = await engine.deliver_due()  # the same moment: no lease has run out
        assert second.delivered == 3
        assert {r.state for r in ledger(db).values()} == {DeliveryState.DELIVERED}
        assert _lease_owners(db) == [None, None, None]
    finally:
        await engine.aclose()
    said = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    assert [r.getMessage() for r in said] == [
        "a delivery task for t1/lms, course c1, failed unexpectedly; its 3 claimed results go "
        "again on the next pass"
    ]
    assert said[0].exc_info is not None and "a bug in the adapter" in str(said[0].exc_info[1])


async def test_a_send_task_that_failed_gives_its_row_back(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """The send reached the gradebook, then its task failed: the row goes again on the next
    pass, with a newer timestamp, which changes nothing there. The other rows are sent."""
    seed(db, learners=3)
    post(db, None, [("a1", learner(i), 5.0 + i) for i in range(3)])
    factory, faults = DoubleFactory(), _Faults()
    clock = ManualClock()
    engine = Engine(
        db.uow, clock, lambda d: _FaultyClient(d, factory.remote(d.id), faults), SLOW_POLL
    )
    try:
        await engine.process_dirty()
        faults.bad_receipts = 1
        with caplog.at_level(logging.ERROR):
            first = await engine.deliver_due()
        assert (first.delivered, first.failed) == (2, 1)
        assert _lease_owners(db) == [None, None, None]
        stamped = {k: r.last_timestamp for k, r in ledger(db).items()}
        again = [k for k, r in ledger(db).items() if r.state is not DeliveryState.DELIVERED]
        assert len(again) == 1

        second = await engine.deliver_due()
        assert second.delivered == 1
        rows = ledger(db)
        assert {r.state for r in rows.values()} == {DeliveryState.DELIVERED}
        newer, older = rows[again[0]].last_timestamp, stamped[again[0]]
        assert newer is not None and older is not None and newer > older
    finally:
        await engine.aclose()
    assert "its 1 claimed results go again on the next pass" in caplog.text
