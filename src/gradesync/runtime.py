"""Wiring: builds the adapters once per process and hands them to web, CLI and workers.

This is the only place that knows which concrete adapter implements which service port.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, TypeVar

from gradesync.adapters.db.database import Database, SchemaNewer
from gradesync.adapters.db.single_server import DatabaseInUse, ServerLock

__all__ = ["DatabaseInUse", "Runtime", "SchemaNewer"]
from gradesync.config import Settings, load_settings
from gradesync.domain.model import RunStage, SyncRun
from gradesync.domain.remedies import Reader
from gradesync.services import runs
from gradesync.services.clock import Clock, SystemClock
from gradesync.services.destination_signals import SIGNALS
from gradesync.services.ingest_group import GroupedIngest
from gradesync.services.ledger_statistics import AttemptStatistics
from gradesync.services.wakeup import NullWaker, Waker

if TYPE_CHECKING:
    import httpx

    from gradesync.adapters.db.notifications import DestinationListener
    from gradesync.adapters.destinations.registry import DestinationContext
    from gradesync.adapters.queue.inprocess import EmbeddedWorker
    from gradesync.domain.capabilities import Capabilities
    from gradesync.domain.diagnosis import Diagnosis, ProbeStep
    from gradesync.domain.model import CourseLink, Destination, RunScope, Trigger
    from gradesync.domain.reasons import Reason
    from gradesync.domain.triage import CourseTriage
    from gradesync.services.delivery.governor import Governor
    from gradesync.services.delivery.recent import Recent
    from gradesync.services.destination import DestinationClient
    from gradesync.services.engine_config import EngineSettings
    from gradesync.services.ingest import IngestBatch, IngestResult
    from gradesync.services.lti.keys import ToolKeyStore
    from gradesync.services.outbound import OutboundGuard
    from gradesync.services.overrides import RepairResult, RepairSelection
    from gradesync.services.ports import UnitOfWorkFactory
    from gradesync.services.roster import MembershipReader, RosterResult
    from gradesync.services.schedules import ScheduleService
    from gradesync.services.sis import ActivityCheck, PostResult, SisDirectory
    from gradesync.services.worker import Engine

# Tests only: a module whose `build(destination, context)` serves every destination, so a
# subprocess worker can talk to a test double over HTTP (docs/operations.md).
TEST_DESTINATION_MODULE = "GRADESYNC_TEST_DESTINATION_MODULE"

log = logging.getLogger(__name__)
T = TypeVar("T")

STATISTICS_WAIT_S = 30.0  # closing waits this long at most for a statistics refresh
# destinations whose capabilities are kept (`Runtime.capabilities`): those viewed lately
CAPABILITIES_KEPT = 1024


@dataclass
class Runtime:
    settings: Settings
    db: Database
    clock: Clock = field(default_factory=SystemClock)
    # Set by the worker wiring: in-process asyncio worker or procrastinate.
    waker: Waker | None = None
    # The sync engine: one HTTP pool and token cache shared by every destination
    # client of the process, and the in-process worker when one runs here.
    destinations: DestinationContext | None = None
    worker: EmbeddedWorker | None = None
    _server_lock: ServerLock | None = field(default=None, repr=False)
    _listener: DestinationListener | None = field(default=None, repr=False)
    # Computing runs in threads and asks for destination clients too: one context is made.
    _destinations_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Where this process may send requests (docs/security.md); built from the settings.
    outbound: OutboundGuard = field(default=None)  # type: ignore[assignment]
    _tool_keys: ToolKeyStore | None = field(default=None, repr=False)
    _tool_keys_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # what each destination accepts (`capabilities`), by the settings it was worked out from
    _capabilities: Recent[tuple[str, str], tuple[str, Capabilities]] | None = field(
        default=None, repr=False
    )
    _capabilities_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.outbound is None:
            from gradesync.adapters.outbound_http import guard_from_settings

            self.outbound = guard_from_settings(self.settings)
        # on SQLite ingests that arrive together share a transaction (one writer, one fsync)
        self._ingests = GroupedIngest(self.db.uow, self.clock) if self.db.is_sqlite else None
        self._attempt_statistics = AttemptStatistics(self.db.uow)

    @classmethod
    def create(
        cls, settings: Settings | None = None, *, migrate: bool | None = None, serving: bool = False
    ) -> Runtime:
        """Build the runtime. Migrations are applied automatically on the embedded SQLite
        default (nobody else shares that file); on PostgreSQL run `gradesync db upgrade`.

        A process that delivers grades (`serving`: `serve`, `worker`) refuses a schema a
        newer release upgraded (SchemaNewer): it would compute, claim and settle on tables
        whose columns it does not know. Other commands only warn, so that `db current` and
        the like still say what is there, and refuse to write (`Database.refuse_writes`):
        a command that would change something exits with SchemaNewerWrite, nothing kept."""
        settings = settings or load_settings()
        from gradesync.services.outbound import OutboundPolicy

        for warning in OutboundPolicy.allowing(settings.outbound_allowed_networks).warnings():
            log.warning("%s", warning)
        db = Database.from_settings(settings)
        try:
            if migrate if migrate is not None else db.is_sqlite:
                db.upgrade()
            elif newer := db.newer_revisions():
                if serving:
                    raise SchemaNewer(newer)
                # reads (`db current`, lists) still say what is there; a write is refused
                db.refuse_writes(newer)
                log.warning("the database schema is newer than this release: %s", ", ".join(newer))
            elif not db.is_up_to_date():
                log.warning("the database schema is behind: run `gradesync db upgrade`")
        except BaseException:
            db.dispose()
            raise
        return cls(settings=settings, db=db)

    def close(self) -> None:
        if self.waker is not None and hasattr(self.waker, "close"):
            self.waker.close()
        # a statistics refresh still running ends first (bounded: its database may be gone),
        # and none starts after: it would connect again through the disposed engine
        if not self._attempt_statistics.close(STATISTICS_WAIT_S):
            log.warning("closing while the planner's statistics are still being refreshed")
        self.db.dispose()
        if self._server_lock is not None:  # claimed, and no worker started to release it
            self._server_lock.release()
            self._server_lock = None

    def claim_database(self) -> None:
        """On SQLite, become the one process that serves the file: its worker takes back
        every lease on start, so a second one would undo the first's work. DatabaseInUse
        when another process holds it (the kernel lets go when that process ends)."""
        path = self.db.sqlite_file
        if path is None or self._server_lock is not None:
            return
        lock = ServerLock(path)
        lock.acquire()
        self._server_lock = lock

    # --- the sync engine -----------------------------------------------------------------

    @property
    def distributed(self) -> bool:
        """Workers are separate `gradesync worker` processes woken through procrastinate."""
        return self.settings.worker_mode == "distributed" and not self.db.is_sqlite

    def destination_context(self) -> DestinationContext:
        """Built on first use, once: a second context made beside it by another thread
        would be dropped with its pool open (its connections never closed)."""
        with self._destinations_lock:
            if self.destinations is None:
                self.destinations = self._new_destination_context()
            return self.destinations

    def _new_destination_context(self) -> DestinationContext:
        """An HTTP pool (outbound rules applied, requests counted) and what adapters need
        around it; the caller closes it."""
        import httpx

        from gradesync.adapters.destinations.http_pool import shared_client
        from gradesync.adapters.destinations.observed import CountingTransport

        http = shared_client(
            timeout=httpx.Timeout(30.0, connect=10.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            guard=self.outbound,
            wrap=CountingTransport,
        )
        return self.adapter_context(http)

    async def close_destination_context(self) -> None:
        """Taken under the lock, closed after: a caller meanwhile gets a new context, not
        the one closing."""
        with self._destinations_lock:
            context, self.destinations = self.destinations, None
        if context is not None:
            await context.http.aclose()

    @property
    def tool_keys(self) -> ToolKeyStore:
        """The LTI tool's signing keys, one store for the process: what the LTI endpoints
        serve and sign with and what the destination adapters sign with, one cache between
        them (a rotation made here is seen by both at once)."""
        with self._tool_keys_lock:
            if self._tool_keys is None:
                from gradesync.services.lti.keys import ToolKeyStore

                self._tool_keys = ToolKeyStore(self.db.uow, self.clock, reads=self.db.reads)
            return self._tool_keys

    def adapter_context(self, http: httpx.AsyncClient) -> DestinationContext:
        """What destination adapters get from this process around `http`: the clock, the
        tool's signing keys (LTI 1.3 client assertions), and this installation's name and
        connection ids (OneRoster line items' owner)."""
        from gradesync.adapters.destinations.registry import DestinationContext
        from gradesync.services.destination_admin import connection_ids

        return DestinationContext(
            http=http,
            clock=self.clock,
            tool_keys=self.tool_keys,
            installation=self.settings.base_url.rstrip("/"),
            connection_ids=functools.partial(connection_ids, self.db.reads),
        )

    def destination_client(
        self, destination: Destination, context: DestinationContext | None = None
    ) -> DestinationClient:
        """A client for one destination (the engine's destination factory), over `context`
        or the process's shared one."""
        context = context or self.destination_context()
        test_module = os.environ.get(TEST_DESTINATION_MODULE)
        if test_module:
            client: DestinationClient = importlib.import_module(test_module).build(
                destination, context
            )
            return client
        from gradesync.adapters.destinations.observed import ObservedClient
        from gradesync.adapters.destinations.registry import build_client

        return ObservedClient(build_client(destination, context))

    def roster_reader(
        self, destination: Destination, context: DestinationContext | None = None
    ) -> MembershipReader:
        """Reads a platform's course rosters (NRPS) over `context`'s HTTP pool and tokens,
        or the process's shared ones."""
        from gradesync.adapters.destinations.nrps import NrpsClient
        from gradesync.adapters.destinations.observed import ObservedRosterReader

        return ObservedRosterReader(
            NrpsClient(destination, context or self.destination_context()), destination
        )

    async def refresh_roster(
        self, tenant_id: str, course_id: str | None = None, destination_id: str | None = None
    ) -> list[RosterResult]:
        """Read the LMS rosters (NRPS) of a course, or of every course of the tenant."""
        from gradesync.services.roster import refresh_course

        return await refresh_course(
            self.uow,
            self.clock,
            self.waker,
            self.roster_reader,
            tenant_id,
            course_id,
            destination_id,
        )

    def engine_settings(self) -> EngineSettings:
        from gradesync.domain.ledger import BackoffPolicy
        from gradesync.services.engine_config import BreakerSettings, EngineSettings

        s = self.settings
        return EngineSettings(
            claim_batch=s.worker_claim_batch,
            lease=timedelta(seconds=s.worker_lease_seconds),
            min_lease_left=timedelta(seconds=min(45.0, s.worker_lease_seconds / 3)),
            backoff=BackoffPolicy(
                base_seconds=s.retry_base_seconds,
                cap_seconds=s.retry_cap_seconds,
                max_tries=s.retry_max_tries,
            ),
            breaker=BreakerSettings(
                threshold=s.breaker_threshold,
                cooldown=timedelta(seconds=s.breaker_cooldown_seconds),
            ),
            heartbeat=timedelta(seconds=s.worker_heartbeat_seconds),
            stale_after=timedelta(seconds=s.worker_stale_seconds),
            retry_patience=timedelta(seconds=s.run_retry_patience_seconds),
            poll=timedelta(seconds=s.worker_poll_seconds),
            shared_limits=not self.db.is_sqlite,
            # on SQLite a run's chunk holds the one writer that live grades wait for: 100
            # learners hold it for tens of milliseconds, 500 for up to half a second
            scope_chunk=100 if self.db.is_sqlite else 500,
        )

    def build_engine(
        self,
        waker: Waker | None = None,
        *,
        context: DestinationContext | None = None,
        worker_id: str | None = None,
    ) -> Engine:
        """An engine whose destinations are reached over `context`, or the process's shared
        context; `worker_id` names it in leases and run records (default: a new one)."""
        from gradesync.adapters.metrics import PrometheusMeter
        from gradesync.services.worker import Engine

        return Engine(
            self.db.uow,
            self.clock,
            functools.partial(self.destination_client, context=context),
            self.engine_settings(),
            waker=waker,
            meter=PrometheusMeter(),
            roster=functools.partial(self.roster_reader, context=context),
            signals=SIGNALS,
            bulk=self.db.bulk,
            reads=self.db.reads,
            worker_id=worker_id,
        )

    def remote_waker(self) -> Waker:
        """A waker for a process that runs no worker itself (a CLI command, or `serve` in
        distributed mode): procrastinate jobs in distributed mode, else nothing (the
        worker of `gradesync serve` finds queued work within `worker_poll_seconds`)."""
        if self.distributed:
            from gradesync.adapters.queue.procrastinate_app import ProcrastinateWaker

            return ProcrastinateWaker(self.db.url)
        return NullWaker()

    async def start_worker(
        self, *, distributed_waker: bool = False, worker_id: str | None = None
    ) -> EmbeddedWorker:
        """Start the in-process worker (call inside the serving event loop). Pending work is
        swept at once. With `distributed_waker` (inside `gradesync worker`), the worker asks
        other workers for help through procrastinate."""
        from gradesync.adapters.queue.inprocess import EmbeddedWorker, InProcessWaker

        if self.worker is not None:
            return self.worker
        if not distributed_waker:
            self.claim_database()
        local = InProcessWaker()
        engine_waker: Waker = local
        if distributed_waker:
            engine_waker = self.remote_waker()
        self._hear_destination_changes()
        engine = self.build_engine(engine_waker, worker_id=worker_id)
        worker = EmbeddedWorker(engine, local, sole_worker=self.db.is_sqlite)
        await worker.start()
        self.worker = worker
        if not distributed_waker:
            self.waker = local
        return worker

    def _hear_destination_changes(self) -> None:
        """Changes to destinations made by other processes reach this one's engines: on
        PostgreSQL through a listener; on SQLite this is the only server (a CLI command in
        another process is seen on the engines' fallback poll)."""
        if self.db.is_sqlite:
            SIGNALS.other_processes_heard = True
        elif self._listener is None:
            from gradesync.adapters.db.notifications import DestinationListener

            self._listener = DestinationListener(self.db.url, SIGNALS)
            self._listener.start()

    async def stop_worker(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            await worker.stop()
            if self.waker is worker.waker:
                self.waker = None
        if self._listener is not None:
            await asyncio.to_thread(self._listener.stop)
            self._listener = None
        await self.close_destination_context()
        if self._server_lock is not None:
            self._server_lock.release()
            self._server_lock = None

    async def finish_run(self, run: SyncRun, timeout: float = 3600.0) -> SyncRun:
        """Carry a queued run to its end: here, by an engine of this process, unless a worker
        of this process has it or another worker holds its scope (then wait for that one)."""
        if self.worker is None:
            # a pool of the run's own, closed at its end: the process's shared one may serve
            # other requests meanwhile (the API's), and closing it would close it under them
            context = self._new_destination_context()
            engine = self.build_engine(context=context)
            try:
                done = await engine.execute_run(run.id)
            finally:
                await engine.aclose()
                await context.http.aclose()
            if done is not None and done.stage is RunStage.FINISHED:
                return done
        return await self.wait_for_run_async(run.id, timeout, tenant_id=run.scope.tenant_id)

    def wait_for_run(
        self, run_id: str, timeout: float, *, tenant_id: str | None = None, poll: float = 0.2
    ) -> SyncRun:
        """Block until the run is finished (for the CLI); TimeoutError after `timeout`."""
        from gradesync.domain.errors import NotFound
        from gradesync.domain.model import RunStage

        deadline = time.monotonic() + timeout
        while True:
            with self.db.uow() as uow:
                run = uow.runs.get(run_id, tenant_id)
            if run is None:
                raise NotFound("run", run_id)
            if run.stage is RunStage.FINISHED:
                return run
            if time.monotonic() >= deadline:
                raise TimeoutError(f"run {run_id} is still {run.stage.value} after {timeout:g} s")
            time.sleep(poll)

    async def wait_for_run_async(
        self, run_id: str, timeout: float, *, tenant_id: str | None = None
    ) -> SyncRun:
        """Like `wait_for_run` without blocking the event loop: resolves at once when this
        process's worker finishes the run, else by looking at the database."""
        from gradesync.domain.model import RunStage

        def read() -> SyncRun | None:
            with self.db.uow() as uow:
                return uow.runs.get(run_id, tenant_id)

        deadline = time.monotonic() + timeout
        local = self.worker.engine.run_finished(run_id) if self.worker is not None else None
        while True:
            run = await asyncio.to_thread(read)
            if run is not None and run.stage is RunStage.FINISHED:
                return run
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"run {run_id} did not finish within {timeout:g} s")
            if local is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(1.0, remaining)):
                        return await asyncio.shield(local)
            else:
                await asyncio.sleep(min(0.2, remaining))

    # --- the application surface ---------------------------------------------------------
    # The use cases every entrypoint (API, console, CLI, scheduler, tasks) calls, with this
    # process's dependencies bound here once. Entrypoints reach storage only through `uow`.

    @property
    def uow(self) -> UnitOfWorkFactory:
        """Units of work as the services' port types them."""
        return self.db.uow

    @property
    def reads(self) -> UnitOfWorkFactory:
        """Units of work that only read (on SQLite they wait for no writer)."""
        return self.db.reads

    def ingest(self, tenant_id: str, batch: IngestBatch) -> IngestResult:
        """Record facts (attempts, roster, activities) and mark what they change for sync.
        On SQLite, ingests that arrive together share a transaction (its one writer)."""
        if self._ingests is not None:
            return self._ingests.ingest(self.waker, tenant_id, batch)
        from gradesync.services.ingest import ingest

        result = ingest(self.uow, self.clock, self.waker, tenant_id, batch)
        # committed: a bulk ingest into growing tables renews the planner's statistics
        # (services/ledger_statistics.py), a few dozen times in the tables' life, beside
        # this batch's answer rather than before it
        if self._attempt_statistics.due_after(result.recorded + len(batch.people)):
            self._attempt_statistics.refresh_soon()
        return result

    def ask_for_run(
        self, scope: RunScope, trigger: Trigger | str, actor: str, reader: Reader = Reader.CLI
    ) -> tuple[SyncRun, bool]:
        """A run a person or a program asks for ("Sync now", resync, remaster): (run, joined).
        A refusal's remedy is in the words of its `reader`."""
        return runs.ask_for_run(self.uow, self.waker, self.clock, scope, trigger, actor, reader)

    def schedules(self) -> ScheduleService:
        """The schedule service, its runs requested like every other run."""
        from gradesync.adapters.queue.scheduler import build_schedule_service

        return build_schedule_service(self.uow, self.clock, self.waker)

    async def repair(self, selection: RepairSelection, actor: str) -> RepairResult:
        """Resend chosen results with a fresh timestamp, over grades typed into the LMS."""
        from gradesync.services import overrides
        from gradesync.services.delivery.asked import governed_reads

        # the LMS's timestamps read within each destination's limits, as a run's read-back
        async with self.request_governor() as governor:
            read = governed_reads(governor, self.destination_client)
            return await overrides.repair(self.uow, self.waker, self.clock, read, selection, actor)

    async def check_destination(
        self,
        tenant_id: str,
        destination_id: str,
        *,
        course_id: str | None = None,
        learner_id: str | None = None,
        send_test: bool = False,
    ) -> list[ProbeStep]:
        """Prove a destination end to end (`services.destination_check`)."""
        from gradesync.services.destination_admin import get_destination
        from gradesync.services.destination_check import check_destination

        dest = await asyncio.to_thread(get_destination, self.uow, tenant_id, destination_id)
        async with self.request_governor() as governor:
            return await check_destination(
                self.uow,
                self.clock,
                tenant_id,
                destination_id,
                self.destination_client(dest),
                governor,
                course_id=course_id,
                learner_id=learner_id,
                send_test=send_test,
            )

    @contextlib.asynccontextmanager
    async def request_governor(self) -> AsyncIterator[Governor]:
        """What a request to a destination made outside a sync (a check's test result, Deep
        Linking's look-up of the LMS's columns) waits on, as every send does: this process's
        worker's governor when its worker serves this event loop, so the request takes a
        token of the rate the worker sends at and meets the pause and breaker it keeps;
        else one of its own, as a run carried from the command line has (the destination's
        limits, or on PostgreSQL its share of them, and its pause read from the database),
        closed afterwards."""
        if self.worker is not None:
            yield self.worker.engine.deliverer.governor
            return
        from gradesync.services.delivery.background import BackgroundWrites
        from gradesync.services.delivery.governor import Governor
        from gradesync.services.worker import new_worker_id

        background = BackgroundWrites()
        governor = Governor(
            self.uow, self.clock, self.engine_settings(), background, new_worker_id()
        )
        try:
            yield governor
        finally:
            await background.wait()  # a pause a 429 made is saved before the process ends
            await governor.aclose()

    def capabilities(self, destination: Destination) -> Capabilities | Reason:
        """What a destination accepts, from the client the engine would use for it. Kept
        while the destination's settings (what a client is built from: kind, profile,
        config, secret) are those it was worked out from, for the `CAPABILITIES_KEPT`
        destinations asked about last: the console's course page and the diagnoses ask on
        every view, and building a client for each costs more than the view."""
        from gradesync.services.delivery.clients import settings_fingerprint
        from gradesync.services.delivery.recent import Recent

        key = (destination.tenant_id, destination.id)
        settings = settings_fingerprint(destination)
        with self._capabilities_lock:
            if self._capabilities is None:
                self._capabilities = Recent(CAPABILITIES_KEPT)
            kept = self._capabilities.get(key)
        if kept is not None and kept[0] == settings:
            return kept[1]
        try:
            capabilities = self.destination_client(destination).capabilities
        except Exception as exc:  # an unusable destination is a diagnosis, not an error
            from gradesync.domain.reasons import Reason

            # not kept: what made it unusable may be mended outside its settings
            return Reason("destination_unavailable", f"{type(exc).__name__}: {exc}")
        with self._capabilities_lock:
            self._capabilities[key] = (settings, capabilities)
        return capabilities

    def diagnose_learner_activity(
        self, tenant_id: str, person_id: str, activity_id: str, destination_id: str | None = None
    ) -> Diagnosis:
        """Why one learner's grade for one activity is where it is."""
        from gradesync.services import diagnostics

        return diagnostics.diagnose_learner_activity(
            self.uow,
            self.clock,
            tenant_id,
            person_id,
            activity_id,
            destination_id,
            capabilities=self.capabilities,
        )

    def diagnose_activity(
        self, tenant_id: str, activity_id: str, destination_id: str | None = None
    ) -> Diagnosis:
        from gradesync.services import diagnostics

        return diagnostics.diagnose_activity(
            self.uow,
            self.clock,
            tenant_id,
            activity_id,
            destination_id,
            capabilities=self.capabilities,
        )

    def diagnose_course(
        self, tenant_id: str, course_id: str, destination_id: str | None = None
    ) -> CourseTriage:
        from gradesync.services import diagnostics

        return diagnostics.diagnose_course(
            self.uow,
            self.clock,
            tenant_id,
            course_id,
            destination_id,
            capabilities=self.capabilities,
        )

    async def diagnose_destination(
        self, tenant_id: str, destination_id: str, *, live: bool
    ) -> Diagnosis:
        """A destination's settings, refused launches and failures; `live` adds its check."""
        from gradesync.services import diagnostics
        from gradesync.services.destination_admin import get_destination

        client = None
        if live:
            dest = await asyncio.to_thread(get_destination, self.uow, tenant_id, destination_id)
            client = self.destination_client(dest)
        return await diagnostics.diagnose_destination(
            self.uow,
            self.clock,
            tenant_id,
            destination_id,
            client=client,
            capabilities=self.capabilities,
        )

    @contextlib.asynccontextmanager
    async def sis_directory(
        self, tenant_id: str, destination_id: str
    ) -> AsyncIterator[SisDirectory]:
        """A SIS connection's live OneRoster API, for one request (check, categories). Its
        requests are counted, and logged, under the connection, like the engine's."""
        from gradesync.adapters.destinations.observed import CountingTransport
        from gradesync.adapters.destinations.oneroster import OneRosterClient
        from gradesync.adapters.outbound_http import guarded_client
        from gradesync.services import log_context
        from gradesync.services.sis import rest_connection

        dest = rest_connection(self.uow, tenant_id, destination_id)
        async with guarded_client(self.outbound, wrap=CountingTransport) as http:
            with log_context.bound(tenant=tenant_id, destination=destination_id):
                yield OneRosterClient(dest, self.adapter_context(http))

    async def tick_sis_activities(
        self,
        tenant_id: str,
        destination_id: str,
        activity_ids: Sequence[str],
        *,
        selected: bool = True,
        hold: bool = False,
        waker: Waker | None = None,
    ) -> list[ActivityCheck]:
        """Tick (or clear) "Sync to SIS" as every caller does it: ticking validates, the SIS
        asked for each group's category when it has a REST API (`services.sis.tick_checked`)."""
        from gradesync.services import sis

        tick = functools.partial(
            sis.tick_checked,
            self.uow,
            tenant_id=tenant_id,
            destination_id=destination_id,
            activity_ids=activity_ids,
            selected=selected,
            clock=self.clock,
            waker=waker,
            hold=hold,
        )
        return await self._with_sis_directory(tenant_id, destination_id, tick, ask=selected)

    async def sis_checks(
        self,
        tenant_id: str,
        destination_id: str,
        *,
        course_id: str | None = None,
        activity_ids: Sequence[str] = (),
    ) -> list[ActivityCheck]:
        """Validate activities for the SIS as every caller does it: the SIS asked for each
        group's category when it has a REST API (`services.sis.validate_asking`)."""
        from gradesync.services import sis

        checked = functools.partial(
            sis.validate_asking,
            self.uow,
            tenant_id=tenant_id,
            destination_id=destination_id,
            course_id=course_id,
            activity_ids=activity_ids,
        )
        return await self._with_sis_directory(tenant_id, destination_id, checked)

    async def post_sis_grades(
        self,
        tenant_id: str,
        destination_id: str,
        course_id: str,
        *,
        actor: str,
        activity_ids: Sequence[str] = (),
        remaster: bool = False,
        waker: Waker | None = None,
    ) -> PostResult:
        """Post grades as every caller does it: validation asks the SIS for each group's
        category when it has a REST API, as ticking does (`services.sis.post_grades`)."""
        from gradesync.services import sis

        post = functools.partial(
            sis.post_grades,
            self.uow,
            waker or self.waker or self.remote_waker(),
            self.clock,
            tenant_id=tenant_id,
            destination_id=destination_id,
            course_id=course_id,
            actor=actor,
            activity_ids=activity_ids,
            remaster=remaster,
        )
        return await self._with_sis_directory(tenant_id, destination_id, post)

    async def map_sis_class(
        self,
        tenant_id: str,
        destination_id: str,
        course_id: str,
        class_id: str,
        *,
        school_id: str | None = None,
        term_start: str | date | None = None,
        term_end: str | date | None = None,
        section_id: str | None = None,
        new_section: bool = False,
        waker: Waker | None = None,
    ) -> CourseLink:
        """Map a course (or a section) to a SIS class as every caller does it: a SIS with a
        REST API is asked first whether it has the class (`services.sis.refuse_unknown_class`)."""
        from gradesync.services import sis

        mapped = functools.partial(
            sis.map_class,
            self.uow,
            tenant_id=tenant_id,
            destination_id=destination_id,
            course_id=course_id,
            class_id=class_id,
            school_id=school_id,
            term_start=term_start,
            term_end=term_end,
            section_id=section_id,
            new_section=new_section,
            clock=self.clock,
            waker=waker,
        )

        async def checked(directory: SisDirectory | None) -> CourseLink:
            if directory is not None:
                await sis.refuse_unknown_class(directory, class_id)
            return await asyncio.to_thread(mapped)

        return await self._with_sis_directory(tenant_id, destination_id, checked)

    async def align_sis_categories(
        self,
        tenant_id: str,
        destination_id: str,
        changes: Mapping[str, str | None],
        *,
        course_id: str | None = None,
        removals_must_exist: bool = False,
    ) -> dict[str, str]:
        """Align activity groups to SIS categories ({group: category sourcedId, or None to
        remove}) as every caller does it, in one unit of work: a SIS with a REST API is asked
        first for its categories, and one it does not have, like any change breaking a rule
        (`services.sis.align_categories`), refuses the whole change, every problem named at
        once. Returns the alignment now set."""
        from gradesync.services import sis

        async def checked(directory: SisDirectory | None) -> dict[str, str]:
            known = await sis.sis_category_ids(directory) if directory is not None else None
            align = functools.partial(
                sis.align_categories,
                self.uow,
                self.clock,
                tenant_id=tenant_id,
                destination_id=destination_id,
                changes=changes,
                course_id=course_id,
                sis_categories=known,
                removals_must_exist=removals_must_exist,
            )
            return await asyncio.to_thread(align)

        added = any(c is not None and c.strip() for c in changes.values())
        return await self._with_sis_directory(tenant_id, destination_id, checked, ask=added)

    async def _with_sis_directory(
        self,
        tenant_id: str,
        destination_id: str,
        use: Callable[[SisDirectory | None], Awaitable[T]],
        *,
        ask: bool = True,
    ) -> T:
        """`use` with the connection's live OneRoster API when it has one (and `ask`), else
        with None (a file-based SIS cannot be asked)."""
        from gradesync.services import sis

        if ask and await asyncio.to_thread(sis.has_rest_api, self.uow, tenant_id, destination_id):
            async with self.sis_directory(tenant_id, destination_id) as directory:
                return await use(directory)
        return await use(None)

    @contextlib.asynccontextmanager
    async def client_for_request(
        self, destination: Destination
    ) -> AsyncIterator[DestinationClient]:
        """A destination client for one request (a page's check): this process's own, with
        its shared pool and token cache, when its worker serves this event loop; else one on
        a fresh pool, closed afterwards. Either way its requests are counted, and logged,
        under the destination."""
        if self.worker is not None:
            client = self.destination_client(destination)
            try:
                yield client
            finally:
                await client.aclose()
            return
        from gradesync.adapters.destinations.observed import CountingTransport, ObservedClient
        from gradesync.adapters.destinations.registry import build_client
        from gradesync.adapters.outbound_http import guarded_client

        async with guarded_client(self.outbound, wrap=CountingTransport) as http:
            client = ObservedClient(build_client(destination, self.adapter_context(http)))
            try:
                yield client
            finally:
                await client.aclose()

    # --- operating the process: schema, readiness, metrics, queue workers ----------------
    # What `gradesync db`, `gradesync worker`, /readyz and /metrics need of the database,
    # so that they never hold the concrete Database themselves.

    @staticmethod
    def upgrade_schema(settings: Settings | None = None) -> SchemaState:
        """Apply every pending migration (and, on PostgreSQL, procrastinate's schema)."""
        db = Database.from_settings(settings or load_settings())
        try:
            db.upgrade()
            queue_installed = False
            if not db.is_sqlite:
                from gradesync.adapters.queue.procrastinate_app import ensure_schema

                queue_installed = ensure_schema(db.url)
            return SchemaState(_revisions(db), True, queue_installed)
        finally:
            db.dispose()

    @staticmethod
    def schema_state(settings: Settings | None = None) -> SchemaState:
        """The database's revisions and whether they are the code's, without migrating."""
        db = Database.from_settings(settings or load_settings())
        try:
            return SchemaState(_revisions(db), db.is_up_to_date(), newer=bool(db.newer_revisions()))
        finally:
            db.dispose()

    def database_error(self) -> Exception | None:
        """What keeps the database from answering a `SELECT 1` now; None when it answers. A
        read: on SQLite it does not wait for another process's write lock (30 s at most)."""
        from sqlalchemy import text

        try:
            with self.db.reads() as uow:
                uow.conn.execute(text("SELECT 1"))
        except Exception as exc:  # reported, not raised
            return exc
        return None

    def database_answers(self) -> bool:
        """Whether the database takes work again after an outage: on PostgreSQL a `SELECT 1`
        answered; on SQLite, whose outage is its file held by another writer while reads go
        through, its write lock taken and given back at once (waiting a second at most)."""
        if self.db.is_sqlite:
            try:
                return self.db.write_lock_free(wait=1.0)
            except Exception:  # the file unreadable, say: reported as no answer, not raised
                return False
        return self.database_error() is None

    def readiness(self) -> tuple[bool, dict[str, str]]:
        """Whether this process can serve: the database answers and its schema is current."""
        if (exc := self.database_error()) is not None:
            return False, {"status": "database unavailable", "detail": type(exc).__name__}
        if not self.db.is_up_to_date():
            if newer := self.db.newer_revisions():
                status = f"schema newer than this release ({', '.join(newer)})"
                return False, {"status": status}
            return False, {"status": "schema behind: run `gradesync db upgrade`"}
        return True, {"status": "ready"}

    def metrics_text(self) -> bytes:
        """The Prometheus exposition: this process's counters plus pending work."""
        from gradesync.adapters import metrics

        return metrics.exposition(self.db.engine)

    @property
    def on_sqlite(self) -> bool:
        """The embedded database: one `gradesync serve` process does all the work."""
        return self.db.is_sqlite

    def prepare_queue(self) -> None:
        """Install procrastinate's schema if it is missing (PostgreSQL)."""
        from gradesync.adapters.queue.procrastinate_app import ensure_schema

        ensure_schema(self.db.url)

    async def run_queue_worker(
        self, *, concurrency: int, name: str | None = None, patience: float = 60.0
    ) -> None:
        """`gradesync worker`: this process's worker plus procrastinate's, until a signal
        (DatabaseUnavailable after `patience` seconds without the database)."""
        from gradesync.adapters.queue.procrastinate_app import run_worker
        from gradesync.services.worker import new_worker_id

        worker_id = new_worker_id(name)  # one id in run records, leases and procrastinate's
        try:
            await run_worker(
                self.db.url,
                lambda: self.start_worker(distributed_waker=True, worker_id=worker_id),
                concurrency=concurrency,
                name=worker_id,
                patience=patience,
            )
        finally:
            try:
                await self.stop_worker()
            except Exception:  # never hide why the worker stopped behind a shutdown error
                log.exception("stopping the worker failed")


@dataclass(frozen=True, slots=True)
class SchemaState:
    revisions: list[str]  # sorted; empty before the first migration
    up_to_date: bool
    queue_schema_installed: bool = False  # procrastinate's schema was installed just now
    newer: bool = False  # at a revision of a newer release, which this one does not know


def _revisions(db: Database) -> list[str]:
    from gradesync.adapters.db import migrate

    return sorted(migrate.current_revisions(db.engine))
