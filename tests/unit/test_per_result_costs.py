"""What runs once for every result sent, kept cheap without changing what it does: the
counters look their labelled child up once (prometheus_client's `labels()` checks and locks
on every call) and still count every result under its labels; the log fields a call to a
destination binds are set and restored by a plain context manager holding one token (one
entered again before it is left is refused); a JSON body is encoded by one encoder made
once, to the same bytes."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from typing import Any

import pytest

from gradesync.adapters import metrics
from gradesync.adapters.destinations.http_fast import json_content
from gradesync.services import log_context


def _value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def _counting_labels(monkeypatch: pytest.MonkeyPatch, metric: Any) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    real = metric.labels

    def labels(*args: Any, **kwargs: Any) -> Any:
        calls.append(args or tuple(kwargs.values()))
        return real(*args, **kwargs)

    monkeypatch.setattr(metric, "labels", labels)
    return calls


def test_outbound_requests_look_their_labels_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting_labels(monkeypatch, metrics.OUTBOUND_REQUESTS)
    name, ids = "gradesync_outbound_requests_total", {"tenant": "t-once", "destination": "d-once"}
    ok, error = _value(name, **ids, status="200"), _value(name, **ids, status="error")
    for _ in range(3):
        metrics.count_outbound("t-once", "d-once", 200)
    metrics.count_outbound("t-once", "d-once", None)
    assert _value(name, **ids, status="200") == ok + 3
    assert _value(name, **ids, status="error") == error + 1
    assert calls == [("t-once", "d-once", "200"), ("t-once", "d-once", "error")]


def test_delivered_results_look_their_labels_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    counted = _counting_labels(monkeypatch, metrics.RESULTS_DELIVERED)
    timed = _counting_labels(monkeypatch, metrics.DELIVERY_LATENCY)
    ids = {"tenant": "t-once", "destination": "d-delivered"}
    delivered = _value("gradesync_results_delivered_total", **ids)
    latencies = _value("gradesync_delivery_latency_seconds_count", **ids)
    meter = metrics.PrometheusMeter()
    for latency in (0.07, None, 0.2):
        meter.result_delivered("t-once", "d-delivered", latency)
    assert _value("gradesync_results_delivered_total", **ids) == delivered + 3
    assert _value("gradesync_delivery_latency_seconds_count", **ids) == latencies + 2
    assert _value("gradesync_delivery_latency_seconds_sum", **ids) == pytest.approx(0.27)
    assert len(counted) == 1 and len(timed) == 1


def test_rejected_and_retried_results_look_their_labels_up_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rejected = _counting_labels(monkeypatch, metrics.RESULTS_REJECTED)
    retried = _counting_labels(monkeypatch, metrics.RESULTS_RETRIED)
    ids = {"tenant": "t-once", "destination": "d-refused"}
    before = _value("gradesync_results_rejected_total", **ids, reason="not_enrolled")
    meter = metrics.PrometheusMeter()
    for _ in range(3):
        meter.result_rejected("t-once", "d-refused", "not_enrolled")
        meter.result_retried("t-once", "d-refused", "retry_later", "server_error")
    assert _value("gradesync_results_rejected_total", **ids, reason="not_enrolled") == before + 3
    assert rejected == [("t-once", "d-refused", "not_enrolled")]
    assert retried == [("t-once", "d-refused", "retry_later", "server_error")]


def test_a_full_table_starts_again_and_loses_no_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_MAX_CHILDREN", 2)
    children = metrics._Children(metrics.OUTBOUND_REQUESTS)
    name = "gradesync_outbound_requests_total"
    before = {d: _value(name, tenant="t-full", destination=d, status="200") for d in "abc"}
    for d in "abcab":
        children.get("t-full", d, "200").inc()
    after = {d: _value(name, tenant="t-full", destination=d, status="200") for d in "abc"}
    assert after == {"a": before["a"] + 2, "b": before["b"] + 2, "c": before["c"] + 1}
    assert len(children._made) <= 2


def test_bound_fields_hold_for_the_block_only_and_nest() -> None:
    with log_context.bound(tenant="t1", run_id=None):
        assert log_context.current() == {"tenant": "t1"}
        with pytest.raises(ValueError), log_context.bound(destination="d1", tenant="t2"):
            assert log_context.current() == {"tenant": "t2", "destination": "d1"}
            raise ValueError("propagates")
        assert log_context.current() == {"tenant": "t1"}
    assert log_context.current() == {}


def test_one_bound_entered_again_before_it_is_left_is_refused_and_changes_nothing() -> None:
    # one instance holds one entry's token: a second entry would lose the first's
    again = log_context.bound(run_id="r1")
    with log_context.bound(tenant="t1"), again:
        with log_context.bound(destination="d1"):
            with pytest.raises(RuntimeError, match="entered once at a time"), again:
                pass
            assert log_context.current() == {"tenant": "t1", "run_id": "r1", "destination": "d1"}
        assert log_context.current() == {"tenant": "t1", "run_id": "r1"}
    assert log_context.current() == {}
    with again:  # left, it may be entered again
        assert log_context.current() == {"run_id": "r1"}
    assert log_context.current() == {}


async def test_one_bound_entered_by_a_second_task_while_held_is_refused_there() -> None:
    shared = log_context.bound(run_id="r1")
    entered, tried = asyncio.Event(), asyncio.Event()

    async def first() -> dict[str, str]:
        with log_context.bound(tenant="a"), shared:
            entered.set()
            await tried.wait()  # the second task tries while this one holds it
            assert log_context.current() == {"tenant": "a", "run_id": "r1"}
        return dict(log_context.current())

    async def second() -> dict[str, str]:
        await entered.wait()
        with log_context.bound(tenant="b"):
            with pytest.raises(RuntimeError), shared:
                pass
            assert log_context.current() == {"tenant": "b"}
        tried.set()
        return dict(log_context.current())

    assert await asyncio.gather(first(), second()) == [{}, {}]


def test_json_content_makes_no_encoder_per_body(monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"userId": "é-1", "scoreGiven": 7.5, "nested": {"a": [1, None, True]}}
    expected = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    made: list[object] = []
    real = json.JSONEncoder.__init__

    def counting(self: json.JSONEncoder, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        real(self, *args, **kwargs)

    monkeypatch.setattr(json.JSONEncoder, "__init__", counting)
    assert [json_content(body) for _ in range(3)] == [expected] * 3
    assert made == []
    with pytest.raises(ValueError):
        json_content({"scoreGiven": math.nan})  # no NaN on the wire


@pytest.mark.parametrize(
    "body",
    [
        {"userId": 'é " \n \u2028', "scoreGiven": 0.1, "scoreMaximum": 1e300, "x": -0.0},
        {"a": [1, None, True, False, {}, []], 2: "int key", None: 1, 1.5: 2, True: 3},
        ["list", 1],
        "a string",
        7,
    ],
)
def test_json_content_makes_no_c_encoder_per_body_and_sends_what_json_does(
    monkeypatch: pytest.MonkeyPatch, body: Any
) -> None:
    """`JSONEncoder.encode` made its C encoder again for every body; the one made once
    gives the same bytes and refuses what it refuses, with the same error."""
    expected = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    sent = expected.encode(body).encode()
    made: list[object] = []
    real = json.encoder.c_make_encoder  # type: ignore[attr-defined]

    def counting(*args: Any) -> Any:
        made.append(args)
        return real(*args)

    monkeypatch.setattr(json.encoder, "c_make_encoder", counting)
    assert [json_content(body) for _ in range(3)] == [sent] * 3
    assert made == []
    monkeypatch.undo()
    for bad in ({"a": math.inf}, {"a": object()}, {(1, 2): 1}):
        with pytest.raises((ValueError, TypeError)) as ours:
            json_content(bad)
        with pytest.raises((ValueError, TypeError)) as theirs:
            expected.encode(bad)
        assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))


def test_a_series_dropped_for_a_destination_counts_again_when_it_sends() -> None:
    # a destination made between a scrape's read of the destinations and its drop of the
    # series of those deleted: its series go, and its next results must be counted where a
    # scrape reads them, not in the child looked up before
    name, ids = "gradesync_results_delivered_total", {"tenant": "t-drop", "destination": "d-drop"}
    meter = metrics.PrometheusMeter()
    meter.result_delivered("t-drop", "d-drop", 0.1)
    metrics.count_outbound("t-drop", "d-drop", 200)
    known = {
        (sample.labels["tenant"], sample.labels["destination"])
        for family in metrics.REGISTRY.collect()
        for sample in family.samples
        if "destination" in sample.labels
    } - {("t-drop", "d-drop")}
    assert metrics.forget_destinations(known) >= 3
    assert _value(name, **ids) == 0.0
    meter.result_delivered("t-drop", "d-drop", 0.1)
    metrics.count_outbound("t-drop", "d-drop", 200)
    assert _value(name, **ids) == 1.0
    assert _value("gradesync_delivery_latency_seconds_count", **ids) == 1.0
    assert _value("gradesync_outbound_requests_total", **ids, status="200") == 1.0


def test_json_content_sends_the_same_bytes_without_the_c_json_module() -> None:
    """An interpreter without `_json` (json's `c_make_encoder` is None): the module still
    imports, its bodies are the bytes the C encoder makes, and it refuses what that refuses
    (with the same error type; the pure encoder's message on a NaN names it)."""
    body = {"userId": 'é " \n \u2028', "scoreGiven": 0.1, "x": -0.0, "a": [1, None, True], 2: 1}
    code = (
        "import sys; sys.modules['_json'] = None\n"  # its import fails, as where it is missing
        "import json.encoder\n"
        "assert json.encoder.c_make_encoder is None\n"
        "from gradesync.adapters.destinations.http_fast import json_content\n"
        f"sys.stdout.buffer.write(json_content({body!r}))\n"
        "for bad in ({'a': float('nan')}, {'a': object()}, {(1, 2): 1}):\n"
        "    try:\n"
        "        json_content(bad)\n"
        "    except (ValueError, TypeError) as exc:\n"
        "        print(f'\\n{type(exc).__name__}', end='')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    refusals = []
    for bad in ({"a": math.nan}, {"a": object()}, {(1, 2): 1}):
        with pytest.raises((ValueError, TypeError)) as ours:
            json_content(bad)
        refusals.append(type(ours.value).__name__)
    assert out.stdout.decode().split("\n") == [json_content(body).decode(), *refusals]
