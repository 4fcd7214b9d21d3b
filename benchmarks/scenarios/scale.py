"""Scale, per database: ingestion of attempts in batches through the API (attempts per
second committed: a 202 is only answered after the commit), and a course-wide resync with
nothing changed (it must send nothing; we count the score requests the sandbox received)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks import pressure, stats
from benchmarks.sizes import Sizes
from benchmarks.world import World, add_courses, attempt, chunks, link_everyone, make_courses

INGEST_CLIENTS = 4  # API clients posting at once in the concurrent half


def ingest(world: World, sizes: Sizes, prefix: str = "ing") -> dict[str, Any]:
    """Attempts for learners of a course with no destination link (their results wait for a
    launch), so this measures the API and the database, not delivery: first one client
    posting its batches one after another, then `INGEST_CLIENTS` clients posting at once
    (as courseware with several workers does), each half on a course of its own and with
    its own CPU pressure (the scenario's, beside them, spans both)."""
    one = _ingest(world, sizes, prefix, 1)
    many = _ingest(world, sizes, f"{prefix}c", INGEST_CLIENTS)
    return {"one": one, "concurrent": many, "ok": True}


def _ingest(world: World, sizes: Sizes, prefix: str, clients: int) -> dict[str, Any]:
    learners = max(1, sizes.ingest_attempts // 10)
    courses = make_courses(prefix, 1, learners, 10)
    add_courses(world, courses)
    c = courses[0]
    payloads = [
        attempt(f"{prefix}-{i}", a, p, float(i % 11), 10.0)
        for i, (a, p) in enumerate((a, p) for p in c.learners for a, _ in c.activities)
    ][: sizes.ingest_attempts]
    batches = list(chunks(payloads, sizes.ingest_batch))

    def post(batch: Sequence[dict[str, Any]]) -> float:
        b0 = time.perf_counter()
        out = world.ok("POST", "/attempts/batch", json={"attempts": list(batch)})
        if out["recorded"] != len(batch):
            raise RuntimeError(f"batch recorded {out['recorded']} of {len(batch)}")
        return time.perf_counter() - b0

    window = pressure.Window.start()
    cpu0 = world.gradesync.cpu()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        per_batch = list(pool.map(post, batches))
    elapsed = time.perf_counter() - t0
    cpu = world.gradesync.cpu() - cpu0
    return {
        "clients": clients,
        "attempts": len(payloads),
        "batch_size": sizes.ingest_batch,
        "seconds": round(elapsed, 2),
        "attempts_per_s": round(len(payloads) / elapsed, 1),
        "batch_latency": stats.summary_ms(per_batch),
        "gradesync_cpu_s": round(cpu, 2),
        "cpu_pressure": window.stop(),
    }


def noop_resync(world: World, sizes: Sizes, prefix: str = "rs") -> dict[str, Any]:
    """Deliver a course's results, then resync it: nothing differs, so nothing is sent."""
    courses = make_courses(prefix, 1, sizes.rs_learners, sizes.rs_activities)
    add_courses(world, courses)
    link_everyone(world, courses)
    c = courses[0]
    want = {
        (a, p): float((i * 7) % 11)
        for i, (a, p) in enumerate((a, p) for p in c.learners for a, _ in c.activities)
    }
    payloads = [
        attempt(f"{prefix}-{i}", a, p, s, 10.0) for i, ((a, p), s) in enumerate(want.items())
    ]
    for batch in chunks(payloads, 1000):
        world.ok("POST", "/attempts/batch", json={"attempts": list(batch)})

    def delivered() -> bool:
        got = {(r[1], r[2]): r[3] for r in world.arrivals() if r[0] == c.id}
        return all(got.get(k) == v for k, v in want.items())

    if not stats.wait_until(delivered, timeout=sizes.deadline, interval=0.5):
        return {"results": len(want), "ok": False, "error": "the course never finished delivering"}
    sends0 = world.score_requests()
    items0 = world.admin.counters().get("lineitems", {}).get("requests", 0)
    cpu0 = world.gradesync.cpu()
    t0 = time.perf_counter()
    run = world.run(c.id, "resync", timeout=sizes.deadline)
    wall = time.perf_counter() - t0
    sent = world.score_requests() - sends0
    item_requests = world.admin.counters().get("lineitems", {}).get("requests", 0) - items0
    return {
        "results_in_course": len(want),
        "score_requests_sent": sent,
        "line_item_requests": item_requests,
        "seconds": round(wall, 2),
        "run_outcome": run.get("outcome"),
        "run_counts": run.get("counts"),
        "gradesync_cpu_s": round(world.gradesync.cpu() - cpu0, 2),
        "ok": sent == 0 and run.get("outcome") == "succeeded",
    }
