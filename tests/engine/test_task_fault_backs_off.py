"""A delivery task that fails with an error nothing classified (a bug, neither a destination's
error nor a lost database) settles the rows it holds at once, fenced to their claims, as
retrying with the reason `internal_error`, on the backoff of a failed send, and says why with
the traceback: a pass does not claim them again and again, and they go when their retry falls
due, not two minutes later when their leases run out. A task stopped by a lost database only
gives its rows back, no try counted."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from gradesync.adapters.db.database import Database
from gradesync.domain.capabilities import Capabilities
from gradesync.domain.model import DeliveryState, Destination
from gradesync.domain.policy import DesiredResult
from gradesync.domain.reasons import ReasonCode
from gradesync.services.delivery import pass_loop
from gradesync.services.destination import Receipt, RequestGate, ResultTarget, ungated
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory, ManualClock
from gradesync.testing.double import DoubleClient, Remote

from .conftest import FAST, learner, ledger, post, seed

# a pass looks for rows other processes made due once a poll: not within these tests, so
# only the passes they run claim
SLOW_POLL = replace(FAST, poll=timedelta(minutes=10))
BASE = FAST.backoff.base_seconds  # the first retry waits between half of it and all of it


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
        self,
        target: ResultTarget,
        result: DesiredResult,
        timestamp: datetime,
        *,
        each_request: RequestGate = ungated,
    ) -> Receipt:
        said = await super().put_result(target, result, timestamp, each_request=each_request)
        if self._faults.bad_receipts:
            self._faults.bad_receipts -= 1
            return Receipt(None, said.status, said.message)  # type: ignore[arg-type]
        return said


@asynccontextmanager
async def _three_due(
    db: Database,
) -> AsyncIterator[tuple[Engine, DoubleFactory, _Faults, ManualClock]]:
    """Three learners' results on a1, computed and due, sent through the faulty double by an
    engine closed on leaving; its clock is moved by the test alone (no lease, 120 s, runs out)."""
    seed(db, learners=3)
    post(db, None, [("a1", learner(i), 5.0 + i) for i in range(3)])
    factory, faults, clock = DoubleFactory(), _Faults(), ManualClock()
    engine = Engine(
        db.uow, clock, lambda d: _FaultyClient(d, factory.remote(d.id), faults), SLOW_POLL
    )
    try:
        await engine.process_dirty()
        yield engine, factory, faults, clock
    finally:
        await engine.aclose()


def _lease_owners(db: Database) -> list[str | None]:
    with db.engine.connect() as conn:
        return [owner for (owner,) in conn.exec_driver_sql("SELECT lease_owner FROM ledger")]


def _said(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]


async def test_rows_of_a_task_that_failed_retry_after_a_backoff(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    async with _three_due(db) as (engine, factory, faults, clock):
        faults.armed.append(RuntimeError("a bug in the adapter, quoting learner data"))
        with caplog.at_level(logging.ERROR):
            first = await engine.deliver_due()
        assert (first.claimed, first.delivered, first.retrying, first.failed) == (3, 0, 3, 3)
        assert factory.remote("lms").sends == 0
        rows = ledger(db).values()
        assert {(r.state, r.reason_code, r.tries) for r in rows} == {
            (DeliveryState.RETRYING, ReasonCode.INTERNAL_ERROR, 1)
        }
        for r in rows:  # the error's kind, never its message
            assert r.reason_text is not None and "(RuntimeError)" in r.reason_text
            assert "learner data" not in r.reason_text
            assert r.next_attempt_at is not None
            assert timedelta(seconds=BASE / 2) <= r.next_attempt_at - clock.now()
            assert r.next_attempt_at - clock.now() <= timedelta(seconds=BASE)
        assert _lease_owners(db) == [None, None, None]  # settled, not left leased

        again = await engine.deliver_due()  # the same moment: nothing is due
        assert again.claimed == 0

        clock.advance(BASE)  # their retry falls due
        second = await engine.deliver_due()
        assert second.delivered == 3
        assert {r.state for r in ledger(db).values()} == {DeliveryState.DELIVERED}
        assert _lease_owners(db) == [None, None, None]
    said = _said(caplog)
    assert [r.getMessage() for r in said] == [
        "a delivery task for t1/lms, course c1, failed unexpectedly; its 3 claimed results are "
        "tried again later (retrying, internal_error)"
    ]
    assert said[0].exc_info is not None and "a bug in the adapter" in str(said[0].exc_info[1])


async def test_a_send_task_that_failed_retries_its_row(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """The send reached the gradebook, then its task failed: the row retries after a
    backoff, with a newer timestamp, which changes nothing there. The other rows are sent."""
    async with _three_due(db) as (engine, factory, faults, clock):
        faults.bad_receipts = 1
        with caplog.at_level(logging.ERROR):
            first = await engine.deliver_due()
        assert (first.claimed, first.delivered, first.failed) == (3, 2, 1)
        assert factory.remote("lms").sends == 3
        assert _lease_owners(db) == [None, None, None]
        stamped = {k: r.last_timestamp for k, r in ledger(db).items()}
        [(again, row)] = [
            (k, r) for k, r in ledger(db).items() if r.state is not DeliveryState.DELIVERED
        ]
        assert (row.state, row.reason_code) == (DeliveryState.RETRYING, "internal_error")

        assert (await engine.deliver_due()).claimed == 0  # not before its retry
        clock.advance(BASE)
        second = await engine.deliver_due()
        assert (second.claimed, second.delivered) == (1, 1)
        rows = ledger(db)
        assert {r.state for r in rows.values()} == {DeliveryState.DELIVERED}
        newer, older = rows[again].last_timestamp, stamped[again]
        assert newer is not None and older is not None and newer > older
    assert "its 1 claimed results are tried again later" in caplog.text


async def test_a_failed_column_with_a_backlog_is_claimed_once_a_pass(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A backlog spans many claims, and one activity's column cannot be prepared (a bug
    there alone): each of its rows is claimed once in the pass, not at every claim after
    its failure, and each failure is logged once, with its traceback."""
    activities = [f"a{i}" for i in range(1, 7)]
    seed(db, learners=20, activities=activities)
    post(db, None, [(a, learner(i), 7.0) for a in activities for i in range(20)])
    column_for, tried = pass_loop.column_for, []

    def faulty(activity: Any, *args: Any) -> Any:
        if activity.id == "a1":
            tried.append(activity.id)
            raise KeyError("a bug preparing a1's column")
        return column_for(activity, *args)

    monkeypatch.setattr(pass_loop, "column_for", faulty)
    factory, clock = DoubleFactory(), ManualClock()
    engine = Engine(db.uow, clock, factory, replace(SLOW_POLL, claim_batch=5))
    try:
        await engine.process_dirty()
        with caplog.at_level(logging.ERROR):
            stats = await engine.deliver_due()
    finally:
        await engine.aclose()
    assert (stats.claimed, stats.delivered, stats.failed) == (120, 100, 20)
    assert factory.remote("lms").sends == 100
    rows = ledger(db)
    failed = {k: r for k, r in rows.items() if k[0] == "a1"}
    assert {(r.state, r.reason_code, r.tries) for r in failed.values()} == {
        (DeliveryState.RETRYING, ReasonCode.INTERNAL_ERROR, 1)
    }
    assert {r.state for k, r in rows.items() if k[0] != "a1"} == {DeliveryState.DELIVERED}
    said = _said(caplog)
    assert len(said) == len(tried) and all(r.exc_info is not None for r in said)
    counted = [re.search(r"its (\d+) claimed", r.getMessage()) for r in said]
    assert sum(int(m.group(1)) for m in counted if m) == 20  # each row once


async def test_a_task_stopped_by_a_lost_database_gives_its_rows_back_uncounted(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A task that met the database gone counts no try and no failure: its rows are given
    back as they were, due at once (here the database answers again at once, and the pass
    sends them)."""
    async with _three_due(db) as (engine, _, faults, _):
        lost = OperationalError("SELECT 1", {}, ConnectionError("server closed the connection"))
        faults.armed.append(lost)
        with caplog.at_level(logging.WARNING):
            stats = await engine.deliver_due()
        assert (stats.failed, stats.retrying, stats.delivered) == (0, 0, 3)
        assert stats.claimed == 6  # given back, and claimed again
        assert {(r.state, r.tries) for r in ledger(db).values()} == {(DeliveryState.DELIVERED, 0)}
    assert "a delivery task stopped, the database unavailable" in caplog.text
    assert not _said(caplog)
