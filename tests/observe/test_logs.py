"""Structured logs: `GRADESYNC_LOG_FORMAT=json` gives one JSON object per line, each carrying
the request id, tenant, run id and destination it is about; the access log can be turned off."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import procrastinate
import psycopg
import pytest
from fastapi.testclient import TestClient
from procrastinate import exceptions as pexc
from procrastinate.testing import InMemoryConnector

from gradesync import logs
from gradesync.adapters.destinations.observed import ObservedClient
from gradesync.config import Settings
from gradesync.domain.model import Destination, DestinationKind
from gradesync.services import log_context
from gradesync.testing import wait_for_async
from gradesync.web.app import create_app
from tests.support.api import ApiEnv
from tests.support.logs import configured
from tests.support.served import Served


class Captured:
    def __init__(self, fmt: str) -> None:
        self.stream = io.StringIO()
        self.handler = logs.handler(fmt)
        self.handler.setStream(self.stream)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


@pytest.fixture
def captured() -> Iterator[Captured]:
    c = Captured("json")
    root = logging.getLogger("gradesync")
    level = root.level
    root.addHandler(c.handler)
    root.setLevel(logging.INFO)
    yield c
    root.removeHandler(c.handler)
    root.setLevel(level)


def test_json_lines_carry_the_context_and_text_lines_too() -> None:
    as_json, as_text = Captured("json"), Captured("text")
    log = logging.getLogger("gradesync.test")
    log.setLevel(logging.INFO)
    for c in (as_json, as_text):
        log.addHandler(c.handler)
    try:
        with log_context.bound(request_id="r-1", tenant="t1"), log_context.bound(run_id="run-9"):
            log.info("sending %d results", 3)
        log.warning("paused", extra=log_context.fields(tenant="t2", destination="sis"))
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("outside any context")
    finally:
        for c in (as_json, as_text):
            log.removeHandler(c.handler)
    first, about, second = as_json.lines()
    assert (about["tenant"], about["destination"], about["message"]) == ("t2", "sis", "paused")
    assert first["message"] == "sending 3 results" and first["level"] == "info"
    assert (first["request_id"], first["tenant"], first["run_id"]) == ("r-1", "t1", "run-9")
    assert first["logger"] == "gradesync.test" and first["time"].endswith("+00:00")
    assert "tenant" not in second and "ValueError: boom" in second["exception"]
    text = as_text.stream.getvalue().splitlines()
    assert text[0].endswith("sending 3 results [request_id=r-1 tenant=t1 run_id=run-9]")


def test_settings_refuse_an_unknown_log_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADESYNC_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        Settings()
    monkeypatch.setenv("GRADESYNC_LOG_FORMAT", "json")
    monkeypatch.setenv("GRADESYNC_LOG_LEVEL", "debug")
    s = Settings()
    assert (s.log_format, s.log_level) == ("json", "DEBUG")


def test_access_log_has_request_id_and_tenant_and_can_be_turned_off(
    api: ApiEnv,
    captured: Captured,
) -> None:
    key = api.tenant("t1", "admin")
    r = api.client.get(
        "/api/v1/courses", headers={"Authorization": f"Bearer {key}", "X-Request-ID": "abc-123"}
    )
    assert r.status_code == 200 and r.headers["x-request-id"] == "abc-123"
    [line] = [x for x in captured.lines() if x["logger"] == "gradesync.access"]
    assert line["request_id"] == "abc-123" and line["tenant"] == "t1"
    assert '"GET /api/v1/courses" 200' in line["message"]

    # an id that is no sensible id is replaced by one of ours
    r = api.client.get("/healthz", headers={"X-Request-ID": "x" * 500})
    assert len(r.headers["x-request-id"]) == 32

    api.runtime.settings.access_log = False
    quiet = TestClient(create_app(api.runtime))
    before = len(captured.lines())
    assert quiet.get("/api/v1/courses", headers={"Authorization": f"Bearer {key}"}).is_success
    assert len(captured.lines()) == before


class _Inner:
    """A destination client that logs what it does (as the protocol adapters do)."""

    def __init__(self) -> None:
        self.destination = Destination(
            tenant_id="t1", id="lms", kind=DestinationKind.LTI13_AGS, name="LMS"
        )

    async def check(self) -> list[Any]:
        logging.getLogger("gradesync.adapters.test").warning("token refused")
        return []


async def test_destination_calls_log_their_destination(captured: Captured) -> None:
    client = ObservedClient(_Inner())  # type: ignore[arg-type]
    with log_context.bound(run_id="run-1"):
        await client.check()
    [line] = captured.lines()
    assert (line["tenant"], line["destination"], line["run_id"]) == ("t1", "lms", "run-1")


def test_run_lines_carry_the_run_id(served: Served, captured: Captured) -> None:
    served.ok("POST", "/ingest", json={"courses": [{"id": "c1", "title": "Chemistry"}]})
    run = served.run("resync", "c1")
    mine = [x for x in captured.lines() if x.get("run_id") == run["id"]]
    assert any("started" in x["message"] for x in mine), captured.lines()
    assert all(x["tenant"] == served.tenant for x in mine)


@pytest.mark.parametrize(("level", "shown"), [("INFO", False), ("DEBUG", True)])
def test_httpx_says_each_request_only_at_debug(level: str, shown: bool) -> None:
    """A worker sends thousands of requests: one `httpx: HTTP Request:` INFO line each was
    noise beside gradesync's own lines, which say what a request meant."""
    with configured(level) as stream:
        transport = httpx.MockTransport(lambda request: httpx.Response(204))
        with httpx.Client(transport=transport) as client:
            client.get("https://lms.example.edu/ping")
    assert ("httpx: HTTP Request: GET https://lms.example.edu/ping" in stream.getvalue()) is shown


async def test_a_settle_failure_names_no_run_though_a_run_started_the_writer(
    captured: Captured,
) -> None:
    """The settle writer is one per process, started by the first outcome put, often a run's:
    what it logs later (a write failed in a database outage) is about no run, not about the
    one that happened to start it minutes before."""
    from dataclasses import replace
    from datetime import timedelta

    from gradesync.domain.model import LedgerKey
    from gradesync.services.clock import SystemClock
    from gradesync.services.delivery import Settlement, SettleWriter
    from gradesync.services.engine_config import EngineSettings
    from gradesync.testing import wait_for_async

    def gone() -> Any:
        raise ConnectionError("database gone")

    settings = replace(EngineSettings(), settle_gather=timedelta(0), stop_grace=timedelta(0))
    writer = SettleWriter(gone, SystemClock(), settings, "w:1")
    try:
        with log_context.bound(run_id="run-long-finished", tenant="t1"):
            writer.put(
                Settlement(LedgerKey("t1", "lms", "a1", "p1"), "c1", None, SystemClock().now())
            )

        def failed() -> list[dict[str, Any]]:
            return [x for x in captured.lines() if "delivery outcomes failed" in x["message"]]

        await wait_for_async(lambda: bool(failed()), "the write to fail")
        line = failed()[0]
        assert "run_id" not in line and "tenant" not in line, line
    finally:
        await writer.stop()


def _lost_connection() -> pexc.ConnectorException:
    try:
        try:
            raise psycopg.OperationalError("connection failed: Connection refused")
        except psycopg.OperationalError as exc:
            raise pexc.ConnectorException() from exc
    except pexc.ConnectorException as wrapped:
        return wrapped


def test_procrastinate_s_tracebacks_of_a_lost_connection_are_left_out() -> None:
    """`gradesync worker` says the loss in one line of its own; procrastinate's listener and
    worker would each add a traceback of it. Its other errors, and ours, keep theirs."""
    out = io.StringIO()
    h = logs.handler("text")
    assert isinstance(h, logging.StreamHandler)
    h.setStream(out)
    worker = logging.getLogger("procrastinate.worker.w1@host")
    mine = logging.getLogger("gradesync.test")
    for lg in (worker, mine):
        lg.addHandler(h)
        lg.propagate = False
    try:
        worker.error("Side task listener failed, stopping worker", exc_info=_lost_connection())
        worker.error("job failed", exc_info=ValueError("a bug in a task"))
        mine.error("ours", exc_info=_lost_connection())
    finally:
        for lg in (worker, mine):
            lg.removeHandler(h)
            lg.propagate = True
    text = out.getvalue()
    assert "Side task listener" not in text
    assert "job failed" in text and "ValueError: a bug in a task" in text
    assert "ours" in text and text.count("Traceback") == 2


async def test_an_aborted_job_keeps_its_line_not_its_cancellation_s_traceback() -> None:
    """procrastinate's worker aborts the jobs still running whenever it stops (the database
    lost, the worker asked to stop): its line says so, and a traceback of the cancellation
    would say nothing more. A job that fails keeps its traceback."""
    out = io.StringIO()
    h = logs.handler("text")
    assert isinstance(h, logging.StreamHandler)
    h.setStream(out)
    lg = logging.getLogger("procrastinate")
    level = lg.level
    lg.addHandler(h)
    lg.setLevel(logging.INFO)
    lg.propagate = False
    app = procrastinate.App(connector=InMemoryConnector())
    started = asyncio.Event()

    @app.task(name="hangs")
    async def hangs() -> None:
        started.set()
        await asyncio.Event().wait()

    @app.task(name="fails")
    async def fails() -> None:
        raise ValueError("a bug in a task")

    try:
        async with app.open_async():
            await fails.defer_async()
            await hangs.defer_async()
            worker = asyncio.create_task(
                app.run_worker_async(
                    concurrency=2, shutdown_graceful_timeout=0.01, install_signal_handlers=False
                )
            )
            await started.wait()
            await wait_for_async(lambda: "a bug in a task" in out.getvalue(), "the failed job")
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
    finally:
        lg.removeHandler(h)
        lg.setLevel(level)
        lg.propagate = True
    text = out.getvalue()
    assert "Job hangs[2]() ended with status: Aborted" in text, text
    assert "CancelledError" not in text, text
    assert "ValueError: a bug in a task" in text and text.count("Traceback") == 1, text
