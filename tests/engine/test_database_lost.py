"""Which errors interrupt a run (a lost PostgreSQL connection) and which fail it."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import psycopg
import psycopg.errors
import psycopg_pool
import pytest
from procrastinate import exceptions as pexc
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as QueuePoolTimeout

from gradesync.adapters.queue.procrastinate_app import _WatchedConnector
from gradesync.services.database_lost import (
    OutageNotice,
    connection_lost,
    database_conflict,
    database_lost,
    database_outage,
    database_unavailable,
)


def test_a_dropped_postgresql_connection_is_a_lost_database() -> None:
    dropped = OperationalError("UPDATE sync_runs ...", {}, psycopg.OperationalError("closed"))
    assert database_lost(dropped)
    assert database_lost(psycopg.OperationalError("connection refused"))
    try:
        try:
            raise dropped
        except OperationalError as exc:
            raise RuntimeError("writing the run") from exc
    except RuntimeError as wrapped:
        assert database_lost(wrapped)


def test_other_database_errors_are_not() -> None:
    locked = OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))
    assert not database_lost(locked)
    assert not database_lost(IntegrityError("INSERT ...", {}, psycopg.IntegrityError("dup")))
    assert not database_lost(ValueError("bad input"))


def test_only_a_connection_gone_is_a_lost_connection() -> None:
    """The job queue's watch on its queries stops the queue and says "lost the database"
    only for a connection gone: a deadlock or a timeout leaves the database answering."""
    for gone in (
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.errors.AdminShutdown(),  # the server restarting
        psycopg.errors.ConnectionFailure(),
        OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused")),
    ):
        assert connection_lost(gone), gone
        assert database_lost(gone), gone
    for answering in (
        psycopg.errors.DeadlockDetected(),
        psycopg.errors.SerializationFailure(),
        psycopg.errors.LockNotAvailable(),
        psycopg.errors.QueryCanceled(),
    ):
        assert not connection_lost(answering), answering
        assert database_lost(answering), answering  # a run still resumes after one


def test_a_database_unable_to_work_is_found_anywhere_in_the_chain() -> None:
    locked = OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))
    assert database_unavailable(locked)
    try:
        try:
            raise sqlite3.OperationalError("database is locked")
        except sqlite3.OperationalError:
            raise RuntimeError("saving the result") from None  # the context is kept
    except RuntimeError as handled:
        assert database_unavailable(handled)
    try:
        raise RuntimeError("computing") from ValueError("bad value")
    except RuntimeError as other:
        assert not database_unavailable(other)
    assert not database_unavailable(IntegrityError("INSERT ...", {}, psycopg.IntegrityError("x")))


async def test_the_job_queue_hears_of_a_lost_connection_only() -> None:
    heard: list[BaseException] = []
    connector = _WatchedConnector(heard.append, conninfo="postgresql://nowhere/none")
    for cause in (psycopg.errors.DeadlockDetected(), psycopg.errors.AdminShutdown()):
        with pytest.raises(pexc.ConnectorException), connector._watching():
            raise pexc.ConnectorException("query failed") from cause
    assert [type(e.__cause__) for e in heard] == [psycopg.errors.AdminShutdown]


def test_errors_whose_causes_loop_are_answered_not_walked_for_ever() -> None:
    # causes set by hand can form a loop; the walk meets each error once and answers
    first, second = RuntimeError("first"), ValueError("second")
    first.__cause__, second.__cause__ = second, first
    assert not database_lost(first)
    assert not database_unavailable(first)
    assert not connection_lost(first)
    second.__context__ = psycopg.OperationalError("connection refused")
    second.__cause__ = None
    first.__cause__, second.__context__.__context__ = second, first
    assert database_unavailable(first)


def _sqlite_error(path: Path, *statements: str) -> sqlite3.OperationalError:
    """SQLite's own error (with its result code) for the last of `statements`, run on a
    second connection while a first one holds the write lock."""
    holder = sqlite3.connect(path, timeout=0, isolation_level=None)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("CREATE TABLE IF NOT EXISTS t (x)")
        holder.execute("BEGIN IMMEDIATE")
        for sql in statements:
            other.execute(sql)
    except sqlite3.OperationalError as exc:
        return exc
    finally:
        holder.close()
        other.close()
    raise AssertionError(f"{statements} did not fail")


def test_an_outage_is_a_database_out_of_reach_not_an_error_about_the_work(
    tmp_path: Path,
) -> None:
    """A 503, `gradesync_database_up 0` and outcomes kept for later are for an outage only: a
    schema behind, a full disk or a cancelled statement fails the same way when retried."""
    busy = _sqlite_error(tmp_path / "db", "BEGIN IMMEDIATE")
    assert busy.sqlite_errorcode == sqlite3.SQLITE_BUSY
    for out in (
        psycopg.OperationalError("connection refused"),
        psycopg.errors.AdminShutdown(),
        psycopg_pool.PoolTimeout("couldn't get a connection after 30.00 sec"),
        OperationalError("SELECT 1", {}, psycopg.OperationalError("server closed")),
        QueuePoolTimeout("QueuePool limit of size 5 overflow 10 reached"),
        OperationalError("BEGIN IMMEDIATE", {}, busy),
        # our write gate's, built by hand without a result code
        OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked (waited)")),
    ):
        assert database_outage(out), out
    missing = _sqlite_error(tmp_path / "db", "SELECT * FROM nowhere")
    for error_about_the_work in (
        OperationalError("SELECT ...", {}, missing),
        OperationalError("INSERT ...", {}, sqlite3.OperationalError("database or disk is full")),
        OperationalError("UPDATE ...", {}, psycopg.errors.QueryCanceled()),
        psycopg.errors.DeadlockDetected(),
        psycopg.errors.LockNotAvailable(),
        IntegrityError("INSERT ...", {}, psycopg.IntegrityError("dup")),
        ValueError("bad input"),
    ):
        assert not database_outage(error_about_the_work), error_about_the_work
    # SQLite's schema error still holds a compute batch back (it is no grade's fault)
    assert database_unavailable(OperationalError("SELECT ...", {}, missing))


def test_a_conflict_is_postgresqls_giving_up_on_the_work_while_it_answers(
    tmp_path: Path,
) -> None:
    for conflict in (
        OperationalError("UPDATE ...", {}, psycopg.errors.DeadlockDetected("deadlock")),
        OperationalError("UPDATE ...", {}, psycopg.errors.SerializationFailure()),
        psycopg.errors.LockNotAvailable(),
        psycopg.errors.QueryCanceled(),
    ):
        assert database_conflict(conflict) and not database_outage(conflict), conflict
    missing = _sqlite_error(tmp_path / "db", "SELECT * FROM nowhere")
    for other in (
        OperationalError("SELECT 1", {}, psycopg.OperationalError("server closed")),
        psycopg.errors.AdminShutdown(),
        OperationalError("SELECT ...", {}, missing),  # a schema behind: a bug to see
        IntegrityError("INSERT ...", {}, psycopg.IntegrityError("dup")),
        ValueError("bad input"),
    ):
        assert not database_conflict(other), other


def test_an_outage_notice_says_an_outage_once_its_end_once_and_the_rest_every_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "notice")
    notice = OutageNotice(logging.getLogger("notice"), "a loop")
    refused = OperationalError("SELECT 1", {}, psycopg.OperationalError("refused"))
    deadlock = psycopg.errors.DeadlockDetected("deadlock detected")
    begun = notice.outages
    for _ in range(3):
        notice.failed(refused)
    notice.answered(since=begun)  # work begun before the outage was found says nothing
    notice.answered()
    notice.answered()
    notice.failed(deadlock, "a step")
    notice.failed(deadlock, "a step")
    notice.answered()  # no outage to end
    notice.failed(ValueError("a bug"), "a step")
    assert [(r.levelno, r.getMessage(), r.exc_info is not None) for r in caplog.records] == [
        (
            logging.WARNING,
            "a loop: database unavailable: OperationalError: (psycopg.OperationalError) refused,"
            " retrying",
            False,
        ),
        (logging.WARNING, "a loop: the database answers again", False),
        *[
            (
                logging.WARNING,
                "a step: the database gave up on it for now: DeadlockDetected: deadlock"
                " detected, retrying",
                False,
            )
        ]
        * 2,
        (logging.ERROR, "a step failed, retrying", True),
    ]
    assert {r.filename for r in caplog.records} == {"test_database_lost.py"}


def test_an_outage_is_one_an_error_was_raised_from_not_one_it_was_handling() -> None:
    refused = OperationalError("SELECT 1", {}, psycopg.OperationalError("refused"))
    try:
        try:
            raise refused
        except OperationalError as exc:
            raise RuntimeError("reading the ledger") from exc
    except RuntimeError as wrapped:
        assert database_outage(wrapped)
    try:
        try:
            raise refused
        except OperationalError:
            raise KeyError("a bug while handling it")  # noqa: B904
    except KeyError as bug:
        assert not database_outage(bug)
        assert database_unavailable(bug)  # the broad question walks it


def test_causes_that_loop_end_the_outage_walk() -> None:
    first, second = RuntimeError("first"), ValueError("second")
    first.__cause__, second.__cause__ = second, first
    assert not database_outage(first)
