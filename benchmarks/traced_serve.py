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
- `GRADESYNC_BENCH_STATEMENTS=FILE`: every SQL statement run is counted by its shape (its
  first words), with the CPU of the thread that ran it spent inside the driver's execute and
  its parameter sets (an executemany's rows), and every piece of work handed to a thread
  (`ThreadPoolExecutor.submit`) by its function, with its CPU; on exit the counts are
  written to FILE as JSON.
  Which statements the delivery runs per result, and what each costs. With
  `GRADESYNC_BENCH_PROFILE_WORK=FILE` too, that work runs under cProfile (one per thread) and
  the merged stats are written to FILE (`pstats`). A benchmark marks the window it measures
  (SIGRTMIN+2 at its start and end, `Child.mark`; the throughput scenario marks its
  delivery): `windows` holds what grew inside the windows only, with the main thread's
  (the event loop's) CPU, and `GRADESYNC_BENCH_PROFILE_LOOP=FILE` profiles that thread
  inside them by its CPU (cProfile, `pstats`).
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
        # SQLite's own heap (page caches, schemas, statements), malloc'ed by its threads
        "sqlite_memory_mb": _sqlite_memory_mb(),
    }


def _sqlite_memory_mb() -> float | None:
    """What SQLite has allocated now, over every connection of the process: asked of the
    library the sqlite3 module is linked against (its symbols looked up through the
    module's own file, whatever the library's name). None (unavailable, not 0) when that
    library cannot be reached or is not the one the module reports (another copy's heap
    would read as the module's)."""
    import _sqlite3
    import ctypes
    import sqlite3

    try:
        lib = ctypes.CDLL(_sqlite3.__file__)
        lib.sqlite3_libversion.restype = ctypes.c_char_p
        lib.sqlite3_memory_used.restype = ctypes.c_int64
    except (OSError, AttributeError):
        return None
    if lib.sqlite3_libversion().decode() != sqlite3.sqlite_version:
        return None
    return round(lib.sqlite3_memory_used() / 2**20, 1)


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


STATEMENTS_SIGNAL = signal.SIGRTMIN + 2


def _count_statements(out: Path) -> None:
    import atexit
    import cProfile
    import functools
    import re
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    # reentrant: a mark's signal handler runs on the main thread, maybe while that thread
    # holds the lock (a statement it ran being counted)
    lock = threading.RLock()
    shapes: dict[str, list[float]] = {}  # shape -> [count, cpu s, rows]
    submits = [0]
    started = time.monotonic()

    def shape(sql: str) -> str:
        words = re.sub(r"\s+", " ", sql).strip()
        words = re.sub(r"\(\?(, \?)*\)|\$\d+|%\(\w+\)s|:\w+", "?", words)
        return words[:110]

    @event.listens_for(Engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        conn.info["bench_t0"] = time.thread_time()

    @event.listens_for(Engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        cpu = time.thread_time() - conn.info.pop("bench_t0", time.thread_time())
        sets = len(params) if many and isinstance(params, list) else 1
        with lock:
            got = shapes.setdefault(shape(sql), [0, 0.0, 0])
            got[0] += 1
            got[1] += cpu
            got[2] += sets

    submit = ThreadPoolExecutor.submit
    calls: dict[str, list[float]] = {}  # work handed to a thread -> [count, its CPU s]

    def name_of(fn: Any) -> str:
        while isinstance(fn, functools.partial):  # asyncio.to_thread: partial(ctx.run, f)
            fn = fn.args[0] if fn.func.__name__ == "run" and fn.args else fn.func
        return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"

    profile_to = os.environ.get("GRADESYNC_BENCH_PROFILE_WORK")
    profiles = threading.local()  # one cProfile per worker thread (each sets its own hook)
    made: list[Any] = []

    def counted_submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        submits[0] += 1
        name = name_of(fn)

        def timed() -> Any:
            prof = None
            if profile_to:
                prof = getattr(profiles, "p", None)
                if prof is None:
                    prof = profiles.p = cProfile.Profile(time.thread_time)  # CPU, not waits
                    with lock:
                        made.append(prof)
            t0 = time.thread_time()
            try:
                if prof is not None:
                    return prof.runcall(fn, *args, **kwargs)
                return fn(*args, **kwargs)
            finally:
                cpu = time.thread_time() - t0
                with lock:
                    got = calls.setdefault(name, [0, 0.0])
                    got[0] += 1
                    got[1] += cpu

        return submit(self, timed)

    ThreadPoolExecutor.submit = counted_submit  # type: ignore[method-assign]

    # the measured windows (between a pair of marks, `Child.mark`): what each counter grew
    # by inside them, summed; the main thread (the event loop's) is profiled inside them
    # with GRADESYNC_BENCH_PROFILE_LOOP=FILE
    loop_to = os.environ.get("GRADESYNC_BENCH_PROFILE_LOOP")
    loop_prof = cProfile.Profile(time.thread_time) if loop_to else None
    window: dict[str, Any] = {"marks": 0, "seconds": 0.0, "process_cpu_s": 0.0}
    window.update(loop_thread_cpu_s=0.0, thread_work={}, statements={})
    at_mark: dict[str, Any] = {}

    def snapshot() -> dict[str, Any]:
        with lock:
            return {
                "t": time.monotonic(),
                "process": time.process_time(),
                "loop": time.thread_time(),  # a signal's handler runs on the main thread
                "thread_work": {k: list(v) for k, v in calls.items()},
                "statements": {k: list(v) for k, v in shapes.items()},
            }

    def grown(now: dict[str, list[float]], then: dict[str, list[float]], into: dict) -> None:
        for k, v in now.items():
            was = then.get(k, [0] * len(v))
            acc = into.setdefault(k, [0] * len(v))
            for i, x in enumerate(v):
                acc[i] += x - was[i]

    def mark() -> None:
        now = snapshot()
        window["marks"] += 1
        if window["marks"] % 2:  # a window starts
            at_mark.clear()
            at_mark.update(now)
            if loop_prof is not None:
                loop_prof.enable()
            return
        if loop_prof is not None:
            loop_prof.disable()
        window["seconds"] += now["t"] - at_mark["t"]
        window["process_cpu_s"] += now["process"] - at_mark["process"]
        window["loop_thread_cpu_s"] += now["loop"] - at_mark["loop"]
        grown(now["thread_work"], at_mark["thread_work"], window["thread_work"])
        grown(now["statements"], at_mark["statements"], window["statements"])

    def table(counts: dict[str, list[float]], what: str) -> list[dict[str, Any]]:
        return [
            {
                "count": v[0],
                "cpu_ms": round(v[1] * 1000, 1),
                **({"parameter_sets": v[2]} if len(v) > 2 else {}),
                what: k,
            }
            for k, v in sorted(counts.items(), key=lambda kv: -kv[1][1])
            if v[0]
        ]

    def write() -> None:
        if profile_to and made:
            import pstats

            with lock:
                stats = pstats.Stats(made[0])
                for prof in made[1:]:
                    stats.add(prof)
            stats.dump_stats(profile_to)
        if loop_prof is not None and loop_to and window["marks"] >= 2:
            loop_prof.dump_stats(loop_to)
        whole = snapshot()
        out.write_text(
            json.dumps(
                {
                    "seconds": round(whole["t"] - started, 1),
                    "process_cpu_s": round(whole["process"], 2),
                    "executor_submits": submits[0],
                    "windows": {
                        "marks": window["marks"],
                        "seconds": round(window["seconds"], 1),
                        "process_cpu_s": round(window["process_cpu_s"], 2),
                        "loop_thread_cpu_s": round(window["loop_thread_cpu_s"], 2),
                        "thread_work": table(window["thread_work"], "call"),
                        "statements": table(window["statements"], "sql"),
                    },
                    "thread_work": table(whole["thread_work"], "call"),
                    "statements": table(whole["statements"], "sql"),
                },
                indent=1,
            )
        )

    atexit.register(write)
    signal.signal(STATEMENTS_SIGNAL, lambda *_: mark())


def main() -> None:
    statements_to = os.environ.get("GRADESYNC_BENCH_STATEMENTS")
    if statements_to:
        _count_statements(Path(statements_to))
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
