"""A worker while the database is away: its heartbeat and its delivery outcomes say so in one
line, no traceback (the worker's own lines say the database is lost and when it answers
again; another error keeps its traceback), and the outcomes are written once it answers, so
their rows' leases end then rather than when they run out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from gradesync.adapters.db.database import Database
from gradesync.adapters.queue.inprocess import EmbeddedWorker, InProcessWaker
from gradesync.domain.ledger import Delivered, Rejected, RetryLater
from gradesync.domain.model import DeliveryState, LedgerKey
from gradesync.domain.reasons import Reason
from gradesync.services import destination_admin
from gradesync.services.clock import SystemClock
from gradesync.services.delivery import Settlement
from gradesync.services.delivery.share import WorkerShare
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory, wait_for_async

from .conftest import (
    COURSE,
    DEST,
    FAST,
    T,
    claimed,
    learner,
    ledger,
    post,
    seed,
    settle_writer,
)


class _Flaky:
    """A unit-of-work factory that fails with `errors` first, then is the database's."""

    def __init__(self, db: Database, *errors: Exception) -> None:
        self.db = db
        self.errors = list(errors)

    def __call__(self) -> Any:
        if self.errors:
            raise self.errors.pop(0)
        return self.db.uow()


def _refused() -> OperationalError:
    return OperationalError("UPDATE worker_heartbeats ...", {}, psycopg.OperationalError("refused"))


class _LeaveRefused:
    """A unit-of-work factory whose units meet the database gone when they remove the
    worker's heartbeat, and only then. Heartbeats go on every 10 ms, each written in a
    thread: one still running as the worker leaves may open its unit after a failure is
    injected for "the next unit opened", and take it in place of the leave's write."""

    def __init__(self, inner: Callable[[], Any]) -> None:
        self.inner = inner

    @contextlib.contextmanager
    def __call__(self) -> Iterator[Any]:
        with self.inner() as uow:
            uow.workers = _NoLeave(uow.workers)
            yield uow


class _NoLeave:
    def __init__(self, workers: Any) -> None:
        self.beat = workers.beat

    def leave(self, worker_id: str) -> None:
        raise _refused()


async def test_a_heartbeat_without_the_database_is_one_line(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = _Flaky(sqlite_db, _refused())  # the first beat: nothing else opens a unit first
    share = WorkerShare(
        _LeaveRefused(flaky),
        SystemClock(),
        "w1",
        beat=timedelta(milliseconds=10),
        alive=timedelta(seconds=1),
    )
    await share.ready()  # the first beat fails, the next is written
    await share.leave()
    said = [r for r in caplog.records if r.name == "gradesync.services.delivery.share"]
    assert [r.getMessage().split(": OperationalError")[0] for r in said] == [
        "writing the worker heartbeat: database unavailable",
        "removing the worker heartbeat: database unavailable",
    ]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in said)


async def test_another_heartbeat_error_keeps_its_traceback(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = _Flaky(sqlite_db, RuntimeError("a bug"))
    share = WorkerShare(
        flaky, SystemClock(), "w1", beat=timedelta(milliseconds=10), alive=timedelta(seconds=1)
    )
    await share.ready()
    await share.leave()
    [said] = [r for r in caplog.records if r.name == "gradesync.services.delivery.share"]
    assert said.levelno == logging.ERROR and said.exc_info is not None


def _lease_owners(db: Database) -> list[str | None]:
    with db.engine.connect() as conn:
        return [owner for (owner,) in conn.exec_driver_sql("SELECT lease_owner FROM ledger")]


async def test_outcomes_the_database_could_not_take_are_written_once_it_answers(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # claimed by this worker for ten minutes, then not sent
    key, now, _ = await claimed(sqlite_db, timedelta(minutes=10))
    assert _lease_owners(sqlite_db) == ["w:1"]

    flaky = _Flaky(sqlite_db, _refused(), _refused())
    writer = settle_writer(flaky)
    try:
        writer.put(
            Settlement(key, COURSE, None, now + timedelta(minutes=10))
        )  # give the lease back
        for _ in range(2):  # a pass stops as on its own queries, at each try
            with pytest.raises(OperationalError):
                await writer.flush()
        assert _lease_owners(sqlite_db) == ["w:1"]
        await writer.flush()  # kept, and written once the database answers
    finally:
        await writer.stop()
    assert _lease_owners(sqlite_db) == [None]  # due again now, not in ten minutes
    said = [r for r in caplog.records if r.name == "gradesync.services.delivery.settle"]
    # two tries met the outage: one line for both, and one for its end
    assert [r.getMessage() for r in said] == [
        "writing delivery outcomes: database unavailable: OperationalError:"
        " (psycopg.OperationalError) refused, retrying",
        "writing delivery outcomes: the database answers again",
    ]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in said)


class _Away:
    """A unit-of-work factory that fails while `away` is set, as a database gone for this
    worker alone (another worker still reaches it)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.away = True

    def __call__(self) -> Any:
        if self.away:
            raise _refused()
        return self.db.uow()


def _lease(db: Database, key: LedgerKey) -> tuple[str | None, datetime | None]:
    with db.uow() as uow:
        owner = uow.conn.exec_driver_sql("SELECT lease_owner FROM ledger").scalar()
        until = uow.ledger.get_claimed([key], owner)[key][1] if owner else None
    return owner, until


@pytest.mark.parametrize("carried", [True, False], ids=["as-claimed", "read-again"])
@pytest.mark.parametrize("next_owner", ["w:2", "w:1"])
async def test_an_outcome_held_past_its_lease_leaves_the_rows_next_claim_alone(
    db: Database, next_owner: str, carried: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The database is away for longer than the lease: the row is claimed again, by another
    worker (which sends and settles it delivered) or by this same worker (its new claim
    still in flight). The outcome held since (a refusal) is then written: it must change
    neither the row nor the new claim's lease, and that claim settles as its own. So
    whether the outcomes carry the rows as their claims read them (written without a read
    while the row is still so) or not (the rows read again)."""
    caplog.set_level(logging.INFO, "gradesync.services.delivery.settle")
    # w:1's claim, its lease run out during the outage
    key, now, sent = await claimed(db, -timedelta(seconds=1))
    first = now - timedelta(seconds=1)
    as_read = ledger(db)[(key.activity_id, key.person_id)] if carried else None

    away = _Away(db)
    mine = settle_writer(away)
    refused = Rejected(Reason("remote_4xx", "refused"), 422)
    second = now + timedelta(minutes=2)  # the row's next claim
    try:
        mine.put(
            Settlement(key, COURSE, refused, first, sent_hash=sent, logged=True, claimed=as_read)
        )
        with pytest.raises(OperationalError):
            await mine.flush()
        with db.uow() as uow:
            uow.ledger.lease([(key, now)], next_owner, second)
            uow.commit()
        # the row as the next claim read it
        again = ledger(db)[(key.activity_id, key.person_id)] if carried else None
        if next_owner == "w:2":
            theirs = settle_writer(db.uow, "w:2")
            theirs.put(
                Settlement(
                    key, COURSE, Delivered(200), second, sent_hash=sent, logged=True, claimed=again
                )
            )
            await theirs.flush()
            await theirs.stop()
            assert theirs.read_again == 0
        with db.uow() as uow:
            before = uow.ledger.get_keys([key])[key]
        lease_before = _lease(db, key)

        away.away = False
        await mine.flush()  # the held refusal, written now: its claim has ended
        with db.uow() as uow:
            assert uow.ledger.get_keys([key])[key] == before
            logged = [e["outcome"] for e in uow.deliveries.for_key(key)]
        assert logged == ([] if next_owner == "w:1" else ["delivered"])
        assert _lease(db, key) == lease_before
        assert mine.claims_ended == 1
        # the row not as its claim left it: read again, and found another claim's
        assert mine.read_again == int(carried)
        if next_owner == "w:2":
            assert before.state is DeliveryState.DELIVERED and lease_before == (None, None)
        else:
            assert lease_before == ("w:1", second)
            # the new claim's own outcome is written, and gives its lease back
            mine.put(Settlement(key, COURSE, Delivered(200), second, sent_hash=sent, claimed=again))
            await mine.flush()
            assert mine.read_again == int(carried)  # written as that claim read it
            with db.uow() as uow:
                assert uow.ledger.get_keys([key])[key].state is DeliveryState.DELIVERED
            assert _lease(db, key) == (None, None)
    finally:
        await mine.stop()
    assert "1 delivery outcomes not written: their claims had ended" in caplog.text


class _AnswerLost:
    """A unit-of-work factory whose first commit reaches the database and then fails, as
    a connection lost before the server's answer came back."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.lost = 1

    def __call__(self) -> Any:
        uow = self.db.uow()
        commit = uow.commit

        def lost_answer() -> None:
            commit()
            if self.lost:
                self.lost -= 1
                raise _refused()

        uow.commit = lost_answer  # type: ignore[method-assign]
        return uow


@pytest.mark.parametrize("carried", [True, False], ids=["as-claimed", "read-again"])
async def test_a_write_redone_after_its_commit_did_reach_the_database_adds_nothing(
    db: Database, carried: bool
) -> None:
    """A commit whose answer was lost is redone as is: it finds its claims ended (their
    leases given back by that commit) and writes nothing twice: one try, one log line."""
    key, now, sent = await claimed(db, timedelta(minutes=2))
    until = now + timedelta(minutes=2)
    as_read = ledger(db)[(key.activity_id, key.person_id)] if carried else None

    writer = settle_writer(_AnswerLost(db))
    busy = RetryLater(Reason("remote_5xx", "the platform answered 503"))
    try:
        writer.put(
            Settlement(key, COURSE, busy, until, sent_hash=sent, logged=True, claimed=as_read)
        )
        with pytest.raises(OperationalError):
            await writer.flush()
        await writer.flush()  # redone
    finally:
        await writer.stop()
    with db.uow() as uow:
        row = uow.ledger.get_keys([key])[key]
        logged = [e["outcome"] for e in uow.deliveries.for_key(key)]
    assert (row.state, row.tries, logged) == (DeliveryState.RETRYING, 1, ["retrying"])
    assert writer.claims_ended == 1
    assert writer.read_again == int(carried)  # the redo found the lease given back
    assert _lease(db, key) == (None, None)


def _deadlock() -> OperationalError:
    """PostgreSQL's deadlock, as SQLAlchemy raises it: the database answers, the work is
    rolled back and tried again."""
    return OperationalError(
        "UPDATE ledger ...", {}, psycopg.errors.DeadlockDetected("deadlock detected")
    )


def _no_such_table(db: Database) -> OperationalError:
    """SQLite's own error for a table missing (a schema behind the code): not an outage."""
    try:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("SELECT * FROM nowhere")
    except OperationalError as exc:
        return exc
    raise AssertionError("a table that does not exist was read")


async def test_outcomes_failing_for_another_database_error_are_let_go(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Kept, they would fail at every try and stop every pass at its flush: let go, their
    rows' leases run out and they are sent again."""
    key, now, _ = await claimed(sqlite_db, timedelta(minutes=10))

    flaky = _Flaky(sqlite_db, _no_such_table(sqlite_db))
    writer = settle_writer(flaky)
    try:
        writer.put(Settlement(key, COURSE, None, now + timedelta(minutes=10)))
        await writer.flush()  # not raised: let go, not kept
        assert not flaky.errors
        await writer.flush()  # nothing kept to write again
    finally:
        await writer.stop()
    assert _lease_owners(sqlite_db) == ["w:1"]  # its lease runs out, as before
    said = [r for r in caplog.records if r.name == "gradesync.services.delivery.settle"]
    assert [r.getMessage() for r in said] == [
        "writing 1 delivery outcomes failed, their rows are sent again once their leases end"
    ]
    assert said[0].levelno == logging.ERROR and said[0].exc_info is not None


def _three_results(db: Database) -> tuple[_Away, DoubleFactory, Engine]:
    """Three learners' results of a1 posted, and an engine on a database that can go away
    (here for now), sending to a double of the LMS."""
    seed(db, learners=3)
    post(db, None, [("a1", learner(i), 5.0 + i) for i in range(3)])
    away = _Away(db)
    away.away = False
    factory = DoubleFactory()
    return away, factory, Engine(away, SystemClock(), factory, FAST)


async def test_rows_a_pass_lost_with_the_database_go_again_once_it_answers(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A pass stops when the database goes away, its sends cancelled in flight: once the
    database answers, the rows it claimed are given back and go on the next pass, not two
    minutes later when their leases run out. Sent again with a newer timestamp."""
    away, factory, engine = _three_results(db)
    try:
        await engine.process_dirty()
        remote = factory.remote(DEST)
        remote.hold = asyncio.Event()
        passing = asyncio.create_task(engine.deliver_due())
        await remote.wait_for(lambda: remote.in_flight == 3, "three sends in flight")
        stamped = {k: r.last_timestamp for k, r in ledger(db).items()}
        assert _lease_owners(db) == [engine.worker_id] * 3

        away.away = True
        engine.deliverer.note_due()  # the pass claims again, and meets the database gone
        with pytest.raises(OperationalError):
            await passing
        remote.hold.set()  # the cancelled sends are gone; the next ones go through
        assert remote.results == {}

        away.away = False
        stats = await engine.deliver_due()  # well within the 120 s lease
        assert stats.delivered == 3
        rows = ledger(db)
        assert {r.state for r in rows.values()} == {DeliveryState.DELIVERED}
        for k, r in rows.items():
            before = stamped[k]
            assert r.last_timestamp is not None and before is not None
            assert r.last_timestamp > before
        assert _lease_owners(db) == [None, None, None]
    finally:
        await engine.aclose()
    assert "its 3 claimed results go again once the database answers" in caplog.text


class _Switch:
    """A unit-of-work factory that raises `error()` while one is set, and counts them."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.error: Callable[[], Exception] | None = None
        self.raised = 0

    def __call__(self) -> Any:
        if self.error is not None:
            self.raised += 1
            raise self.error()
        return self.db.uow()


def _loop_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gradesync.adapters.queue.inprocess"]


async def _started(db: Database) -> tuple[EmbeddedWorker, _Switch]:
    switch = _Switch(db)
    engine = Engine(switch, SystemClock(), DoubleFactory(), FAST)
    worker = EmbeddedWorker(engine, InProcessWaker(), sole_worker=True)
    worker.retry_pause = 0.01  # many retries while the error lasts
    await worker.start()
    return worker, switch


async def test_the_worker_loops_say_an_outage_once_and_its_end_once(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    worker, switch = await _started(sqlite_db)
    try:
        switch.error = _refused
        await wait_for_async(lambda: switch.raised >= 20, "the loops to retry")
        switch.error = None
        await wait_for_async(
            lambda: any("answers again" in r.getMessage() for r in _loop_lines(caplog)),
            "the loops to go on",
        )
    finally:
        await worker.stop()
    said = _loop_lines(caplog)
    assert [r.getMessage() for r in said] == [
        "worker loops: database unavailable: OperationalError: (psycopg.OperationalError) refused,"
        " retrying",
        "worker loops: the database answers again",
    ]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in said)


@pytest.mark.parametrize("error", ["no such table", "a bug"])
async def test_another_error_of_the_worker_loops_keeps_its_traceback(
    sqlite_db: Database, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite's "no such table" is an OperationalError too, but no outage: a schema behind
    the code is a bug to see, at every retry."""
    worker, switch = await _started(sqlite_db)
    try:
        switch.error = (
            (lambda: _no_such_table(sqlite_db))
            if error == "no such table"
            else (lambda: RuntimeError("a bug"))
        )
        await wait_for_async(lambda: len(_loop_lines(caplog)) >= 3, "the loops to retry")
    finally:
        await worker.stop()
    said = _loop_lines(caplog)
    assert all(r.getMessage().startswith("worker loop ") for r in said)
    assert all(r.levelno == logging.ERROR and r.exc_info is not None for r in said)


async def test_a_deadlock_of_the_worker_loops_is_one_line_a_retry_without_traceback(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A deadlock or a serialization conflict is no outage (the database answers) and no
    bug: each retry says it in one line, and nothing says the database answers again."""
    worker, switch = await _started(sqlite_db)
    try:
        switch.error = _deadlock
        await wait_for_async(lambda: len(_loop_lines(caplog)) >= 3, "the loops to retry")
    finally:
        await worker.stop()
    said = _loop_lines(caplog)
    assert {r.getMessage() for r in said} <= {
        f"worker loop {name}: the database gave up on it for now: OperationalError:"
        " (psycopg.errors.DeadlockDetected) deadlock detected, retrying"
        for name in ("compute", "deliver", "runs", "recover")
    }
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in said)


def _governor_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gradesync.services.delivery.governor"]


async def test_re_reading_pauses_without_the_database_is_one_line_and_its_end_one(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    seed(sqlite_db, learners=0)
    switch = _Switch(sqlite_db)
    engine = Engine(switch, SystemClock(), DoubleFactory(), FAST)  # every send re-reads
    try:
        governor = engine.deliverer.governor
        d = destination_admin.get_destination(sqlite_db.uow, T, DEST)
        lim = governor.limits_for(d)
        switch.error = _refused
        for _ in range(3):
            await governor.check_pause(d, lim)
        assert switch.raised == 3
        switch.error = None
        await governor.check_pause(d, lim)
        await governor.check_pause(d, lim)
    finally:
        await engine.aclose()
    said = _governor_lines(caplog)
    assert [r.getMessage().split(": ")[:2] for r in said] == [
        ["re-reading destinations' pauses", "database unavailable"],
        ["re-reading destinations' pauses", "the database answers again"],
    ], [r.getMessage() for r in said]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in said)


async def test_re_reading_a_pause_failing_for_another_reason_keeps_its_traceback(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    seed(sqlite_db, learners=0)
    switch = _Switch(sqlite_db)
    engine = Engine(switch, SystemClock(), DoubleFactory(), FAST)
    try:
        governor = engine.deliverer.governor
        d = destination_admin.get_destination(sqlite_db.uow, T, DEST)
        switch.error = lambda: _no_such_table(sqlite_db)
        await governor.check_pause(d, governor.limits_for(d))
    finally:
        await engine.aclose()
    [said] = _governor_lines(caplog)
    assert said.getMessage() == (
        f"re-reading the pause of {T}/{DEST} failed, retrying (the pauses last read hold meanwhile)"
    )
    assert said.levelno == logging.ERROR and said.exc_info is not None


@pytest.mark.parametrize("error", ["outage", "no such table"])
async def test_a_worker_stopping_without_its_database_says_its_leases_run_out(
    sqlite_db: Database, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    switch = _Switch(sqlite_db)
    engine = Engine(switch, SystemClock(), DoubleFactory(), FAST)
    switch.error = _refused if error == "outage" else (lambda: _no_such_table(sqlite_db))
    await engine.aclose()
    [said] = [r for r in caplog.records if "leases" in r.getMessage()]
    if error == "outage":
        assert said.getMessage() == (
            "giving back this worker's leases: database unavailable: OperationalError:"
            " (psycopg.OperationalError) refused, they run out"
        )
        assert said.levelno == logging.WARNING and said.exc_info is None
    else:
        assert said.getMessage() == "giving back this worker's leases failed, they run out"
        assert said.levelno == logging.ERROR and said.exc_info is not None


async def test_a_pass_lost_with_the_database_while_linking_a_course_counts_no_rows(
    db: Database,
) -> None:
    """The database goes away while a pass sets up a course's link at the LMS: the rows it
    claimed for that course are given back and count no more in the destination's rows in
    hand; otherwise each such stop would leave it looking busier, until regular claims
    skipped it."""
    away, factory, engine = _three_results(db)
    try:
        await engine.process_dirty()
        remote = factory.remote(DEST)
        remote.course_hold = asyncio.Event()  # the LMS is slow to answer for the course
        passing = asyncio.create_task(engine.deliver_due())
        await wait_for_async(lambda: remote.course_calls == 1, "the course's link asked for")
        lim = engine.deliverer.governor.limits[(T, DEST)]
        assert lim.waiting == 3

        away.away = True
        engine.deliverer.note_due()  # the pass claims again, and meets the database gone
        with pytest.raises(OperationalError):
            await passing
        assert lim.waiting == 0

        away.away = False
        remote.course_hold.set()
        assert (await engine.deliver_due()).delivered == 3
        assert lim.waiting == 0
    finally:
        await engine.aclose()


async def test_a_row_let_go_in_a_write_redone_is_not_said_an_ended_claim(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A row is let go unsent; the write's commit reaches the database, its answer is
    lost, and the write is redone as is. The redo finds the let-go
    row's lease given back by that commit: its claim had not ended, and nothing was left
    unwritten. Before, it was logged as "delivery outcomes not written: their claims had
    ended"."""
    key, now, _ = await claimed(db, timedelta(minutes=2))
    until = now + timedelta(minutes=2)
    caplog.set_level(logging.INFO, logger="gradesync.services.delivery.settle")

    writer = settle_writer(_AnswerLost(db))
    try:
        writer.put(Settlement(key, COURSE, None, until))  # let go unsent
        with pytest.raises(OperationalError):
            await writer.flush()
        await writer.flush()  # redone
    finally:
        await writer.stop()
    assert "claims had ended" not in caplog.text
    assert "1 rows let go unsent had no lease of their claim left to give back" in caplog.text
    assert (writer.claims_ended, writer.leases_gone) == (0, 1)
    assert _lease(db, key) == (None, None)
