"""Throughput against the destination's limit: a backlog of results (one per key, new
courses) is ingested through the batch API; we measure the rate at which results are stored
in the sandbox gradebook and gradesync's CPU seconds per 1,000 delivered.

How: one warm-up result per course is delivered first (token, line items: the latency
scenario measures those first grades). The destination is then paused, the backlog ingested
and computed (its CPU reported apart), and the destination resumed: from then on we measure
delivery alone, draining the backlog against the sandbox's limit.

The destination's capacity is its concurrency cap divided by its latency (cap / latency):
no client can store results faster than that. The steady rate is taken between the 10th
and 90th percentile of arrival times, so start-up and the tail do not blur it; the whole
drain's rate is reported too."""

from __future__ import annotations

import random
import time
from typing import Any

from benchmarks import stats
from benchmarks.sizes import Sizes
from benchmarks.world import World, add_courses, attempt, chunks, link_everyone, make_courses


def capacity(sizes: Sizes) -> float:
    return sizes.cap / (sizes.latency_ms / 1000)


def run(world: World, sizes: Sizes, prefix: str = "tp") -> dict[str, Any]:
    courses = make_courses(prefix, sizes.tp_courses, sizes.tp_learners, sizes.tp_activities)
    add_courses(world, courses)
    link_everyone(world, courses)
    rng = random.Random(5)
    expected = {
        (a, p): float(rng.randint(0, 10))
        for c in courses
        for a, _ in c.activities
        for p in c.learners
    }
    keys = list(expected)
    warm = {keys[i * len(keys) // len(courses)] for i in range(len(courses))}
    warm |= {(a, c.learners[0]) for c in courses for a, _ in c.activities}
    world.ok(
        "POST",
        "/attempts/batch",
        json={
            "attempts": [
                attempt(f"{prefix}-w-{a}-{p}", a, p, expected[(a, p)], 10.0) for a, p in warm
            ]
        },
    )

    def warmed() -> bool:
        got = {(r[1], r[2]): r[3] for r in world.arrivals() if r[0].startswith(prefix)}
        return all(got.get(k) == expected[k] for k in warm)

    if not stats.wait_until(warmed, timeout=sizes.deadline, interval=0.2):
        return {"ok": False, "error": "warm-up results never arrived"}
    backlog = {k: v for k, v in expected.items() if k not in warm}
    payloads = [
        attempt(f"{prefix}-{i}", a, p, s, 10.0) for i, ((a, p), s) in enumerate(backlog.items())
    ]
    dest = f"/destinations/{world.destination_id}"
    world.ok("POST", dest + "/pause", json={"reason": "benchmark: building a backlog"})
    sends_at_pause = world.score_requests()
    cpu0 = world.gradesync.cpu()
    t_ingest = time.time()
    for batch in chunks(payloads, 1000):
        world.ok("POST", "/attempts/batch", json={"attempts": list(batch)})
    ingested = time.time()

    def computed() -> bool:
        ledger = world.ok("GET", dest)["ledger"] or {}
        return sum(int(v) for v in ledger.values()) >= len(expected)  # every key computed

    stats.wait_until(computed, timeout=sizes.deadline, interval=0.2)
    t_computed = time.time()
    cpu_ingest = world.gradesync.cpu() - cpu0
    sends_before = world.score_requests()
    sent_while_paused = sends_before - sends_at_pause
    gc0 = world.gc_collections()
    world.gradesync.mark()  # the delivery starts (a diagnosed server's window)
    cpu0, sb_cpu0 = world.gradesync.cpu(), world.sandbox.cpu()
    t0 = time.time()
    world.ok("POST", dest + "/resume")

    def done() -> list[list[Any]] | None:
        # counted while it sends, every row read once all are there: the hand-written
        # clients' runs are not polled either, and a list of every score stored so far
        # (earlier rounds' too) every half second took the sandbox's time from answering
        if world.stored(prefix) < len(expected):
            return None
        rows = [r for r in world.arrivals() if r[0].startswith(prefix) and (r[1], r[2]) in backlog]
        got = {(r[1], r[2]): r[3] for r in rows}
        return rows if all(got.get(k) == v for k, v in backlog.items()) else None

    rows = stats.wait_until(done, timeout=sizes.deadline, interval=0.5)
    t_end = time.time()  # delivery only: from resume to the last result stored
    cpu, sb_cpu = world.gradesync.cpu() - cpu0, world.sandbox.cpu() - sb_cpu0
    world.gradesync.mark()
    gc1 = world.gc_collections()
    if rows is None:
        rows = [r for r in world.arrivals() if r[0].startswith(prefix) and (r[1], r[2]) in backlog]
    stored = sorted(r[4] for r in rows if r[4] is not None)
    n = len(stored)
    cap = capacity(sizes)
    steady = stats.steady_rate(stored)
    whole = n / (stored[-1] - t0) if n else 0.0
    return {
        "results": len(backlog),
        "warm_up_results": len(warm),
        "results_stored": n,
        "score_requests": world.score_requests() - sends_before,
        # a pause should hold every send; a claim batch already in hand still goes out
        "sent_while_paused": sent_while_paused,
        "capacity_per_s": cap,
        "steady_rate_per_s": round(steady, 1),
        "steady_share_of_capacity": round(steady / cap, 3),
        "whole_run_rate_per_s": round(whole, 1),
        "whole_run_share_of_capacity": round(whole / cap, 3),
        "ingest_seconds": round(ingested - t_ingest, 2),
        "ingest_and_compute_seconds": round(t_computed - t_ingest, 2),
        "ingest_and_compute_cpu_s_per_1000": round(cpu_ingest / max(len(backlog), 1) * 1000, 2),
        "first_stored_after_s": round(stored[0] - t0, 3) if n else None,
        "last_stored_after_s": round(stored[-1] - t0, 2) if n else None,
        "gradesync_cpu_s": round(cpu, 2),
        "gradesync_cpu_s_per_1000": round(cpu / max(n, 1) * 1000, 2),
        "sandbox_cpu_s": round(sb_cpu, 2),
        # the garbage collector's collections while it delivered, per generation ("2": full)
        "gc_collections": {g: n - gc0.get(g, 0) for g, n in gc1.items()},
        "wall_s": round(t_end - t0, 2),
        "ok": n == len(backlog),
    }
