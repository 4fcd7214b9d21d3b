"""A destination's limits across worker processes: PostgreSQL, `gradesync serve` (API only,
distributed mode) and three `gradesync worker`, against the sandbox LMS with a concurrency
cap. The destination's `concurrency` is set to the cap and its `rate_per_second` below the
sandbox's capacity, so both limits bind; a backlog of results is sent.

Measured by the sandbox, per score request: how many were open at once as it saw them
(`max_open`, counted on arrival, before its cap makes any wait) and how many arrived while
the cap was full (`queued`); and from its arrival times, the busiest one-second window and
the average rate. Checked: every result stored, `max_open` <= the cap, nothing queued, the
busiest second within the rate plus the one token each worker may hold saved up."""

from __future__ import annotations

import bisect
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from benchmarks import procs, stats
from benchmarks.world import (
    World,
    add_courses,
    attempt,
    line_items_of,
    link_everyone,
    make_courses,
    start_world,
)
from gradesync.adapters.db import schema
from gradesync.testing.processes import stop_workers

WORKERS = 3


def _set_limits(world: World, concurrency: int, rate: float) -> None:
    """The destination's concurrency and rate, set as an admin sets them (the API)."""
    world.ok(
        "PATCH",
        f"/destinations/{world.destination_id}/limits",
        json={"concurrency": concurrency, "rate_per_second": rate},
    )


def _sending_workers(world: World) -> set[str]:
    """Workers whose heartbeat (written about once a second while they send) is fresh."""
    beats = schema.delivery_workers
    since = datetime.now(UTC) - timedelta(seconds=3)
    with world.db.engine.connect() as conn:
        query = select(beats.c.worker_id).where(beats.c.seen_at > since)
        return {str(w) for w in conn.execute(query).scalars()}


def _pending(world: World) -> int:
    ledger = schema.ledger
    with world.db.engine.connect() as conn:
        query = select(func.count()).select_from(ledger).where(ledger.c.state == "pending")
        return int(conn.execute(query).scalar_one())


def busiest_window(times: list[float], window: float) -> int:
    """Most arrivals within any `window` seconds."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)), default=0
    )


def run(
    workdir: Path,
    postgres_url: str,
    *,
    results: int,
    cap: int,
    rate: float,
    latency_ms: int,
    timeout: float,
) -> dict[str, Any]:
    from benchmarks import postgres

    why = postgres.fresh_database(postgres_url)
    if why:
        return {"ok": False, "skipped": why}
    secret = "bench-" + os.urandom(16).hex()
    workdir.mkdir(parents=True, exist_ok=True)
    procs.upgrade_database(workdir, postgres_url, secret)
    group = {"latency_ms": latency_ms, "max_concurrency": cap, "over_capacity": "queue"}
    world = start_world(
        workdir,
        postgres_url,
        concurrency=cap,
        faults={"scores": group, "lineitems": dict(group)},
        gradesync_env={"GRADESYNC_WORKER_MODE": "distributed"},
        secret=secret,
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        n_courses, n_activities = 4, 5
        learners = max(1, results // (n_courses * n_activities))
        courses = make_courses("cap", n_courses, learners, n_activities)
        add_courses(world, courses)
        _set_limits(world, cap, rate)
        workers = procs.start_workers(workdir, postgres_url, secret, WORKERS)
        link_everyone(world, courses)
        columns = n_courses * n_activities
        stats.wait_until(lambda: line_items_of(world, courses) == columns, timeout=120.0)
        payloads = [
            attempt(f"cap-{c.id}-{a}-{p}", a, p, float((i * 7) % 11), 10.0)
            for c in courses
            for a, _ in c.activities
            for i, p in enumerate(c.learners)
        ]
        # a backlog first (held by a pause while it is ingested and computed), so both
        # limits bind from the moment the destination is resumed
        dest_path = f"/destinations/{world.destination_id}"
        world.ok("POST", dest_path + "/pause", json={"reason": "benchmark: backlog first"})
        world.ingest(attempts=payloads)
        stats.wait_until(lambda: _pending(world) >= len(payloads), timeout=timeout)
        world.admin.reset_counters()
        t0 = time.time()
        world.ok("POST", dest_path + "/resume")
        wanted = {(x["activity_id"], x["person_id"]): x["score_given"] for x in payloads}

        senders: set[str] = set()
        at_once = [0]

        def stored() -> list[list[Any]] | None:
            sending = _sending_workers(world)
            senders.update(sending)
            at_once[0] = max(at_once[0], len(sending))
            rows = [r for r in world.arrivals() if r[0].startswith("cap")]
            got = {(r[1], r[2]): r[3] for r in rows}
            return rows if all(got.get(k) == v for k, v in wanted.items()) else None

        rows = stats.wait_until(stored, timeout=timeout, interval=0.5)
        counters = world.admin.counters().get("scores", {})
        arrivals = [r[4] for r in (rows or []) if r[4] is not None and r[4] >= t0]
        span = (max(arrivals) - min(arrivals)) if len(arrivals) > 1 else 0.0
        busiest = busiest_window(arrivals, 1.0)
        alive = [w.poll() is None for w in workers]
        out = {
            "workers": WORKERS,
            "workers_alive_at_end": sum(alive),
            # workers seen sending (their heartbeats, written while they send): in all, and
            # the most at once
            "workers_seen_sending": len(senders),
            "workers_sending_at_once": at_once[0],
            "results": len(payloads),
            "results_stored": len(arrivals) if rows is not None else 0,
            "cap_concurrency": cap,
            "cap_rate_per_s": rate,
            "sandbox_latency_ms": latency_ms,
            "score_requests": counters.get("requests", 0),
            "max_open": counters.get("max_open", 0),
            "max_inflight": counters.get("max_inflight", 0),
            "queued_over_cap": counters.get("queued", 0),
            "busiest_second": busiest,
            "average_rate_per_s": round((len(arrivals) - 1) / span, 1) if span else None,
            "seconds": round(span, 1),
        }
        out["ok"] = (
            rows is not None
            and len(senders) >= 2  # more than one process sent: the limits were shared
            and out["max_open"] <= cap
            and out["queued_over_cap"] == 0
            and busiest <= rate + WORKERS
        )
        return out
    finally:
        stop_workers(*workers)
        world.close()
