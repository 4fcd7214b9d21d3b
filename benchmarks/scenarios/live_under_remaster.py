"""Live grades while a big remaster runs against the same destination.

`gradesync serve` (SQLite) and the sandbox LMS (set latency and concurrency cap, as in the
other scenarios). One course of N results (10 activities x N/10 learners) is seeded in bulk
with SQL (courses, activities, people, enrollments, attempts, the learners' links; its course
link written as its first launch would have written it) and a REMASTER run is requested on it
through the API: every one of its N results is sent again, as rows made pending by a run.
Once the remaster is sending, live grades are posted one by one (`POST /attempts`, open loop,
`live_rate` per second for `live_seconds`) in 10 other courses, each linked by a real launch.

Measured: the live grades' latency (API's 202 -> stored in the LMS gradebook), how many
remaster results the LMS stored during the live window (the remaster is not starved), and
the remaster's own time. Checked: every live grade stored with its score, the remaster
re-sent all N and the LMS holds N results of the course with the expected sum."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, text

from benchmarks import live_steps, load, procs, stats
from benchmarks.world import (
    CLIENT_ID,
    TENANT,
    World,
    add_courses,
    attempt,
    line_items_of,
    link_everyone,
    make_courses,
    start_world,
)
from gradesync.adapters.db import schema
from gradesync.domain.model import CourseLink
from gradesync.testing.processes import stop_workers

BIG = "rmbig"
ACTIVITIES = 10
POINTS = 10.0
ROWS_PER_INSERT = 10_000


def _score(learner: int, activity: int) -> float:
    return float((learner * 7 + activity * 3) % 11)


def _by_window(timed: list[tuple[float, float]], width: float) -> list[dict[str, Any]]:
    """Latency summaries of the grades accepted in each `width`-second window."""
    windows: dict[int, list[float]] = {}
    for at, latency in timed:
        windows.setdefault(int(at // width), []).append(latency)
    return [{"from_s": i * width, **stats.summary_ms(windows[i])} for i in sorted(windows)]


def seed_big_course(world: World, results: int, template_course: str) -> dict[str, Any]:
    """The remastered course on both sides; gradesync's volume through SQL."""
    t0 = time.perf_counter()
    n_learners = results // ACTIVITIES
    people = [f"rm-u{i}" for i in range(n_learners)]
    world.admin.add_course(
        id=BIG,
        title="Remastered course",
        learners=people,
        resource_links=[{"id": f"rl-{BIG}", "title": "gradesync", "client_id": CLIENT_ID}],
    )
    now = datetime.now(UTC)
    dest = world.destination_id
    with world.db.engine.begin() as conn:
        conn.execute(
            insert(schema.courses),
            [
                {
                    "tenant_id": TENANT,
                    "id": BIG,
                    "title": "Remastered course",
                    "time_zone": "UTC",
                    "policy": {},
                    "sync_enabled": True,
                }
            ],
        )
        conn.execute(
            insert(schema.activities),
            [
                {
                    "tenant_id": TENANT,
                    "id": f"{BIG}a{j}",
                    "course_id": BIG,
                    "title": f"Quiz {j}",
                    "points_possible": POINTS,
                    "kind": "graded",
                    "published": True,
                    "sync_enabled": True,
                    "assigned": True,
                    "policy": {},
                }
                for j in range(ACTIVITIES)
            ],
        )
        for start in range(0, n_learners, ROWS_PER_INSERT // ACTIVITIES):
            chunk = range(start, min(n_learners, start + ROWS_PER_INSERT // ACTIVITIES))
            conn.execute(
                insert(schema.people),
                [{"tenant_id": TENANT, "id": people[i], "name": f"Learner {i}"} for i in chunk],
            )
            conn.execute(
                insert(schema.enrollments),
                [
                    {
                        "tenant_id": TENANT,
                        "course_id": BIG,
                        "person_id": people[i],
                        "role": "learner",
                        "status": "active",
                    }
                    for i in chunk
                ],
            )
            conn.execute(
                insert(schema.person_links),
                [
                    {
                        "tenant_id": TENANT,
                        "destination_id": dest,
                        "person_id": people[i],
                        "course_id": "",
                        "remote_id": people[i],
                        "data": {},
                    }
                    for i in chunk
                ],
            )
            conn.execute(
                insert(schema.attempts),
                [
                    {
                        "tenant_id": TENANT,
                        "source_event_id": f"{BIG}a{j}-{people[i]}",
                        "activity_id": f"{BIG}a{j}",
                        "person_id": people[i],
                        "score_given": _score(i, j),
                        "score_maximum": POINTS,
                        "completed": True,
                        "completed_at": now,
                        "late": False,
                        "excused": False,
                        "recorded_at": now,
                    }
                    for i in chunk
                    for j in range(ACTIVITIES)
                ],
            )
    # the course link its first launch would write: another course's, pointed at this one
    with world.db.uow() as uow:
        template = uow.links.course(TENANT, dest, template_course)
        assert template is not None
        remote = template.remote_id.replace(f"/{template_course}/", f"/{BIG}/")
        data = json.loads(json.dumps(template.data).replace(f"/{template_course}/", f"/{BIG}/"))
        uow.links.save_course(CourseLink(TENANT, dest, BIG, remote, data=data))
        uow.commit()
    if world.db.engine.dialect.name == "postgresql":
        # what the SQL above stands for arrived over months, and autovacuum would have
        # analyzed it long since; left to autovacuum now, the live grades' reads of these
        # tables took the wrong index in some runs and not in others, as it came round
        with world.db.engine.begin() as conn:
            conn.execute(
                text("ANALYZE courses, activities, people, enrollments, person_links, attempts")
            )
    expected = sum(_score(i, j) for i in range(n_learners) for j in range(ACTIVITIES))
    return {"seconds": round(time.perf_counter() - t0, 1), "expected_sum": expected}


def _scores_of(world: World, course: str) -> list[list[Any]]:
    r = httpx.get(
        world.sandbox.base_url + "/_bench/arrivals", params={"course": course}, timeout=300.0
    )
    r.raise_for_status()
    return r.json()["rows"]  # type: ignore[no-any-return]


def _run_state(world: World, run_id: str) -> dict[str, Any]:
    return world.ok("GET", f"/runs/{run_id}")  # type: ignore[no-any-return]


def run(
    workdir: Path,
    *,
    remaster_results: int,
    live_rate: float,
    live_seconds: float,
    cap: int,
    latency_ms: int,
    timeout: float,
    postgres_url: str | None = None,
    trace_steps: bool = False,
    workers: int = 0,
) -> dict[str, Any]:
    if remaster_results <= 0 or remaster_results % ACTIVITIES:
        raise ValueError(f"remaster_results: a positive multiple of {ACTIVITIES}")
    if workers and postgres_url is None:
        raise ValueError("workers: `gradesync worker` processes need PostgreSQL")
    if postgres_url is not None:
        from benchmarks import postgres

        why = postgres.fresh_database(postgres_url)
        if why:
            return {"ok": False, "skipped": why}
    group = {"latency_ms": latency_ms, "max_concurrency": cap, "over_capacity": "queue"}
    secret = None
    distributed: dict[str, str] = {}
    if workers:
        # the many-machines way: `serve` answers the API alone, workers do the work
        assert postgres_url is not None
        secret = "bench-" + os.urandom(16).hex()
        workdir.mkdir(parents=True, exist_ok=True)
        procs.upgrade_database(workdir, postgres_url, secret)
        distributed = {"GRADESYNC_WORKER_MODE": "distributed"}
    world = start_world(
        workdir,
        postgres_url,
        concurrency=cap,
        faults={"scores": group, "lineitems": group},
        gradesync_env=distributed,
        secret=secret,
    )
    started_workers: list[subprocess.Popen[bytes]] = []
    try:
        if workers:
            assert postgres_url is not None and secret is not None
            started_workers = procs.start_workers(workdir, postgres_url, secret, workers)
        # live courses, linked by a real launch each; their line items made ahead
        keys_wanted = int(live_rate * live_seconds)
        n_courses, n_activities = 10, 4
        per_course = max(1, -(-keys_wanted // (n_courses * n_activities)))
        live = make_courses("live", n_courses, per_course, n_activities)
        add_courses(world, live)
        link_everyone(world, live)
        columns = n_courses * n_activities
        stats.wait_until(lambda: line_items_of(world, live) == columns, timeout=120.0)
        seeded = seed_big_course(world, remaster_results, live[0].id)
        if trace_steps:
            live_steps.install(world.db.engine)

        t_run = time.perf_counter()
        started = world.ok("POST", f"/courses/{BIG}/sync", json={"trigger": "remaster"})
        run_id = started["id"]

        def sending() -> bool:
            return len(_scores_of(world, BIG)) >= 4 * cap

        stats.wait_until(sending, timeout=timeout, interval=0.5)
        before_live = len(_scores_of(world, BIG))
        waited_for_sending = time.perf_counter() - t_run

        keys = [(c.id, a, p) for c in live for a, _ in c.activities for p in c.learners]
        keys = keys[:keys_wanted]
        scores = {k: float((i * 5) % 11) for i, k in enumerate(keys)}
        payloads = [
            attempt(f"live-{i}", a, p, scores[(c, a, p)], 10.0) for i, (c, a, p) in enumerate(keys)
        ]
        # open loop: enough posting threads that slow answers do not lower the offered load
        posted = load.post_steady(
            str(world.api.base_url),
            world.token,
            payloads,
            live_rate,
            threads=max(8, int(live_rate)),
            deadline=timeout,
        )
        accepted = {
            (x.payload["activity_id"], x.payload["person_id"]): x for x in posted if x.status == 202
        }
        course_of = {(a, p): c for c, a, p in keys}

        def live_rows() -> dict[tuple[str, str], list[Any]]:
            rows: dict[tuple[str, str], list[Any]] = {}
            for c in live:
                rows.update({(r[1], r[2]): r for r in _scores_of(world, c.id)})
            return rows

        def arrived() -> dict[tuple[str, str], list[Any]] | None:
            rows = live_rows()
            done = all(k in rows and rows[k][3] == scores[(course_of[k], *k)] for k in accepted)
            return rows if done else None

        rows = stats.wait_until(arrived, timeout=120.0, interval=0.25) or live_rows()
        during_live = len(_scores_of(world, BIG)) - before_live
        lat = []
        # (seconds into the live window it was accepted, its latency): when the slow ones were
        timed: list[tuple[float, float]] = []
        start = min((x.sent_at for x in posted), default=0.0)
        for k, x in accepted.items():
            row = rows.get(k)
            if row is not None and row[4] is not None:
                lat.append(row[4] - x.accepted_at)
                timed.append((x.accepted_at - start, row[4] - x.accepted_at))
        sent_at = [x.sent_at for x in posted]
        posting_s = (max(sent_at) - min(sent_at)) if len(sent_at) > 1 else 0.0
        live_window = max((x.accepted_at for x in accepted.values()), default=0) - min(
            sent_at, default=0
        )

        steps = None
        if trace_steps:
            steps = live_steps.split(
                world.db.engine,
                {k: x.accepted_at for k, x in accepted.items()},
                {k: row[4] for k, row in rows.items() if row[4] is not None},
            )

        def finished() -> dict[str, Any] | None:
            got = _run_state(world, run_id)
            return got if got["stage"] == "finished" else None

        final = stats.wait_until(finished, timeout=timeout, interval=1.0)
        remaster_seconds = time.perf_counter() - t_run
        big = _scores_of(world, BIG)
        big_sum = sum(float(r[3] or 0) for r in big)
        return {
            "database": "postgresql" if postgres_url else "sqlite",
            # 0: one `gradesync serve` does everything; N: `serve` (API) and N workers
            "workers": workers,
            "workers_alive_at_end": sum(w.poll() is None for w in started_workers),
            "remaster_results": remaster_results,
            "live_rate_per_s": live_rate,
            "live_attempts_posted": len(posted),
            "live_attempts_accepted": len(accepted),
            "live_results_stored": len(lat),
            "live_latency": stats.summary_ms(lat),
            "live_latency_by_10s": _by_window(timed, 10.0),
            **({"live_steps": steps} if steps is not None else {}),
            "live_window_s": round(live_window, 1),
            # the load actually offered: attempts posted per second over the posting
            "live_offered_per_s": round((len(posted) - 1) / posting_s, 1) if posting_s else None,
            "api_ingest_latency": stats.summary_ms([x.accepted_at - x.sent_at for x in posted]),
            "remaster_run_stage_after_live": _run_state(world, run_id)["stage"],
            "remaster_results_stored_before_live": before_live,
            "remaster_results_stored_during_live": during_live,
            "remaster_seconds_until_sending": round(waited_for_sending, 1),
            "remaster_finished": final is not None,
            "remaster_outcome": (final or {}).get("outcome"),
            "remaster_counts": (final or {}).get("counts"),
            "remaster_seconds": round(remaster_seconds, 1) if final is not None else None,
            "remaster_results_in_lms": len(big),
            "seed": seeded,
            "ok": (
                len(lat) == len(accepted) == len(payloads)
                and final is not None
                and len(big) == remaster_results
                and abs(big_sum - seeded["expected_sum"]) < 1e-6
            ),
        }
    finally:
        stop_workers(*started_workers)
        world.close()
