"""Diagnostic: the CPU each Python process spends in the garbage collector, per generation.

    GRADESYNC_BENCH_GC_DIR=/tmp/gc PYTHONPATH=benchmarks/gc_time \
        .venv/bin/python -m benchmarks --only throughput --db sqlite

Python imports `sitecustomize` at start when it is on the path, so every process of the run
(the benchmark, `gradesync serve`, the sandbox) times its collections (the thread's CPU time
between the collector's start and stop callbacks) and rewrites `DIR/gc-PID.json` every 2 s:
its command line, its CPU seconds so far, and the collections and their CPU seconds per
generation. Not part of the benchmarks' figures: a probe for when a profile points at the
collector (an allocation that starts a collection is charged for all of it in a profile).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
from pathlib import Path

_DIR = os.environ.get("GRADESYNC_BENCH_GC_DIR")
_started = [0.0]
_count = [0, 0, 0]
_cpu = [0.0, 0.0, 0.0]


def _timed(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _started[0] = time.thread_time()
        return
    generation = info["generation"]
    _count[generation] += 1
    _cpu[generation] += time.thread_time() - _started[0]


def _write_every_2s(path: Path) -> None:
    while True:
        time.sleep(2)  # a snapshot: the last one before the process ends is what counts
        path.write_text(
            json.dumps(
                {
                    "argv": sys.argv[:4],
                    "process_cpu_s": round(time.process_time(), 3),
                    "collections": _count,
                    "collector_cpu_s": [round(c, 3) for c in _cpu],
                    "threshold": gc.get_threshold(),
                    "frozen": gc.get_freeze_count(),
                }
            )
        )


if _DIR:
    Path(_DIR).mkdir(parents=True, exist_ok=True)
    gc.callbacks.append(_timed)
    threading.Thread(
        target=_write_every_2s, args=(Path(_DIR) / f"gc-{os.getpid()}.json",), daemon=True
    ).start()
