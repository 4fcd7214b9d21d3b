"""A class opening the link at once: N learners launch within a few seconds (open loop:
learner i starts at i/N of the window, whatever the answers before), against `gradesync
serve` on SQLite or PostgreSQL and the sandbox LMS.

Each launch is the browser's walk through real LTI 1.3: gradesync's login initiation (302),
the LMS's authorization page (form_post with a signed id_token), the launch POST to
gradesync. Measured per learner by the driver: the whole walk, and gradesync's part (login +
launch), which include the driver's own wait for a CPU. Measured by gradesync itself: its
request duration histogram (`gradesync_http_request_duration_seconds` on /metrics) for the
login and the launch, read before and after the burst: the share of requests answered
within each bucket's bound. The LMS's launch starts (`start_launch`) are made before the
burst. Checked: every launch answered 200 and every learner is linked in gradesync
afterwards."""

from __future__ import annotations

import re
import threading
import time
from html import unescape
from pathlib import Path
from typing import Any

import httpx

from benchmarks import stats
from benchmarks.world import CLIENT_ID, TENANT, CourseSpec, add_courses, start_world

_INPUT = re.compile(r"""<input[^>]*name=["']([^"']+)["'][^>]*value=["']([^"']*)["']""")
_ACTION = re.compile(r"""<form[^>]*action=["']([^"']+)["']""")


def _walk(browser: httpx.Client, url: str) -> dict[str, Any]:
    """One learner's launch; times in seconds."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {"status": None}
    try:
        with browser:
            login = browser.get(url)
            t1 = time.perf_counter()
            if login.status_code != 302:
                out.update(status=login.status_code, error=f"login {login.text[:200]}")
                return out
            page = browser.get(login.headers["location"])
            t2 = time.perf_counter()
            action = _ACTION.search(page.text)
            if page.status_code != 200 or action is None:
                out.update(status=page.status_code, error=f"authorization {page.text[:200]}")
                return out
            fields = {unescape(k): unescape(v) for k, v in _INPUT.findall(page.text)}
            done = browser.post(
                unescape(action.group(1)), data=fields, headers={"Accept": "application/json"}
            )
            t3 = time.perf_counter()
            out.update(
                status=done.status_code,
                total=t3 - t0,
                login=t1 - t0,
                gradesync=(t1 - t0) + (t3 - t2),
                launch_post=t3 - t2,
            )
            if done.status_code != 200:
                out["error"] = done.text[:300]
    except httpx.HTTPError as exc:
        out.update(error=f"{type(exc).__name__}: {exc}")
    return out


_BUCKET = re.compile(
    r'^gradesync_http_request_duration_seconds_bucket\{le="([^"]+)",method="(\w+)",'
    r'route="([^"]+)"\} ([0-9.e+]+)$',
    re.MULTILINE,
)
ROUTES = {"login": ("GET", "/lti/login"), "launch": ("POST", "/lti/launch")}


def _buckets(base_url: str) -> dict[tuple[str, str], dict[str, float]]:
    """gradesync's request duration histogram: {(method, route): {bound: count}}."""
    text = httpx.get(base_url + "/metrics", timeout=60.0).text
    out: dict[tuple[str, str], dict[str, float]] = {}
    for le, method, route, count in _BUCKET.findall(text):
        out.setdefault((method, route), {})[le] = float(count)
    return out


def server_side(
    before: dict[tuple[str, str], dict[str, float]],
    after: dict[tuple[str, str], dict[str, float]],
) -> dict[str, Any]:
    """Per route, the burst's requests (after - before) and the smallest bucket bound that
    holds half of them and 99 % of them (gradesync's own clock, from request to answer)."""
    out: dict[str, Any] = {}
    for name, key in ROUTES.items():
        got = {le: n - before.get(key, {}).get(le, 0.0) for le, n in after.get(key, {}).items()}
        total = got.get("+Inf", 0.0)
        bounds = sorted((float(le), n) for le, n in got.items())
        out[name] = {
            "requests": int(total),
            "p50": _within(bounds, total, 0.5),
            "p99": _within(bounds, total, 0.99),
        }
    return out


def _within(bounds: list[tuple[float, float]], total: float, share: float) -> str | None:
    """The smallest bucket bound holding `share` of the requests (cumulative counts)."""
    for bound, n in bounds:
        if total and n >= share * total:
            return "over 10 s" if bound == float("inf") else f"<= {bound:g} s"
    return None


def run(
    workdir: Path,
    postgres_url: str | None,
    *,
    learners: int,
    within_seconds: float,
) -> dict[str, Any]:
    if postgres_url is not None:
        from benchmarks import postgres

        why = postgres.fresh_database(postgres_url)
        if why:
            return {"ok": False, "skipped": why}
    world = start_world(workdir, postgres_url, concurrency=8)
    try:
        people = [f"burst-u{i}" for i in range(learners)]
        course = CourseSpec("burst", people, [("burst-a1", 10.0)])
        add_courses(world, [course])
        starts = [
            world.admin.start_launch(
                client_id=CLIENT_ID, user=p, course=course.id, resource_link_id="rl-burst"
            )["url"]
            for p in people
        ]
        results: list[dict[str, Any]] = [{} for _ in people]
        # made before the burst: making a client (its TLS context) costs the driver about
        # as much CPU as a launch costs gradesync, and would be timed as gradesync's
        browsers = [httpx.Client(timeout=120.0, follow_redirects=False) for _ in people]
        histogram = _buckets(world.gradesync.base_url)
        begin = time.perf_counter() + 0.5

        def learner(i: int) -> None:
            delay = begin + i * within_seconds / learners - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # the open-loop schedule, not synchronisation
            results[i] = _walk(browsers[i], starts[i])

        threads = [threading.Thread(target=learner, args=(i,)) for i in range(learners)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        spread = time.perf_counter() - begin
        measured_inside = server_side(histogram, _buckets(world.gradesync.base_url))
        ok = [r for r in results if r.get("status") == 200]
        with world.db.uow() as uow:
            linked = sum(
                1 for p in people if uow.links.person(TENANT, world.destination_id, p) is not None
            )
        errors: dict[str, int] = {}
        for r in results:
            if r.get("status") != 200:
                key = f"{r.get('status')}: {str(r.get('error'))[:120]}"
                errors[key] = errors.get(key, 0) + 1
        return {
            "database": "postgresql" if postgres_url else "sqlite",
            "learners": learners,
            "offered_within_s": within_seconds,
            "all_answered_within_s": round(spread, 2),
            "launched_200": len(ok),
            "linked_after": linked,
            "errors": errors,
            "launch_walk": stats.summary_ms([r["total"] for r in ok]),
            "gradesync_part": stats.summary_ms([r["gradesync"] for r in ok]),
            "login_initiation": stats.summary_ms([r["login"] for r in ok]),
            "launch_post": stats.summary_ms([r["launch_post"] for r in ok]),
            "gradesync_histogram": measured_inside,
            "ok": len(ok) == learners and linked == learners,
        }
    finally:
        world.close()
