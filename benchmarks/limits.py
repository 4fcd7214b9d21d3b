"""`python -m benchmarks.limits`: the many-workers and fairness figures, on demand.

    python -m benchmarks.limits                       # all three, full size
    python -m benchmarks.limits --only cap            # 3 workers on PostgreSQL vs the cap
    python -m benchmarks.limits --only live --remaster-results 50000
    python -m benchmarks.limits --only burst --db sqlite
    python -m benchmarks.limits --quick               # toy sizes (what the smoke test runs)

Scenarios (docs/benchmarks.md, "Many workers, fairness, launch bursts"):

- `cap`: three `gradesync worker` on PostgreSQL against the sandbox's concurrency cap and a
  rate limit: the most requests the sandbox saw open at once, and per second;
- `live`: latency of live grades at 50 attempts/s while a remaster of N results (default
  200,000) runs against the same destination;
- `burst`: 200 learners launching within a few seconds, on SQLite and PostgreSQL.

Each figure carries the machine's CPU pressure over its run (`cpu_pressure`). Figures go to
`--out` (default `benchmarks/results/limits.json`). The exit status is 1 when a
correctness check failed; timings never fail the run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import machine, postgres
from benchmarks.__main__ import guarded

ALL = ("cap", "live", "burst")


def run(
    only: set[str],
    dbs: list[str],
    workdir: Path,
    *,
    quick: bool,
    remaster_results: int,
    pg_url: str,
    live_timeout: float | None = None,
    trace_steps: bool = False,
    workers: int = 0,
) -> dict[str, Any]:
    from benchmarks.scenarios import launch_burst, live_under_remaster, shared_cap

    out: dict[str, Any] = {"machine": machine.describe(), "started_at": time.time()}
    if "cap" in only:
        out["cap"] = guarded(
            "3 workers on PostgreSQL against the sandbox's cap",
            shared_cap.run,
            workdir / "cap",
            pg_url,
            results=400 if quick else 6000,
            cap=6 if quick else 16,
            rate=60.0 if quick else 100.0,
            latency_ms=20 if quick else 50,
            timeout=300.0 if quick else 900.0,
        )
    if "live" in only:
        out["live"] = {}
        for db in dbs:
            out["live"][db] = guarded(
                f"live grades while a remaster of {remaster_results} results runs ({db})",
                live_under_remaster.run,
                workdir / f"live-{db}",
                remaster_results=remaster_results,
                live_rate=20.0 if quick else 50.0,
                live_seconds=5.0 if quick else 60.0,
                cap=8 if quick else 16,
                latency_ms=20 if quick else 50,
                timeout=live_timeout or (300.0 if quick else max(1800.0, remaster_results / 50)),
                postgres_url=None if db == "sqlite" else pg_url,
                trace_steps=trace_steps,
                workers=0 if db == "sqlite" else workers,
            )
    if "burst" in only:
        out["burst"] = {}
        for db in dbs:
            url = None if db == "sqlite" else pg_url
            out["burst"][db] = guarded(
                f"launch burst ({db})",
                launch_burst.run,
                workdir / f"burst-{db}",
                url,
                learners=20 if quick else 200,
                within_seconds=1.0 if quick else 3.0,
            )
    return out


def failed_checks(figures: dict[str, Any]) -> list[str]:
    bad = [k for k in ("cap",) if k in figures and not figures[k].get("ok")]
    for scenario in ("live", "burst"):
        per_db = figures.get(scenario, {})
        bad += [f"{scenario}/{db}" for db, f in per_db.items() if not f.get("ok")]
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.limits")
    parser.add_argument("--only", default=",".join(ALL), help=f"any of {', '.join(ALL)}")
    parser.add_argument("--db", default="sqlite,postgres", help="live, burst: sqlite,postgres")
    parser.add_argument("--quick", action="store_true", help="toy sizes (the smoke test)")
    parser.add_argument(
        "--remaster-results", type=int, default=None, help="live: the remaster's size"
    )
    parser.add_argument(
        "--live-timeout", type=float, default=None, help="live: seconds to wait for the remaster"
    )
    parser.add_argument(
        "--trace-steps",
        action="store_true",
        help="live: split each live grade's latency into steps (a trigger on the ledger: "
        "for diagnosis, not the headline figures)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="live, PostgreSQL: run `serve` in distributed mode (API only) with this many "
        "`gradesync worker` processes (default 0: one `serve` does everything)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/limits.json"))
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(ALL)
    if unknown:
        parser.error(f"--only: unknown scenario(s) {sorted(unknown)}; choose from {ALL}")
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    remaster = args.remaster_results or (400 if args.quick else 200_000)
    workdir = Path(tempfile.mkdtemp(prefix="gradesync-limits-"))
    try:
        figures = run(
            only,
            dbs,
            workdir,
            quick=args.quick,
            remaster_results=remaster,
            pg_url=postgres.bench_url(),
            live_timeout=args.live_timeout,
            trace_steps=args.trace_steps,
            workers=args.workers,
        )
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2, default=str))
    print(json.dumps(figures, indent=2, default=str)[:6000])
    bad = failed_checks(figures)
    if bad:
        print(f"correctness checks failed: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
