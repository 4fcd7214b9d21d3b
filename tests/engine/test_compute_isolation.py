"""One grade that cannot be worked out never holds up the others: it is set aside with the
reason `compute_failed` (shown by the grades and Diagnose), logged once with its ids, and
worked out again when its facts change, while every other key, in every tenant, is computed
and sent.

A key is made to fail by making the pure policy function raise for that learner alone (the
real causes, an overflowing score or due date, are fixed in the domain and tested there)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError

from gradesync.adapters.db.database import Database
from gradesync.adapters.db.repos.ledger import LedgerRepo
from gradesync.adapters.queue.inprocess import InProcessWaker
from gradesync.domain import policy
from gradesync.domain.diagnosis import learner as diagnosis
from gradesync.domain.model import DeliveryState, LedgerRow, RunScope, RunStage, Trigger
from gradesync.domain.reasons import ReasonCode
from gradesync.services import compute
from gradesync.services.clock import SystemClock
from gradesync.services.runs import request_run
from gradesync.services.worker import Engine
from gradesync.testing import (
    DoubleFactory,
    add_course,
    add_destination,
    add_tenant,
    post_attempts,
)
from tests.support.api import ApiEnv, Caller

from .conftest import COURSE, DEST, FAST, Harness, T, learner, ledger, post, seed

ITEM = "https://lms/courses/1/items/a1"
OTHER, OTHER_DEST = "t2", "lms2"
BAD = "p001"  # the learner of t1 whose grade cannot be worked out


def _other_tenant(db: Database) -> None:
    add_tenant(db.uow, OTHER, "Other school")
    add_course(db.uow, OTHER, "c1", ("a1", "Quiz", 10.0), learners=["q1"])
    add_destination(
        db.uow,
        OTHER,
        OTHER_DEST,
        links={"c1": "https://lms2/courses/1"},
        people={"q1": "sub-q1"},
    )


def _raise_for(person_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = policy.desired_result

    def desired_result(inp: policy.PolicyInput) -> Any:
        if inp.course.tenant_id == T and inp.enrollment and inp.enrollment.person_id == person_id:
            raise OverflowError("date value out of range")
        return real(inp)

    # where the worker and Diagnose call it
    monkeypatch.setattr(compute, "desired_result", desired_result)
    monkeypatch.setattr(diagnosis, "desired_result", desired_result)


async def _settle(engine: Engine) -> None:
    await engine.process_dirty()
    await engine.deliver_due()


def _dirty(db: Database) -> int:
    with db.uow() as uow:
        return uow.dirty.count()


async def test_a_grade_that_cannot_be_computed_is_set_aside_and_the_others_are_sent(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seed(db, learners=3)
    _other_tenant(db)
    _raise_for(BAD, monkeypatch)
    factory = DoubleFactory()
    engine = Engine(db.uow, SystemClock(), factory, FAST, waker=InProcessWaker())
    try:
        post(db, None, [("a1", "p000", 7.0), ("a1", BAD, 8.0), ("a1", "p002", 9.0)])
        await engine.process_dirty()
        # normal attempts posted afterwards, in this tenant and in another
        post(db, None, [("a1", "p000", 10.0)])
        post_attempts(db.uow, None, OTHER, [("a1", "q1", 6.0)])
        with caplog.at_level(logging.ERROR, logger="gradesync.services.compute"):
            await _settle(engine)
            # nothing is left to retry: a second look finds no work and logs nothing more
            assert (await engine.process_dirty()).dirty == 0
        assert _dirty(db) == 0

        remote = factory.remote("lms")
        assert remote.score_of(ITEM, "sub-p000") == 10.0
        assert remote.score_of(ITEM, "sub-p002") == 9.0
        assert remote.score_of(ITEM, f"sub-{BAD}") is None
        assert factory.remote(OTHER_DEST).score_of("https://lms2/courses/1/items/a1", "sub-q1") == (
            6.0
        )
        row = ledger(db)[("a1", BAD)]
        assert row.state is DeliveryState.SKIPPED
        assert row.reason_code == ReasonCode.COMPUTE_FAILED
        assert "OverflowError" in (row.reason_text or "")
        assert "out of range" not in (row.reason_text or "")  # the kind, not the message
        # logged at ERROR with the key's ids, not again on the next look
        failed = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(failed) == 1, [r.getMessage() for r in failed]
        assert BAD in failed[0].getMessage() and "a1" in failed[0].getMessage()

        # the grades and Diagnose say why, through the API
        env = ApiEnv(db, tmp_path)
        with env.client:
            admin = Caller(env.client, env.tenant(T, "admin"))
            grades = admin.get(f"/people/{BAD}/grades").json()
            [cell] = grades["destinations"]["lms"]
            assert cell["state"] == "skipped" and cell["reason_code"] == "compute_failed"
            checks = admin.get(f"/activities/a1/learners/{BAD}/diagnosis").json()["checks"]
            counted = next(c for c in checks if c["code"] == "counted_attempt")
            assert counted["passed"] is False and "OverflowError" in counted["evidence"]
            assert counted["remedy"] and "log" in counted["remedy"]
            delivery = next(c for c in checks if c["code"] == "delivery")
            assert "compute_failed" in delivery["evidence"]

        # once the cause is gone, a new fact works it out again and sends it
        monkeypatch.undo()
        post(db, None, [("a1", BAD, 5.0)])
        await _settle(engine)
        assert remote.score_of(ITEM, f"sub-{BAD}") == 8.0  # highest of 8 and 5
        assert ledger(db)[("a1", BAD)].state is DeliveryState.DELIVERED
    finally:
        await engine.aclose()


def _refuse_writes_of(
    person_id: str, monkeypatch: pytest.MonkeyPatch, error: Exception | None = None
) -> None:
    """The ledger refuses to store this learner's computed value (as a database refuses a
    value it cannot hold), though it takes the compute_failed reason."""
    real = LedgerRepo.save_many

    def save_many(self: LedgerRepo, rows: Sequence[tuple[LedgerRow, str]], **kw: Any) -> Any:
        for row, _ in rows:
            if row.key.person_id == person_id and row.reason_code != ReasonCode.COMPUTE_FAILED:
                raise error or ValueError("this value cannot be stored")
        return real(self, rows, **kw)

    monkeypatch.setattr(LedgerRepo, "save_many", save_many)


def _not_computed(env: ApiEnv) -> dict[tuple[str, str], float]:
    """`gradesync_grades_not_computed` as a scraper reads it from /metrics."""
    r = env.client.get("/metrics")
    assert r.status_code == 200
    return {
        (s.labels["tenant"], s.labels["destination"]): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
        if s.name == "gradesync_grades_not_computed"
    }


async def test_a_batch_that_fails_is_worked_out_key_by_key(
    db: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed(db, learners=3)
    _other_tenant(db)
    _refuse_writes_of(BAD, monkeypatch)
    factory = DoubleFactory()
    engine = Engine(db.uow, SystemClock(), factory, FAST, waker=InProcessWaker())
    try:
        post(db, None, [("a1", "p000", 7.0), ("a1", BAD, 8.0), ("a1", "p002", 9.0)])
        post_attempts(db.uow, None, OTHER, [("a1", "q1", 6.0)])
        with caplog.at_level(logging.ERROR, logger="gradesync.services.compute"):
            stats = await engine.process_dirty()
            await engine.deliver_due()
            assert (await engine.process_dirty()).dirty == 0
        assert stats.failed == {(T, "a1", BAD)}
        env = ApiEnv(db, tmp_path)
        with env.client:  # shown to the operator, once, from the ledger
            assert _not_computed(env) == {(T, DEST): 1, (OTHER, OTHER_DEST): 0}
        assert _dirty(db) == 0
        remote = factory.remote("lms")
        assert remote.score_of(ITEM, "sub-p000") == 7.0
        assert remote.score_of(ITEM, "sub-p002") == 9.0
        assert factory.remote(OTHER_DEST).score_of("https://lms2/courses/1/items/a1", "sub-q1") == (
            6.0
        )
        row = ledger(db)[("a1", BAD)]
        assert row.state is DeliveryState.SKIPPED
        assert row.reason_code == ReasonCode.COMPUTE_FAILED and "ValueError" in (
            row.reason_text or ""
        )
        failed = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(failed) == 1 and BAD in failed[0].getMessage()
    finally:
        await engine.aclose()


async def test_a_batch_the_database_interrupts_is_not_set_aside(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(db, learners=2)
    lost = OperationalError("UPDATE ledger", {}, Exception("server closed the connection"))
    _refuse_writes_of(BAD, monkeypatch, lost)
    engine = Engine(db.uow, SystemClock(), DoubleFactory(), FAST, waker=InProcessWaker())
    try:
        post(db, None, [("a1", "p000", 7.0), ("a1", BAD, 8.0)])
        with pytest.raises(OperationalError):
            await engine.process_dirty()
        # the whole batch waits for the database to answer, the key too: nothing set aside
        assert _dirty(db) == 2
        assert ledger(db) == {}
    finally:
        await engine.aclose()


async def test_the_running_worker_goes_on_past_a_grade_it_cannot_compute(
    harness: Harness, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(db, learners=2)
    _other_tenant(db)
    _raise_for(BAD, monkeypatch)
    await harness.start()
    post(db, harness.waker, [("a1", BAD, 8.0)])
    post(db, harness.waker, [("a1", "p000", 7.0)])
    post_attempts(db.uow, harness.waker, OTHER, [("a1", "q1", 6.0)])
    other = harness.factory.remote(OTHER_DEST)
    await harness.until(
        lambda: other.score_of("https://lms2/courses/1/items/a1", "sub-q1") == 6.0,
        "the other tenant's grade sent",
    )
    await harness.until(
        lambda: harness.remote.score_of(ITEM, "sub-p000") == 7.0, "this tenant's grade sent"
    )
    await harness.until(lambda: _dirty(db) == 0, "every key worked out")
    assert ledger(db)[("a1", BAD)].reason_code == ReasonCode.COMPUTE_FAILED
    env = ApiEnv(db, tmp_path)
    with env.client:
        assert _not_computed(env) == {(T, DEST): 1, (OTHER, OTHER_DEST): 0}
        # once the cause is gone, a new attempt works it out again: nothing is set aside
        monkeypatch.undo()
        post(db, harness.waker, [("a1", BAD, 9.0)])
        await harness.until(
            lambda: harness.remote.score_of(ITEM, f"sub-{BAD}") == 9.0, "the grade sent"
        )
        assert _not_computed(env) == {(T, DEST): 0, (OTHER, OTHER_DEST): 0}


async def test_a_run_finishes_past_a_grade_it_cannot_compute(
    harness: Harness, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(db, learners=3)
    post(db, None, [("a1", learner(i), 5.0 + i) for i in range(3)])
    _raise_for(BAD, monkeypatch)
    run, _ = request_run(
        db.uow, harness.waker, SystemClock(), RunScope(T, DEST, COURSE), Trigger.MANUAL, "ada"
    )
    done = await harness.engine.execute_run(run.id)
    assert done is not None and done.stage is RunStage.FINISHED
    assert done.counts["sent"] == 2
    assert done.counts["skipped"] == {"compute_failed": 1}
    assert harness.remote.score_of(ITEM, "sub-p000") == 5.0
    assert harness.remote.score_of(ITEM, "sub-p002") == 7.0
    assert ledger(db)[("a1", BAD)].reason_code == ReasonCode.COMPUTE_FAILED
    env = ApiEnv(db, tmp_path)
    with env.client:
        # set aside by a run, not by the live worker: the operator sees it all the same
        assert _not_computed(env) == {(T, DEST): 1}
        # the cause gone, a resync works it out again
        monkeypatch.undo()
        again, _ = request_run(
            db.uow, harness.waker, SystemClock(), RunScope(T, DEST, COURSE), Trigger.RESYNC, "ada"
        )
        done = await harness.engine.execute_run(again.id)
        assert done is not None and done.stage is RunStage.FINISHED
        assert harness.remote.score_of(ITEM, f"sub-{BAD}") == 6.0
        assert _not_computed(env) == {(T, DEST): 0}
