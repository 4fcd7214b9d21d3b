"""The API while PostgreSQL is down: every route answers 503 in the API's JSON shape with
`Retry-After`, logs one line per request (no traceback), and stores nothing; the same
request sent again once the database is back is taken."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.database import Database
from gradesync.testing import wait_for
from tests.faults.postgres_server import PostgresServer
from tests.support.api import ROSTER, ApiEnv, Caller, attempt

pytestmark = [pytest.mark.postgres]


def _attempts(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.attempts)).scalar_one())


def _said(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gradesync.web.unavailable"]


def test_the_api_answers_503_to_retry_while_the_database_is_down(
    own_postgres: PostgresServer,
    outage_db: Database,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = ApiEnv(outage_db, tmp_path)
    # one event loop for every request, as a server has: the end check runs in it
    with api.client:
        ingest = Caller(api.client, api.tenant("t1", "ingest", "sync"))
        assert ingest.post("/ingest", json=ROSTER).status_code == 202

        own_postgres.stop()
        caplog.set_level(logging.INFO)
        calls = [
            ("post", "/attempts", {"json": attempt("e1")}),
            ("post", "/attempts/batch", {"json": {"attempts": [attempt("e2")]}}),
            ("post", "/ingest", {"json": ROSTER}),
            ("get", "/runs", {}),
        ]
        for method, path, kw in calls:
            r = getattr(ingest, method)(path, **kw)
            assert r.status_code == 503, (path, r.text)
            assert r.headers["retry-after"] == "5"
            assert r.headers["content-type"] == "application/json"
            assert "source_event_id" in r.json()["detail"]
        # a request that needs no database goes through: the outage has not ended for that
        assert api.client.get("/healthz").status_code == 200
        assert ingest.get("/runs").status_code == 503
        said = _said(caplog)
        # one line for the outage, not one a request
        assert [r.getMessage().split(": ")[:2] for r in said] == [
            ["serving requests", "database unavailable"]
        ], [r.getMessage() for r in said]
        assert said[0].getMessage().endswith(", answering 503 with Retry-After: 5")
        assert not [r for r in caplog.records if r.exc_info]  # no traceback anywhere
        access = [r.getMessage() for r in caplog.records if r.name == "gradesync.access"]
        assert sum('"POST /api/v1/attempts" 503' in line for line in access) == 1

        own_postgres.start()
        assert _attempts(outage_db) == 0  # nothing of the refused requests was stored
        assert ingest.post("/attempts", json=attempt("e1")).status_code == 202
        assert _attempts(outage_db) == 1
        assert ingest.get("/runs").status_code == 200
        # its end said once, by the check that follows a request in a task of its own
        said = wait_for(lambda: _said(caplog)[1:] and _said(caplog), "the outage's end said")
        assert [r.getMessage().split(": ")[:2] for r in said] == [
            ["serving requests", "database unavailable"],
            ["serving requests", "the database answers again"],
        ], [r.getMessage() for r in said]
        assert all(r.exc_info is None and r.levelno == logging.WARNING for r in said)
