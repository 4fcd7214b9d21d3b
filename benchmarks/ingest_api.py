"""Ingest through the API on two databases in turn: the same batches posted to a `gradesync
serve` on each, one batch there, then the same batch here, so on a shared machine both meet
the same load (the scenario `ingest` of `python -m benchmarks` runs one database after the
other, and on a busy machine their figures cannot be compared).

    python -m benchmarks.ingest_api postgresql://postgres@127.0.0.1:54329/gs_ingest_api \
        --rounds 3 --out benchmarks/results/ingest-api-in-turn.json

The first database is the PostgreSQL one named (dropped and created again); the second, a
SQLite file in a temporary directory. Each round posts `--batches` batches of 1,000
attempts from one client, then `--clients` clients posting `--batches` batches each at once
(in turn too: all clients' batches to one server, then to the other). Which server takes a
step's batches first alternates from step to step, and from round to round, so neither
always meets the machine just after the other's batch (each half records its order,
`first`: the database that went first at each step). A side's rate is its own batches'
time; `pg_over_sqlite` their ratio; `each_ms` each batch's time in the order posted. Each
round records the machine's CPU pressure. Prints the figures as JSON (a summary on standard
error), and writes them to `--out` when given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks import machine, postgres, pressure, stats
from benchmarks.world import World, add_courses, attempt, chunks, make_courses, start_world


def _batches(world: World, prefix: str, n: int) -> list[Sequence[dict[str, Any]]]:
    """A course of its own in `world` and `n` batches of 1,000 attempts for its learners."""
    courses = make_courses(prefix, 1, 100 * n, 10)
    add_courses(world, courses)
    c = courses[0]
    payloads = [
        attempt(f"{prefix}-{i}", a, p, float(i % 11), 10.0)
        for i, (a, p) in enumerate((a, p) for p in c.learners for a, _ in c.activities)
    ]
    return list(chunks(payloads, 1000))


def _post(world: World, batch: Sequence[dict[str, Any]]) -> None:
    out = world.ok("POST", "/attempts/batch", json={"attempts": list(batch)})
    if out["recorded"] != len(batch):
        raise RuntimeError(f"batch recorded {out['recorded']} of {len(batch)}")


def _side(
    world: World, batches: list[Sequence[dict[str, Any]]], pool: ThreadPoolExecutor
) -> tuple[float, list[float]]:
    """Post `batches` at once through `pool`: the seconds until the last is committed, and
    each batch's own."""

    def post(batch: Sequence[dict[str, Any]]) -> float:
        b0 = time.perf_counter()
        _post(world, batch)
        return time.perf_counter() - b0

    t0 = time.perf_counter()
    each = list(pool.map(post, batches))
    return time.perf_counter() - t0, each


def step_order(names: Sequence[str], step: int) -> list[str]:
    """The databases in the order they take step `step`'s batches: as given on even steps,
    reversed on odd ones, so each goes first as often as the other."""
    return list(names) if step % 2 == 0 else list(reversed(names))


def _round(
    worlds: dict[str, World], n: int, clients: int, tag: str, index: int = 0
) -> dict[str, Any]:
    """Round `index`: its steps alternate which database goes first, starting from the
    other one than the round before (with an odd number of steps each round would otherwise
    start the same way)."""
    out: dict[str, Any] = {}
    for half, width in (("one", 1), ("concurrent", clients)):
        count = n * width
        work = {name: _batches(w, f"{tag}{half[0]}{name[0]}", count) for name, w in worlds.items()}
        spent = dict.fromkeys(worlds, 0.0)
        each: dict[str, list[float]] = {name: [] for name in worlds}
        first: list[str] = []
        cpu0 = {name: w.gradesync.cpu() for name, w in worlds.items()}
        window = pressure.Window.start()
        with ThreadPoolExecutor(width) as pool:
            for step, i in enumerate(range(0, count, width)):  # `width` batches at once
                order = step_order(list(worlds), step + index)
                first.append(order[0])
                for name in order:
                    took, per_batch = _side(worlds[name], work[name][i : i + width], pool)
                    spent[name] += took
                    each[name] += per_batch
        out[half] = {
            name: {
                "attempts": count * 1000,
                "seconds": round(spent[name], 3),
                "attempts_per_s": round(count * 1000 / spent[name], 1),
                "batch_latency": stats.summary_ms(each[name]),
                # in the order posted: which batch of the round a slow one was
                "each_ms": [round(x * 1000, 1) for x in each[name]],
                "serve_cpu_ms_per_batch": round(
                    (worlds[name].gradesync.cpu() - cpu0[name]) * 1000 / count, 1
                ),
            }
            for name in worlds
        }
        out[half]["pg_over_sqlite"] = round(spent["sqlite"] / spent["postgres"], 3)
        out[half]["first"] = first
        out[half]["cpu_pressure"] = window.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ingest_api")
    ap.add_argument("url", help="a PostgreSQL URL (the database is dropped and created again)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", type=int, default=10, help="batches per client per round")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    why = postgres.fresh_database(args.url)
    if why:
        say(why)
        return 1
    with tempfile.TemporaryDirectory(prefix="gs-ingest-api-") as tmp:
        worlds: dict[str, World] = {}
        try:
            worlds["postgres"] = start_world(Path(tmp) / "pg", args.url, concurrency=16)
            worlds["sqlite"] = start_world(Path(tmp) / "sqlite", None, concurrency=16)
            rounds = [
                _round(worlds, args.batches, args.clients, f"r{r}", r) for r in range(args.rounds)
            ]
        finally:
            for w in worlds.values():
                w.close()
    figures = {"machine": machine.describe(), "rounds": rounds}
    for half in ("one", "concurrent"):
        ratios = [r[half]["pg_over_sqlite"] for r in rounds]
        figures[f"{half}_pg_over_sqlite"] = {
            "min": min(ratios),
            "median": statistics.median(ratios),
            "max": max(ratios),
        }
        say(f"{half}: PostgreSQL / SQLite per round {ratios}")
        for r in rounds:
            p, s = r[half]["postgres"], r[half]["sqlite"]
            say(
                f"  postgres {p['attempts_per_s']:>9,.0f}/s ({p['serve_cpu_ms_per_batch']} ms"
                f" serve CPU a batch)  sqlite {s['attempts_per_s']:>9,.0f}/s"
                f" ({s['serve_cpu_ms_per_batch']} ms)"
                f"  slowest batch {p['batch_latency']['max_ms']}"
                f" / {s['batch_latency']['max_ms']} ms"
                f"  CPU pressure {r[half]['cpu_pressure'].get('some_share')}"
            )
    print(json.dumps(figures))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2))
    return 0


def say(line: str) -> None:
    print(line, file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
