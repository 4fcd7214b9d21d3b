"""Remaster of a SIS passback (OneRoster 1.2) at growing sizes, with gradesync's memory.

For each size N (results), in fresh processes:

1. the sandbox SIS starts with its roster (school, term, one class per course, the students,
   a grading category) from a seed file;
2. gradesync's database is seeded **in bulk with SQL** (courses, activities, learners,
   enrollments, one attempt per result, the learners' SIS student mappings), while the SIS
   connection, the class mappings and the "Sync to SIS" ticks go through `services.sis` as an
   admin's commands would. Seeding is not measured;
3. `gradesync serve` starts; a first run (trigger manual, scope: the whole SIS destination)
   delivers all N results, checked in the SIS;
4. the peak-RSS mark of `gradesync serve` is reset (`/proc/<pid>/clear_refs`), and a REMASTER
   run is requested through `services.runs.request_run` (as `gradesync sis post --remaster`
   does, for every course at once). Measured: time to finish, results re-sent (PUTs the SIS
   answered 2xx; must equal N), peak RSS of the server (VmHWM, and VmRSS sampled every
   100 ms) and its CPU time.

Memory is bounded when the remaster's peak does not grow with N; `summary` fits RSS against
N and extrapolates time and memory to 1,000,000 results.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.pool import NullPool

from benchmarks import pressure, procs
from gradesync.adapters.db import schema
from gradesync.adapters.db.database import Database
from gradesync.adapters.db.mapping import bulk_insert
from gradesync.domain.model import RunScope, RunStage, Trigger
from gradesync.services import sis
from gradesync.services.clock import SystemClock
from gradesync.services.runs import request_run
from gradesync.services.tenants import create_tenant
from gradesync.services.wakeup import NullWaker

TENANT = "bench"
DEST = "sis"
CLIENT_ID, CLIENT_SECRET = "gradesync-bench", secrets.token_urlsafe(16)
SCHOOL, TERM, CATEGORY = "sch-bench", "term-bench", "cat-bench"
TERM_START, TERM_END = "2026-01-05", "2026-12-18"
DUE = datetime(2026, 6, 1, 23, 59, tzinfo=UTC)
POINTS = 10.0
ROWS_PER_INSERT = 10_000


@dataclass(frozen=True)
class Shape:
    """N results = courses x learners x activities; learners are distinct per course (each
    course is a SIS class with its own students), so people and mappings grow with N too."""

    results: int
    activities: int
    learners_per_course: int

    @property
    def learners(self) -> int:
        return self.results // self.activities

    def courses(self) -> Iterator[tuple[str, range]]:
        """(course id, the learner numbers in it)."""
        for k, start in enumerate(range(0, self.learners, self.learners_per_course)):
            yield f"rm{k}", range(start, min(start + self.learners_per_course, self.learners))


def shape_for(n: int, activities: int, learners_per_course: int) -> Shape:
    if n <= 0 or n % activities:
        raise ValueError(f"remaster size {n}: a positive multiple of {activities} activities")
    return Shape(n, activities, min(learners_per_course, n // activities))


def score(learner: int, activity: int) -> float:
    return float((learner * 7 + activity * 3) % 11)


def expected_score_sum(shape: Shape) -> float:
    return sum(score(i, j) for i in range(shape.learners) for j in range(shape.activities))


# --- seeding ---------------------------------------------------------------------------------


def sis_seed(shape: Shape) -> dict[str, Any]:
    """The SIS's side: OAuth client, school, term, a class per course with its students."""
    return {
        "sis": {
            "clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}],
            "schools": [SCHOOL],
            "terms": [{"sourcedId": TERM, "start": TERM_START, "end": TERM_END}],
            "classes": [
                {
                    "sourcedId": f"cls-{cid}",
                    "school": SCHOOL,
                    "term": TERM,
                    "students": [f"stu-{i}" for i in learners],
                }
                for cid, learners in shape.courses()
            ],
            "categories": [{"sourcedId": CATEGORY, "title": "Benchmark"}],
        }
    }


def _rows(shape: Shape) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """(table, rows) in foreign-key order, the big tables in slices: every person before
    anything that refers to people."""
    now = datetime.now(UTC)
    courses = list(shape.courses())
    yield (
        schema.courses,
        [
            {
                "tenant_id": TENANT,
                "id": cid,
                "title": f"Course {cid}",
                "time_zone": "UTC",
                "policy": {},
                "sync_enabled": True,
            }
            for cid, _ in courses
        ],
    )
    yield (
        schema.activities,
        [
            {
                "tenant_id": TENANT,
                "id": f"{cid}a{j}",
                "course_id": cid,
                "title": f"Quiz {j}",
                "points_possible": POINTS,
                "kind": "graded",
                "due_at": DUE,
                "category": CATEGORY,
                "published": True,
                "sync_enabled": True,
                "assigned": True,
                "policy": {},
            }
            for cid, _ in courses
            for j in range(shape.activities)
        ],
    )
    for _, learners in courses:
        yield (
            schema.people,
            [{"tenant_id": TENANT, "id": f"p{i}", "name": f"Learner {i}"} for i in learners],
        )
    for cid, learners in courses:
        yield (
            schema.enrollments,
            [
                {
                    "tenant_id": TENANT,
                    "course_id": cid,
                    "person_id": f"p{i}",
                    "role": "learner",
                    "status": "active",
                }
                for i in learners
            ],
        )
        yield (
            schema.person_links,
            [
                {
                    "tenant_id": TENANT,
                    "destination_id": DEST,
                    "person_id": f"p{i}",
                    "course_id": "",
                    "remote_id": f"stu-{i}",
                    "data": {},
                }
                for i in learners
            ],
        )
    for cid, learners in courses:
        attempts = [
            {
                "tenant_id": TENANT,
                "source_event_id": f"{cid}a{j}-p{i}",
                "activity_id": f"{cid}a{j}",
                "person_id": f"p{i}",
                "score_given": score(i, j),
                "score_maximum": POINTS,
                "completed": True,
                "completed_at": now,
                "late": False,
                "excused": False,
                "recorded_at": now,
            }
            for i in learners
            for j in range(shape.activities)
        ]
        for at in range(0, len(attempts), ROWS_PER_INSERT):
            yield schema.attempts, attempts[at : at + ROWS_PER_INSERT]


def seed_gradesync(db: Database, shape: Shape, sis_url: str, concurrency: int) -> dict[str, Any]:
    """The SIS connection, mappings and ticks through the services; the volume through SQL."""
    clock = SystemClock()
    t0 = time.perf_counter()
    create_tenant(db.uow, clock, TENANT, "Benchmark")
    sis.add_connection(
        db.uow,
        clock,
        tenant_id=TENANT,
        destination_id=DEST,
        name="Sandbox SIS",
        base_url=sis_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        profile={"concurrency": concurrency, "category_match": "id"},
    )
    inserted = 0
    with db.engine.connect() as conn:
        analyzed = False
        for table, rows in _rows(shape):
            if table is schema.enrollments and not analyzed:
                # PostgreSQL checks each row's foreign keys against the people and
                # activities just written: planned without their statistics, each check
                # scanned every person (seeding 1,000,000 results took over an hour)
                conn.commit()
                if conn.dialect.name == "postgresql":
                    conn.execute(text("ANALYZE activities, people"))
                analyzed = True
            if rows:
                # on PostgreSQL one statement per slice (its rows as arrays), as ingest writes
                conn.execute(*bulk_insert(conn, table, rows, conflict=None))
                inserted += len(rows)
        conn.commit()
    for cid, _ in shape.courses():
        sis.map_class(
            db.uow,
            tenant_id=TENANT,
            destination_id=DEST,
            course_id=cid,
            class_id=f"cls-{cid}",
            school_id=SCHOOL,
            term_start=TERM_START,
            term_end=TERM_END,
        )
        sis.select_activities(
            db.uow,
            tenant_id=TENANT,
            destination_id=DEST,
            activity_ids=[f"{cid}a{j}" for j in range(shape.activities)],
        )
    return {"rows_inserted": inserted, "seconds": round(time.perf_counter() - t0, 1)}


# --- measuring -------------------------------------------------------------------------------


class RssSampler:
    """VmRSS of a process every `interval` s, in a thread, until stopped."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []  # (seconds since start, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.perf_counter() - self._t0, procs.rss_mb(self.pid)))
            except OSError:
                return
            self._stop.wait(self.interval)  # the sampling period, not synchronisation

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def peak(self) -> float:
        return max((mb for _, mb in self.samples), default=0.0)

    def curve(self, points: int = 12) -> list[list[float]]:
        """The samples thinned to about `points` [seconds, MB] pairs."""
        step = max(1, len(self.samples) // points)
        return [[round(t, 1), round(mb, 1)] for t, mb in self.samples[::step]]


class Progress:
    """One JSON line every `every` s while a phase runs (results the SIS accepted, ledger rows
    open, the server's RSS and CPU, the machine's CPU pressure), so a run stopped before the
    end still tells how far it got and at what rate."""

    def __init__(self, path: Path | None, pid: int | None = None, every: float = 15.0) -> None:
        self.path, self.pid, self.every = path, pid, every
        self._last = 0.0

    def note(self, phase: str, sandbox: procs.Child, left: int | None = None) -> None:
        if self.path is None or time.monotonic() - self._last < self.every:
            return
        self._last = time.monotonic()
        try:
            puts = sis_counts(sandbox)["puts"].get("results", 0)
        except httpx.HTTPError:
            puts = None
        line: dict[str, Any] = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "phase": phase,
            "sis_result_puts": puts,
            "ledger_open": left,
            "cpu_pressure_avg10": (pressure.read() or {}).get("avg10"),
        }
        if self.pid is not None:
            try:
                line["rss_mb"] = round(procs.rss_mb(self.pid), 1)
                line["cpu_s"] = round(procs.cpu_seconds(self.pid), 1)
            except OSError:
                pass
        with self.path.open("a") as f:
            f.write(json.dumps(line) + "\n")

    def event(self, phase: str, **fields: Any) -> None:
        if self.path is None:
            return
        line = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "phase": phase, **fields}
        with self.path.open("a") as f:
            f.write(json.dumps(line, default=str) + "\n")


NO_PROGRESS = Progress(None)


def sis_counts(sandbox: procs.Child) -> dict[str, Any]:
    r = httpx.get(sandbox.base_url + "/_bench/sis", timeout=120.0)
    r.raise_for_status()
    return r.json()  # type: ignore[no-any-return]


def reader(url: str) -> Engine:
    """A plain engine for the driver's polling: gradesync's own engine begins every
    transaction IMMEDIATE (the SQLite write lock), and the driver's reads must never queue
    behind, or hold up, the server's writes."""
    return create_engine(url, poolclass=NullPool)


def read_run(engine: Engine, run_id: str) -> dict[str, Any]:
    runs = schema.sync_runs
    with engine.connect() as conn:
        row = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().one()
    return dict(row)


def run_and_wait(
    db: Database,
    trigger: Trigger,
    timeout: float,
    sandbox: procs.Child | None = None,
    progress: Progress = NO_PROGRESS,
) -> dict[str, Any]:
    """Request a run over the whole SIS destination and wait (bounded) until it finishes."""
    clock = SystemClock()
    t0 = time.perf_counter()
    run, _ = request_run(db.uow, NullWaker(), clock, RunScope(TENANT, DEST), trigger, "bench")
    deadline = time.monotonic() + timeout
    poll = reader(db.url)
    try:
        while True:
            got = read_run(poll, run.id)
            if got["stage"] == RunStage.FINISHED.value:
                break
            if sandbox is not None:
                progress.note(f"{trigger.value}:{got['stage']}", sandbox)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{trigger.value} run {run.id} unfinished after {timeout:g} s")
            time.sleep(0.2)  # polling the run's row; the worker owns the run
    finally:
        poll.dispose()
    wall = time.perf_counter() - t0
    return {
        "run_id": run.id,
        "seconds": round(wall, 2),
        "outcome": got["outcome"],
        "counts": got["counts"],
        "message": got["message"],
        "stage_seconds": _stage_seconds(got["stages"]),
    }


def _stage_seconds(stages: list[dict[str, Any]]) -> dict[str, float]:
    def at(s: dict[str, Any]) -> datetime:
        v = s["at"]
        return v if isinstance(v, datetime) else datetime.fromisoformat(str(v))

    out: dict[str, float] = {}
    for cur, nxt in itertools.pairwise(stages):
        out[str(cur["stage"])] = round((at(nxt) - at(cur)).total_seconds(), 2)
    return out


def database_for(workdir: Path, n: int, postgres_url: str | None) -> str:
    """SQLite file in the size's directory, or a fresh PostgreSQL database per size."""
    if postgres_url is None:
        return f"sqlite:///{workdir / 'gradesync.db'}"
    from sqlalchemy.engine import make_url

    from benchmarks import postgres

    parsed = make_url(postgres_url)
    url = parsed.set(database=f"{parsed.database}_rm{n}").render_as_string(hide_password=False)
    why = postgres.fresh_database(url)
    if why:
        raise RuntimeError(why)
    return url


def open_rows(engine: Engine) -> int:
    """Ledger rows of the SIS destination not delivered yet (pending or retrying)."""
    ledger = schema.ledger
    query = (
        select(func.count())
        .select_from(ledger)
        .where(
            ledger.c.tenant_id == TENANT,
            ledger.c.destination_id == DEST,
            ledger.c.state.in_(("pending", "retrying")),
        )
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def wait_drained(
    db: Database,
    sandbox: procs.Child,
    puts: int,
    timeout: float,
    progress: Progress = NO_PROGRESS,
    phase: str = "drain",
) -> dict[str, Any]:
    """Wait (bounded) until the SIS accepted `puts` result PUTs in all and gradesync's ledger
    holds nothing pending: the work is done, whichever pass of the worker did it."""
    deadline = time.monotonic() + timeout
    poll = reader(db.url)
    try:
        while True:
            counts = sis_counts(sandbox)
            left = open_rows(poll)
            if counts["puts"].get("results", 0) >= puts and left == 0:
                return counts
            progress.note(phase, sandbox, left)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"after {timeout:g} s the SIS accepted {counts['puts'].get('results', 0)} "
                    f"of {puts} result PUTs and {left} ledger rows are still open"
                )
            time.sleep(0.25)  # polling two read-only counters
    finally:
        poll.dispose()


def signal_dump(
    child: procs.Child, signum: int, out: Path, timeout: float, what: str
) -> dict[str, Any]:
    """Send the traced server `signum` and read the JSON it writes to `out` (written by its
    main thread, so polled)."""
    out.unlink(missing_ok=True)
    child.proc.send_signal(signum)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return json.loads(out.read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} in {out} after {timeout:g} s") from None
            time.sleep(0.2)


def trace_dump(child: procs.Child, out: Path, timeout: float = 120.0) -> dict[str, Any]:
    """Ask the traced server for its live Python allocations (SIGUSR1) and read them."""
    return signal_dump(child, signal.SIGUSR1, out, timeout, "tracemalloc dump")


def one_size(
    workdir: Path,
    shape: Shape,
    concurrency: int,
    timeout: float,
    postgres_url: str | None = None,
    *,
    trace_memory: bool = False,
    sqlite_cache_kb: int | None = None,
    progress_file: Path | None = None,
) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    seed_file = workdir / "sis-seed.json"
    seed_file.write_text(json.dumps(sis_seed(shape)))
    url = database_for(workdir, shape.results, postgres_url)
    sandbox = procs.start_sandbox(workdir, seed_file=seed_file)
    secret = secrets.token_urlsafe(32)
    db = Database(url, secret)
    gradesync: procs.Child | None = None
    n = shape.results
    try:
        db.upgrade()
        seeding = seed_gradesync(db, shape, sandbox.base_url, concurrency)
        diag: dict[str, str] = {}
        trace_file = workdir / "tracemalloc.json"
        if trace_memory:
            diag["GRADESYNC_BENCH_TRACEMALLOC"] = str(trace_file)
        if sqlite_cache_kb:
            diag["GRADESYNC_BENCH_SQLITE_CACHE_KB"] = str(sqlite_cache_kb)
        gradesync = procs.start_gradesync(workdir, url, secret, diag)
        pid = gradesync.pid
        traces: dict[str, Any] = {}
        if trace_memory:
            gradesync.proc.send_signal(signal.SIGUSR2)  # start tracing now that it is up
        rss_idle = procs.rss_mb(pid)
        progress = Progress(progress_file, pid)
        progress.event("seeded", results=n, **seeding)

        t0 = time.perf_counter()
        first = run_and_wait(db, Trigger.MANUAL, timeout, sandbox, progress)
        after_first = wait_drained(db, sandbox, n, timeout, progress, "manual:drain")
        first["seconds_until_all_delivered"] = round(time.perf_counter() - t0, 2)
        first["peak_rss_mb"] = round(procs.peak_rss_mb(pid), 1)
        first["results_sent"] = sent_first = after_first["puts"].get("results", 0)
        first["results_accepted_times"] = after_first["results_accepted_times"]
        first["most_accepted"] = after_first["most_accepted"]
        progress.event("first_sync_done", **first)
        if trace_memory:
            traces["after_first_sync"] = trace_dump(gradesync, trace_file)

        reset = procs.reset_peak_rss(pid)
        rss_before = procs.rss_mb(pid)
        cpu0, sb_cpu0 = gradesync.cpu(), sandbox.cpu()
        with RssSampler(pid) as sampler:
            t0 = time.perf_counter()
            remaster = run_and_wait(db, Trigger.REMASTER, timeout, sandbox, progress)
            after = wait_drained(db, sandbox, sent_first + n, timeout, progress, "remaster:drain")
            seconds = time.perf_counter() - t0
            if trace_memory:
                traces["after_remaster"] = trace_dump(gradesync, trace_file)
        resent = after["puts"].get("results", 0) - sent_first
        hwm = procs.peak_rss_mb(pid)
        want_sum = expected_score_sum(shape)
        checks = {
            "first_sync_delivered_all": sent_first == n,
            "resent_equals_n": resent == n,
            "sis_holds_n_results": after["results_stored"] == n,
            "sis_scores_match": abs(after["score_sum"] - want_sum) < 1e-6,
        }
        return {
            "results": n,
            "courses": sum(1 for _ in shape.courses()),
            "learners": shape.learners,
            "activities_per_course": shape.activities,
            "seeding": seeding,
            "rss_idle_mb": round(rss_idle, 1),
            "first_sync": first,
            "remaster": remaster,
            # request -> every result re-sent and nothing left open in the ledger
            "seconds": round(seconds, 2),
            "resent": resent,
            "line_item_puts": after["puts"].get("lineItems", 0),
            # {times: results}: after the remaster each result was accepted twice
            "results_accepted_times": after["results_accepted_times"],
            "most_accepted": after["most_accepted"],
            "rate_per_s": round(resent / seconds, 1) if seconds else None,
            # the run's own verdict: see docs/benchmarks.md (the sending stage stops waiting
            # after retry_patience even while the backlog is being worked through)
            "run_reported_complete": remaster["outcome"] == "succeeded",
            "rss_before_mb": round(rss_before, 1),
            # with the mark reset, VmHWM is the remaster's own peak; else the process's
            "peak_rss_mb": round(hwm if reset else sampler.peak, 1),
            "peak_rss_source": "VmHWM after clear_refs" if reset else "VmRSS sampled",
            "sampled_peak_rss_mb": round(sampler.peak, 1),
            "rss_curve": sampler.curve(),
            "gradesync_cpu_s": round(gradesync.cpu() - cpu0, 2),
            "gradesync_cpu_ms_per_result": round((gradesync.cpu() - cpu0) * 1000 / n, 2),
            "sandbox_cpu_s": round(sandbox.cpu() - sb_cpu0, 2),
            "sqlite_cache_kb_override": sqlite_cache_kb,
            "open_sqlite_connections": _open_db_files(pid, url),
            **({"tracemalloc": traces} if traces else {}),
            "checks": checks,
            "ok": all(checks.values()),
        }
    finally:
        if gradesync is not None:
            gradesync.stop()
        sandbox.stop()
        db.dispose()


def _open_db_files(pid: int, url: str) -> int | None:
    """How many SQLite connections the server holds (open descriptors of the file)."""
    if not url.startswith("sqlite:///"):
        return None
    path = str(Path(url.removeprefix("sqlite:///")).resolve())
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        return sum(1 for fd in fd_dir.iterdir() if os.path.realpath(fd) == path)
    except OSError:
        return None


def summary(per_size: list[dict[str, Any]], target: int = 1_000_000) -> dict[str, Any]:
    """Least-squares line of remaster seconds and peak RSS against N, read at `target`."""
    done = [r for r in per_size if r.get("ok") is not None and r.get("resent")]
    if not done:
        return {}

    def fit(key: str) -> tuple[float, float]:
        xs = [float(r["results"]) for r in done]
        ys = [float(_get(r, key)) for r in done]
        if len(xs) < 2:
            return ys[0] / xs[0], 0.0
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        var = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var
        return slope, my - slope * mx

    t_slope, t_icpt = fit("seconds")
    m_slope, m_icpt = fit("peak_rss_mb")
    smallest, largest = done[0], done[-1]
    return {
        "sizes": [r["results"] for r in done],
        "peak_rss_mb": [r["peak_rss_mb"] for r in done],
        "peak_growth_mb": round(largest["peak_rss_mb"] - smallest["peak_rss_mb"], 1),
        "peak_ratio_largest_vs_smallest": round(
            largest["peak_rss_mb"] / smallest["peak_rss_mb"], 2
        ),
        "rss_mb_per_100k_results": round(m_slope * 100_000, 2),
        "seconds_per_1000": round(t_slope * 1000, 3),
        f"extrapolated_{target}_seconds": round(t_slope * target + t_icpt),
        f"extrapolated_{target}_peak_rss_mb": round(m_slope * target + m_icpt, 1),
    }


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        d = d[part]
    return d


def run(
    workdir: Path,
    sizes: tuple[int, ...],
    activities: int,
    learners_per_course: int,
    concurrency: int,
    timeout: float,
    *,
    postgres_url: str | None = None,
    trace_memory: bool = False,
    sqlite_cache_kb: int | None = None,
    results_dir: Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Each size in turn. With `results_dir`, each size's figures are written there as soon as
    it finishes (`remaster-<db>-<N>.json`) and its progress is appended to
    `remaster-<db>-<N>.progress.jsonl` while it runs; with `resume`, a size whose figures
    are already there and passed is taken from the file instead of being run again, so a long
    series stopped part-way goes on from the first size it did not finish."""
    db_name = "sqlite" if postgres_url is None else "postgres"
    per_size: list[dict[str, Any]] = []
    for n in sizes:
        shape = shape_for(n, activities, learners_per_course)
        done_file = results_dir / f"remaster-{db_name}-{n}.json" if results_dir else None
        if resume and done_file is not None and done_file.exists():
            earlier = json.loads(done_file.read_text())
            if earlier.get("ok"):
                print(f"    remaster N={n:,}: taken from {done_file}", flush=True)
                per_size.append({**earlier, "resumed_from": str(done_file)})
                continue
        print(f"    remaster N={n:,} ...", flush=True)
        progress_file = None
        if results_dir is not None:
            results_dir.mkdir(parents=True, exist_ok=True)
            progress_file = results_dir / f"remaster-{db_name}-{n}.progress.jsonl"
            progress_file.unlink(missing_ok=True)
        window = pressure.Window.start()
        try:
            r = one_size(
                workdir / f"n{n}",
                shape,
                concurrency,
                # a bound per run that grows with N: at least 100 results/s
                max(timeout, n / 100),
                postgres_url,
                trace_memory=trace_memory,
                sqlite_cache_kb=sqlite_cache_kb,
                progress_file=progress_file,
            )
        except (TimeoutError, RuntimeError) as exc:
            # the size is reported as not completed (its progress file says how far it got)
            # and the series goes on
            r = {"results": n, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
            r["cpu_pressure"] = window.stop()
            print(f"    N={n:,}: not completed: {r['error']}", flush=True)
            per_size.append(r)
            continue
        r["cpu_pressure"] = window.stop()
        per_size.append(r)
        if done_file is not None:
            done_file.write_text(json.dumps(r, indent=2, default=str))
        print(
            f"    N={n:,}: first sync {r['first_sync']['seconds_until_all_delivered']} s, "
            f"remaster {r['seconds']} s (run: {r['remaster']['seconds']} s, "
            f"{r['remaster']['outcome']}), resent {r['resent']:,}, peak RSS "
            f"{r['peak_rss_mb']} MB (ok={r['ok']})",
            flush=True,
        )
    return {
        "per_size": per_size,
        "summary": summary(per_size),
        "concurrency": concurrency,
        "ok": all(r["ok"] for r in per_size),
    }
