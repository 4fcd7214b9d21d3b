"""How big each scenario is: `quick` (the CI smoke, seconds) and `full` (the figures in
docs/benchmarks.md, minutes). Every loop is bounded by these counts and by a deadline."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    # the destination: every score request waits `latency_ms`, at most `cap` at once
    latency_ms: int
    cap: int
    # latency: new courses x learners x activities, one attempt per key, at `rate` per s
    lat_courses: int
    lat_learners: int
    lat_activities: int
    lat_rate: float
    # throughput: a backlog of courses x learners x activities results
    tp_courses: int
    tp_learners: int
    tp_activities: int
    # the sequential pylti1p3 loops: at most this many results or seconds per run
    base_results: int
    base_seconds: float
    # faults: keys (2 attempts each)
    f_courses: int
    f_learners: int
    f_activities: int
    f_timeout: float
    # scale: resync course and ingestion
    rs_learners: int
    rs_activities: int
    ingest_attempts: int
    ingest_batch: int
    deadline: float  # per scenario, seconds
    # remaster of a SIS passback: results per size (fresh processes each), shape, the SIS
    # connection's concurrency, and a deadline per run (at least N/100 s)
    rm_sizes: tuple[int, ...] = (2_000,)
    rm_activities: int = 10
    rm_learners_per_course: int = 500
    rm_concurrency: int = 32
    rm_timeout: float = 600.0
    # throughput side by side: every client this many times (min / median / max)
    rounds: int = 3
    # many platforms: platform counts (fresh processes each; 10 courses per platform), the
    # courses per platform, the learners per course (one activity) and each platform's
    # concurrency
    pl_counts: tuple[int, ...] = (2,)
    pl_learners: int = 1
    pl_courses: int = 10
    pl_concurrency: int = 4


QUICK = Sizes(
    latency_ms=20,
    cap=8,
    lat_courses=2,
    lat_learners=10,
    lat_activities=2,
    lat_rate=40.0,
    tp_courses=2,
    tp_learners=50,
    tp_activities=2,
    base_results=40,
    base_seconds=5.0,
    f_courses=1,
    f_learners=20,
    f_activities=2,
    f_timeout=120.0,
    rs_learners=30,
    rs_activities=2,
    ingest_attempts=1000,
    ingest_batch=500,
    deadline=180.0,
    rm_sizes=(2_000,),
    rm_timeout=180.0,
)

FULL = Sizes(
    latency_ms=50,
    cap=16,
    lat_courses=10,
    lat_learners=50,
    lat_activities=4,
    lat_rate=100.0,
    tp_courses=5,
    tp_learners=200,
    tp_activities=4,
    base_results=500,
    base_seconds=15.0,
    f_courses=2,
    f_learners=100,
    f_activities=2,
    f_timeout=300.0,
    rs_learners=500,
    rs_activities=10,
    ingest_attempts=20000,
    ingest_batch=1000,
    deadline=900.0,
    rm_sizes=(10_000, 50_000),
    rm_timeout=600.0,
    pl_counts=(10, 100, 1000),
)
