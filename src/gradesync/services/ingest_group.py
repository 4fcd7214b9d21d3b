"""Ingests that arrive together share one transaction (group commit).

On SQLite one writer works at a time and every commit waits for the disk: a class posting
attempts one by one at 50 a second spent a third of the writer's time on them, one small
transaction each, and the grades being computed and sent waited behind. Here the first
caller to find no write under way writes, in one transaction, every batch queued by then
(each in a savepoint of its own, so a refused batch changes nothing and takes nothing of the
others with it); the others wait for the commit that holds theirs, and the first of those
still queued then writes the next group. Every caller returns only once its facts are
committed, and no caller writes for others longer than one group.

On PostgreSQL writers do not wait for each other: each ingest keeps its own transaction
(`services.ingest.ingest`).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from gradesync.domain.errors import NotFound
from gradesync.services.clock import Clock
from gradesync.services.ingest import (
    IngestBatch,
    IngestResult,
    check_size,
    record_facts,
    wake_after,
)
from gradesync.services.ports import UnitOfWorkFactory
from gradesync.services.wakeup import Waker

# batches written in one transaction at most (each up to the API's batch limit)
GROUP = 64


@dataclass(slots=True)
class _Queued:
    tenant_id: str
    batch: IngestBatch
    done: Future[IngestResult] = field(default_factory=Future)
    turn: threading.Event = field(default_factory=threading.Event)  # done, or asked to write


class GroupedIngest:
    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        self._lock = threading.Lock()
        self._queue: list[_Queued] = []
        self._writing = False

    def ingest(self, waker: Waker | None, tenant_id: str, batch: IngestBatch) -> IngestResult:
        """As `services.ingest.ingest`, in a transaction shared with the ingests queued
        meanwhile. Blocks until the batch is committed (or refused)."""
        check_size(batch)
        item = _Queued(tenant_id, batch)
        with self._lock:
            self._queue.append(item)
            if not self._writing:
                self._writing = True
                item.turn.set()  # nobody writes: this caller does
        item.turn.wait()
        if not item.done.done():
            self._write_group(item)
        result = item.done.result()
        wake_after(waker, result)
        return result

    def _write_group(self, me: _Queued) -> None:
        """Write the group `me` heads, then hand the writing to the next caller queued."""
        with self._lock:
            group, self._queue = self._queue[:GROUP], self._queue[GROUP:]
        try:
            self._write(group)
        except BaseException as exc:  # never leave callers waiting for a writer gone
            _fail(group, exc)
            raise
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].turn.set()
                else:
                    self._writing = False

    def _write(self, group: list[_Queued]) -> None:
        results: list[tuple[_Queued, IngestResult]] = []
        try:
            with self.uow_factory() as uow:
                now = self.clock.now()
                for item in group:
                    try:
                        with uow.savepoint():
                            tenant = uow.tenants.get(item.tenant_id)
                            if tenant is None:
                                raise NotFound("tenant", item.tenant_id)
                            result = record_facts(
                                uow, item.tenant_id, item.batch, now, tenant=tenant
                            )
                    except Exception as exc:  # refused (or failed): this batch alone
                        _fail([item], exc)
                    else:
                        results.append((item, result))
                uow.commit()
        except Exception as exc:  # the transaction failed: none of it is stored
            _fail(group, exc)
            return
        for item, result in results:
            item.done.set_result(result)
            item.turn.set()


def _fail(items: list[_Queued], exc: BaseException) -> None:
    for item in items:
        if not item.done.done():
            item.done.set_exception(exc)
        item.turn.set()
