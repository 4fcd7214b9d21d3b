"""The settle writer: delivery outcomes written in batches (group commit) from one task,
never while an HTTP call is open. Each outcome is folded into its row
(`domain.ledger.after_delivery`) as its claim read it, and written only while the row is
still as that claim left it; when one is not (a newer desired state arrived during the
send, the lease ran out), the batch's rows are read again under lock and folded anew, so a
newer desired state stays pending and goes next."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gradesync.domain.ledger import (
    Delivered,
    DeliveryOutcome,
    RetryLater,
    after_delivery,
    due_now,
    reconcile,
)
from gradesync.domain.model import DeliveryState, LedgerKey, LedgerRow
from gradesync.domain.policy import NoResult
from gradesync.domain.reasons import Reason
from gradesync.services import log_context
from gradesync.services.clock import Clock
from gradesync.services.database_lost import OutageNotice, database_outage, say_failed
from gradesync.services.delivery.records import DueAt, Settlement
from gradesync.services.engine_config import EngineSettings
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory
from gradesync.services.telemetry import NULL_METER, Meter, count_outcome

log = logging.getLogger(__name__)


class SettleWriter:
    """Writes settlements in batches from one task: whatever piled up while the previous
    transaction ran, and during a short gathering window before it (`settle_gather`, cut
    short once `settle_batch` wait), goes in the next one: a steady stream of results costs
    a commit per several, not one each."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        settings: EngineSettings,
        worker_id: str,
        on_written: Callable[[list[LedgerRow]], None] | None = None,
        on_due: Callable[[set[DueAt]], None] | None = None,
        meter: Meter = NULL_METER,
    ) -> None:
        self._meter = meter
        self._uow_factory = uow_factory
        self._clock = clock
        self._settings = settings
        self._worker_id = worker_id
        self._on_written = on_written
        self._on_due = on_due
        self._queue: list[Settlement] = []
        self._more = asyncio.Event()
        self._full = asyncio.Event()  # `settle_batch` outcomes wait, or a flush: write now
        self._flushing = 0  # callers waiting in `flush`: nothing more is coming for them
        self._idle = asyncio.Event()
        self._idle.set()
        # the last write's error while the database is away (cleared by a write that works),
        # and an event set whenever the writer goes idle or stumbles on it
        self._away: Exception | None = None
        self._news = asyncio.Event()
        # an outage said once, not once a try (a second), and its end once
        self._outage = OutageNotice(log, "writing delivery outcomes")
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random()
        # results written as delivered, per (tenant, destination), since this process began
        self.delivered: Counter[tuple[str, str]] = Counter()
        # outcomes not written because their claim had ended (`_write`; counted too in
        # `gradesync_results_claim_ended_before_written_total`)
        self.claims_ended = 0
        # rows let go unsent whose lease their claim held no more: given back already (a
        # write redone after its commit's answer was lost) or taken by another (`_write`;
        # counted too in `gradesync_results_given_back_without_lease_total`)
        self.leases_gone = 0
        # writes that found a row no longer as its claim read it, and read their rows again
        # (`_write`)
        self.read_again = 0

    def start(self) -> None:
        if self._task is None or self._task.done():
            # one writer for every run and pass of the process: its lines name none of them
            self._task = asyncio.create_task(
                self._run(), name="gradesync-settle", context=log_context.detached()
            )

    def put(self, s: Settlement) -> None:
        self._queue.append(s)
        self._idle.clear()
        self._more.set()
        if len(self._queue) >= self._settings.settle_batch:
            self._full.set()
        self.start()

    async def flush(self) -> None:
        """Wait until everything put so far is written (without gathering more first). While
        the database is away, raise its error instead of waiting for it: the caller (a
        delivery pass) stops as on any of its own queries; what is put stays queued and is
        written once the database answers."""
        await self._written(raise_away=True)

    async def _written(self, *, raise_away: bool) -> None:
        self._flushing += 1
        self._full.set()
        try:
            while self._queue or not self._idle.is_set():
                self.start()
                self._news.clear()
                await self._news.wait()
                if raise_away and self._away is not None:
                    # the write's own error, so callers know it as any lost database (its
                    # traceback dropped: raised again at each flush, it would only grow)
                    raise self._away.with_traceback(None)
        finally:
            self._flushing -= 1

    async def stop(self) -> None:
        """Write what is queued, but never hang a shutdown on a database that does not
        answer: after `stop_grace` the rest is let go (its leases run out and the rows are
        claimed and sent again, so nothing is lost)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._settings.stop_grace.total_seconds()):
                await self._written(raise_away=False)
        if self._task is not None:
            self._task.cancel()  # a write in flight goes back to the queue
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._queue:
            log.error(
                "stopping with %d delivery outcomes unwritten; they will be sent again",
                len(self._queue),
            )
            self._queue = []

    async def _gather(self) -> None:
        """Let more outcomes join the next transaction, for `settle_gather` at most."""
        gather = self._settings.settle_gather.total_seconds()
        if gather <= 0 or self._flushing or len(self._queue) >= self._settings.settle_batch:
            return
        self._full.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(gather):
                await self._full.wait()

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._news.set()
                self._more.clear()
                await self._more.wait()
                continue
            await self._gather()
            batch, self._queue = self._queue, []
            try:
                rows, let_go = await asyncio.to_thread(self._write, batch)
            except asyncio.CancelledError:
                self._queue = batch + self._queue
                raise
            except Exception as exc:
                if database_outage(exc):
                    # the database out of reach: kept, and written once it answers (their
                    # rows' leases end then, and what is still due goes at once, not when the
                    # leases run out). Only an outage: an error about this write (a schema
                    # behind, a full disk) would fail for ever and stop every pass's flush.
                    # Redone as is: a commit that did reach the database (its answer lost)
                    # gave its claims' leases back, so the redo finds them ended and writes
                    # nothing twice (no second log line, no second try counted).
                    self._queue = batch + self._queue
                    self._away = exc
                    self._news.set()
                    self._outage.failed(exc)
                else:
                    # let go: the leases run out and the rows are claimed again, so nothing
                    # is lost, and a write that fails for good cannot hold up the others
                    self._away = None  # the database answered, with an error of this write
                    say_failed(
                        log,
                        f"writing {len(batch)} delivery outcomes",
                        exc,
                        "their rows are sent again once their leases end",
                    )
                await asyncio.sleep(1.0)  # do not spin on a database that is down
                continue
            self._away = None
            self._outage.answered()
            due = {r.key for r in rows if r.state is DeliveryState.PENDING} | let_go
            if self._on_due is not None and due:
                # a newer desired state arrived during its send, or a row was let go
                # unsent: it is due again now
                course = {s.key: s.course_id for s in batch}
                self._on_due(
                    {(k.tenant_id, k.destination_id, course[k], k.activity_id) for k in due}
                )
            self.delivered.update(
                (r.key.tenant_id, r.key.destination_id)
                for r in rows
                if r.state is DeliveryState.DELIVERED
            )
            if self._on_written is not None:
                self._on_written(rows)

    def _write(self, batch: list[Settlement]) -> tuple[list[LedgerRow], set[LedgerKey]]:
        """Write the outcomes; (rows written, the rows let go unwritten or left waiting by
        a claim that had ended)."""
        with self._uow_factory() as uow:
            now = self._clock.now()
            foldable = all(map(_foldable, batch))
            done = self._as_claimed(uow, batch, now) if foldable else None
            if done is None:
                # an outcome needs its row as it is now (a skip), or a row is no longer as
                # its claim read it (a newer desired state came in during the send, its lease
                # ran out and it was claimed again, or a commit whose answer was lost gave
                # its lease back already): nothing of the try is kept, and every outcome is
                # folded into its row read again under lock
                if foldable:
                    uow.rollback()
                    self.read_again += 1
                done = self._read_again(uow, batch, now)
            uow.commit()
        written, let_go, ended, gone, counted = done
        if ended:
            self.claims_ended += ended
            self._meter.claims_ended(ended)
            log.info(
                "%d delivery outcomes not written: their claims had ended (written already, "
                "their rows claimed again, or made to go again: a remaster, a column gone, a "
                "learner's new SIS student)",
                ended,
            )
        if gone:
            # a row let go holds no outcome: its claim need not have ended (a redo finds
            # the lease its first commit gave back)
            self.leases_gone += gone
            self._meter.leases_gone(gone)
            log.info(
                "%d rows let go unsent had no lease of their claim left to give back (given "
                "back already, or the rows claimed again)",
                gone,
            )
        # once written (a failed write is redone); a delivery timed to when its own
        # destination answered, not to this write, which may hold other destinations' too
        for outcome, before, after, sent, answered in counted:
            count_outcome(self._meter, outcome, before, after, sent, answered or now)
        return written, let_go

    def _as_claimed(self, uow: UnitOfWork, batch: list[Settlement], now: datetime) -> _Done | None:
        """Each outcome folded into its row as its claim read it, and written while the row
        is still as that claim left it (the database compares, `settle_as_claimed`): the
        row is not read again. None when a row was not, and nothing is kept then."""
        settled: list[tuple[LedgerRow, LedgerRow, datetime | None, datetime]] = []
        written: list[LedgerRow] = []
        let_go: list[tuple[LedgerKey, datetime]] = []
        logs: list[dict[str, Any]] = []
        counted: list[_Counted] = []
        for s in batch:
            if s.outcome is None:
                let_go.append((s.key, s.lease_until))
                continue
            was, outcome = s.claimed, s.outcome
            assert was is not None and not isinstance(outcome, Reason)  # `_foldable`
            new = after_delivery(
                was,
                s.sent_hash or "",
                outcome,
                now,
                sent_timestamp=s.timestamp,
                rng_value=self._rng.random(),
                backoff=self._settings.backoff,
            )
            settled.append((new, was, s.timestamp, s.lease_until))
            written.append(new)
            if s.logged:
                logs.append(_log_entry(s, now))
                counted.append((outcome, was, new, s.sent_hash, s.answered_at))
        if uow.ledger.settle_as_claimed(settled, self._worker_id) < len(settled):
            return None
        # a lease given back by its own release; one not given back is gone (the row holds
        # another claim's, or none: given back already by this write's first commit, when
        # this is its redo). Every row let go is said due again: one held by another claim
        # only has its column looked at once more.
        released = uow.ledger.release(let_go, self._worker_id)
        uow.deliveries.add_many(logs)
        return written, {k for k, _ in let_go}, 0, len(let_go) - released, counted

    def _read_again(self, uow: UnitOfWork, batch: list[Settlement], now: datetime) -> _Done:
        """Each outcome folded into its row read again under lock, and written while the
        row holds its claim's lease."""
        keys = sorted({s.key for s in batch}, key=_sort_key)
        claimed = uow.ledger.get_claimed(keys, self._worker_id)
        rows = {k: row for k, (row, _) in claimed.items()}
        read = dict(rows)
        writes: dict[LedgerKey, tuple[LedgerRow, str, datetime]] = {}
        ours: dict[LedgerKey, datetime] = {}  # the claims still held, by key
        ended = gone = 0
        waiting: set[LedgerKey] = set()  # rows of ended claims, due again
        logs: list[dict[str, Any]] = []
        counted: list[_Counted] = []
        for s in batch:
            got = claimed.get(s.key)
            if got is None:
                continue
            if got[1] != s.lease_until and s.outcome is None:
                gone += 1  # let go unsent: its lease given back already, or taken again
                continue
            if got[1] != s.lease_until:
                # Its claim ended: the lease ran out while the outcome waited (the
                # database away) and the row was claimed again, by another worker
                # or by this one (a later claim writes a later lease_until): what
                # the row holds now is that claim's, not to be overwritten. Or this
                # is a redo of a write whose commit did reach the database: written.
                # Or its lease was taken so it goes again (the learner moved to another SIS
                # student while it was sent: `sis.mapping._send_to_new_student`; a remaster
                # made it pending with the value sent; its column found gone, `mark_gone`):
                # the row, waiting and due
                # (pending, or a retry whose time has come, as the claim took it), is said
                # due, as a claim made meanwhile may have skipped it under this lock.
                ended += 1
                row = got[0]
                if due_now(row, now):
                    waiting.add(s.key)
                continue
            ours[s.key] = s.lease_until
            row = rows[s.key]
            if s.outcome is None:
                continue
            new: LedgerRow | None
            if isinstance(s.outcome, Reason):
                new = reconcile(row, s.key, NoResult(s.outcome), now)
            else:
                new = after_delivery(
                    row,
                    s.sent_hash or "",
                    s.outcome,
                    now,
                    sent_timestamp=s.timestamp,
                    rng_value=self._rng.random(),
                    backoff=self._settings.backoff,
                )
            if new is None:
                continue
            rows[s.key] = new
            writes[s.key] = (new, s.course_id, s.lease_until)
            if s.logged and not isinstance(s.outcome, Reason):
                logs.append(_log_entry(s, now))
                counted.append((s.outcome, row, new, s.sent_hash, s.answered_at))
        # rows written give their lease back in the same write; only the others still
        # held need a release of their own
        let_go = [(k, until) for k, until in ours.items() if k not in writes]
        # a row keeping the desired state it was read with (every send's outcome) has
        # only its delivery columns written; a skip (its desired state dropped) all.
        # Each holds this claim's lease, checked above under its lock, so a release
        # by owner alone (`save_many`) gives back that claim's lease and no other.
        settled: list[tuple[LedgerRow, str, datetime]] = []
        rewritten: list[tuple[LedgerRow, str]] = []
        for after, course_id, until in writes.values():
            was = read[after.key]
            if after.desired is was.desired and after.desired_hash == was.desired_hash:
                settled.append((after, course_id, until))
            else:
                rewritten.append((after, course_id))
        uow.ledger.settle(settled, self._worker_id)
        uow.ledger.save_many(rewritten, release_for=self._worker_id)
        uow.ledger.release(let_go, self._worker_id)
        uow.deliveries.add_many(logs)
        due = {k for k, _ in let_go} | waiting
        return [r for r, _, _ in writes.values()], due, ended, gone, counted


# an outcome counted once written: (outcome, the row it was folded into, the row written,
# the hash sent, when the destination answered)
_Counted = tuple[DeliveryOutcome, LedgerRow, LedgerRow, str | None, datetime | None]
# what a write did: (rows written, rows let go unwritten or left waiting by an ended claim,
# outcomes of ended claims, rows let go whose lease was gone, counted)
_Done = tuple[list[LedgerRow], set[LedgerKey], int, int, list[_Counted]]


def _foldable(s: Settlement) -> bool:
    """Whether `s` can be written without reading its row again: a lease given back, or a
    send's outcome carrying the row its claim read (a skip is folded into the row as it is)."""
    return s.outcome is None or (s.claimed is not None and not isinstance(s.outcome, Reason))


def _sort_key(k: LedgerKey) -> tuple[str, str, str, str]:
    return (k.tenant_id, k.destination_id, k.activity_id, k.person_id)


def _log_entry(s: Settlement, now: datetime) -> dict[str, Any]:
    o = s.outcome
    assert o is not None and not isinstance(o, Reason)
    outcome = (
        "delivered"
        if isinstance(o, Delivered)
        else "retrying"
        if isinstance(o, RetryLater)
        else "rejected"
    )
    return {
        "key": s.key,
        "run_id": s.run_id,
        "sent_at": now,
        "sent_hash": s.sent_hash,
        "payload": s.payload,
        "outcome": outcome,
        "remote_status": o.remote_status,
        "remote_message": o.remote_message,
        "latency_ms": s.latency_ms,
        "score_scale": s.score_scale,
    }
