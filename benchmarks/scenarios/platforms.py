"""A courseware vendor's shape: many LTI 1.3 platforms, each with a few courses, each platform
with its own registration (client id, token) and its own origin (so its own connections in
gradesync's HTTP pool). Memory and throughput as the platforms grow.

For each count P (fresh processes and database each):

1. one sandbox process answers as P LMSs, one per loopback address (`sandbox_host --hosts`):
   issuer, token endpoint and AGS URLs follow the address a request came to. Its courses
   (P x courses per platform, learners each) come from a seed file; gradesync is registered
   as a tool on each platform (client id `tool-<k>`) through the sandbox's admin API;
2. `gradesync serve` starts; each platform is registered in gradesync (`POST /platforms`,
   its own issuer, client id and token URL); courses, activities, people and enrollments go
   in through the API. One real LTI launch (platform 0, its first course) proves the path and
   gives a course link's shape; every other course's and learner's link is written the way a
   launch writes it (launching every learner would benchmark the launch, not the sync);
3. one attempt per (course, learner, activity) is posted (`POST /attempts/batch`) and the
   time until the sandbox stored every score is measured, with gradesync's CPU and RSS, the
   token requests the platforms answered, and the TCP connections gradesync holds open to
   them during the sending and once it has been idle past its keep-alive expiry.

Flat means: RSS after delivering does not grow with P beyond what the data itself needs, a
token is fetched once per platform, and idle connections are closed (bounded by the pool).
"""

from __future__ import annotations

import json
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks import pressure, procs
from benchmarks.sandbox_host import platform_host
from benchmarks.scenarios.remaster import signal_dump, trace_dump
from benchmarks.world import attempt, chunks, real_launch_at
from gradesync.adapters.db.database import Database
from gradesync.domain.model import CourseLink, PersonLink
from gradesync.sandbox.testing import SandboxAdmin
from gradesync.services import auth
from gradesync.services.clock import SystemClock
from gradesync.services.tenants import create_tenant

TENANT = "bench"
DEPLOYMENT = "d1"
MAX_BATCH = 1000
# gradesync's HTTP pool lets a connection idle this long (httpx's default keep-alive expiry)
KEEPALIVE_SECONDS = 5.0


@dataclass(frozen=True)
class Shape:
    platforms: int
    courses: int = 10  # per platform
    learners: int = 2  # per course
    activities: int = 1  # per course

    @property
    def results(self) -> int:
        return self.platforms * self.courses * self.learners * self.activities

    def course_ids(self, k: int) -> list[str]:
        return [f"v{k}c{j}" for j in range(self.courses)]

    def learners_of(self, course_id: str) -> list[str]:
        return [f"{course_id}u{i}" for i in range(self.learners)]

    def activities_of(self, course_id: str) -> list[str]:
        return [f"{course_id}a{j}" for j in range(self.activities)]


def client_id(k: int) -> str:
    return f"tool-{k}"


def dest_id(k: int) -> str:
    return f"lms{k}"


def sandbox_seed(shape: Shape) -> dict[str, Any]:
    return {
        "courses": [
            {
                "id": cid,
                "title": f"Course {cid}",
                "learners": shape.learners_of(cid),
                "resource_links": [
                    {"id": f"rl-{cid}", "title": "gradesync", "client_id": client_id(k)}
                ],
            }
            for k in range(shape.platforms)
            for cid in shape.course_ids(k)
        ]
    }


def tcp_connections_to(pid: int, port: int) -> int:
    """ESTABLISHED TCP connections the process holds to `port` (any loopback address)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = fd.readlink()
        except OSError:
            continue
        name = str(target)
        if name.startswith("socket:["):
            inodes.add(name[8:-1])
    count = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        if state == "01" and inode in inodes and int(remote.split(":")[1], 16) == port:
            count += 1
    return count


def files_open(pid: int, suffix: str) -> int:
    """The process's open files whose path ends with `suffix` (SQLite: one per connection)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += str(fd.readlink()).endswith(suffix)
        except OSError:
            continue
    return count


class Api:
    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=base_url + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=120.0,
        )

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.http.request(method, path, **kw)
        if resp.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:500]}")
        return resp.json() if resp.content else None

    def batches(self, path: str, kind: str, items: list[dict[str, Any]]) -> None:
        for batch in chunks(items, MAX_BATCH):
            self.ok("POST", path, json={kind: list(batch)})


def one_size(
    workdir: Path,
    shape: Shape,
    concurrency: int,
    timeout: float,
    postgres_url: str | None,
    *,
    trace_memory: bool = False,
    malloc_stats: bool = False,
) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    seed_file = workdir / "lms-seed.json"
    seed_file.write_text(json.dumps(sandbox_seed(shape)))
    url = postgres_url or f"sqlite:///{workdir / 'gradesync.db'}"
    secret = secrets.token_urlsafe(32)
    sandbox = procs.start_sandbox(workdir, seed_file=seed_file, hosts=shape.platforms)
    port = int(sandbox.base_url.rsplit(":", 1)[1])
    db = Database(url, secret)
    gradesync: procs.Child | None = None
    admin = SandboxAdmin(sandbox.base_url)
    admin.http.timeout = httpx.Timeout(120.0)
    try:
        db.upgrade()
        trace_file = workdir / "tracemalloc.json"
        malloc_file = workdir / "malloc.json"
        diag = {
            **({"GRADESYNC_BENCH_TRACEMALLOC": str(trace_file)} if trace_memory else {}),
            **({"GRADESYNC_BENCH_MALLOC": str(malloc_file)} if malloc_stats else {}),
        } or None
        gradesync = procs.start_gradesync(workdir, url, secret, diag)
        traces: dict[str, Any] = {}
        malloc: dict[str, Any] = {}
        if trace_memory:
            gradesync.proc.send_signal(signal.SIGUSR2)  # start tracing now that it is up
        clock = SystemClock()
        create_tenant(db.uow, clock, TENANT, "Benchmark")
        token = auth.create_key(db.uow, clock, TENANT, "bench", ("admin",)).token
        api = Api(gradesync.base_url, token)
        rss_idle = procs.rss_mb(gradesync.pid)
        t_setup = time.perf_counter()
        gs = gradesync.base_url
        cfg = admin.config()
        here = f"http://127.0.0.1:{port}"
        for k in range(shape.platforms):
            admin.register_tool(
                client_id=client_id(k),
                deployment_id=DEPLOYMENT,
                jwks_url=gs + "/lti/jwks.json",
                oidc_login_url=gs + "/lti/login",
                redirect_uris=[gs + "/lti/launch"],
                target_link_uri=gs + "/lti/launch",
            )
            there = f"http://{platform_host(k)}:{port}"
            api.ok(
                "POST",
                "/platforms",
                json={
                    "id": dest_id(k),
                    "issuer": there,
                    "client_id": client_id(k),
                    "deployment_ids": [DEPLOYMENT],
                    "auth_login_url": cfg["authorization_url"].replace(here, there),
                    "auth_token_url": cfg["token_url"].replace(here, there),
                    "key_set_url": cfg["jwks_url"].replace(here, there),
                    "concurrency": concurrency,
                },
            )
        all_courses = [(k, cid) for k in range(shape.platforms) for cid in shape.course_ids(k)]
        api.batches(
            "/ingest",
            "courses",
            [{"id": cid, "title": f"Course {cid}"} for _, cid in all_courses],
        )
        api.batches(
            "/ingest",
            "activities",
            [
                {"id": a, "course_id": cid, "title": f"Activity {a}", "points_possible": 10.0}
                for _, cid in all_courses
                for a in shape.activities_of(cid)
            ],
        )
        api.batches(
            "/ingest",
            "people",
            [
                {"id": p, "name": f"Learner {p}"}
                for _, cid in all_courses
                for p in shape.learners_of(cid)
            ],
        )
        api.batches(
            "/ingest",
            "enrollments",
            [
                {"course_id": cid, "person_id": p}
                for _, cid in all_courses
                for p in shape.learners_of(cid)
            ],
        )
        proof = link_all(db, sandbox.base_url, shape, port)
        setup_seconds = time.perf_counter() - t_setup
        if trace_memory:
            traces["after_setup"] = trace_dump(gradesync, trace_file)
        if malloc_stats:
            malloc["after_setup"] = malloc_dump(gradesync, malloc_file)
        rss_before = procs.rss_mb(gradesync.pid)
        threads_before = procs.threads(gradesync.pid)
        procs.reset_peak_rss(gradesync.pid)

        payloads = [
            attempt(f"{cid}-{a}-{p}", a, p, float(i % 11), 10.0)
            for _, cid in all_courses
            for i, p in enumerate(shape.learners_of(cid))
            for a in shape.activities_of(cid)
        ]
        cpu0 = gradesync.cpu()
        window = pressure.Window.start()
        t0 = time.perf_counter()
        api.batches("/attempts/batch", "attempts", payloads)
        ingested = time.perf_counter() - t0
        busiest = threads_most = 0
        deadline = time.monotonic() + timeout
        while True:
            stored = _stored(sandbox.base_url)
            busiest = max(busiest, tcp_connections_to(gradesync.pid, port))
            threads_most = max(threads_most, procs.threads(gradesync.pid))
            if stored >= shape.results:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{shape.platforms} platforms: {stored} of {shape.results} scores stored "
                    f"after {timeout:g} s"
                )
            time.sleep(0.25)  # polling the sandbox's read-only counter
        seconds = time.perf_counter() - t0
        cpu = gradesync.cpu() - cpu0
        under_load = window.stop()
        rss_after = procs.rss_mb(gradesync.pid)
        peak = procs.peak_rss_mb(gradesync.pid)
        threads_after = procs.threads(gradesync.pid)
        # over the whole run (a course's columns are made when it is linked, before the
        # attempts arrive): a token per platform and scope set, never fetched twice
        issued = admin.tokens_issued()["lti"]
        tokens = sum(t["count"] for t in issued)
        holders = {t["client_id"] for t in issued}
        token_answers = {
            k: v for k, v in admin.counters().get("token", {}).items() if k.startswith("status_")
        }
        open_after_send = tcp_connections_to(gradesync.pid, port)
        # idle past the keep-alive expiry (and a margin for the check that closes them)
        time.sleep(KEEPALIVE_SECONDS * 3)  # the idle period being measured
        open_when_idle = tcp_connections_to(gradesync.pid, port)
        threads_idle = procs.threads(gradesync.pid)
        rss_when_idle = procs.rss_mb(gradesync.pid)
        db_files = files_open(gradesync.pid, "gradesync.db") if postgres_url is None else None
        if malloc_stats:
            malloc["when_idle"] = malloc_dump(gradesync, malloc_file)
        if trace_memory:
            traces["after_sending"] = trace_dump(gradesync, trace_file)
        checks = {
            "all_results_stored": True,
            "one_token_per_platform_and_scopes": holders
            == {client_id(k) for k in range(shape.platforms)}
            and all(t["count"] == 1 for t in issued),
            "line_items_once": _line_items(sandbox.base_url) == len(all_courses) * shape.activities,
        }
        return {
            "platforms": shape.platforms,
            "courses": len(all_courses),
            "results": shape.results,
            "setup_seconds": round(setup_seconds, 1),
            "link_proof": proof,
            "ingest_seconds": round(ingested, 2),
            "seconds": round(seconds, 2),
            "rate_per_s": round(shape.results / seconds, 1),
            "gradesync_cpu_s": round(cpu, 2),
            "cpu_ms_per_result": round(cpu * 1000 / shape.results, 2),
            "token_requests": _token_requests(admin),
            "tokens_issued": tokens,
            "tokens_by_client": issued,
            "token_answers": token_answers,
            "rss_idle_mb": round(rss_idle, 1),
            "rss_before_mb": round(rss_before, 1),
            "rss_after_mb": round(rss_after, 1),
            "rss_after_idle_mb": round(rss_when_idle, 1),
            # SQLite: the connections open once idle, each with its own page cache
            "sqlite_connections_idle": db_files,
            "peak_rss_mb": round(peak, 1),
            # before sending / most while sending / right after / after the idle period
            "threads": [threads_before, threads_most, threads_after, threads_idle],
            "connections_max_while_sending": busiest,
            "connections_right_after": open_after_send,
            "connections_idle": open_when_idle,
            "cpu_pressure": under_load,
            **({"tracemalloc": traces} if traces else {}),
            **({"malloc": malloc} if malloc else {}),
            "checks": checks,
            "ok": all(checks.values()),
        }
    finally:
        admin.close()
        if gradesync is not None:
            gradesync.stop()
        sandbox.stop()
        db.dispose()


def malloc_dump(child: procs.Child, out: Path, timeout: float = 60.0) -> dict[str, Any]:
    """Where the server's resident memory is, before and after `malloc_trim(0)`
    (`benchmarks/traced_serve.py`, GRADESYNC_BENCH_MALLOC)."""
    from benchmarks.traced_serve import MALLOC_SIGNAL

    return signal_dump(child, MALLOC_SIGNAL, out, timeout, "malloc figures")


def link_all(db: Database, sandbox_url: str, shape: Shape, port: int) -> dict[str, Any]:
    """One real launch (platform 0, its first course, first learner) links that course; every
    other course and learner is linked the way a launch links them, with the launch's course
    link as the template (its URLs moved to each platform's address and course)."""
    first = shape.course_ids(0)[0]
    first_learner = shape.learners_of(first)[0]
    real_launch_at(sandbox_url, client_id(0), first, first_learner)
    with db.uow() as uow:
        template = uow.links.course(TENANT, dest_id(0), first)
    if template is None or not template.remote_id:
        raise RuntimeError("the real launch did not bind the course's AGS endpoint")
    blob = json.dumps({"remote_id": template.remote_id, "data": template.data})
    here = f"http://127.0.0.1:{port}"
    with db.uow() as uow:
        for k in range(shape.platforms):
            there = f"http://{platform_host(k)}:{port}"
            for cid in shape.course_ids(k):
                if (k, cid) != (0, first):
                    moved = json.loads(blob.replace(f"/{first}/", f"/{cid}/").replace(here, there))
                    uow.links.save_course(
                        CourseLink(TENANT, dest_id(k), cid, moved["remote_id"], moved["data"])
                    )
                for p in shape.learners_of(cid):
                    uow.links.save_person(
                        PersonLink(TENANT, dest_id(k), p, p, data={"name": f"Learner {p}"})
                    )
        uow.commit()
    return {"course_link": template.remote_id, "courses_linked": shape.platforms * shape.courses}


def _stored(sandbox_url: str) -> int:
    r = httpx.get(sandbox_url + "/_bench/stored", timeout=120.0)
    r.raise_for_status()
    return int(r.json()["scores"])


def _line_items(sandbox_url: str) -> int:
    r = httpx.get(sandbox_url + "/_bench/line_items", timeout=120.0)
    r.raise_for_status()
    return sum(len(rows) for rows in r.json().values())


def _token_requests(admin: SandboxAdmin) -> int:
    return int(admin.counters().get("token", {}).get("requests", 0))


def run(
    workdir: Path,
    counts: tuple[int, ...],
    concurrency: int,
    timeout: float,
    *,
    postgres_url: str | None = None,
    learners: int = 2,
    courses: int = 10,
    trace_memory: bool = False,
    malloc_stats: bool = False,
) -> dict[str, Any]:
    per_size = []
    for p in counts:
        print(f"    platforms P={p:,} ...", flush=True)
        shape = Shape(p, courses=courses, learners=learners)
        try:
            r = one_size(
                workdir / f"p{p}",
                shape,
                concurrency,
                max(timeout, shape.results / 20),
                postgres_url,
                trace_memory=trace_memory,
                malloc_stats=malloc_stats,
            )
        except (TimeoutError, RuntimeError, httpx.HTTPError) as exc:
            # reported as not completed; the larger counts still run
            print(f"    P={p:,}: not completed: {exc}", flush=True)
            per_size.append({"platforms": p, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
            continue
        per_size.append(r)
        print(
            f"    P={p:,}: {r['results']:,} results in {r['seconds']} s ({r['rate_per_s']}/s), "
            f"RSS {r['rss_before_mb']} -> {r['rss_after_mb']} MB (peak {r['peak_rss_mb']}, "
            f"idle {r['rss_after_idle_mb']}), "
            f"tokens {r['tokens_issued']}, connections max {r['connections_max_while_sending']}"
            f" / idle {r['connections_idle']}, threads {r['threads']} (ok={r['ok']})",
            flush=True,
        )
    return {
        "per_size": per_size,
        "summary": summary(per_size),
        "ok": all(r["ok"] for r in per_size),
    }


def summary(per_size: list[dict[str, Any]]) -> dict[str, Any]:
    per_size = [r for r in per_size if "error" not in r]
    if len(per_size) < 2:
        return {}
    small, large = per_size[0], per_size[-1]
    extra = large["platforms"] - small["platforms"]
    return {
        "platforms": [r["platforms"] for r in per_size],
        "rss_after_mb": [r["rss_after_mb"] for r in per_size],
        "rate_per_s": [r["rate_per_s"] for r in per_size],
        "cpu_ms_per_result": [r["cpu_ms_per_result"] for r in per_size],
        "rss_kb_per_extra_platform": round(
            (large["rss_after_mb"] - small["rss_after_mb"]) * 1024 / extra, 1
        ),
    }
