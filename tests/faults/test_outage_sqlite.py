"""SQLite's outage is its file held by another writer: reads still go through, so the 503
middleware's end check must take the write lock, not only reach the file, and it runs after
the response, not inside the request it follows."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from gradesync.adapters.db.database import Database
from gradesync.runtime import Runtime
from gradesync.testing import DEADLINE
from gradesync.web.app import create_app
from tests.support.api import ROSTER, ApiEnv, Caller, attempt


class WatchedProbe:
    """The runtime's end check, told when it ran and what it found; it waits for `go`
    before asking, so a test sees whether the request it follows waited for it."""

    def __init__(self, runtime: Runtime) -> None:
        self._ask = runtime.database_answers
        self.go = threading.Event()
        self.go.set()
        self.asked = threading.Semaphore(0)
        self.found: list[bool] = []
        self.waited_for_go: list[bool] = []

    def __call__(self) -> bool:
        self.waited_for_go.append(self.go.wait(DEADLINE))
        try:
            found = self._ask()
            self.found.append(found)
            return found
        finally:
            self.asked.release()

    def wait(self) -> None:
        assert self.asked.acquire(timeout=DEADLINE), "the end check never ran"


@pytest.fixture
def short_busy(sqlite_db: Database) -> Database:
    """The test's writes meet the held file in a fifth of a second, not 30 s."""

    @event.listens_for(sqlite_db.engine, "connect")
    def _short(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=200")

    sqlite_db.engine.dispose()
    return sqlite_db


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    said = [r for r in caplog.records if r.name == "gradesync.web.unavailable"]
    return [": ".join(r.getMessage().split(": ")[:2]) for r in said]


def test_a_held_sqlite_file_says_its_outage_once_however_reads_and_writes_alternate(
    short_busy: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api = ApiEnv(short_busy, tmp_path)
    probe = WatchedProbe(api.runtime)
    api.runtime.database_answers = probe  # type: ignore[method-assign]
    holder = sqlite3.connect(str(short_busy.sqlite_file), isolation_level=None)
    with contextlib.closing(holder), TestClient(create_app(api.runtime)) as client:
        ingest = Caller(client, api.tenant("t1", "ingest", "sync"))
        assert ingest.post("/ingest", json=ROSTER).status_code == 202

        holder.execute("BEGIN IMMEDIATE")  # another process writing
        caplog.set_level(logging.INFO)
        for n in range(3):
            r = ingest.post("/attempts", json=attempt(f"e{n}"))
            assert r.status_code == 503, r.text
            probe.go.clear()  # the check after this GET waits until the GET is answered
            assert client.get("/healthz").status_code == 200  # it needs no write
            probe.go.set()
            probe.wait()
            assert probe.waited_for_go == [True] * (n + 1)  # the GET did not wait for it
        assert probe.found == [False] * 3  # the write lock is still held
        assert _lines(caplog) == ["serving requests: database unavailable"]

        holder.execute("ROLLBACK")
        assert client.get("/healthz").status_code == 200
        probe.wait()
        assert probe.found[-1] is True
        assert ingest.post("/attempts", json=attempt("e0")).status_code == 202
        assert client.get("/healthz").status_code == 200
    assert _lines(caplog) == [
        "serving requests: database unavailable",
        "serving requests: the database answers again",
    ]


def test_the_write_lock_check_leaves_its_connection_waiting_as_long_as_before(
    short_busy: Database,
) -> None:
    """The check waits a moment for the lock, on a pooled connection: given back, that
    connection waits for a writer as long as every other does."""
    holder = sqlite3.connect(str(short_busy.sqlite_file), isolation_level=None)
    with contextlib.closing(holder):
        holder.execute("BEGIN IMMEDIATE")
        assert not short_busy.write_lock_free(wait=0.01)
        holder.execute("ROLLBACK")
        assert short_busy.write_lock_free(wait=0.01)
    raw = short_busy.engine.raw_connection()  # the pool's one connection, the check's
    try:
        assert raw.cursor().execute("PRAGMA busy_timeout").fetchone() == (200,)
    finally:
        raw.close()


def test_readiness_answers_while_another_process_holds_the_write_lock(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """Reads go through a held file: /readyz says ready at once, not after the 30 s a write
    waits for the lock (then "database unavailable")."""
    api = ApiEnv(sqlite_db, tmp_path)
    holder = sqlite3.connect(str(sqlite_db.sqlite_file), isolation_level=None)
    with contextlib.closing(holder), TestClient(create_app(api.runtime)) as client:
        holder.execute("BEGIN IMMEDIATE")  # another process writing
        try:
            ready = client.get("/readyz")
        finally:
            holder.execute("ROLLBACK")
    assert ready.status_code == 200, ready.text
