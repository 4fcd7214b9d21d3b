"""Keeping the database's query planner informed as this process grows the ledger.

PostgreSQL plans from statistics that autovacuum renews a minute or more after a bulk write.
Until then a ledger that grew from a few rows to 20,000 is read through the wrong index
(tenant and destination only: every row of the LMS), and each lease and ledger read took
10-170 ms instead of 0.1. A process that writes many ledger rows (a run computing its scope,
a bulk import's dirty keys) refreshes the statistics itself: after the first 1,000 rows,
then each time the rows it has written double, so a growing ledger is refreshed a few dozen
times in its life and a steady one almost never.

Ingest does the same for the attempts and people it writes (`AttemptStatistics`): made
before the statistics, the plan of the batch's read of stored event ids walked every attempt
of the tenant, 29,000 rows at 30,000 attempts, where the unique index takes one probe per id
(docs/benchmarks-journal.md, "PostgreSQL ingest with one client"). That refresh runs in a
thread of its own, beside the answer to the batch that made it due: run in the request, its
ANALYZE (73-195 ms between 8,000 and 64,000 attempts on a loaded machine) was added to that
one batch's answer
(docs/benchmarks-journal.md, "The slow PostgreSQL batch with one client")."""

from __future__ import annotations

import logging
import threading
import time

from gradesync.services.ports import UnitOfWorkFactory

FIRST_REFRESH = 1000  # ledger rows written before the first refresh

log = logging.getLogger(__name__)


class LedgerStatistics:
    def __init__(self, uow_factory: UnitOfWorkFactory, first: int = FIRST_REFRESH) -> None:
        self._uow_factory = uow_factory
        self._first = first
        self._lock = threading.Lock()  # computing runs in worker threads
        self._written = 0  # ledger rows written by this process
        self._refreshed_at = 0  # ... when the statistics were last refreshed

    def due_after(self, rows: int) -> bool:
        """Count `rows` written; True (once) when a refresh is due: the rows written since
        the last one reach the first threshold and all the rows written before it."""
        with self._lock:
            self._written += rows
            since = self._written - self._refreshed_at
            if since < max(self._first, self._refreshed_at):
                return False
            self._refreshed_at = self._written
            return True

    def catch_up(self) -> bool:
        """True (once) when at least the first threshold's rows went unrefreshed: a run's
        computing ends, and its sending should not read through stale statistics."""
        with self._lock:
            if self._written - self._refreshed_at < self._first:
                return False
            self._refreshed_at = self._written
            return True

    def refresh(self) -> None:
        """Blocking: call from a worker thread."""
        with self._uow_factory() as uow:
            uow.ledger.refresh_statistics()
            uow.commit()


class AttemptStatistics(LedgerStatistics):
    """The same schedule, counting the attempts and people ingested by this process, and
    refreshed beside the ingest rather than in it (`refresh_soon`)."""

    def __init__(self, uow_factory: UnitOfWorkFactory, first: int = FIRST_REFRESH) -> None:
        super().__init__(uow_factory, first)
        self._thread: threading.Thread | None = None  # the refresh running, if any
        self._again = False  # another came due while it ran
        self._closed = False  # the process is closing: its engine is about to be disposed

    def refresh(self) -> None:
        with self._uow_factory() as uow:
            uow.attempts.refresh_statistics()
            uow.commit()

    def refresh_soon(self) -> None:
        """Refresh in a thread of its own and return at once. One at a time: a refresh due
        while one runs follows it (the tables grew meanwhile). Nothing once closed: an
        ingest finishing during shutdown would connect again through a disposed engine."""
        with self._lock:
            if self._closed:
                return
            if self._thread is not None:
                self._again = True
                return
            thread = threading.Thread(
                target=self._run, name="gradesync-attempt-statistics", daemon=True
            )
            thread.start()  # before it is seen: `wait` takes a thread not alive as ended
            self._thread = thread

    def _run(self) -> None:
        try:
            while True:
                try:
                    self.refresh()
                except Exception:  # the batches are committed and answered; autovacuum later
                    log.exception("refreshing the planner's statistics after an ingest failed")
                with self._lock:
                    if not self._again or self._closed:
                        return
                    self._again = False
        finally:  # however it ended, so that the next one due starts again
            with self._lock:
                self._thread = None
                self._again = False

    def wait(self, timeout: float) -> bool:
        """Until no refresh runs, at most `timeout` seconds (closing the process: a refresh
        cut off would be lost, but one stuck on a lost database must not hold the exit).
        True when none runs."""
        end = time.monotonic() + timeout
        while (thread := self._thread) is not None and thread.is_alive():
            left = end - time.monotonic()
            if left <= 0:
                return False
            thread.join(left)
        return True

    def close(self, timeout: float) -> bool:
        """Start no refresh from now on, and wait for the one running as `wait` does."""
        with self._lock:
            self._closed = True
        return self.wait(timeout)
