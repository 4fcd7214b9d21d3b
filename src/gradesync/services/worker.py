"""The engine: what a worker does, whichever way it is woken.

`Engine` ties computing, delivery and runs together for one worker process:

- `process_dirty()`: recompute every dirty key (auto sync), batch after batch, timed keys
  (past-due zeros) included once their time comes;
- `deliver_due()`: deliver every due row (oldest due first);
- `start_queued_runs()`: start queued runs whose scope is free, each in its own task;
- `execute_run(run_id)`: claim and run one run now (the procrastinate task does this);
- `recover()`: on start, requeue runs whose worker died (and, for the only worker of an
  embedded database, drop leases a killed process left behind).

The in-process worker (`adapters/queue/inprocess.py`) and the procrastinate worker
(`adapters/queue/procrastinate_app.py`) both drive this same object.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from gradesync.domain.model import LedgerRow, RunStage, SyncRun, Trigger
from gradesync.services import log_context, roster
from gradesync.services.clock import Clock
from gradesync.services.compute import ComputeStats, compute_dirty
from gradesync.services.database_lost import OutageNotice, say_failed
from gradesync.services.delivery import Clients, Deliverer, DeliveryScope, DeliveryStats
from gradesync.services.destination import DestinationFactory
from gradesync.services.destination_signals import DestinationSignals
from gradesync.services.engine_config import EngineSettings
from gradesync.services.ledger_statistics import LedgerStatistics
from gradesync.services.live_traffic import LiveTraffic
from gradesync.services.ports import UnitOfWorkFactory
from gradesync.services.roster import ReaderFactory
from gradesync.services.sync import RunExecutor
from gradesync.services.telemetry import NULL_METER, Meter
from gradesync.services.wakeup import Waker

log = logging.getLogger(__name__)

T = TypeVar("T")


def new_worker_id(name: str | None = None) -> str:
    """This worker's id in leases and run records: `name@host:pid:random` with a name
    (`gradesync worker --name`), else `host:pid:random`. The host, pid and random part keep
    two processes apart even when given one name (containers are often all pid 1): a lease
    names its holder, and one worker must never settle another's."""
    where = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    return f"{name}@{where}" if name else where


async def _to_thread_to_its_end(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`asyncio.to_thread`, except that cancelled meanwhile it returns only once the thread
    has ended (a thread cannot be stopped), then raises the cancellation: a lock held around
    it is let go when the work is really done, not while it still runs."""
    work = asyncio.ensure_future(asyncio.to_thread(func, *args, **kwargs))
    cancelled = False
    while not work.done():
        try:
            await asyncio.wait([work])
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not work.cancelled():
            work.exception()  # retrieved: this caller reports its cancellation instead
        raise asyncio.CancelledError
    return work.result()


def _say_failure(task: asyncio.Task[Any]) -> None:
    """A task no one awaits says how it failed (not "Task exception was never retrieved")."""
    if task.cancelled() or task.exception() is None:
        return
    log.warning("%s failed: %s", task.get_name(), task.exception())


class Engine:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        factory: DestinationFactory,
        settings: EngineSettings | None = None,
        *,
        waker: Waker | None = None,
        worker_id: str | None = None,
        meter: Meter = NULL_METER,
        roster: ReaderFactory | None = None,
        signals: DestinationSignals | None = None,
        bulk: UnitOfWorkFactory | None = None,
        reads: UnitOfWorkFactory | None = None,
        live: LiveTraffic | None = None,
    ) -> None:
        self.uow_factory = uow_factory
        # reads the LMS rosters (NRPS) of a run's scope before the run computes
        self.roster = roster
        self.clock = clock
        self.settings = settings or EngineSettings()
        self.worker_id = worker_id or new_worker_id()
        self.clients = Clients(factory)
        self.waker = waker
        self.meter = meter
        self._listeners: list[Callable[[list[LedgerRow]], None]] = []
        self.deliverer = Deliverer(
            uow_factory,
            clock,
            self.clients,
            self.settings,
            self.worker_id,
            waker=waker,
            on_written=self._written,
            meter=meter,
            signals=signals,
        )
        # how many ledger rows this process has written, to keep the planner informed
        self.statistics = LedgerStatistics(bulk or uow_factory)
        # live grades computed here: runs' computing makes way
        self.live = live or LiveTraffic()
        self.executor = RunExecutor(
            uow_factory,
            clock,
            self.clients,
            self.deliverer,
            self.settings,
            self.worker_id,
            bulk=bulk,
            reads=reads,
            statistics=self.statistics,
            live=self.live,
        )
        self._runs: dict[str, asyncio.Task[SyncRun | None]] = {}
        self._finished: dict[str, asyncio.Future[SyncRun]] = {}
        self._dirty_lock = asyncio.Lock()
        # how a pass whose caller was let go failed: no one else hears it
        self._computing = OutageNotice(
            log, "computing", "the dirty keys stay marked for the next pass"
        )
        self._passes: set[asyncio.Task[ComputeStats]] = set()
        self._ahead: set[asyncio.Task[int]] = set()
        self._refreshing: set[asyncio.Task[None]] = set()

    # -- observing (tests, metrics) ---------------------------------------------------------

    def on_written(self, listener: Callable[[list[LedgerRow]], None]) -> None:
        """Call `listener` with the ledger rows each settle batch wrote."""
        self._listeners.append(listener)

    def _written(self, rows: list[LedgerRow]) -> None:
        for listener in self._listeners:
            listener(rows)

    def run_finished(self, run_id: str) -> asyncio.Future[SyncRun]:
        """Resolves when this engine finishes the run."""
        fut = self._finished.get(run_id)
        if fut is None:
            fut = self._finished[run_id] = asyncio.get_running_loop().create_future()
        return fut

    # -- work -------------------------------------------------------------------------------

    def _fire_timers(self) -> int:
        with self.uow_factory() as uow:
            now = self.clock.now()
            at = uow.dirty.next_due_at()
            if at is None or at > now:
                return 0  # a read only: no write transaction on every look
            fired = uow.dirty.fire_due(now)
            uow.commit()
            return fired

    async def next_timer_in(self) -> float | None:
        """Seconds until the next timed key falls due (None: no timers)."""

        def query() -> datetime | None:
            with self.uow_factory() as uow:
                return uow.dirty.next_due_at()

        at = await asyncio.to_thread(query)
        if at is None:
            return None
        return max(0.0, (at - self.clock.now()).total_seconds())

    async def process_dirty(self) -> ComputeStats:
        """Recompute every dirty key, batch after batch, in a pass of its own task, shielded
        from the caller: a caller cancelled meanwhile (a job the queue lets go of when it
        loses the database, a loop that stops) returns at once, and the pass goes on to its
        real end, the compute lock held until then, so no second pass starts beside a batch
        still computing in its thread. An aborted pass (the database gone) ends, and lets go
        of the lock, once its batch's thread has; `aclose` ends a pass still running."""
        task = asyncio.create_task(self._process_dirty(), name="gradesync-compute-pass")
        self._passes.add(task)
        task.add_done_callback(self._passes.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():  # no one else hears how the pass ends
                task.add_done_callback(self._say_pass_failure)
            raise

    def _say_pass_failure(self, task: asyncio.Task[ComputeStats]) -> None:
        """An outage once (its end once, when a pass goes through), a bug with its traceback."""
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._computing.failed(exc)

    async def _process_dirty(self) -> ComputeStats:
        total = ComputeStats()
        async with self._dirty_lock:  # one computing pass per process is enough
            await _to_thread_to_its_end(self._fire_timers)
            while True:
                stats = await _to_thread_to_its_end(
                    compute_dirty,
                    self.uow_factory,
                    self.clock,
                    self.clients.capabilities,
                    limit=self.settings.compute_batch,
                    retry=self.settings.set_aside_retry,
                )
                total.add(stats)
                if stats.dirty:
                    self.live.computed()
                if stats.due_at:
                    # computed from new facts (or due already, and held from a claim by the
                    # computation's lock): live grades, claimed at once
                    self.deliverer.note_due(live=True, where=stats.due_at)
                if stats.new_columns or stats.stale_columns:
                    self._create_columns_ahead(stats.new_columns, stats.stale_columns)
                if self.statistics.due_after(stats.changed):
                    self._refresh_statistics()
                if stats.dirty < self.settings.compute_batch or stats.kept >= stats.dirty:
                    # none left, or only keys that cannot even be set aside: not taken
                    # again at once (they would be again and again), but when their timer
                    # falls due (`next_timer_in`) or something wakes the worker before
                    self._computing.answered()
                    return total

    def _create_columns_ahead(
        self,
        columns: set[tuple[str, str, str, str]],
        stale: dict[tuple[str, str, str, str], str],
    ) -> None:
        """Columns known before their first grade are created, and columns whose details
        changed with no grade to send are rewritten, meanwhile, not awaited: the next batch
        is computed while the destination answers."""
        task = asyncio.create_task(
            self.deliverer.provisioner.create_ahead(self.clients, columns, stale),
            name="gradesync-columns-ahead",
        )
        self._ahead.add(task)
        task.add_done_callback(self._ahead.discard)
        task.add_done_callback(_say_failure)

    def _refresh_statistics(self) -> None:
        """Meanwhile, not awaited: live grades' next batch does not wait for it."""
        task = asyncio.create_task(
            asyncio.to_thread(self.statistics.refresh), name="gradesync-ledger-statistics"
        )
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)
        task.add_done_callback(_say_failure)

    async def statistics_refreshed(self) -> None:
        """Returns once the refreshes computing started so far are done."""
        while self._refreshing:
            await asyncio.gather(*list(self._refreshing), return_exceptions=True)

    async def columns_ahead_done(self) -> None:
        """Returns once the columns computing asked for so far are created (or given up)."""
        while self._ahead:
            await asyncio.gather(*list(self._ahead), return_exceptions=True)

    async def deliver_due(self, scope: DeliveryScope | None = None) -> DeliveryStats:
        return await self.deliverer.deliver(scope or DeliveryScope())

    async def next_retry_in(self) -> float | None:
        """Seconds until a retry a delivery pass could claim falls due (None: none is
        retrying). Rows a claim would not take now, of a paused destination or leased, are
        not due: counted, they would make the delivery loop pass again and again at once."""
        gov = self.deliverer.governor
        await gov.refresh_destinations()
        now = self.clock.now()
        excluded, probes = gov.excluded(now)  # as a claim leaves them out
        skip = set(excluded) - set(probes)
        asked = [k for k in gov.destinations if k not in skip]

        def query() -> datetime | None:
            with self.uow_factory() as uow:
                return uow.ledger.next_retry_at(now, asked)

        at = await asyncio.to_thread(query)
        if at is None:
            return None
        return max(0.0, (at - self.clock.now()).total_seconds())

    def _claim(self, run_id: str | None) -> SyncRun | None:
        with self.uow_factory() as uow:
            now = self.clock.now()
            run = uow.runs.claim_next(
                self.worker_id, now, now - self.settings.stale_after, run_id=run_id
            )
            uow.commit()
            return run

    async def _execute(self, run: SyncRun) -> SyncRun | None:
        scope = run.scope
        with log_context.bound(
            run_id=run.id, tenant=scope.tenant_id, destination=scope.destination_id
        ):
            log.info("run %s (%s, %s) started", run.id, run.trigger.value, scope.key)
            try:
                await self._read_rosters(run)
                done = await self.executor.execute(run)
                while done.stage is RunStage.QUEUED:
                    # it lost the database and gave itself back: resume it here at once
                    again = await asyncio.to_thread(self._claim, run.id)
                    if again is None:  # another worker took it first
                        break
                    done = await self.executor.execute(again)
            except Exception:
                # the executor records a run's failures; this is one it could not record (a
                # run started by the runs loop has no one awaiting it: said here, once)
                log.exception("run %s stopped", run.id)
                return None
            finally:
                self._runs.pop(run.id, None)
            log.info(
                "run %s %s: %s",
                run.id,
                done.outcome.value if done.outcome else done.stage.value,
                done.message or "",
            )
        fut = self._finished.get(run.id)
        if done.stage is RunStage.FINISHED:
            outcome = done.outcome.value if done.outcome else "unknown"
            self.meter.run_finished(scope.tenant_id, run.trigger.value, outcome)
            if fut is None:
                fut = self._finished[run.id] = asyncio.get_running_loop().create_future()
            if not fut.done():
                fut.set_result(done)
        return done

    async def _read_rosters(self, run: SyncRun) -> None:
        """Who is in the course, as the LMS says now, before the run computes: learners who
        left are not sent to, and learners who never launched are."""
        if self.roster is None or run.trigger is Trigger.AUTO:
            return
        scope = run.scope
        try:
            await roster.refresh_course(
                self.uow_factory,
                self.clock,
                None,  # the run itself recomputes its scope
                self.roster,
                scope.tenant_id,
                scope.course_id,
                scope.destination_id,
            )
        except Exception:  # a roster must never stop a run
            log.exception("run %s: the LMS roster could not be read", run.id)

    async def start_queued_runs(self) -> list[str]:
        """Claim every queued run whose scope is free; each runs in its own task."""
        started: list[str] = []
        while True:
            run = await asyncio.to_thread(self._claim, None)
            if run is None:
                return started
            self._runs[run.id] = asyncio.create_task(self._execute(run), name=f"run {run.id}")
            started.append(run.id)

    async def execute_run(self, run_id: str) -> SyncRun | None:
        """Claim this run and run it to the end here; None when it is not startable (already
        taken, finished, or its scope is busy: then it stays queued for a later look)."""

        if run_id in self._runs:
            return None  # this engine runs it already (its runs loop started it)

        async def claim_and_execute() -> SyncRun | None:
            run = await asyncio.to_thread(self._claim, run_id)
            if run is None:
                if self._runs.get(run_id) is task:  # never another task's entry
                    del self._runs[run_id]
                return None
            return await self._execute(run)

        # the claim is inside the shielded task: a job ended while its claim is in flight
        # must not leave the run claimed and run by nobody
        task = asyncio.create_task(claim_and_execute(), name=f"run {run_id}")
        self._runs[run_id] = task
        # the job's end (a queue worker stopping) does not end the run: it stays in this
        # engine, which cancels it only when it stops itself
        return await asyncio.shield(task)

    async def recover(self, *, sole_worker: bool) -> list[str]:
        """Requeue runs a dead worker left. `sole_worker`: this process is the only worker of
        its database (embedded SQLite), so every unfinished run and every lease is stale."""

        def work() -> list[str]:
            with self.uow_factory() as uow:
                now = self.clock.now()
                stale_before = now if sole_worker else now - self.settings.stale_after
                if sole_worker:
                    released = uow.ledger.clear_leases()
                    if released:
                        log.info("released %d delivery leases left by a previous process", released)
                # this engine's own runs are alive: never take them from itself
                requeued = uow.runs.requeue_stale(stale_before, now, keep_worker=self.worker_id)
                uow.commit()
                return requeued

        requeued = await asyncio.to_thread(work)
        if requeued:
            log.warning("requeued %d run(s) whose worker stopped: %s", len(requeued), requeued)
        return requeued

    async def aclose(self) -> None:
        # a computing pass ends after its batch (its thread is waited for, not abandoned
        # with the database it uses)
        for computing in list(self._passes):
            computing.cancel()
        await asyncio.gather(*list(self._passes), return_exceptions=True)
        for ahead in list(self._ahead):
            ahead.cancel()
        await asyncio.gather(*list(self._ahead), *list(self._refreshing), return_exceptions=True)
        for task in list(self._runs.values()):
            task.cancel()
        if self._runs:
            await asyncio.gather(*self._runs.values(), return_exceptions=True)
        await self.deliverer.aclose()
        await self.clients.aclose()
        # rows claimed and not settled (sends the stop cancelled) go back now, not when their
        # lease runs out: a restart, or another worker, sends them at once
        try:
            released = await asyncio.to_thread(self._release_leases)
        except Exception as exc:  # the leases run out as before
            # a worker that gave up on the database: one line
            say_failed(log, "giving back this worker's leases", exc, "they run out")
        else:
            if released:
                log.info("gave back %d unsent results on stopping", released)

    def _release_leases(self) -> int:
        with self.uow_factory() as uow:
            released = uow.ledger.clear_leases(self.worker_id)
            uow.commit()
        return released
