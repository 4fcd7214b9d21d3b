"""A bulk ingest through the runtime (the API's and `gradesync import`'s path) tells
PostgreSQL's planner how many attempts and people there are, so each batch's read of the
stored event ids probes the unique index instead of walking every attempt of the tenant
until autovacuum comes round (docs/benchmarks-journal.md, "PostgreSQL ingest with one client").
The refresh runs beside the batch's answer, not before it ("The slow PostgreSQL batch with
one client")."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, text

from gradesync.adapters.db.database import Database
from gradesync.config import Settings
from gradesync.domain.model import Activity, Attempt, Course, Enrollment, Person, Tenant
from gradesync.runtime import Runtime
from gradesync.services.ingest import IngestBatch
from gradesync.services.ledger_statistics import FIRST_REFRESH
from gradesync.testing import TEST_SECRET, wait_for

NOW = datetime(2026, 12, 4, tzinfo=UTC)
TABLES = ("attempts", "people")


@pytest.fixture
def no_autovacuum(postgres_db: Database) -> Iterator[Database]:
    """Autovacuum would analyze the tables sooner or later: here only the ingest may."""
    with postgres_db.engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
    yield postgres_db
    with postgres_db.engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"ALTER TABLE {table} RESET (autovacuum_enabled)"))


def _planner_rows(db: Database) -> dict[str, float]:
    """The planner's row count of each table: -1 until it was first analyzed."""
    with db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT relname, reltuples FROM pg_class WHERE relname IN ('attempts', 'people')")
        )
        return {name: n for name, n in rows}


def _attempts(first: int, n: int) -> IngestBatch:
    return IngestBatch(
        attempts=[
            Attempt("t", f"e{i}", "a1", f"p{i % 100}", 5.0, 10.0, NOW)
            for i in range(first, first + n)
        ]
    )


@pytest.mark.postgres
def test_a_bulk_ingest_renews_the_planners_statistics(no_autovacuum: Database) -> None:
    db = no_autovacuum
    rt = Runtime(settings=Settings(database_url=db.url, secret_key=TEST_SECRET), db=db)
    with db.uow() as uow:
        uow.tenants.upsert(Tenant("t", "School"), NOW)
        uow.commit()
    people = [Person("t", f"p{i}", f"P {i}") for i in range(100)]
    rt.ingest(
        "t",
        IngestBatch(
            courses=[Course("t", "c", "C")],
            activities=[Activity("t", "a1", "c", "A1", 10.0)],
            people=people,
            enrollments=[Enrollment("t", "c", p.id) for p in people],
        ),
    )
    below = FIRST_REFRESH - 100 - 1
    rt.ingest("t", _attempts(0, below))
    assert _planner_rows(db) == {"attempts": -1, "people": -1}, "not yet: below the threshold"
    rt.ingest("t", _attempts(below, 1))  # the threshold: attempts and people together
    renewed = {"attempts": FIRST_REFRESH - 100, "people": 100}
    wait_for(lambda: _planner_rows(db) == renewed, "the statistics renewed")
    rt.close()


@pytest.mark.postgres
def test_the_batch_is_answered_before_the_refresh_ends(
    postgres_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refresh (an ANALYZE of the attempts, 60-200 ms on a grown table) is not added to
    the answer of the batch that made it due: the ingest returns while it still runs."""
    db = postgres_db
    rt = Runtime(settings=Settings(database_url=db.url, secret_key=TEST_SECRET), db=db)
    with db.uow() as uow:
        uow.tenants.upsert(Tenant("t", "School"), NOW)
        uow.commit()
    stats = rt._attempt_statistics
    refreshing, release, refreshed = threading.Event(), threading.Event(), threading.Event()
    real_refresh = stats.refresh

    def slow_refresh() -> None:
        refreshing.set()
        release.wait()
        real_refresh()
        refreshed.set()

    monkeypatch.setattr(stats, "refresh", slow_refresh)
    monkeypatch.setattr(stats, "due_after", lambda _rows: True)
    answered = threading.Event()

    def post() -> None:
        rt.ingest("t", IngestBatch(people=[Person("t", "p0", "P 0")]))
        answered.set()

    poster = threading.Thread(target=post, daemon=True)
    poster.start()
    try:
        wait_for(refreshing.is_set, "the refresh started")
        wait_for(answered.is_set, "the batch answered while its refresh runs")
    finally:
        release.set()
    poster.join()
    wait_for(refreshed.is_set, "the refresh done")
    rt.close()


@pytest.mark.postgres
def test_a_refresh_that_fails_leaves_the_committed_ingest_answered(
    postgres_db: Database, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch is committed before the refresh: a refresh that fails is logged, and the
    caller still gets the batch's result (an error would have it sent again)."""
    db = postgres_db
    rt = Runtime(settings=Settings(database_url=db.url, secret_key=TEST_SECRET), db=db)
    with db.uow() as uow:
        uow.tenants.upsert(Tenant("t", "School"), NOW)
        uow.commit()

    def fails() -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(rt._attempt_statistics, "refresh", fails)
    monkeypatch.setattr(rt._attempt_statistics, "due_after", lambda _rows: True)
    people = [Person("t", "p0", "P 0")]
    got = rt.ingest("t", IngestBatch(people=people))
    assert got.changed.get("people") == 1
    rt.close()  # waits for the refresh
    assert "refreshing the planner's statistics after an ingest failed" in caplog.text
    with db.uow() as uow:
        assert uow.people.get("t", "p0") is not None


@pytest.mark.postgres
def test_closing_does_not_wait_for_a_stuck_refresh(
    postgres_db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Closing waits for a refresh that runs, but only so long: one stuck on a database that
    went away must not hold the process's exit."""
    import gradesync.runtime as runtime_module

    db = postgres_db
    rt = Runtime(settings=Settings(database_url=db.url, secret_key=TEST_SECRET), db=db)
    stats = rt._attempt_statistics
    stuck, release = threading.Event(), threading.Event()

    def stuck_refresh() -> None:
        stuck.set()
        release.wait()

    monkeypatch.setattr(stats, "refresh", stuck_refresh)
    monkeypatch.setattr(runtime_module, "STATISTICS_WAIT_S", 0.05, raising=False)
    stats.refresh_soon()
    wait_for(stuck.is_set, "the refresh started")
    closed = threading.Event()
    closer = threading.Thread(target=lambda: (rt.close(), closed.set()), daemon=True)
    closer.start()
    try:
        wait_for(closed.is_set, "closed while the refresh is stuck")
    finally:
        release.set()
    assert "still being refreshed" in caplog.text
    assert stats.wait(30.0)


@pytest.mark.postgres
def test_no_refresh_starts_once_closed(postgres_db: Database) -> None:
    """An ingest finishing while the process closes (a batch still committing when serve's
    shutdown runs) would start its refresh on the disposed engine: a connection opened
    after closing and never closed."""
    db = postgres_db
    rt = Runtime(settings=Settings(database_url=db.url, secret_key=TEST_SECRET), db=db)
    stats = rt._attempt_statistics
    connected: list[object] = []
    event.listen(db.engine, "connect", lambda conn, _record: connected.append(conn))
    rt.close()
    stats.refresh_soon()  # the batch returns after the close
    assert stats._thread is None, "no refresh started"
    assert stats.wait(30.0)
    assert connected == [], "nothing connected after closing"


def test_sqlite_ingest_starts_no_refresh(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's planner needs no statistics (SqlRepo._analyze does nothing there), and its
    ingests go through the group commit: however many rows, no refresh thread starts."""
    db = sqlite_db
    rt = Runtime(settings=Settings(database_url=db.url, secret_key=TEST_SECRET), db=db)
    with db.uow() as uow:
        uow.tenants.upsert(Tenant("t", "School"), NOW)
        uow.commit()
    stats = rt._attempt_statistics
    started = threading.Event()
    monkeypatch.setattr(stats, "due_after", lambda _rows: True)
    monkeypatch.setattr(stats, "refresh_soon", started.set)
    got = rt.ingest("t", IngestBatch(people=[Person("t", "p0", "P 0")]))
    assert got.changed.get("people") == 1
    assert not started.is_set()
    rt.close()
