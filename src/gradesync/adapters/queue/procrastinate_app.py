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
import threading
from typing import Any

import procrastinate
from procrastinate import exceptions as pexc
from sqlalchemy.engine import make_url

from gradesync.adapters.queue.inprocess import EmbeddedWorker
from gradesync.adapters.queue.scheduler import build_schedule_service, register_periodic_tick
from gradesync.domain.model import RunScope

log = logging.getLogger(__name__)

TASK_DIRTY = "gradesync.process_dirty"
TASK_DELIVER = "gradesync.deliver"
TASK_RUN = "gradesync.run_sync"
QUEUE = "gradesync"


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

    def __init__(self, url: str) -> None:
        self._app = procrastinate.App(
            connector=procrastinate.SyncPsycopgConnector(
                conninfo=conninfo(url), min_size=1, max_size=2
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
        self._app.close()

    def _defer(self, task: str, lock: str | None, queueing_lock: str, **kwargs: Any) -> None:
        # AlreadyEnqueued: one is already waiting, and it will do this too
        with contextlib.suppress(pexc.AlreadyEnqueued):
            self._app.configure_task(
                task, queue=QUEUE, lock=lock, queueing_lock=queueing_lock
            ).defer(**kwargs)

    def _run(self) -> None:
        opened = False
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
            except Exception:
                # workers look for work on their own every few seconds: late, not lost
                log.exception("could not defer a procrastinate job")


# --- the worker side -----------------------------------------------------------------------


def worker_app(url: str, worker: EmbeddedWorker) -> procrastinate.App:
    """The procrastinate app a `gradesync worker` runs, its tasks bound to `worker`."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo(url)))

    @app.task(name=TASK_DIRTY, queue=QUEUE)
    async def process_dirty() -> None:
        stats = await worker.engine.process_dirty()
        if stats.pending:
            worker.waker.deliver.set()

    @app.task(name=TASK_DELIVER, queue=QUEUE)
    async def deliver() -> None:
        # this worker's delivery loop joins in (claims are shared through leases)
        worker.waker.deliver.set()

    @app.task(name=TASK_RUN, queue=QUEUE)
    async def run_sync(run_id: str) -> None:
        await worker.engine.execute_run(run_id)

    # scheduled syncs: a once-a-minute tick any worker may take (the tick's compare-and-set
    # fires each due slot once, however many workers tick)
    engine = worker.engine
    register_periodic_tick(
        app,
        lambda: build_schedule_service(engine.uow_factory, engine.clock, engine.waker),
        queue=QUEUE,
    )
    return app


async def retry_stalled_jobs(app: procrastinate.App, seconds_since_heartbeat: float = 30) -> int:
    """Jobs a killed worker left 'doing' would hold their locks for ever: run them again."""
    stalled = list(
        await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=seconds_since_heartbeat)
    )
    for job in stalled:
        await app.job_manager.retry_job(job)
    if stalled:
        log.warning("retried %d job(s) a stopped worker left behind", len(stalled))
    return len(stalled)


async def run_worker(
    url: str,
    worker: EmbeddedWorker,
    *,
    concurrency: int,
    name: str | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the procrastinate worker beside `worker` (already started: its loops poll on
    their own) until SIGINT/SIGTERM or `stop`. The caller stops `worker` afterwards."""
    app = worker_app(url, worker)
    async with app.open_async():
        await retry_stalled_jobs(app)

        async def maintenance() -> None:
            while True:
                await asyncio.sleep(30)
                try:
                    await retry_stalled_jobs(app)
                except Exception:
                    log.exception("looking for stalled jobs failed")

        keeper = asyncio.create_task(maintenance())
        run = asyncio.create_task(
            app.run_worker_async(
                queues=[QUEUE],
                concurrency=concurrency,
                name=name or worker.engine.worker_id,
                delete_jobs="successful",
                install_signal_handlers=stop is None,
            )
        )
        waiters: set[asyncio.Task[Any]] = {run}
        if stop is not None:
            waiters.add(asyncio.create_task(stop.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            keeper.cancel()
            for t in waiters:
                t.cancel()
            await asyncio.gather(keeper, *waiters, return_exceptions=True)
