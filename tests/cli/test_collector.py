"""`gradesync serve` sets its startup heap aside from the garbage collector once it is built
(`adapters.collector`): full collections then walk only what it made since, not every
module, table and route it holds for good. An operator sees it in `/metrics`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gradesync.testing import wait_for
from tests.cli.test_sync_cli import _free_port
from tests.support.cli import GRADESYNC


def _families(text: str) -> dict[str, list[float]]:
    return {f.name: [s.value for s in f.samples] for f in text_string_to_metric_families(text)}


def test_serve_sets_its_startup_heap_aside_and_says_so_in_metrics(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    port = _free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [GRADESYNC, "serve", "--port", str(port)], env=cli_env, stdout=log, stderr=log
        )
        try:

            def ready() -> bool:
                assert proc.poll() is None, log_path.read_text()
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).is_success
                except httpx.TransportError:
                    return False

            wait_for(ready, "gradesync serve to be ready", explain=log_path.read_text)
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    assert metrics.status_code == 200
    families = _families(metrics.text)
    # a built server holds hundreds of thousands of objects; all were set aside
    [frozen] = families["gradesync_heap_frozen_objects"]
    assert frozen > 10_000
    # and the collector's own work is exported, per generation
    assert len(families["python_gc_collections"]) == 3
