"""The heap gauge on /metrics reports what the process set aside when it settled for
serving, without counting it again at each scrape: CPython counts frozen objects by walking
them, about 20 ms with the GIL held for a served process's heap."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gradesync.adapters import collector
from gradesync.adapters.metrics import REGISTRY


@pytest.fixture
def settled() -> Iterator[int]:
    threshold = gc.get_threshold()
    try:
        yield collector.settle_for_serving()
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_a_scrape_reports_the_frozen_objects_without_walking_them(
    settled: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def walk() -> int:
        raise AssertionError("a scrape walked the frozen heap")

    monkeypatch.setattr(gc, "get_freeze_count", walk)
    [gauge] = [
        f
        for f in text_string_to_metric_families(generate_latest(REGISTRY).decode())
        if f.name == "gradesync_heap_frozen_objects"
    ]
    assert settled > 1_000
    assert [s.value for s in gauge.samples] == [settled]
