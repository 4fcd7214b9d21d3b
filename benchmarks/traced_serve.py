"""`gradesync serve` with diagnostics for memory questions (the remaster scenario's
`--trace-memory`); the server itself is unchanged.

    python -m benchmarks.traced_serve [gradesync arguments...]

- `GRADESYNC_BENCH_TRACEMALLOC=FILE`: SIGUSR2 starts tracemalloc (15 frames; started on
  request because tracing the imports makes start-up very slow); on SIGUSR1 the Python
  allocations made since and still alive are written to FILE as JSON: the total, and the
  largest by traceback (and by line), and by the innermost gradesync call in each traceback
  (`by_gradesync_call`: the code of ours that made what is held), so the code path that
  holds memory is named.
- `GRADESYNC_BENCH_SQLITE_CACHE_KB=N`: every SQLite connection's page cache is set to N kB
  after gradesync's own settings (to tell SQLite's cache apart from Python's memory).
- `GRADESYNC_BENCH_MALLOC=FILE`: on SIGRTMIN+1 where the resident memory is (smaps by kind
  of mapping, glibc's `mallinfo2` of its main heap) is written to FILE as JSON, then
  `malloc_trim(0)` runs and the same is written again: what the allocator gives back is
  memory freed but kept, not memory still in use. With it, the objects the garbage
  collector tracks, by type, and pymalloc's allocated blocks.
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

    # who in gradesync holds it: each trace under the innermost gradesync frame of its
    # traceback (the call that made it), the libraries' frames below it folded in
    ours: dict[str, list[int]] = {}
    for s in by_tb:
        mine = [f for f in s.traceback if "/gradesync/" in f.filename]
        at = f"{mine[-1].filename.split('/gradesync/')[-1]}:{mine[-1].lineno}" if mine else "-"
        got = ours.setdefault(at, [0, 0])
        got[0] += s.size
        got[1] += s.count

    out.write_text(
        json.dumps(
            {
                "traced_current_mb": round(current / 2**20, 1),
                "traced_peak_mb": round(peak / 2**20, 1),
                "top_lines": [
                    {"mb": round(s.size / 2**20, 2), "count": s.count, "at": frames(s)[0]}
                    for s in by_line[:25]
                ],
                "by_gradesync_call": [
                    {"mb": round(size / 2**20, 2), "count": count, "at": at}
                    for at, (size, count) in sorted(ours.items(), key=lambda kv: -kv[1][0])[:40]
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


MALLOC_SIGNAL = signal.SIGRTMIN + 1
_ARENA_ALIGN = 64 * 2**20  # glibc's thread arenas are mapped at multiples of HEAP_MAX_SIZE


def _smaps() -> dict[str, float]:
    """Resident MB of this process by kind of mapping (a guess by shape for anonymous ones)."""
    kinds: dict[str, float] = {}
    kind = "other"
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            start, end = (int(x, 16) for x in head[0].split("-"))
            size_kb = (end - start) // 1024
            name = head[5] if len(head) > 5 else ""
            if name == "[heap]":
                kind = "main_heap"
            elif name.startswith("["):
                kind = name.strip("[]")
            elif name:
                kind = "files"
            elif start % _ARENA_ALIGN == 0:
                kind = "thread_arenas"
            elif size_kb == 1024:
                kind = "pymalloc_arenas"
            elif size_kb == 8192:
                kind = "thread_stacks"
            else:
                kind = "other_anonymous"
        elif head[0] == "Rss:":
            kinds[kind] = kinds.get(kind, 0.0) + int(head[1]) / 1024
    return {k: round(v, 1) for k, v in sorted(kinds.items())}


# glibc's struct mallinfo2, in order
_MALLINFO2 = (
    *("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks"),
    *("uordblks", "fordblks", "keepcost"),
)


def _malloc_state(libc: Any) -> dict[str, Any]:
    import ctypes

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in _MALLINFO2]

    libc.mallinfo2.restype = Mallinfo2
    mi = libc.mallinfo2()
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    rss = int(status["VmRSS"].split()[0]) / 1024
    return {
        "rss_mb": round(rss, 1),
        "smaps_mb": _smaps(),
        # arena: the main heap's size; uordblks in use, fordblks free; hblkhd: mmap'ed blocks
        "mallinfo2_mb": {
            n: round(getattr(mi, n) / 2**20, 1)
            for n in ("arena", "uordblks", "fordblks", "hblkhd", "keepcost")
        },
        "threads": int(status["Threads"]),
    }


def _malloc_dump(out: Path) -> None:
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    before = _malloc_state(libc)
    libc.malloc_trim(0)
    after = _malloc_state(libc)
    out.write_text(json.dumps({"before_trim": before, "after_trim": after, **_census()}))


def _census() -> dict[str, Any]:
    """Python's own view: blocks pymalloc hands out, and the objects the collector tracks by
    type (count and shallow size), the largest first."""
    import gc
    from collections import Counter

    from sqlalchemy.engine import Engine

    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    # SQLAlchemy's compiled statements kept per engine (a statement whose shape changes
    # with its data is compiled and kept once per shape)
    statements_cached = []
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj)
        if isinstance(obj, Engine) and obj._compiled_cache is not None:
            statements_cached.append(len(obj._compiled_cache))
    return {
        "allocated_blocks": sys.getallocatedblocks(),
        "gc_objects": sum(counts.values()),
        "sqlalchemy_statements_cached": statements_cached,
        "gc_objects_mb": round(sum(sizes.values()) / 2**20, 1),
        "top_types": [
            {"type": name, "count": counts[name], "mb": round(size / 2**20, 2)}
            for name, size in sizes.most_common(20)
        ],
    }


def main() -> None:
    malloc_to = os.environ.get("GRADESYNC_BENCH_MALLOC")
    if malloc_to:
        signal.signal(MALLOC_SIGNAL, lambda *_: _malloc_dump(Path(malloc_to)))
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
