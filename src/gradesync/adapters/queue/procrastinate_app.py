"""Distributed workers: procrastinate on PostgreSQL wakes `gradesync worker` processes.

PostgreSQL stays the only piece of infrastructure: procrastinate keeps its jobs in the same
database and wakes workers with LISTEN/NOTIFY. The jobs are only wake-ups and claims; the
work itself is in gradesync's tables, so a lost or failed job loses nothing (every worker
also looks for work on its own every few seconds).

- `gradesync.process_dirty` (deferred by ingest, `wake_keys`): recompute dirty keys; a
  queueing lock keeps at most one waiting.
- `gradesync.deliver` (deferred by a worker with more than it can do, `wake_delivery`):
  another worker's delivery loop joins in; at most one waiting.
- `gradesync.run_sync(run_id)` (deferred by `request_run`, `wake_run`): a lock and a
  queueing lock per run scope, so one run per scope runs and one waits.
- `gradesync.schedules.tick` (periodic, every minute): fires due schedules (scheduled syncs).

"A lock per key keeps order" is the ledger lease: a worker claims a row (SELECT ... FOR
UPDATE SKIP LOCKED) and holds it while it sends, so no two workers send one key at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, LiteralString

import procrastinate
import psycopg
from procrastinate import exceptions as pexc
from procrastinate.connector import Notify
from procrastinate.jobs import Status
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from gradesync.adapters.queue.inprocess import EmbeddedWorker
from gradesync.adapters.queue.scheduler import build_schedule_service, register_periodic_tick
from gradesync.domain.model import RunScope
from gradesync.services.database_lost import OutageNotice, connection_lost, say_failed
from gradesync.services.schedules import ScheduleService

log = logging.getLogger(__name__)

TASK_DIRTY = "gradesync.process_dirty"
TASK_DELIVER = "gradesync.deliver"
TASK_RUN = "gradesync.run_sync"
QUEUE = "gradesync"

# How long procrastinate's worker, once it stops, waits for its jobs before it aborts them. It
# stops on its own whenever it loses the database, and a `run_sync` job lasts as long as its
# run: without a bound the queue would stay stopped (no wake-up served, no schedule ticked,
# no reconnection) until the run ended. The jobs are only wake-ups, so nothing is lost by
# aborting them: a run goes on in the engine (`Engine.execute_run` shields it from its job).
JOB_GRACE = 2.0  # seconds


# procrastinate's tables, types and functions live in their own schema, beside gradesync's
# tables in `public`, so neither set of migrations ever sees the other's objects.
SCHEMA = "procrastinate"


def conninfo(url: str, *, queue_schema: bool = True) -> str:
    """A libpq connection string from a SQLAlchemy URL (`postgresql+psycopg://` or not),
    with procrastinate's schema first on the search path."""
    u = make_url(url)
    if u.get_backend_name() != "postgresql":
        raise ValueError("procrastinate needs PostgreSQL (GRADESYNC_DATABASE_URL=postgresql://...)")
    u = u.set(drivername="postgresql")
    if queue_schema:
        u = u.update_query_dict({"options": f"-csearch_path={SCHEMA}"})
    return u.render_as_string(hide_password=False)


def run_lock(scope: RunScope) -> str:
    return "gradesync-run:" + scope.key


# --- schema --------------------------------------------------------------------------------


def schema_installed(url: str) -> bool:
    import psycopg

    with psycopg.connect(conninfo(url, queue_schema=False)) as conn:
        row = conn.execute(f"SELECT to_regclass('{SCHEMA}.procrastinate_jobs')").fetchone()
        return bool(row and row[0])


def ensure_schema(url: str) -> bool:
    """Apply procrastinate's schema once, in its own PostgreSQL schema. True if applied."""
    import psycopg

    if schema_installed(url):
        return False
    with psycopg.connect(conninfo(url, queue_schema=False), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=conninfo(url)))
    with app.open():
        app.schema_manager.apply_schema()
    log.info("applied procrastinate's schema")
    return True


# --- waking workers from any process -------------------------------------------------------


class ProcrastinateWaker:
    """Defers procrastinate jobs from a background thread: callers (API handlers, the
    engine) never wait on the database, and a burst of wake-ups becomes one job, because a
    queueing lock refuses a second waiting job of the same kind."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        # `timeout`: how long a wake-up waits for a connection (psycopg's default is 30 s)
        self._app = procrastinate.App(
            connector=procrastinate.SyncPsycopgConnector(
                conninfo=conninfo(url), min_size=1, max_size=2, timeout=timeout
            )
        )
        self._cond = threading.Condition()
        self._dirty = False
        self._deliver = False
        self._runs: dict[str, RunScope] = {}
        self._stopping = False
        self._thread: threading.Thread | None = None

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="gradesync-procrastinate-waker", daemon=True
            )
            self._thread.start()

    def wake_keys(self) -> None:
        with self._cond:
            self._dirty = True
            self._start()
            self._cond.notify()

    def wake_delivery(self) -> None:
        with self._cond:
            self._deliver = True
            self._start()
            self._cond.notify()

    def wake_run(self, run_id: str, scope: RunScope) -> None:
        with self._cond:
            self._runs[run_id] = scope
            self._start()
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            self._app.close()
        except pexc.ConnectorException as exc:  # the database is gone: nothing to close
            log.warning("closing the job queue's connections: %s", exc)

    def _defer(self, task: str, lock: str | None, queueing_lock: str, **kwargs: Any) -> None:
        # AlreadyEnqueued: one is already waiting, and it will do this too
        with contextlib.suppress(pexc.AlreadyEnqueued):
            self._app.configure_task(
                task, queue=QUEUE, lock=lock, queueing_lock=queueing_lock
            ).defer(**kwargs)

    def _run(self) -> None:
        opened = False
        # said once an outage: every wake-up meets it meanwhile
        outage = OutageNotice(log, "waking workers", "retrying at the next wake-up")
        while True:
            with self._cond:
                while not (self._stopping or self._dirty or self._deliver or self._runs):
                    self._cond.wait()
                if self._stopping:
                    return
                dirty, deliver, runs = self._dirty, self._deliver, self._runs
                self._dirty, self._deliver, self._runs = False, False, {}
            try:
                if not opened:
                    self._app.open()
                    opened = True
                if dirty:
                    self._defer(TASK_DIRTY, None, TASK_DIRTY)
                if deliver:
                    self._defer(TASK_DELIVER, None, TASK_DELIVER)
                for run_id, scope in runs.items():
                    self._defer(TASK_RUN, run_lock(scope), run_lock(scope), run_id=run_id)
            except Exception as exc:
                # workers look for work on their own every few seconds: late, not lost
                outage.failed(exc, "deferring a procrastinate job")
            else:
                outage.answered()


# --- the worker side -----------------------------------------------------------------------


class DatabaseUnavailable(RuntimeError):
    """The database stayed out of reach for longer than the worker's patience."""


class _WatchedConnector(procrastinate.PsycopgConnector):
    """procrastinate's connector, which also tells `on_lost` the moment one of its queries
    (or its listener) finds the database gone. procrastinate's worker stops then too, but
    ends only once its jobs are let go (JOB_GRACE) and its own last queries have waited out
    their timeouts: the worker says it lost the database when it does, not that much later."""

    def __init__(self, on_lost: Callable[[BaseException], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_lost = on_lost

    @contextlib.contextmanager
    def _watching(self) -> Iterator[None]:
        try:
            yield
        except pexc.ConnectorException as exc:
            if connection_lost(exc):  # a deadlock or a timeout leaves the database there
                self._on_lost(exc)
            raise

    async def execute_query_async(self, query: LiteralString, **arguments: Any) -> None:
        with self._watching():
            await super().execute_query_async(query, **arguments)

    async def execute_query_one_async(
        self, query: LiteralString, **arguments: Any
    ) -> dict[str, Any]:
        with self._watching():
            row: dict[str, Any] = await super().execute_query_one_async(query, **arguments)
        return row

    async def execute_query_all_async(
        self, query: LiteralString, **arguments: Any
    ) -> list[dict[str, Any]]:
        with self._watching():
            rows: list[dict[str, Any]] = await super().execute_query_all_async(query, **arguments)
        return rows

    async def listen_notify(self, on_notification: Notify, channels: Iterable[str]) -> None:
        with self._watching():
            await super().listen_notify(on_notification, channels)


def worker_app(
    url: str,
    worker: Callable[[], EmbeddedWorker],
    on_lost: Callable[[BaseException], None] | None = None,
) -> procrastinate.App:
    """The procrastinate app a `gradesync worker` runs, its tasks bound to the engine worker
    that `worker()` returns (started before any job runs); `on_lost` is told at once when a
    query of the queue finds the database gone."""
    # a connection waited for at most 10 s (not psycopg's 30): when the database is gone, the
    # worker's own shutdown steps each wait that long before it can reconnect or give up
    connector = _WatchedConnector(
        on_lost if on_lost is not None else _ignore, conninfo=conninfo(url), timeout=10
    )
    app = procrastinate.App(connector=connector)

    @app.task(name=TASK_DIRTY, queue=QUEUE)
    async def process_dirty() -> None:
        stats = await worker().engine.process_dirty()
        if stats.due_at:
            worker().waker.deliver.set()

    @app.task(name=TASK_DELIVER, queue=QUEUE)
    async def deliver() -> None:
        # this worker's delivery loop joins in (claims are shared through leases)
        worker().waker.deliver.set()

    @app.task(name=TASK_RUN, queue=QUEUE)
    async def run_sync(run_id: str) -> None:
        try:
            await worker().engine.execute_run(run_id)
        except asyncio.CancelledError:
            # the job queue stops (the database lost, or the worker asked to stop) and lets
            # go of its jobs after JOB_GRACE: the run itself goes on in this worker's engine
            log.info("run %s goes on in this worker; its job is let go", run_id)
            raise

    # scheduled syncs: a once-a-minute tick any worker may take (the tick's compare-and-set
    # fires each due slot once, however many workers tick)
    def schedules() -> ScheduleService:
        engine = worker().engine
        return build_schedule_service(engine.uow_factory, engine.clock, engine.waker)

    register_periodic_tick(app, schedules, queue=QUEUE)
    return app


def _ignore(exc: BaseException) -> None:
    pass


async def retry_stalled_jobs(app: procrastinate.App, seconds_since_heartbeat: float = 30) -> int:
    """Jobs a killed worker left 'doing' would hold their locks for ever: run them again.

    A stalled job whose queueing lock is held by a job already waiting cannot go back to the
    queue (the database refuses a second waiting job with that lock); the waiting job does
    the same work, so the stalled one is ended instead."""
    stalled = list(
        await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=seconds_since_heartbeat)
    )
    retried = 0
    for job in stalled:
        try:
            await app.job_manager.retry_job(job)
            retried += 1
        except pexc.UniqueViolation:
            assert job.id is not None
            await app.job_manager.finish_job_by_id_async(
                job.id, status=Status.ABORTED, delete_job=False
            )
    if stalled:
        log.warning(
            "recovered %d job(s) a stopped worker left behind (%d run again, %d already queued)",
            len(stalled),
            retried,
            len(stalled) - retried,
        )
    return len(stalled)


async def look_for_stalled_jobs(app: procrastinate.App) -> None:
    """`retry_stalled_jobs`, every 30 s while the queue is open: its failure is said, and the
    next look tries again."""
    try:
        await retry_stalled_jobs(app)
    except Exception as exc:
        # the loss ends the queue at once (then it reconnects): one line, no traceback
        say_failed(log, "looking for stalled jobs", exc)


async def run_worker(
    url: str,
    start: Callable[[], Awaitable[EmbeddedWorker]],
    *,
    concurrency: int,
    name: str | None = None,
    stop: asyncio.Event | None = None,
    patience: float = 60.0,
) -> None:
    """Run procrastinate's worker until `stop` is set (SIGINT and SIGTERM set it when the
    caller gives none). The engine worker is started by `start()` once the queue is open and
    what dead workers left behind is recovered, so a worker that cannot start holds nothing.

    Losing the database is said at once, when a query of the queue (or its listener) finds
    it gone, and ends procrastinate's worker, which aborts its jobs still running after
    JOB_GRACE (a run goes on in the engine): it is opened again as soon as the database
    answers, with backoff. After `patience` seconds without the database (counted from the
    loss), DatabaseUnavailable is raised: the process must exit non-zero so a
    supervisor restarts it, never end as if asked to. The caller stops the engine worker."""
    stop = stop if stop is not None else _stop_on_signals()
    engine: EmbeddedWorker | None = None

    def current() -> EmbeddedWorker:
        assert engine is not None, "jobs run only once the engine worker has started"
        return engine

    down_since: float | None = None
    delay = 0.5
    lost = asyncio.Event()

    def on_lost(exc: BaseException) -> None:
        # said here, as a query finds it: procrastinate's worker takes a while to end
        nonlocal down_since
        if down_since is None:
            down_since = time.monotonic()
            log.warning("lost the database (%s); reconnecting", _first_line(exc))
        lost.set()

    while not stop.is_set():
        problem: BaseException | None = None
        served = False
        lost.clear()
        try:
            # a quick look first: opening procrastinate's pool waits 30 s for a database
            await _reachable(url)
            app = worker_app(url, current, on_lost)
            async with app.open_async():
                await retry_stalled_jobs(app)
                if engine is None:
                    engine = await start()
                if down_since is not None:
                    log.warning("the database answers again; the worker goes on")
                down_since, delay = None, 0.5
                served = True
                await _serve(app, engine, concurrency=concurrency, name=name, stop=stop, lost=lost)
        except (pexc.ConnectorException, OSError, psycopg.Error, DBAPIError) as exc:
            problem = exc
        if stop.is_set():
            return
        now = time.monotonic()
        why = _first_line(problem) if problem else "its connection was lost"
        if down_since is None:  # no query said so: the worker ended by itself
            down_since = now
            log.warning("lost the database (%s); reconnecting", why)
        elif not served and now - down_since >= patience:
            # counted from the loss, but given up only once a reconnection failed
            raise DatabaseUnavailable(f"no database for {patience:g} s ({why})")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()
        delay = min(delay * 2, 5.0)


async def _serve(
    app: procrastinate.App,
    engine: EmbeddedWorker,
    *,
    concurrency: int,
    name: str | None,
    stop: asyncio.Event,
    lost: asyncio.Event,
) -> None:
    """procrastinate's worker and the stalled-job keeper, until `stop`, until a query finds
    the database gone (`lost`) or until the worker ends by itself (which means its database
    connection was lost)."""

    async def keep() -> None:
        while True:
            await asyncio.sleep(30)
            await look_for_stalled_jobs(app)

    keeper = asyncio.create_task(keep())
    run = asyncio.create_task(
        app.run_worker_async(
            queues=[QUEUE],
            concurrency=concurrency,
            name=name or engine.engine.worker_id,
            delete_jobs="successful",
            shutdown_graceful_timeout=JOB_GRACE,
            install_signal_handlers=False,
        )
    )
    stopped = asyncio.create_task(stop.wait())
    gone = asyncio.create_task(lost.wait())
    try:
        await asyncio.wait({run, stopped, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (keeper, run, stopped, gone):
            t.cancel()
        results = await asyncio.gather(keeper, run, stopped, gone, return_exceptions=True)
    failure = results[1]
    if isinstance(failure, Exception) and not stop.is_set():
        raise failure


def _first_line(exc: BaseException) -> str:
    """The first words of what went wrong: procrastinate's own errors wrap the driver's."""
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen).strip()
        if text and text != "Database error.":
            return text.splitlines()[0]
        seen = seen.__cause__
    return type(exc).__name__


async def _reachable(url: str) -> None:
    conn = await psycopg.AsyncConnection.connect(conninfo(url), connect_timeout=5)
    await conn.close()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
