"""`gradesync serve` sets its startup heap aside from the garbage collector once it is built
(`adapters.collector`): full collections then walk only what it made since, not every
module, table and route it holds for good. An operator sees it in `/metrics`."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cli import serving


def _families(text: str) -> dict[str, list[float]]:
    return {f.name: [s.value for s in f.samples] for f in text_string_to_metric_families(text)}


def test_serve_sets_its_startup_heap_aside_and_says_so_in_metrics(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    with serving(cli_env, tmp_path / "serve.log") as (_, url):
        metrics = httpx.get(f"{url}/metrics", timeout=10)
    assert metrics.status_code == 200
    families = _families(metrics.text)
    # a built server holds hundreds of thousands of objects; all were set aside
    [frozen] = families["gradesync_heap_frozen_objects"]
    assert frozen > 10_000
    # and the collector's own work is exported, per generation
    assert len(families["python_gc_collections"]) == 3
