"""Throughput side by side, in one run, against the same sandbox: gradesync (the throughput
scenario) and the hand-written clients (`benchmarks.fair`: pylti1p3 from N threads, a bare
async client; `benchmarks.baseline`: the sequential pylti1p3 loop), in rounds: each round
runs every client once, one after another, so a noisy minute weighs on all of them.

Per client: each run's steady rate, CPU per 1,000 results and the machine's CPU pressure
during it, and min / median / max over the rounds. gradesync's ratio is taken against the
hand-written client with the best median, round by round (the same minutes), never against
the sequential loop alone."""

from __future__ import annotations

import statistics
import time
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any

from benchmarks import baseline, fair, pressure, stats
from benchmarks.scenarios import throughput
from benchmarks.sizes import Sizes
from benchmarks.world import World

GRADESYNC = "gradesync"
THREADS = "pylti1p3-threads"
BARE = fair.BARE_HTTPX
BARE_AIOHTTP = fair.BARE_AIOHTTP
BARE_UVLOOP = fair.BARE_AIOHTTP_UVLOOP
BARES = (BARE, BARE_AIOHTTP, BARE_UVLOOP)
SEQUENTIAL = "pylti1p3-sequential"  # line item found once per activity
README = "pylti1p3-readme"  # line item looked up before each score, as pylti1p3's README
HAND_WRITTEN = (THREADS, BARE, BARE_AIOHTTP, BARE_UVLOOP, SEQUENTIAL, README)


def _timed(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    window = pressure.Window.start()
    t0 = time.perf_counter()
    try:
        out = fn()
    except Exception as exc:
        traceback.print_exc()
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    out["cpu_pressure"] = window.stop()
    out["scenario_seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _rate_and_cpu(client: str, run: dict[str, Any]) -> tuple[float | None, float | None]:
    if client == GRADESYNC:
        return run.get("steady_rate_per_s"), run.get("gradesync_cpu_s_per_1000")
    if client in (SEQUENTIAL, README):
        return run.get("rate_per_s"), run.get("client_cpu_s_per_1000")
    return run.get("steady_rate_per_s"), run.get("client_cpu_s_per_1000")


def applied(world: World) -> dict[str, Any]:
    """The cap and latency as the sandbox and gradesync hold them (read back, not assumed):
    the score requests' latency and cap in the sandbox, the destination's concurrency in
    gradesync."""
    spec = world.admin.call("GET", "/faults")["faults"]["scores"]["spec"]
    platform = world.ok("GET", f"/platforms/{world.destination_id}")
    return {
        "sandbox_latency_ms": spec.get("latency_ms"),
        "sandbox_cap": spec.get("max_concurrency"),
        "gradesync_concurrency": platform.get("concurrency"),
    }


def run(world: World, sizes: Sizes, *, with_baselines: bool) -> dict[str, Any]:
    settings = applied(world)
    runs: dict[str, list[dict[str, Any]]] = {GRADESYNC: []}
    clients: list[tuple[str, Callable[[int], dict[str, Any]]]] = [
        (GRADESYNC, lambda r: throughput.run(world, sizes, prefix=f"tp{r}")),
    ]
    note = None
    if with_baselines and baseline.available():
        clients += [
            (THREADS, lambda r: fair.pylti1p3_threads(world, sizes, f"ht{r}")),
            (BARE, lambda r: fair.bare_async(world, sizes, f"ha{r}")),
            (BARE_AIOHTTP, lambda r: fair.bare_aiohttp(world, sizes, f"hb{r}")),
            (BARE_UVLOOP, lambda r: fair.bare_aiohttp_uvloop(world, sizes, f"hu{r}")),
            (
                SEQUENTIAL,
                lambda r: baseline.run(
                    world, "cached", sizes.base_results, sizes.base_seconds, f"sc{r}"
                ),
            ),
            (
                README,
                lambda r: baseline.run(
                    world, "readme", sizes.base_results, sizes.base_seconds, f"sr{r}"
                ),
            ),
        ]
    elif with_baselines:
        note = "pylti1p3 not installed (pip install -e .[bench]): baselines not run"
        print("    " + note)
    for r in range(1, sizes.rounds + 1):
        for name, fn in clients:
            print(f"  - round {r}: {name} ...", flush=True)
            out = _timed(partial(fn, r))
            print(
                f"    {_rate_and_cpu(name, out)[0]}/s in {out['scenario_seconds']} s "
                f"(ok={out.get('ok', True)}, CPU pressure "
                f"{out['cpu_pressure'].get('some_share')})",
                flush=True,
            )
            runs.setdefault(name, []).append(out)
    out = summarise(runs, throughput.capacity(sizes), note)
    return {"settings": {**settings, "clients_concurrency": sizes.cap}, **out}


def summarise(
    runs: dict[str, list[dict[str, Any]]], capacity: float, note: str | None
) -> dict[str, Any]:
    per_client: dict[str, Any] = {}
    for name, rs in runs.items():
        rates = [x for x in (_rate_and_cpu(name, r)[0] for r in rs) if x]
        cpus = [x for x in (_rate_and_cpu(name, r)[1] for r in rs) if x]
        shares = [r["some_share"] for r in (x["cpu_pressure"] for x in rs) if "some_share" in r]
        per_client[name] = {
            "steady_rate_per_s": stats.spread(rates),
            "cpu_s_per_1000": stats.spread(cpus),
            "cpu_pressure_some_share": stats.spread(shares),
            "runs": rs,
        }
    best = None
    medians = {
        n: c["steady_rate_per_s"]["median"]
        for n, c in per_client.items()
        if n != GRADESYNC and c["steady_rate_per_s"].get("n")
    }
    if medians:
        best = max(medians, key=lambda n: medians[n])
    out: dict[str, Any] = {
        "rounds": len(runs[GRADESYNC]),
        "capacity_per_s": capacity,
        "clients": per_client,
        "best_hand_written": best,
        "ok": all(r.get("ok", True) is not False for rs in runs.values() for r in rs),
    }
    gs = [_rate_and_cpu(GRADESYNC, r)[0] or 0.0 for r in runs[GRADESYNC]]
    out["gradesync_share_of_capacity"] = stats.spread([round(x / capacity, 3) for x in gs])
    if best is not None:
        theirs = [_rate_and_cpu(best, r)[0] or 0.0 for r in runs[best]]
        out["ratio_vs_best"] = stats.spread(
            [round(a / b, 2) for a, b in zip(gs, theirs, strict=False) if b]
        )
        # delivery CPU against each bare client, and against the one that spends least
        gs_cpu = per_client[GRADESYNC]["cpu_s_per_1000"]
        bare_cpu = {
            n: per_client[n]["cpu_s_per_1000"]["median"]
            for n in BARES
            if per_client.get(n, {}).get("cpu_s_per_1000", {}).get("n")
        }
        if gs_cpu.get("n") and bare_cpu:
            out["cpu_vs_each_bare_client"] = {
                n: round(gs_cpu["median"] / c, 2) for n, c in bare_cpu.items()
            }
            leanest = min(bare_cpu, key=lambda n: bare_cpu[n])
            out["leanest_bare_client"] = leanest
            out["cpu_vs_bare_client"] = round(gs_cpu["median"] / bare_cpu[leanest], 2)
    if note:
        out["baseline_note"] = note
    out["median_round_seconds"] = (
        statistics.median(
            sum(rs[i]["scenario_seconds"] for rs in runs.values() if i < len(rs))
            for i in range(len(runs[GRADESYNC]))
        )
        if runs[GRADESYNC]
        else None
    )
    return out
