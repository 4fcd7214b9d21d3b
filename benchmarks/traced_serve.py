"""`gradesync serve` with diagnostics for memory questions (the remaster scenario's
`--trace-memory`); the server itself is unchanged.

    python -m benchmarks.traced_serve [gradesync arguments...]

- `GRADESYNC_BENCH_TRACEMALLOC=FILE`: SIGUSR2 starts tracemalloc (15 frames; started on
  request because tracing the imports makes start-up very slow); on SIGUSR1 the Python
  allocations made since and still alive are written to FILE as JSON: the total, and the
  largest by traceback (and by line), so the code path that holds memory is named.
- `GRADESYNC_BENCH_SQLITE_CACHE_KB=N`: every SQLite connection's page cache is set to N kB
  after gradesync's own settings (to tell SQLite's cache apart from Python's memory).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from typing import Any

FRAMES = 15


def _dump(out: Path) -> None:
    snap = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    by_tb = snap.statistics("traceback")
    by_line = snap.statistics("lineno")
    current, peak = tracemalloc.get_traced_memory()

    def frames(stat: Any) -> list[str]:
        return [f"{f.filename}:{f.lineno}" for f in stat.traceback]

    out.write_text(
        json.dumps(
            {
                "traced_current_mb": round(current / 2**20, 1),
                "traced_peak_mb": round(peak / 2**20, 1),
                "top_lines": [
                    {"mb": round(s.size / 2**20, 2), "count": s.count, "at": frames(s)[0]}
                    for s in by_line[:25]
                ],
                "top_tracebacks": [
                    {"mb": round(s.size / 2**20, 2), "count": s.count, "stack": frames(s)}
                    for s in by_tb[:12]
                ],
            },
            indent=1,
        )
    )


def _sqlite_cache(kb: int) -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from gradesync.adapters.db import engine as gs_engine

    original = gs_engine._configure_sqlite

    def configure(engine: Engine, synchronous: str) -> None:
        original(engine, synchronous)

        @event.listens_for(engine, "connect")
        def _cache(dbapi_conn: Any, _record: Any) -> None:  # runs after gradesync's own
            dbapi_conn.execute(f"PRAGMA cache_size=-{kb}")

    gs_engine._configure_sqlite = configure


def main() -> None:
    trace_to = os.environ.get("GRADESYNC_BENCH_TRACEMALLOC")
    if trace_to:
        signal.signal(signal.SIGUSR2, lambda *_: tracemalloc.start(FRAMES))
        signal.signal(signal.SIGUSR1, lambda *_: _dump(Path(trace_to)))
    cache_kb = os.environ.get("GRADESYNC_BENCH_SQLITE_CACHE_KB")
    if cache_kb:
        _sqlite_cache(int(cache_kb))
    from gradesync.cli import main as gradesync_main

    sys.argv = ["gradesync", *sys.argv[1:]]
    gradesync_main()


if __name__ == "__main__":
    main()
