"""End-to-end latency: attempt accepted by the API (202 received) -> result stored in the
sandbox gradebook, under a steady open-loop load, every attempt on its own (activity,
learner) in new courses. Each course is linked by a real launch a moment before the load
starts, and gradesync creates its line items then: the scenario waits (bounded) until they
exist and records how many did, so the first grade of each course and activity is measured
into a column that exists, as it is when learners launch before they are graded."""

from __future__ import annotations

import random
import time
from typing import Any

from benchmarks import load, stats
from benchmarks.sizes import Sizes
from benchmarks.world import (
    World,
    add_courses,
    attempt,
    line_items_of,
    link_everyone,
    make_courses,
)


def run(world: World, sizes: Sizes) -> dict[str, Any]:
    courses = make_courses("lat", sizes.lat_courses, sizes.lat_learners, sizes.lat_activities)
    add_courses(world, courses)
    t_link = time.perf_counter()
    proof = link_everyone(world, courses)
    columns = len(courses) * sizes.lat_activities
    stats.wait_until(lambda: line_items_of(world, courses) == columns, timeout=60.0, interval=0.1)
    proof["line_items_before_first_attempt"] = line_items_of(world, courses)
    proof["seconds_from_first_launch_to_line_items"] = round(time.perf_counter() - t_link, 2)
    rng = random.Random(11)
    keys = [(c.id, a, p) for c in courses for a, _ in c.activities for p in c.learners]
    rng.shuffle(keys)
    scores = {k: float(rng.randint(0, 10)) for k in keys}
    payloads = [
        attempt(f"lat-{i}", a, p, scores[(c, a, p)], 10.0) for i, (c, a, p) in enumerate(keys)
    ]
    course_of = {(a, p): c for c, a, p in keys}
    cpu0 = world.gradesync.cpu()
    posted = load.post_steady(
        str(world.api.base_url), world.token, payloads, sizes.lat_rate, deadline=sizes.deadline
    )
    accepted = {
        (x.payload["activity_id"], x.payload["person_id"]): x for x in posted if x.status == 202
    }

    def arrived() -> dict[tuple[str, str], list[Any]] | None:
        rows = {(r[1], r[2]): r for r in world.arrivals() if r[0].startswith("lat")}
        done = all(k in rows and rows[k][3] == scores[(course_of[k], *k)] for k in accepted)
        return rows if done else None

    rows = stats.wait_until(arrived, timeout=sizes.deadline, interval=0.25)
    if rows is None:
        rows = {(r[1], r[2]): r for r in world.arrivals() if r[0].startswith("lat")}
    cpu = world.gradesync.cpu() - cpu0
    lat, ingest, first_course, first_item = [], [], {}, {}
    for k, x in sorted(accepted.items(), key=lambda kv: kv[1].accepted_at):
        ingest.append(x.accepted_at - x.sent_at)
        row = rows.get(k)
        if row is None or row[4] is None:
            continue
        delay = row[4] - x.accepted_at
        lat.append(delay)
        course = course_of[k]
        first_course.setdefault(course, delay)
        first_item.setdefault(k[0], delay)
    missing = len(accepted) - len(lat)
    return {
        "offered_rate_per_s": sizes.lat_rate,
        "attempts_posted": len(posted),
        "attempts_accepted": len(accepted),
        "results_stored": len(lat),
        "missing": missing,
        "accepted_to_stored": stats.summary_ms(lat),
        "api_ingest_latency": stats.summary_ms(ingest),
        "first_grade_of_new_course": stats.summary_ms(list(first_course.values())),
        "first_grade_of_new_line_item": stats.summary_ms(list(first_item.values())),
        "gradesync_cpu_s": round(cpu, 2),
        "link_proof": proof,
        "ok": missing == 0,
        "measured_at": time.time(),
    }
