"""`/metrics` while PostgreSQL is down: the process's own counters are still served, the
gauges read from the database are left out, and `gradesync_database_up` says so (on `serve`
and on a worker's metrics address alike)."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gradesync.adapters import metrics
from gradesync.adapters.db.database import Database
from gradesync.adapters.metrics_server import MetricsServer
from tests.faults.postgres_server import PostgresServer
from tests.support.api import ApiEnv

pytestmark = [pytest.mark.postgres]


def _samples(text: str) -> dict[str, float]:
    return {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if not s.labels
    }


def _families(text: str) -> set[str]:
    return {f.name for f in text_string_to_metric_families(text)}


def test_metrics_are_served_without_the_database(
    own_postgres: PostgresServer,
    outage_db: Database,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = ApiEnv(outage_db, tmp_path)
    metrics.count_http("GET", "/healthz", 200, 0.001)
    up = api.client.get("/metrics")
    assert up.status_code == 200
    assert _samples(up.text)["gradesync_database_up"] == 1.0
    assert "gradesync_results_pending" in _families(up.text)

    worker = MetricsServer("127.0.0.1", 0, api.runtime.metrics_text, None)
    try:
        own_postgres.stop()
        for text in (api.client.get("/metrics").text, httpx.get(worker.url).text):
            assert _samples(text)["gradesync_database_up"] == 0.0
            families = _families(text)
            assert "gradesync_http_requests" in families  # the process's own counters
            assert "gradesync_results_pending" not in families  # read from the database
            assert "gradesync_grades_not_computed" not in families
        assert api.client.get("/metrics").status_code == 200
        assert httpx.get(worker.url).status_code == 200
    finally:
        worker.close()
    # four scrapes, serve's and the worker's, met the outage: one line for them all
    said = [r for r in caplog.records if r.name == "gradesync.adapters.metrics"]
    assert [r.getMessage().split(": ")[:2] for r in said] == [
        ["metrics", "database unavailable"]
    ], [r.getMessage() for r in said]
    assert said[0].getMessage().endswith(", gauges left out")

    own_postgres.start()
    back = api.client.get("/metrics").text
    assert _samples(back)["gradesync_database_up"] == 1.0
    assert "gradesync_results_pending" in _families(back)
    api.client.get("/metrics")  # its end said once
    said = [r for r in caplog.records if r.name == "gradesync.adapters.metrics"]
    assert [r.getMessage().split(": ")[:2] for r in said] == [
        ["metrics", "database unavailable"],
        ["metrics", "the database answers again"],
    ], [r.getMessage() for r in said]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in said)
