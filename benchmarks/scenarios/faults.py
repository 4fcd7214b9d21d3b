"""Faults: the throughput load with 10 % of score and line item requests answered 5xx, 5 %
answered 429 with Retry-After, and 2 % of connections reset. Each key gets two attempts
(the higher counts, in either order), so an older value landing on top would show. The
final gradebook is compared, key by key, with the desired state computed here from the
attempts we sent (highest score), and gradesync's ledger must hold nothing pending or
retrying; the time from the first attempt to that point is reported."""

from __future__ import annotations

import random
import time
from typing import Any

from benchmarks import stats
from benchmarks.sizes import Sizes
from benchmarks.world import World, add_courses, attempt, chunks, link_everyone, make_courses


def fault_config(sizes: Sizes) -> dict[str, Any]:
    group = {
        "latency_ms": sizes.latency_ms,
        "max_concurrency": sizes.cap,
        "error_rate": 0.10,
        "error_status": 503,
        "throttle_rate": 0.05,
        "retry_after": 1,
        "reset_rate": 0.02,
    }
    return {"scores": group, "lineitems": dict(group)}


def run(world: World, sizes: Sizes, prefix: str = "flt") -> dict[str, Any]:
    courses = make_courses(prefix, sizes.f_courses, sizes.f_learners, sizes.f_activities)
    add_courses(world, courses)
    link_everyone(world, courses)
    rng = random.Random(3)
    first, second, desired = [], [], {}
    for c in courses:
        for a, _ in c.activities:
            for p in c.learners:
                x, y = float(rng.randint(0, 10)), float(rng.randint(0, 10))
                first.append(attempt(f"{prefix}-1-{a}-{p}", a, p, x, 10.0))
                second.append(attempt(f"{prefix}-2-{a}-{p}", a, p, y, 10.0))
                desired[(a, p)] = max(x, y)
    counters0 = world.admin.counters()
    t0 = time.time()
    for batch in chunks(first, 500):
        world.ok("POST", "/attempts/batch", json={"attempts": list(batch)})
    for batch in chunks(second, 500):
        world.ok("POST", "/attempts/batch", json={"attempts": list(batch)})

    def converged() -> dict[str, Any] | None:
        got = {(r[1], r[2]): r[3] for r in world.arrivals() if r[0].startswith(prefix)}
        if any(got.get(k) != v for k, v in desired.items()):
            return None
        ledger = world.ok("GET", f"/destinations/{world.destination_id}")["ledger"] or {}
        busy = {k: v for k, v in ledger.items() if k in ("pending", "retrying", "sending") and v}
        return None if busy else {"ledger": ledger}

    state = stats.wait_until(converged, timeout=sizes.f_timeout, interval=0.5)
    t_conv = time.time() - t0
    got = {(r[1], r[2]): r[3] for r in world.arrivals() if r[0].startswith(prefix)}
    wrong = [f"{k}: want {v}, got {got.get(k)}" for k, v in desired.items() if got.get(k) != v]
    items = world.line_items()
    duplicates = sum(
        len(v) - len({i[0] for i in v}) for c, v in items.items() if c.startswith(prefix)
    )
    c1 = world.admin.counters()
    injected = {
        g: {
            k: c1.get(g, {}).get(k, 0) - counters0.get(g, {}).get(k, 0)
            for k in ("requests", "served", "error", "throttle", "reset")
        }
        for g in ("scores", "lineitems")
    }
    ledger = world.ok("GET", f"/destinations/{world.destination_id}")["ledger"]
    return {
        "keys": len(desired),
        "attempts": len(first) + len(second),
        "faults": fault_config(sizes)["scores"],
        "injected": injected,
        "converged": state is not None and not wrong,
        "seconds_to_converge": round(t_conv, 2) if state is not None else None,
        "wrong_keys": wrong[:20],
        "wrong_count": len(wrong),
        "duplicate_line_items": duplicates,
        "ledger": ledger,
        "ok": state is not None and not wrong and duplicates == 0,
    }
