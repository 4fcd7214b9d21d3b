"""`python -m benchmarks` (or `make bench`): run the suite, write the figures.

    python -m benchmarks                      # full size (minutes), SQLite and PostgreSQL
    python -m benchmarks --quick              # the CI smoke (seconds)
    python -m benchmarks --only latency,throughput --db sqlite
    python -m benchmarks --out benchmarks/results/latest.json --profile
    python -m benchmarks --only throughput,baseline --db sqlite --sandbox-cap 64

Scenarios: latency, throughput, baseline, faults, resync, ingest, remaster, platforms.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks import machine, postgres, pressure, report
from benchmarks.sizes import FULL, QUICK, Sizes
from benchmarks.world import World, set_faults, start_world

ALL = (
    "latency",
    "throughput",
    "baseline",
    "faults",
    "resync",
    "ingest",
    "remaster",
    "platforms",
)
# On PostgreSQL these run only with --pg-delivery (they measure the engine, not the database).
DELIVERY = ("latency", "throughput", "baseline", "faults", "remaster", "platforms")
# Scenarios that start their own processes instead of sharing the LMS world.
OWN_PROCESSES = ("remaster", "platforms")


def base_faults(sizes: Sizes) -> dict[str, Any]:
    """The destination as benchmarked: set latency and a concurrency cap (requests over the
    cap wait their turn, as behind a real LMS's connection limit)."""
    group = {"latency_ms": sizes.latency_ms, "max_concurrency": sizes.cap, "over_capacity": "queue"}
    return {"scores": group, "lineitems": dict(group)}


# the most a platform's `concurrency` may be (the API's bound): gradesync must be able to
# use the whole cap, as every hand-written client does
MAX_CAP = 256


def sandbox_sizes(
    parser: argparse.ArgumentParser, sizes: Sizes, latency_ms: int | None, cap: int | None
) -> Sizes:
    """`sizes` with the sandbox's latency and cap from the command line, checked."""
    if latency_ms is not None:
        if latency_ms < 1:
            parser.error("--sandbox-latency-ms: a whole number of milliseconds, at least 1")
        sizes = replace(sizes, latency_ms=latency_ms)
    if cap is not None:
        if not 1 <= cap <= MAX_CAP:
            parser.error(f"--sandbox-cap: a whole number from 1 to {MAX_CAP}")
        sizes = replace(sizes, cap=cap)
    return sizes


def sandbox_settings(sizes: Sizes) -> dict[str, Any]:
    """The destination as configured, and what it can take at most (cap / latency)."""
    from benchmarks.scenarios import throughput

    return {
        "latency_ms": sizes.latency_ms,
        "cap": sizes.cap,
        "capacity_per_s": round(throughput.capacity(sizes), 1),
    }


def guarded(name: str, fn: Any, *args: Any, **kw: Any) -> dict[str, Any]:
    print(f"  - {name} ...", flush=True)
    window = pressure.Window.start()
    t0 = time.perf_counter()
    try:
        out = fn(*args, **kw)
    except Exception as exc:
        traceback.print_exc()
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    out["cpu_pressure"] = window.stop()
    out["scenario_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"    done in {out['scenario_seconds']} s (ok={out.get('ok')})", flush=True)
    return out


def run_db(
    db: str,
    url: str | None,
    only: set[str],
    sizes: Sizes,
    workdir: Path,
    profiling: Profiling | None,
) -> dict[str, Any]:
    print(f"[{db}]", flush=True)
    out: dict[str, Any] = {"database": db}
    if only - set(OWN_PROCESSES):
        out.update(run_world(db, url, only, sizes, workdir, profiling))
    if "remaster" in only:
        out["remaster"] = guarded("remaster (SIS passback)", run_remaster, db, url, sizes, workdir)
    if "platforms" in only:
        out["platforms"] = guarded("many platforms", run_platforms, url, sizes, workdir / db)
    return out


def run_platforms(url: str | None, sizes: Sizes, workdir: Path) -> dict[str, Any]:
    from benchmarks.scenarios import platforms

    return platforms.run(
        workdir / "platforms",
        sizes.pl_counts,
        sizes.pl_concurrency,
        sizes.deadline,
        postgres_url=url,
        learners=sizes.pl_learners,
        courses=sizes.pl_courses,
        trace_memory=DIAG["trace_memory"],
        malloc_stats=DIAG["malloc_stats"],
    )


def run_remaster(db: str, url: str | None, sizes: Sizes, workdir: Path) -> dict[str, Any]:
    from benchmarks.scenarios import remaster

    return remaster.run(
        workdir / db / "remaster",
        sizes.rm_sizes,
        sizes.rm_activities,
        sizes.rm_learners_per_course,
        sizes.rm_concurrency,
        sizes.rm_timeout,
        postgres_url=url,
        trace_memory=DIAG["trace_memory"],
        sqlite_cache_kb=DIAG["sqlite_cache_kb"],
        results_dir=DIAG["remaster_dir"],
        resume=DIAG["resume"],
    )


# remaster diagnostics from the command line (see --trace-memory, --sqlite-cache-kb)
DIAG: dict[str, Any] = {
    "trace_memory": False,
    "malloc_stats": False,
    "sqlite_cache_kb": None,
    "remaster_dir": None,
    "resume": False,
}


def run_world(
    db: str,
    url: str | None,
    only: set[str],
    sizes: Sizes,
    workdir: Path,
    profiling: Profiling | None,
) -> dict[str, Any]:
    """The scenarios that share one sandbox LMS and one gradesync."""
    from benchmarks.scenarios import compare, faults, latency, scale

    # The delivery scenarios measure the engine; on PostgreSQL only the scale ones run
    # unless asked for explicitly.
    world: World = start_world(workdir / db, url, concurrency=sizes.cap, faults=base_faults(sizes))
    out: dict[str, Any] = {}
    try:
        if "latency" in only:
            spy = start_profile(world, profiling, f"latency-{db}") if profiling else None
            out["latency"] = guarded("latency", latency.run, world, sizes)
            if spy is not None:
                out["latency"]["profile"] = stop_profile(*spy)
        if "throughput" in only or "baseline" in only:
            spy = start_profile(world, profiling, f"throughput-{db}") if profiling else None
            cmp = guarded(
                "throughput side by side",
                compare.run,
                world,
                sizes,
                with_baselines="baseline" in only,
            )
            if spy is not None:
                cmp["profile"] = stop_profile(*spy)
            out["comparison"] = cmp
            gs = _median_run(cmp.get("clients", {}).get(compare.GRADESYNC, {}).get("runs", []))
            if gs is not None:
                out["throughput"] = gs
            sequential = [
                r
                for name in (compare.SEQUENTIAL, compare.README)
                for r in cmp.get("clients", {}).get(name, {}).get("runs", [])
            ]
            if sequential:
                out["baseline"] = sequential
        if "resync" in only:
            out["resync"] = guarded("no-op resync", scale.noop_resync, world, sizes)
        if "ingest" in only:
            out["ingest"] = guarded("ingest", scale.ingest, world, sizes)
        if "faults" in only:
            set_faults(world, faults.fault_config(sizes))
            try:
                out["faults"] = guarded("faults", faults.run, world, sizes)
            finally:
                set_faults(world, base_faults(sizes))
        out["gradesync_peak_rss_mb"] = round(_peak(world.gradesync.pid), 1)
    finally:
        world.close()
    return out


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """gradesync's run with the median steady rate (what the single-figure table shows)."""
    rated = sorted(
        (r for r in runs if r.get("steady_rate_per_s") is not None),
        key=lambda r: r["steady_rate_per_s"],
    )
    return rated[len(rated) // 2] if rated else None


def _peak(pid: int) -> float:
    from benchmarks import procs

    try:
        return procs.peak_rss_mb(pid)
    except OSError:
        return 0.0


class Profiling(NamedTuple):
    """Where py-spy writes its profiles, and its samples per second."""

    dir: Path
    rate: int


def start_profile(world: World, profiling: Profiling, name: str) -> tuple[Any, Path] | None:
    import subprocess

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("    py-spy not installed: no profile")
        return None
    profiling.dir.mkdir(parents=True, exist_ok=True)
    raw = profiling.dir / f"{name}.txt"
    proc = subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(world.gradesync.pid),
            "--format",
            "raw",
            "--output",
            str(raw),
            "--rate",
            str(profiling.rate),
            "--nonblocking",
            "--gil",  # only samples holding the GIL: where the process's CPU goes, not its waits
            "--duration",
            "600",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # let py-spy attach before the load starts
    return proc, raw


def stop_profile(proc: Any, raw: Path) -> dict[str, Any]:
    import signal

    from benchmarks import profile

    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    return profile.summarize(raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (the CI smoke)")
    parser.add_argument("--only", default=",".join(ALL), help="comma-separated scenarios")
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/latest.json"))
    parser.add_argument(
        "--profile",
        nargs="?",
        const=50,
        type=int,
        metavar="HZ",
        help="py-spy profiles of gradesync during latency and throughput (HZ samples per "
        "second, default 50; 250 for a finer split)",
    )
    parser.add_argument(
        "--pg-delivery",
        action="store_true",
        help="also run latency/throughput/baseline/faults/remaster on PostgreSQL",
    )
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs)")
    parser.add_argument(
        "--remaster-sizes",
        help="remaster: comma-separated result counts (multiples of 10), e.g. 10000,50000",
    )
    parser.add_argument(
        "--remaster-dir",
        type=Path,
        help="remaster: write each size's figures (and its progress while it runs) there",
    )
    parser.add_argument(
        "--platforms",
        help="platforms: comma-separated platform counts, e.g. 10,100,1000",
    )
    parser.add_argument(
        "--platform-courses",
        type=int,
        help="platforms: courses per platform (default 10); the same data over fewer "
        "platforms tells what a platform costs from what its data costs",
    )
    parser.add_argument(
        "--remaster-timeout",
        type=float,
        help="remaster: bound per run in seconds (default 600, and at least N/100)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="remaster: take sizes already passed in --remaster-dir from there, run the rest",
    )
    parser.add_argument(
        "--trace-memory",
        action="store_true",
        help="remaster, platforms: gradesync under tracemalloc, what holds memory (slow)",
    )
    parser.add_argument(
        "--malloc-stats",
        action="store_true",
        help="platforms: where gradesync's resident memory is once idle, and what "
        "malloc_trim(0) gives back (diagnostic)",
    )
    parser.add_argument(
        "--sqlite-cache-kb",
        type=int,
        help="remaster: override SQLite's page cache per connection (diagnostic)",
    )
    parser.add_argument(
        "--sandbox-latency-ms",
        type=int,
        help="the sandbox's wait per score and line item request, in ms (default full 50, "
        "quick 20); the scenarios sharing one sandbox (latency, throughput, baseline, faults) "
        "all see it",
    )
    parser.add_argument(
        "--sandbox-cap",
        type=int,
        help="score and line item requests the sandbox serves at once (default full 16, quick "
        "8): gradesync's destination concurrency and the hand-written clients' threads or "
        f"coroutines are the same N; 1 to {MAX_CAP}",
    )
    parser.add_argument(
        "--lat-rate",
        type=float,
        help="latency: attempts posted per second (default full 100, quick 40)",
    )
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(ALL)
    if unknown:
        parser.error(f"--only: unknown scenario(s) {sorted(unknown)}; choose from {', '.join(ALL)}")
    sizes = QUICK if args.quick else FULL
    if args.remaster_sizes:
        try:
            rm = tuple(int(x) for x in args.remaster_sizes.split(",") if x.strip())
        except ValueError:
            parser.error("--remaster-sizes: comma-separated integers, e.g. 10000,50000")
        if not rm or any(n <= 0 or n % sizes.rm_activities for n in rm):
            parser.error(f"--remaster-sizes: positive multiples of {sizes.rm_activities}")
        sizes = replace(sizes, rm_sizes=rm)
    if args.platforms:
        try:
            counts = tuple(int(x) for x in args.platforms.split(",") if x.strip())
        except ValueError:
            parser.error("--platforms: comma-separated integers, e.g. 10,100,1000")
        if not counts or any(n <= 0 or n > 10_000 for n in counts):
            parser.error("--platforms: counts between 1 and 10000")
        sizes = replace(sizes, pl_counts=counts)
    if args.platform_courses is not None:
        if not 1 <= args.platform_courses <= 10_000:
            parser.error("--platform-courses: between 1 and 10000")
        sizes = replace(sizes, pl_courses=args.platform_courses)
    if args.remaster_timeout is not None:
        if args.remaster_timeout <= 0:
            parser.error("--remaster-timeout: a positive number of seconds")
        sizes = replace(sizes, rm_timeout=args.remaster_timeout)
    if args.lat_rate is not None:
        if args.lat_rate <= 0:
            parser.error("--lat-rate: a positive number of attempts per second")
        sizes = replace(sizes, lat_rate=args.lat_rate)
    sizes = sandbox_sizes(parser, sizes, args.sandbox_latency_ms, args.sandbox_cap)
    if args.resume and args.remaster_dir is None:
        parser.error("--resume: needs --remaster-dir (where the finished sizes are)")
    DIAG.update(
        trace_memory=args.trace_memory,
        malloc_stats=args.malloc_stats,
        sqlite_cache_kb=args.sqlite_cache_kb,
        remaster_dir=args.remaster_dir,
        resume=args.resume,
    )
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="gradesync-bench-"))
    results: dict[str, Any] = {
        "size": "quick" if args.quick else "full",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine.describe(),
        "sizes": sizes.__dict__,
        "sandbox": sandbox_settings(sizes),
        "scenarios": sorted(only),
    }
    profiling = Profiling(args.out.parent / "profiles", args.profile) if args.profile else None
    t0 = time.perf_counter()
    try:
        for db in dbs:
            per_db = set(only)
            if db == "postgres":
                url = postgres.bench_url()
                why = postgres.fresh_database(url)
                if why:
                    results[db] = {"skipped": why}
                    print(f"[{db}] skipped: {why}")
                    continue
                if not args.pg_delivery:
                    per_db -= set(DELIVERY)
            elif db == "sqlite":
                url = None
            else:
                parser.error(f"--db: unknown database {db!r}")
            if per_db:
                results[db] = run_db(db, url, per_db, sizes, workdir, profiling)
    finally:
        results["total_seconds"] = round(time.perf_counter() - t0, 1)
        results["verdicts"] = report.verdicts(results)
        md = report.write(results, args.out)
        print()
        print(md.read_text())
        print(f"figures: {args.out} and {md}")
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"working directory kept: {workdir}")
    failed = [
        f"{db}.{name}"
        for db in ("sqlite", "postgres")
        for name, r in (results.get(db) or {}).items()
        if isinstance(r, dict) and r.get("ok") is False
    ]
    if failed:
        print("correctness checks failed: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
