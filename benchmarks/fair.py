"""Fair baselines: the best a developer can write by hand against the same destination, in
the same run as gradesync, with the same shape of work as the throughput scenario (new
courses x learners x activities, one result per key).

- `pylti1p3-threads`: pylti1p3's `AssignmentsGradesService` from N threads (N = the
  destination's concurrency cap), one `ServiceConnector` (its token cached, as pylti1p3
  does) over a `requests` session whose pool holds N connections, line items found or
  created once per activity before the sending starts;
- `bare-async`: a bare async httpx client, no database: one token fetched (a signed client
  assertion), line items created once, then the scores POSTed with N requests in flight.
  The practical limit of a Python client: nothing is stored, retried or logged;
- `bare-aiohttp`: the same with aiohttp's `ClientSession` sending the scores (N
  connections): the HTTP library gradesync's own pool is built on, so the CPU gradesync
  spends beyond it is the ledger's, the policy's and the engine's.

As for gradesync, the token and the line items are set up before the measured part, and
the rate is read from the sandbox's arrival times (`stats.steady_rate`). The client's CPU
is the driver process's CPU during the sending (the driver does nothing else meanwhile)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
import jwt

from benchmarks import baseline, stats
from benchmarks.baseline import AGS_SCOPES, _key_pair, _session_class
from benchmarks.sizes import Sizes
from benchmarks.world import CourseSpec, World, make_courses

SCORE_TYPE = "application/vnd.ims.lis.v1.score+json"
LINEITEM_TYPE = "application/vnd.ims.lis.v2.lineitem+json"
BARE_HTTPX = "bare-async"
BARE_AIOHTTP = "bare-aiohttp"
# the same aiohttp client on uvloop, the event loop `gradesync serve` runs on (uvicorn picks
# it when installed): the leanest client a Python programmer would write with these parts
BARE_AIOHTTP_UVLOOP = "bare-aiohttp-uvloop"


def _setup(world: World, sizes: Sizes, prefix: str) -> tuple[str, str, list[CourseSpec]]:
    """A tool of its own registered in the sandbox, and its own courses (same shape as the
    throughput scenario). Returns (client id, private key, courses)."""
    client_id = f"{prefix}-tool"
    private, public = _key_pair()
    world.admin.register_tool(client_id=client_id, deployment_id="b1", public_key=public)
    courses = make_courses(prefix, sizes.tp_courses, sizes.tp_learners, sizes.tp_activities)
    for c in courses:
        world.admin.add_course(id=c.id, title=c.id, learners=c.learners)
    return client_id, private, courses


def _work(courses: list[CourseSpec]) -> list[tuple[str, str, str, float]]:
    """(course, activity, learner, score) for every key, learners interleaved across courses
    and activities as the throughput scenario's backlog is."""
    return [
        (c.id, a, p, float((i + j) % 11))
        for i, p in enumerate(courses[0].learners)
        for c in courses
        for j, (a, _) in enumerate(c.activities)
    ]


def _measured(
    world: World,
    prefix: str,
    expected: int,
    t0: float,
    t_end: float,
    cpu: float,
    errors: int,
    concurrency: int,
) -> dict[str, Any]:
    rows = [r for r in world.arrivals() if str(r[0]).startswith(prefix)]
    stored = sorted(r[4] for r in rows if r[4] is not None)
    n = len(stored)
    steady = stats.steady_rate(stored)
    return {
        "concurrency": concurrency,
        "results": expected,
        "results_stored": n,
        "errors": errors,
        "steady_rate_per_s": round(steady, 1),
        "whole_run_rate_per_s": round(n / (t_end - t0), 1) if t_end > t0 else 0.0,
        "wall_s": round(t_end - t0, 2),
        "client_cpu_s": round(cpu, 2),
        "client_cpu_s_per_1000": round(cpu / max(n, 1) * 1000, 2),
        "ok": n == expected and errors == 0,
    }


# --- pylti1p3 from N threads -------------------------------------------------------------


def pylti1p3_threads(world: World, sizes: Sizes, prefix: str) -> dict[str, Any]:
    from requests.adapters import HTTPAdapter

    n = sizes.cap
    client_id, private, courses = _setup(world, sizes, prefix)
    session = _session_class()()
    pool = HTTPAdapter(pool_connections=n, pool_maxsize=n)  # one connection per thread
    session.mount("http://", pool)
    session.mount("https://", pool)
    services = baseline.ags_services(world, client_id, private, courses, session)
    items = {  # line items found or created once, the token fetched and cached
        (c.id, a): services[c.id].find_or_create_lineitem(baseline.line_item(a, points))
        for c in courses
        for a, points in c.activities
    }
    work = _work(courses)

    def put(job: tuple[str, str, str, float]) -> bool:
        course, activity, person, score = job
        try:
            services[course].put_grade(baseline.grade(score, person), items[(course, activity)])
        except Exception:  # a loop like this one logs and carries on
            return False
        return True

    cpu0, t0 = time.process_time(), time.time()
    with ThreadPoolExecutor(max_workers=n) as threads:
        done = list(threads.map(put, work))
    t_end, cpu = time.time(), time.process_time() - cpu0
    session.close()
    out = _measured(world, prefix, len(work), t0, t_end, cpu, done.count(False), n)
    return {"client": "pylti1p3-threads", **out}


# --- a bare async client -----------------------------------------------------------------


async def _token_and_columns(
    http: httpx.AsyncClient, world: World, client_id: str, private: str, courses: list[CourseSpec]
) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """One access token (a signed client assertion) and every line item, created once:
    (the Authorization header, each (course, activity)'s scores URL)."""
    cfg = world.admin.config()
    base = world.sandbox.base_url
    now = int(time.time())
    assertion = jwt.encode(
        {
            "iss": client_id,
            "sub": client_id,
            "aud": cfg["token_url"],
            "iat": now - 5,
            "exp": now + 60,
            "jti": uuid.uuid4().hex,
        },
        private,
        algorithm="RS256",
    )
    got = await http.post(
        cfg["token_url"],
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            "scope": " ".join(AGS_SCOPES),
        },
    )
    got.raise_for_status()
    auth = {"Authorization": f"Bearer {got.json()['access_token']}"}
    scores_url: dict[tuple[str, str], str] = {}
    for c in courses:
        for a, points in c.activities:
            made = await http.post(
                f"{base}/api/lti/courses/{c.id}/line_items",
                json={"label": f"Activity {a}", "scoreMaximum": points, "resourceId": a, "tag": a},
                headers={**auth, "Content-Type": LINEITEM_TYPE},
            )
            made.raise_for_status()
            scores_url[(c.id, a)] = made.json()["id"] + "/scores"
    return auth, scores_url


# sends one job (course, activity, learner, score); True when the LMS took it
SendOne = Callable[[tuple[str, str, str, float]], Awaitable[bool]]


async def send_all(
    world: World, prefix: str, work: list[tuple[str, str, str, float]], n: int,
    send_one: SendOne, failures: tuple[type[Exception], ...],
) -> dict[str, Any]:  # fmt: skip
    """The measured part: every job sent by n senders; the CPU and time of this alone, and
    the rate from the sandbox's arrival times (`_measured`)."""
    queue: asyncio.Queue[tuple[str, str, str, float]] = asyncio.Queue()
    for job in work:
        queue.put_nowait(job)
    errors = 0

    async def sender() -> None:
        nonlocal errors
        while not queue.empty():
            try:
                if not await send_one(queue.get_nowait()):
                    errors += 1
            except failures:
                errors += 1

    cpu0, t0 = time.process_time(), time.time()
    await asyncio.gather(*(sender() for _ in range(n)))
    t_end, cpu = time.time(), time.process_time() - cpu0
    return _measured(world, prefix, len(work), t0, t_end, cpu, errors, n)


def _score(job: tuple[str, str, str, float]) -> dict[str, Any]:
    _, _, person, score = job
    return {
        "userId": person,
        "scoreGiven": score,
        "scoreMaximum": 10.0,
        "activityProgress": "Completed",
        "gradingProgress": "FullyGraded",
        "timestamp": datetime.now(UTC).isoformat(),
    }


async def _bare(world: World, sizes: Sizes, prefix: str, library: str) -> dict[str, Any]:
    n = sizes.cap
    client_id, private, courses = _setup(world, sizes, prefix)
    work = _work(courses)
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as http:
        auth, scores_url = await _token_and_columns(http, world, client_id, private, courses)
        headers = {**auth, "Content-Type": SCORE_TYPE}
        if library == "httpx":

            async def post_httpx(job: tuple[str, str, str, float]) -> bool:
                url = scores_url[job[:2]]
                r = await http.post(url, json=_score(job), headers=headers)
                return r.status_code < 300

            out = await send_all(world, prefix, work, n, post_httpx, (httpx.HTTPError,))
            return {"client": BARE_HTTPX, **out}
    connector = aiohttp.TCPConnector(limit=n)
    timeout = aiohttp.ClientTimeout(total=30.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def post_aiohttp(job: tuple[str, str, str, float]) -> bool:
            async with session.post(scores_url[job[:2]], json=_score(job), headers=headers) as r:
                await r.read()
                return r.status < 300

        out = await send_all(world, prefix, work, n, post_aiohttp, (aiohttp.ClientError,))
    return {"client": BARE_AIOHTTP, **out}


def _loop_name() -> str:
    loop = asyncio.get_running_loop()
    return f"{type(loop).__module__}.{type(loop).__name__}"


async def _bare_on_loop(world: World, sizes: Sizes, prefix: str, library: str) -> dict[str, Any]:
    out = await _bare(world, sizes, prefix, library)
    return {**out, "event_loop": _loop_name()}


def bare_async(world: World, sizes: Sizes, prefix: str) -> dict[str, Any]:
    return asyncio.run(_bare_on_loop(world, sizes, prefix, "httpx"))


def bare_aiohttp(world: World, sizes: Sizes, prefix: str) -> dict[str, Any]:
    return asyncio.run(_bare_on_loop(world, sizes, prefix, "aiohttp"))


def bare_aiohttp_uvloop(world: World, sizes: Sizes, prefix: str) -> dict[str, Any]:
    import uvloop  # installed with uvicorn[standard], which `serve` runs on

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        out = runner.run(_bare_on_loop(world, sizes, prefix, "aiohttp"))
    return {**out, "client": BARE_AIOHTTP_UVLOOP}
