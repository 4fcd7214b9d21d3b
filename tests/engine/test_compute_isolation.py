"""One grade that cannot be worked out never holds up the others: it is set aside with the
reason `compute_failed` (shown by the grades and Diagnose), logged once with its ids, and
worked out again when its facts change, while every other key, in every tenant, is computed
and sent.

A key is made to fail by making the pure policy function raise for that learner alone (the
real causes, an overflowing score or due date, are fixed in the domain and tested there)."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import (
    IntegrityError,
    OperationalError,
    PendingRollbackError,
    ProgrammingError,
)

from gradesync.adapters.db.database import Database
from gradesync.adapters.db.repos.facts import EnrollmentRepo
from gradesync.adapters.db.repos.ledger import LedgerRepo
from gradesync.adapters.queue.inprocess import InProcessWaker
from gradesync.domain import policy
from gradesync.domain.diagnosis import learner as diagnosis
from gradesync.domain.model import (
    DeliveryState,
    LedgerKey,
    LedgerRow,
    RunScope,
    RunStage,
    Trigger,
)
from gradesync.domain.reasons import ReasonCode
from gradesync.services import compute
from gradesync.services.clock import SystemClock
from gradesync.services.runs import request_run
from gradesync.services.worker import Clients, Engine
from gradesync.testing import (
    DoubleFactory,
    ManualClock,
    add_course,
    add_destination,
    add_tenant,
    post_attempts,
    wait_for_async,
)
from tests.support.api import ApiEnv, Caller

from .conftest import COURSE, DEST, FAST, Harness, T, learner, ledger, post, seed

ITEM = "https://lms/courses/1/items/a1"
OTHER, OTHER_DEST = "t2", "lms2"
BAD = "p001"  # the learner of t1 whose grade cannot be worked out
ALERT = "GradesyncGradesNotWorkedOut"
ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "gradesync-alerts.yml"


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


def _fail_reads_of(person_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading this learner's enrollments fails (a step the whole computation shares, not
    the one key's outcome): computing them fails every time, alone too."""
    real = EnrollmentRepo.for_pairs

    def for_pairs(self: EnrollmentRepo, tenant_id: str, pairs: Any) -> Any:
        pairs = list(pairs)
        if any(p == person_id for _, p in pairs):
            raise ValueError("this learner's enrollment cannot be read")
        return real(self, tenant_id, pairs)

    monkeypatch.setattr(EnrollmentRepo, "for_pairs", for_pairs)


async def test_a_grade_set_aside_never_leaves_its_old_value_to_be_sent(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(db, learners=2)
    factory = DoubleFactory()
    engine = Engine(db.uow, SystemClock(), factory, FAST, waker=InProcessWaker())
    try:
        post(db, None, [("a1", BAD, 7.0)])
        await engine.process_dirty()  # 7.0 computed, waiting to be sent
        assert ledger(db)[("a1", BAD)].state is DeliveryState.PENDING
        _fail_reads_of(BAD, monkeypatch)
        post(db, None, [("a1", BAD, 9.0), ("a1", "p000", 5.0)])
        stats = await engine.process_dirty()
        assert stats.failed == {(T, "a1", BAD)}
        row = ledger(db)[("a1", BAD)]
        # set aside from its row alone, not computed again (which fails again): the 7.0
        # computed before the 9.0 is not sent as if it were the grade
        assert row.state is DeliveryState.SKIPPED
        assert row.reason_code == ReasonCode.COMPUTE_FAILED and "ValueError" in (
            row.reason_text or ""
        )
        assert _dirty(db) == 0
        await engine.deliver_due()
        remote = factory.remote("lms")
        assert remote.score_of(ITEM, f"sub-{BAD}") is None
        assert remote.score_of(ITEM, "sub-p000") == 5.0
    finally:
        await engine.aclose()


def _refuse_every_write_of(person_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ledger refuses any row of this learner, the compute_failed reason too."""
    real = LedgerRepo.save_many

    def save_many(self: LedgerRepo, rows: Sequence[tuple[LedgerRow, str]], **kw: Any) -> Any:
        if any(row.key.person_id == person_id for row, _ in rows):
            raise ValueError("this row cannot be stored")
        return real(self, rows, **kw)

    monkeypatch.setattr(LedgerRepo, "save_many", save_many)


async def test_a_grade_that_cannot_even_be_set_aside_stays_marked_behind_the_others(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seed(db, learners=3)
    factory = DoubleFactory()
    # a batch of one key: a key kept marked must not be taken again and again
    settings = replace(FAST, compute_batch=1)
    engine = Engine(db.uow, SystemClock(), factory, settings, waker=InProcessWaker())
    try:
        _refuse_every_write_of(BAD, monkeypatch)
        post(db, None, [("a1", BAD, 9.0)])
        post(db, None, [("a1", "p000", 5.0)])
        post(db, None, [("a1", "p002", 6.0)])
        with caplog.at_level(logging.ERROR, logger="gradesync.services.compute"):
            # the worker's pass ends at the key it cannot set aside (no spinning on it)
            stats = await asyncio.wait_for(engine.process_dirty(), 60)
            # the key is not lost: still marked, behind the others, which go on
            assert _dirty(db) == 3
            assert stats.kept == 1 and stats.failed == set()
            # and timed to be tried again, however quiet the system
            timer_in = await engine.next_timer_in()
            assert timer_in is not None
            assert 0 < timer_in <= settings.set_aside_retry.total_seconds()
            await asyncio.wait_for(engine.process_dirty(), 60)
        assert _dirty(db) == 1
        assert ("a1", BAD) not in ledger(db)
        await engine.deliver_due()
        remote = factory.remote("lms")
        assert remote.score_of(ITEM, "sub-p000") == 5.0
        assert remote.score_of(ITEM, "sub-p002") == 6.0
        assert remote.score_of(ITEM, f"sub-{BAD}") is None
        assert any("cannot even be set aside" in r.getMessage() for r in caplog.records)

        # once the ledger takes it again, the kept key is worked out from its facts
        monkeypatch.undo()
        await engine.process_dirty()
        await engine.deliver_due()
        assert _dirty(db) == 0
        assert remote.score_of(ITEM, f"sub-{BAD}") == 9.0
    finally:
        await engine.aclose()


async def test_a_grade_that_cannot_even_be_set_aside_is_tried_again_on_its_own_timer(
    harness: Harness,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Kept marked, the key was tried again only when something woke the worker: on a quiet
    system (no new fact, no poll for an hour) never. Its own timer tries it again."""
    seed(db, learners=2)
    retry = timedelta(milliseconds=50)
    await harness.use(replace(FAST, poll=timedelta(hours=1), set_aside_retry=retry))
    _refuse_every_write_of(BAD, monkeypatch)
    await harness.start()
    with caplog.at_level(logging.ERROR, logger="gradesync.services.compute"):
        post(db, harness.waker, [("a1", BAD, 9.0)])  # the one wake-up
        await wait_for_async(
            lambda: any("cannot even be set aside" in r.getMessage() for r in caplog.records),
            "the compute_failed reason refused",
        )
    # the ledger takes it again; nothing wakes the worker
    monkeypatch.undo()
    await harness.until(
        lambda: harness.remote.score_of(ITEM, f"sub-{BAD}") == 9.0, "the kept grade sent"
    )
    assert _dirty(db) == 0


def _uncomputed_age(env: ApiEnv) -> dict[str, float]:
    """`gradesync_grades_oldest_uncomputed_age_seconds` as a scraper reads it from /metrics."""
    r = env.client.get("/metrics")
    assert r.status_code == 200
    return {
        s.labels["tenant"]: s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
        if s.name == "gradesync_grades_oldest_uncomputed_age_seconds"
    }


def _not_worked_out_threshold() -> float:
    """The age over which `GradesyncGradesNotWorkedOut` fires, as deploy/ ships it."""
    rules = yaml.safe_load(ALERTS.read_text())
    [rule] = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == ALERT]
    match = re.search(r"gradesync_grades_oldest_uncomputed_age_seconds\)\s*>\s*(\d+)", rule["expr"])
    assert match, rule["expr"]
    return float(match[1])


async def test_a_grade_that_cannot_even_be_set_aside_ages_until_the_alert_fires(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Marked again at each retry, the key's wait was counted from its last retry: it never
    looked older than the retry's interval, and the alert on grades not worked out never
    fired for it. Its wait counts from when it was first marked, and only grows."""
    seed(db, learners=2)
    retry = timedelta(minutes=10)
    # the worker's clock starts half an hour ago and catches up, a retry at a time, with the
    # clock /metrics measures the age by
    clock = ManualClock(SystemClock().now() - 3 * retry)
    settings = replace(FAST, set_aside_retry=retry)
    engine = Engine(db.uow, clock, DoubleFactory(), settings, waker=InProcessWaker())
    env = ApiEnv(db, tmp_path)
    ages: list[float] = []
    try:
        _refuse_every_write_of(BAD, monkeypatch)
        post_attempts(db.uow, None, T, [("a1", BAD, 9.0)], clock=clock)
        with env.client:
            for _ in range(4):
                assert (await engine.process_dirty()).kept == 1  # tried, still not worked out
                ages.append(_uncomputed_age(env)[T])
                clock.advance(retry)  # its timer falls due: tried again
        assert _dirty(db) == 1
        assert ages == sorted(ages), ages  # never younger for being tried again
        assert ages[-1] >= (3 * retry).total_seconds() > _not_worked_out_threshold()
    finally:
        await engine.aclose()


def _driver_error() -> RuntimeError:
    error = RuntimeError("while saving")
    error.__cause__ = sqlite3.IntegrityError("CHECK constraint failed")
    return error


# Made per test: an error raised keeps its traceback, and one made once by the parameters
# would keep every frame it was raised through (a test's database, engine, loop) all run.
@pytest.mark.parametrize(
    "make_error",
    [
        lambda: ProgrammingError("INSERT INTO ledger", {}, Exception("value too long")),
        lambda: IntegrityError("INSERT INTO ledger", {}, Exception("duplicate key")),
        lambda: PendingRollbackError("this transaction is inactive"),
        _driver_error,  # a driver's error, anywhere in the chain of causes
    ],
    ids=["programming", "integrity", "pending-rollback", "driver"],
)
async def test_a_statement_the_database_refuses_for_one_grade_holds_up_no_other(
    db: Database, monkeypatch: pytest.MonkeyPatch, make_error: Callable[[], Exception]
) -> None:
    """Retried as a whole, a batch the database refuses for one key's value would never
    pass: every grade behind it, in every tenant, would wait for ever. It is worked out key
    by key, and the key refused alone is set aside, the others computed."""
    error = make_error()
    seed(db, learners=3)
    _refuse_writes_of(BAD, monkeypatch, error)
    engine = Engine(db.uow, SystemClock(), DoubleFactory(), FAST, waker=InProcessWaker())
    try:
        post(db, None, [("a1", "p000", 7.0), ("a1", BAD, 8.0), ("a1", "p002", 9.0)])
        stats = await engine.process_dirty()
        assert stats.failed == {(T, "a1", BAD)}
        rows = ledger(db)
        assert rows[("a1", BAD)].reason_code == ReasonCode.COMPUTE_FAILED
        assert {rows[("a1", p)].state for p in ("p000", "p002")} == {DeliveryState.PENDING}
        assert _dirty(db) == 0
    finally:
        await engine.aclose()


async def test_a_fact_arriving_while_a_grade_is_set_aside_is_computed(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(db, learners=2)
    _raise_for(BAD, monkeypatch)
    _refuse_writes_of("p000", monkeypatch)  # so the batch fails and BAD is tried alone
    real_log = compute._log_failed

    def log_failed(key: Any, error: BaseException) -> None:
        real_log(key, error)
        if key[3] == BAD:
            # the fixed attempt lands between BAD's failed try and its set-aside
            monkeypatch.setattr(compute, "desired_result", policy.desired_result)
            post(db, None, [("a1", BAD, 6.0)])

    monkeypatch.setattr(compute, "_log_failed", log_failed)
    factory = DoubleFactory()
    engine = Engine(db.uow, SystemClock(), factory, FAST, waker=InProcessWaker())
    try:
        post(db, None, [("a1", BAD, 8.0), ("a1", "p000", 7.0)])
        await engine.process_dirty()
        # the new fact is not swallowed by the set-aside: still marked, then computed
        assert _dirty(db) == 1
        await _settle(engine)
        assert ledger(db)[("a1", BAD)].state is DeliveryState.DELIVERED
        assert factory.remote("lms").score_of(ITEM, f"sub-{BAD}") == 8.0
    finally:
        await engine.aclose()


async def test_a_fact_marked_by_a_clock_behind_the_workers_is_not_set_aside_unseen(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process that takes a fact (the API, on another host) may run behind the worker's
    clock: a fact arriving between a grade's failed try and its set-aside is then marked at
    a time before the try. It is still a fact the try has not seen: kept, and computed."""
    seed(db, learners=2)
    real_reads, real_log = EnrollmentRepo.for_pairs, compute._log_failed
    _fail_reads_of(BAD, monkeypatch)  # so the key fails alone too, and is set aside
    api_clock = ManualClock(SystemClock().now() - timedelta(minutes=5))

    def log_failed(key: Any, error: BaseException) -> None:
        real_log(key, error)
        if key[3] == BAD:
            # the cause gone, a new attempt lands before the set-aside, marked 5 min "ago"
            monkeypatch.setattr(EnrollmentRepo, "for_pairs", real_reads)
            post_attempts(db.uow, None, T, [("a1", BAD, 6.0)], clock=api_clock)

    monkeypatch.setattr(compute, "_log_failed", log_failed)
    factory = DoubleFactory()
    engine = Engine(db.uow, SystemClock(), factory, FAST, waker=InProcessWaker())
    try:
        post(db, None, [("a1", BAD, 8.0)])
        stats = await engine.process_dirty()
        assert stats.failed == set()  # not set aside: its mark is not the one tried
        assert _dirty(db) == 1
        await _settle(engine)
        assert ledger(db)[("a1", BAD)].state is DeliveryState.DELIVERED
        assert factory.remote("lms").score_of(ITEM, f"sub-{BAD}") == 8.0
    finally:
        await engine.aclose()


async def test_a_grade_that_cannot_be_computed_is_logged_once(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seed(db, learners=3)
    # the course syncs to a second destination too
    add_destination(
        db.uow,
        T,
        "lms-b",
        links={COURSE: "https://lmsb/courses/1"},
        people={learner(i): f"sub-{learner(i)}" for i in range(3)},
    )
    _raise_for(BAD, monkeypatch)
    # and another key makes the batch fail, so it is worked out again key by key
    _refuse_writes_of("p002", monkeypatch)
    engine = Engine(db.uow, SystemClock(), DoubleFactory(), FAST, waker=InProcessWaker())
    try:
        post(db, None, [("a1", "p000", 7.0), ("a1", BAD, 8.0), ("a1", "p002", 9.0)])
        with caplog.at_level(logging.ERROR, logger="gradesync.services.compute"):
            stats = await engine.process_dirty()
        assert stats.failed == {(T, "a1", BAD), (T, "a1", "p002")}
        logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(logged) == 2, logged
        assert sum(BAD in m for m in logged) == 1 and sum("p002" in m for m in logged) == 1
        with db.uow() as uow:
            for d in (DEST, "lms-b"):
                rows = uow.ledger.get_many(T, d, COURSE)
                assert rows[("a1", BAD)].reason_code == ReasonCode.COMPUTE_FAILED
    finally:
        await engine.aclose()


def test_a_grade_marked_for_one_destination_is_set_aside_there_and_kept_for_it(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key marked for one destination alone (a change at that SIS, say) that cannot be
    computed is set aside at that destination only: the other's row, which nothing changed,
    keeps its value. While even the set-aside cannot be stored, the key stays marked for that
    one destination, not widened to every destination nor narrowed to none."""
    seed(db, learners=2)
    add_destination(
        db.uow, T, "lms2", links={COURSE: "https://lms2/courses/1"}, people={BAD: f"sub-{BAD}"}
    )
    capabilities = Clients(DoubleFactory()).capabilities
    clock = SystemClock()
    post(db, None, [("a1", BAD, 7.0)])
    compute.compute_dirty(db.uow, clock, capabilities)  # 7.0 pending at both
    key = (T, COURSE, "a1", BAD)
    with db.uow() as uow:
        uow.dirty.mark_many([key], clock.now(), destination_id=DEST)
        uow.commit()

    _fail_reads_of(BAD, monkeypatch)  # fails in its batch and alone
    _refuse_every_write_of(BAD, monkeypatch)  # the compute_failed reason too
    assert compute.compute_dirty(db.uow, clock, capabilities).kept == 1
    with db.uow() as uow:  # looked at, not taken: no commit
        assert uow.dirty.claim(10) == [(*key, DEST)]

    monkeypatch.undo()
    _fail_reads_of(BAD, monkeypatch)  # the reason can be stored now
    stats = compute.compute_dirty(db.uow, clock, capabilities)
    assert stats.failed == {(T, "a1", BAD)} and stats.keys == 1
    with db.uow() as uow:
        here = uow.ledger.get(LedgerKey(T, DEST, "a1", BAD))
        there = uow.ledger.get(LedgerKey(T, "lms2", "a1", BAD))
        assert uow.dirty.count() == 0
    assert here is not None and here.reason_code == ReasonCode.COMPUTE_FAILED
    assert there is not None and there.state is DeliveryState.PENDING
    assert there.desired is not None and there.desired["score_given"] == 7.0


async def test_the_retry_of_a_grade_marked_for_one_destination_is_for_that_one_alone(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The timer that tries again a key that could not even be set aside marked it, when it
    fell due, for every destination of its course: the other destination's row, which
    nothing had changed, was computed again, and set aside there too. It marks the key for
    the destination its mark named."""
    seed(db, learners=2)
    add_destination(
        db.uow, T, "lms2", links={COURSE: "https://lms2/courses/1"}, people={BAD: f"sub-{BAD}"}
    )
    clock = ManualClock(SystemClock().now())
    retry = timedelta(minutes=1)
    settings = replace(FAST, set_aside_retry=retry)
    engine = Engine(db.uow, clock, DoubleFactory(), settings, waker=InProcessWaker())
    try:
        post_attempts(db.uow, None, T, [("a1", BAD, 7.0)], clock=clock)
        await engine.process_dirty()  # 7.0 pending at both
        key = (T, COURSE, "a1", BAD)
        with db.uow() as uow:  # a change at DEST alone (a SIS tick, say)
            uow.dirty.mark_many([key], clock.now(), destination_id=DEST)
            uow.commit()
        _fail_reads_of(BAD, monkeypatch)
        _refuse_every_write_of(BAD, monkeypatch)  # the compute_failed reason too
        assert (await engine.process_dirty()).kept == 1

        monkeypatch.undo()
        _fail_reads_of(BAD, monkeypatch)  # the reason can be stored now
        clock.advance(retry)  # the timer falls due: the key is tried again by it
        stats = await engine.process_dirty()
        assert await engine.next_timer_in() is None
        assert stats.failed == {(T, "a1", BAD)} and stats.keys == 1
        with db.uow() as uow:
            here = uow.ledger.get(LedgerKey(T, DEST, "a1", BAD))
            there = uow.ledger.get(LedgerKey(T, "lms2", "a1", BAD))
            assert uow.dirty.count() == 0
        assert here is not None and here.reason_code == ReasonCode.COMPUTE_FAILED
        assert there is not None and there.state is DeliveryState.PENDING
        assert there.desired is not None and there.desired["score_given"] == 7.0
    finally:
        await engine.aclose()
