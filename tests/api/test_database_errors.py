"""An error the database gives about a request, not an outage (SQLite with a table missing:
a schema behind the code), is a bug's 500 with its traceback, on the API and on `/metrics`:
never a 503 telling clients to retry, nor `gradesync_database_up 0`. The outage itself:
tests/faults/test_outage_api.py and test_outage_metrics.py."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from gradesync.adapters.db.database import Database
from tests.support.api import ROSTER, ApiEnv, Caller, attempt


def _drop(db: Database, table: str) -> None:
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {table}")


def test_a_table_missing_is_a_500_with_its_traceback_not_a_503(
    sqlite_db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api = ApiEnv(sqlite_db, tmp_path)
    key = api.tenant("t1", "ingest", "sync")
    assert Caller(api.client, key).post("/ingest", json=ROSTER).status_code == 202
    _drop(sqlite_db, "attempts")
    caplog.set_level(logging.INFO)

    # the error reaches the server, which logs its traceback
    with pytest.raises(OperationalError, match="no such table: attempts"):
        Caller(api.client, key).post("/attempts", json=attempt("e1"))
    served = Caller(TestClient(api.app, raise_server_exceptions=False), key)
    r = served.post("/attempts", json=attempt("e1"))
    assert r.status_code == 500 and "retry-after" not in r.headers
    assert not [r for r in caplog.records if r.name == "gradesync.web.unavailable"]


def test_metrics_fail_on_a_table_missing_rather_than_say_the_database_is_down(
    sqlite_db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api = ApiEnv(sqlite_db, tmp_path)
    assert "gradesync_database_up 1.0" in api.client.get("/metrics").text
    _drop(sqlite_db, "dirty_keys")

    with pytest.raises(OperationalError, match="no such table: dirty_keys"):
        api.client.get("/metrics")
    r = TestClient(api.app, raise_server_exceptions=False).get("/metrics")
    assert r.status_code == 500 and "gradesync_database_up" not in r.text
    assert not [r for r in caplog.records if "database unavailable" in r.getMessage()]
