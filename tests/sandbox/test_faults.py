"""Fault injection: each kind, per group, reproducible, counted."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from gradesync.sandbox.context import LTI11_OUTCOMES_PATH
from gradesync.sandbox.testing import RunningSandbox
from gradesync.testing import DEADLINE, wait_for

from .conftest import SandboxFactory

ITEMS = "/api/lti/courses/c1/line_items"


def _inflight(running: RunningSandbox, group: str) -> int:
    return int(running.admin.call("GET", "/faults")["faults"][group]["inflight"])


def test_server_errors(sandbox: RunningSandbox, http: httpx.Client) -> None:
    sandbox.admin.set_faults({"lineitems": {"error_rate": 1.0, "error_status": 502}})
    assert http.get(ITEMS).status_code == 502
    sandbox.admin.clear_faults()
    assert http.get(ITEMS).status_code == 401  # the real handler again: no token
    counters = sandbox.admin.counters()["lineitems"]
    assert counters["requests"] == 2 and counters["error"] == 1 and counters["served"] == 1


def test_throttle_with_retry_after_and_oneroster_shape(
    sandbox: RunningSandbox, http: httpx.Client
) -> None:
    sandbox.admin.set_faults({"oneroster": {"throttle_rate": 1.0, "retry_after": 7}})
    response = http.get("/ims/oneroster/gradebook/v1p2/lineItems")
    assert response.status_code == 429 and response.headers["retry-after"] == "7"
    minor = response.json()["imsx_CodeMinor"]["imsx_codeMinorField"][0]
    assert minor["imsx_codeMinorFieldValue"] == "server_busy"


def test_connection_reset_sends_no_response(sandbox: RunningSandbox, http: httpx.Client) -> None:
    sandbox.admin.set_faults({"scores": {"script": ["reset"]}})
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        http.post(ITEMS + "/1/scores", json={})
    # The next request is served: the server survived the abort.
    assert http.post(ITEMS + "/1/scores", json={}).status_code == 401
    assert sandbox.admin.counters()["scores"]["reset"] == 1


def test_timeouts_hold_the_request(make_sandbox: SandboxFactory) -> None:
    hour = {"timeout_rate": 1.0, "timeout_seconds": 3600}
    with (
        ThreadPoolExecutor(1) as pool,  # left last: it waits for the held request
        make_sandbox(faults={"results": hour}) as running,
    ):
        url = running.base_url + ITEMS + "/1/results"
        with pytest.raises(httpx.ReadTimeout):  # held for the hour: the client gives up
            httpx.get(url, timeout=0.3)
        held = pool.submit(httpx.get, url, timeout=DEADLINE)
        wait_for(lambda: _inflight(running, "results") == 2, "two requests held")
        running.admin.set_faults({"results": {"timeout_rate": 1.0, "timeout_seconds": 0.1}})
        short = httpx.get(url, timeout=DEADLINE)
        assert short.status_code == 504
    # Leaving the context released the hour-long hold: the request was answered, not cut off
    # when the server stopped.
    assert held.result().status_code == 504


def test_latency(sandbox: RunningSandbox, http: httpx.Client) -> None:
    sandbox.admin.set_faults({"token": {"latency_ms": 3_600_000}})
    with pytest.raises(httpx.ReadTimeout):  # an hour's latency: held, not answered
        http.post("/login/oauth2/token", data={}, timeout=0.3)
    wait_for(lambda: _inflight(sandbox, "token") == 1, "the request held by the latency")
    sandbox.admin.set_faults({"token": {"latency_ms": 0}})
    assert http.post("/login/oauth2/token", data={}).status_code == 400  # then served


def test_a_client_that_gives_up_during_latency_is_counted_not_a_traceback(
    sandbox: RunningSandbox, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gradesync.sandbox.faults")
    # LTI 1.1's outcomes service reads the body first (its signature covers it)
    sandbox.admin.set_faults({"lti11": {"latency_ms": 300}})
    with pytest.raises(httpx.ReadTimeout):  # gone before the latency ends
        http.post(LTI11_OUTCOMES_PATH, content=b"<xml/>", timeout=0.05)
    # the held request then reaches the handler, which finds its client gone
    wait_for(
        lambda: sandbox.admin.counters()["lti11"].get("client_gone") == 1,
        "the request whose client left",
    )
    assert sandbox.admin.counters()["lti11"]["served"] == 1
    gone = [r for r in caplog.records if "disconnected before its answer" in r.getMessage()]
    assert [r.levelname for r in gone] == ["INFO"]
    assert not [r for r in caplog.records if r.exc_info or r.levelname == "ERROR"]


def test_concurrency_cap_rejects(sandbox: RunningSandbox) -> None:
    sandbox.admin.set_faults(
        {"lineitems": {"max_concurrency": 1, "over_capacity": "reject", "latency_ms": 1500}}
    )
    url = sandbox.base_url + ITEMS
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.get, url, timeout=10)
        wait_for(lambda: _inflight(sandbox, "lineitems") == 1, "the first request in flight")
        second = httpx.get(url, timeout=10)
        assert second.status_code == 429
        assert first.result().status_code == 401  # held, then served by the handler
    assert sandbox.admin.counters()["lineitems"]["concurrency_rejected"] == 1


def test_concurrency_cap_queues(sandbox: RunningSandbox) -> None:
    # the first request holds the one slot long enough for the other two to arrive behind it
    # even on a loaded machine (at 400 ms one of them sometimes came after it had finished)
    sandbox.admin.set_faults({"lineitems": {"max_concurrency": 1, "latency_ms": 1500}})
    url = sandbox.base_url + ITEMS
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(httpx.get, url, timeout=30)
        wait_for(lambda: _inflight(sandbox, "lineitems") == 1, "the first request in flight")
        rest = [pool.submit(httpx.get, url, timeout=30) for _ in range(2)]
        statuses = [f.result().status_code for f in [first, *rest]]
    assert statuses == [401, 401, 401]
    counters = sandbox.admin.counters()["lineitems"]
    assert counters["max_inflight"] == 1 and counters["queued"] == 2
    # what the client had open counts the ones the cap held back: a request that waited
    # was open beside the one being served
    assert counters["max_open"] >= counters["max_inflight"] + 1


@pytest.mark.parametrize(("mode", "status"), [("generic", 429), ("canvas", 403)])
def test_rate_limit(make_sandbox: SandboxFactory, mode: str, status: int) -> None:
    faults = {"scores": {"rate_limit_per_second": 0.5, "rate_limit_burst": 2}}
    with (
        make_sandbox(mode=mode, faults=faults) as running,
        httpx.Client(base_url=running.base_url) as http,
    ):
        assert [http.post(ITEMS + "/1/scores").status_code for _ in range(2)] == [401, 401]
        limited = http.post(ITEMS + "/1/scores")
        assert limited.status_code == status
        if status == 429:
            assert int(limited.headers["retry-after"]) >= 1
        else:
            assert "Rate Limit Exceeded" in limited.text
        assert running.admin.counters()["scores"]["rate_limited"] == 1


def test_scripted_outcomes_then_normal(sandbox: RunningSandbox, http: httpx.Client) -> None:
    sandbox.admin.set_faults({"lti11": {"script": ["error", "throttle", "ok"]}})
    statuses = [http.post("/lti11/outcomes", content=b"<x/>").status_code for _ in range(4)]
    assert statuses == [503, 429, 200, 200]


def test_random_faults_are_reproducible(make_sandbox: SandboxFactory) -> None:
    runs = []
    for _ in range(2):
        faults = {"results": {"error_rate": 0.5}}
        with (
            make_sandbox(faults=faults, rng_seed=7) as running,
            httpx.Client(base_url=running.base_url) as http,
        ):
            runs.append([http.get(ITEMS + "/1/results").status_code for _ in range(16)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {401, 503}


def test_bad_fault_settings_are_refused(sandbox: RunningSandbox) -> None:
    for body, needle in [
        ({"nope": {}}, "unknown fault group"),
        ({"scores": {"error_rate": 2}}, "scores.error_rate"),
        ({"scores": {"script": ["explode"]}}, "script"),
    ]:
        response = httpx.put(sandbox.base_url + "/_sandbox/faults", json=body)
        assert response.status_code == 422
        assert needle in response.json()["error"]
