"""Sync runs: executing "Sync now", resync, remaster, scheduled and repair runs over a scope
(they are requested through `services.runs`).

A run goes through visible stages, each recorded with its time in `sync_runs.stages`:

- queued: waiting for a worker (at most one run per scope runs at a time);
- computing: policy over the whole scope (every learner of every selected activity at every
  destination in scope), past-due zeros included; the ledger says what differs. Before it,
  the columns a remaster rewrites are marked to be checked by the first send to each:
  workers send a grade as soon as it is due, and none reaches its column unchecked;
- provisioning: each destination's course and columns created or updated (remaster: column
  details rewritten even when unchanged);
- sending: due rows of the scope delivered; the run waits a short while for retries and for
  a timed pause that ends within that while (a Retry-After), not for an admin's pause;
- verifying: results read back where the destination can, compared with what was sent;
  grades changed by hand ("gradesync wins") and grades that arrived meanwhile are sent,
  waiting as sending does;
- finished: succeeded, partly failed or failed, with counts.

Triggers: manual ("Sync now") and resync send what differs and try failed rows again;
schedule sends what differs; repair resends every selected result with a fresh timestamp
(`services.overrides.request_repair` also moves timestamps past the LMS's own);
remaster resends everything in scope, column details included. Auto sync is not a run:
ingest marks keys dirty and workers deliver them (see the delivery log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from gradesync.domain.capabilities import Capabilities
from gradesync.domain.columns import check_mark
from gradesync.domain.ledger import desired_from_json
from gradesync.domain.model import (
    Activity,
    Course,
    CourseLink,
    DeliveryState,
    Destination,
    ItemLink,
    LedgerRow,
    PersonLink,
    RunOutcome,
    RunScope,
    RunStage,
    SyncRun,
    Tenant,
    Trigger,
)
from gradesync.domain.policy import Column, NoResult, activity_policy, column_for
from gradesync.domain.reasons import Reason, internal_error
from gradesync.domain.remedies import SEPARATOR
from gradesync.services.carry import Carry, owed, record
from gradesync.services.clock import Clock
from gradesync.services.compute import (
    ComputeStats,
    compute_activity,
    learners_of,
    migrated_to,
    people_of_activity,
)
from gradesync.services.database_lost import database_lost
from gradesync.services.delivery import (
    RUN_PRIORITY,
    Clients,
    Deliverer,
    DeliveryScope,
    DeliveryStats,
    DestinationPaused,
    outcome_of_failure,
)
from gradesync.services.delivery.asked import read_back
from gradesync.services.destination import (
    NO_RESOURCE_LINK,
    FailureClass,
    RemoteFailure,
    reason_of,
)
from gradesync.services.engine_config import EngineSettings
from gradesync.services.ledger_statistics import LedgerStatistics
from gradesync.services.live_traffic import LiveTraffic
from gradesync.services.overrides import record_overrides
from gradesync.services.patience import Patience
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)

# --- executing a run -----------------------------------------------------------------------


class RunTakenOver(Exception):
    """The run was requeued (this worker looked dead) and belongs to someone else now."""


@dataclass(slots=True)
class _Target:
    destination: Destination
    tenant: Tenant
    course: Course
    link: CourseLink | None
    activity_ids: list[str]


def summarise(
    uow_factory: UnitOfWorkFactory,
    scope: RunScope,
    since: datetime | None,
    leave_out: Sequence[str] = (),
) -> dict[str, Any]:
    """The scope's ledger by outcome, but for the destinations of `leave_out`; `sent` means
    delivered since `since`, whoever sent it: a run over an overlapping scope at the same
    time counts it too (`_alongside`). The pass that sent a row does not tell which run asked
    for it (a worker's sweep sends a run's rows as it finds them due)."""
    with uow_factory() as uow:
        rows = uow.ledger.scope_summary(
            scope.tenant_id,
            destination_id=scope.destination_id,
            course_id=scope.course_id,
            activity_ids=scope.activity_ids or None,
            delivered_since=since,
            leave_out=leave_out,
        )
    counts: dict[str, Any] = {
        "keys": 0,
        "sent": 0,
        "unchanged": 0,
        "pending": 0,
        "retrying": 0,
        "skipped": {},
        "rejected": {},
    }
    for state, reason, fresh, n in rows:
        counts["keys"] += n
        if state == DeliveryState.DELIVERED.value:
            counts["sent" if fresh else "unchanged"] += n
        elif state == DeliveryState.PENDING.value:
            counts["pending"] += n
        elif state == DeliveryState.RETRYING.value:
            counts["retrying"] += n
        elif state == DeliveryState.SKIPPED.value:
            code = reason or "unknown"
            counts["skipped"][code] = counts["skipped"].get(code, 0) + n
        elif state == DeliveryState.REJECTED.value:
            code = reason or "unknown"
            counts["rejected"][code] = counts["rejected"].get(code, 0) + n
    return counts


@dataclass(frozen=True, slots=True)
class _Held:
    """A paused destination of a run's scope and the scope's results there waiting for it."""

    destination: Destination
    pending: int
    retrying: int
    goes: int  # of those, the rows that go within the run's patience left

    @classmethod
    def of(cls, d: Destination, states: dict[str, int], goes: int) -> _Held:
        return cls(
            d,
            states.get(DeliveryState.PENDING.value, 0),
            states.get(DeliveryState.RETRYING.value, 0),
            goes,
        )


def _pause_end(d: Destination) -> datetime | None:
    """When a paused destination's pause ends by itself; None for an admin's pause until
    resumed (a destination turned off stays off whatever its pause says)."""
    return d.paused_until if d.enabled else None


def _pause_name(d: Destination) -> str:
    """A paused destination as a run's message names it, e.g. "lms paused (exam week)", with
    the time a timed pause ends."""
    timed = _pause_end(d)
    until = f" until {timed.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if timed is not None else ""
    return f"{d.name} paused{until}" + (f" ({d.pause_reason})" if d.pause_reason else "")


def _sent_when(paused: Sequence[Destination]) -> str:
    """When the results waiting for these pauses go: nobody resumes a timed pause, its rows
    go when it ends; an admin's pause without an end, when resumed."""
    timed = sum(_pause_end(d) is not None for d in paused)
    if timed == 0:
        return "sent when resumed"
    if timed < len(paused):
        return "sent when resumed or when a timed pause ends"
    return "sent when it ends" if timed == 1 else "sent when they end"


def _describe(
    counts: dict[str, Any],
    paused: Sequence[Destination] = (),
    failed: Mapping[str, Reason] | None = None,
) -> str:
    def by_reason(d: dict[str, int]) -> str:
        # the reasons in words; their codes are in the run's counts (the API, --json)
        return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(d.items()))

    parts = [f"{counts.get('sent', 0)} sent", f"{counts.get('unchanged', 0)} unchanged"]
    carried = counts.get("carried")
    if carried:
        parts.insert(
            0,
            f"carried from remaster {carried['from_run']}: {carried['results']} result(s) and "
            f"{carried['columns']} column(s) it could not rewrite",
        )
    skipped, rejected = counts.get("skipped", {}), counts.get("rejected", {})
    if skipped:
        parts.append(f"{sum(skipped.values())} skipped ({by_reason(skipped)})")
    if rejected:
        parts.append(f"{sum(rejected.values())} rejected ({by_reason(rejected)})")
    if counts.get("retrying"):
        parts.append(f"{counts['retrying']} retrying")
    if counts.get("pending"):
        # a paused destination's rows are not waited for: they go once the pause ends
        names = ", ".join(_pause_name(d) for d in paused)
        waits = f" (waiting for {names}; {_sent_when(paused)})" if paused else ""
        parts.append(f"{counts['pending']} still pending{waits}")
    cols = counts.get("columns", {})
    if cols.get("failed"):
        parts.append(f"{cols['failed']} column(s) could not be provisioned{_why(failed or {})}")
    if counts.get("overridden"):
        parts.append(f"{counts['overridden']} grade(s) changed by hand in the gradebook")
    if counts.get("rescaled"):
        parts.append(
            f"{counts['rescaled']} grade(s) sent again after their column's points, changed "
            "in the gradebook, were put back"
        )
    if counts.get("points_kept"):
        parts.append(
            f"{counts['points_kept']} grade(s) left as the gradebook holds them: it keeps its "
            "own points for their column (the course's diagnosis says what to do)"
        )
    if counts.get("uncounted"):
        parts.append(
            f"{counts['uncounted']} grade(s) not counted by the LMS: their column is not tied "
            "to the activity's LTI link (open the activity once from its link in the course)"
        )
    if counts.get("differs"):
        parts.append(f"{counts['differs']} result(s) differ in the gradebook when read back")
    return "; ".join(parts) + "."


# Rejections a run accepts as known: the LMS says it does not know a learner (not enrolled
# there, or dropped). Nothing gradesync can send fixes that, so a run that otherwise did
# its job succeeded, and says how many learners the LMS does not know.
ACCEPTED_REJECTIONS = frozenset({"unknown_user"})


def _accepted(counts: dict[str, Any]) -> int:
    rejected: dict[str, int] = counts.get("rejected", {})
    return sum(n for code, n in rejected.items() if code in ACCEPTED_REJECTIONS)


def _headline(outcome: RunOutcome, counts: dict[str, Any]) -> str:
    """What a person reads first when a run succeeded with accepted rejections."""
    n = _accepted(counts)
    if outcome is not RunOutcome.SUCCEEDED or n == 0:
        return ""
    who = "learner the LMS does not know" if n == 1 else "learners the LMS does not know"
    return f"Succeeded; {n} {who}: "


def _count_deleted(counts: dict[str, Any], gone: dict[str, tuple[str, int]]) -> None:
    """A deleted destination's results are no longer in the ledger the counts are read
    from: what the run delivered there before stays counted as sent, and the deletion is a
    problem of the run (what it had not sent yet never went)."""
    if not gone:
        return
    counts["destinations_deleted"] = {d: n for d, (_, n) in gone.items()}
    sent = sum(n for _, n in gone.values())
    counts["sent"] = counts.get("sent", 0) + sent
    counts["keys"] = counts.get("keys", 0) + sent


def _made_since(
    targets: Sequence[_Target], first_start: datetime
) -> tuple[list[_Target], dict[str, Destination]]:
    """A resumed run's targets, read again, split into those it was made for and the
    destinations made since it first started (id -> destination): not the run's, whether
    new or made again under the id of one of its own deleted meanwhile."""
    kept: list[_Target] = []
    since: dict[str, Destination] = {}
    for tg in targets:
        made = tg.destination.created_at
        if made is not None and made > first_start:
            since[tg.destination.id] = tg.destination
        else:
            kept.append(tg)
    return kept, since


def _last_start(stages: Sequence[str]) -> int:
    return max((i for i, s in enumerate(stages) if s == "computing"), default=0)


def _resumed(stages: Sequence[str]) -> bool:
    """Whether the run, by its stage history, started before this start (it is resumed)."""
    return "computing" in stages[: _last_start(stages)]


def _computed_before(stages: Sequence[str]) -> bool:
    """Whether an earlier start of the run got past computing (it is resumed)."""
    return any(s in _PAST_COMPUTING for s in stages[: _last_start(stages)])


def _deleted_since(ours: Destination, now: Destination | None) -> bool:
    """Whether the destination a run started with (`ours`) was deleted since: `now`, what
    its id names now, is none, or another made again under that id."""
    return now is None or now.created_at != ours.created_at


def _nothing_to_sync(made_since: Mapping[str, Destination]) -> str:
    """Why a run had nothing to sync: nothing linked to its scope, or (a resumed run) only
    destinations added since it first started, which are not the run's."""
    if not made_since:
        return (
            "Nothing to sync: no destination is linked to this scope (a course is linked by "
            "an LTI launch or by mapping it to a SIS class)."
        )
    names = ", ".join(sorted(d.name for d in made_since.values()))
    which, them = ("destination", "it") if len(made_since) == 1 else ("destinations", "them")
    were = "was" if len(made_since) == 1 else "were"
    return (
        f"Nothing to sync: the {which} linked to this scope ({names}) {were} added after the "
        "run first started, and a resumed run syncs only the destinations it started with "
        f"(a new run syncs {them})."
    )


def _gone(gone: dict[str, tuple[str, int]]) -> str:
    """What a person reads first when destinations of the run were deleted while it ran."""
    if not gone:
        return ""
    each = ", ".join(f"{name} ({n} sent to it before)" for name, n in gone.values())
    return f"Deleted while the run ran, the rest of its results not sent: {each}. "


# runs a message names that ran alongside it; the rest are counted
_NAMED_RUNS = 3


def _alongside(run_ids: Sequence[str]) -> str:
    """The runs over an overlapping scope that ran while this one did, said after its counts:
    `sent` counts the scope's results delivered while the run ran, whoever sent them
    (`summarise`), so a result of both counts as sent in each, and the runs' figures add up to
    more than was sent."""
    if not run_ids:
        return ""
    named = ", ".join(run_ids[:_NAMED_RUNS])
    more = len(run_ids) - _NAMED_RUNS
    if more > 0:
        named += f" and {more} more"
    if len(run_ids) == 1:
        return (
            f" Ran alongside {named}, whose scope overlaps this one's: a result of both "
            "delivered while both ran is counted as sent by each."
        )
    return (
        f" Ran alongside {len(run_ids)} runs whose scopes overlap this one's ({named}): a "
        "result shared with one of them and delivered while both ran is counted as sent by each."
    )


def _outcome(counts: dict[str, Any]) -> RunOutcome:
    delivered = counts.get("sent", 0) + counts.get("unchanged", 0)
    rejected = sum(counts.get("rejected", {}).values())
    if delivered > 0:  # nothing delivered at all is a failure, whatever the reasons
        rejected -= _accepted(counts)
    problems = (
        rejected
        + counts.get("retrying", 0)
        + counts.get("pending", 0)
        + counts.get("columns", {}).get("failed", 0)
        + len(counts.get("destinations_deleted", {}))
    )
    if problems == 0:
        return RunOutcome.SUCCEEDED
    if delivered > 0:
        return RunOutcome.PARTLY_FAILED
    return RunOutcome.FAILED


def _by_rule(failed: Mapping[str, Reason]) -> dict[str, int]:
    """The columns that could not be provisioned, counted by the rule or failure each broke
    (their codes, as docs/troubleshooting.md names them)."""
    out: dict[str, int] = {}
    for r in failed.values():
        out[r.code] = out.get(r.code, 0) + 1
    return out


# columns a run names in its message for one failure; the rest are in `columns_failed`
_NAMED_COLUMNS = 3


def _why(failed: Mapping[str, Reason]) -> str:
    """The failed columns grouped by what happened (a course's refused link fails every
    column of it alike), each with its code, a few columns named. What happened, never a
    remedy: the message is one text every reader reads (an instructor too, on the console),
    and the remedies are worded per reader where the rule is checked (doctor, a SIS page)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for key, r in sorted(failed.items()):
        groups.setdefault((r.code, r.text.partition(SEPARATOR)[0]), []).append(key)
    said = []
    for (code, text), keys in groups.items():
        named = ", ".join(keys[:_NAMED_COLUMNS])
        more = len(keys) - _NAMED_COLUMNS
        if more > 0:
            named += f" and {more} more"
        said.append(f" ({named}, {code}: {text})")
    return "".join(said)


def _column_failure(exc: BaseException) -> Reason:
    """Why a column could not be provisioned, with the remedy where the adapter knows one."""
    if isinstance(exc, RemoteFailure):
        return reason_of(exc)
    if isinstance(exc, DestinationPaused):
        return Reason(
            "destination_paused",
            "nothing is asked of a paused destination; the column is written with its results "
            "once the pause ends",
        )
    # its class only: the message may quote learners' data (the log has it whole)
    return internal_error(type(exc).__name__)


# what computing counts, kept when a run resumes past it
_COMPUTED = ("computed", "changed", "retried", "carried")
_PAST_COMPUTING = frozenset(
    {RunStage.PROVISIONING.value, RunStage.SENDING.value, RunStage.VERIFYING.value}
)


def _rewrites(run: SyncRun, carry: Carry | None, destination_id: str, activity_id: str) -> bool:
    """Whether `run` writes this column whatever its details: a remaster every column, a run
    those a remaster left unwritten that it carries."""
    return run.trigger is Trigger.REMASTER or (
        carry is not None and carry.owes_column(destination_id, activity_id)
    )


def _column_of(tg: _Target, activity: Activity, caps: Capabilities) -> Column | None:
    """The activity's column at the target's destination, or None when it has none (its
    grades are not sent there, or its policy cannot be worked out): what the run writes."""
    policy = activity_policy((tg.tenant.policy, tg.course.policy), activity)
    if isinstance(policy, Reason):
        return None
    column = column_for(activity, policy, caps)
    return None if isinstance(column, NoResult) else column


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), max(1, size))]


class RunExecutor:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        clients: Clients,
        deliverer: Deliverer,
        settings: EngineSettings,
        worker_id: str,
        *,
        statistics: LedgerStatistics,
        live: LiveTraffic,
        bulk: UnitOfWorkFactory | None = None,
        reads: UnitOfWorkFactory | None = None,
    ) -> None:
        self.uow_factory = uow_factory
        # the units of work of a run's computing, chunk after chunk: they let the live
        # path's writes go first (on SQLite's one writer)
        self.bulk = bulk or uow_factory
        # units of work that only read: a run's summary of a large scope and its read-backs
        # hold no write lock on SQLite, so live grades do not wait behind them
        self.reads = reads or uow_factory
        self.statistics = statistics  # of the ledger rows this process writes
        self.live = live  # computing makes way while live grades flow
        self.clock = clock
        self.clients = clients
        self.deliverer = deliverer
        self.settings = settings
        self.worker_id = worker_id
        # the sending stage's time and waits: a test's clock may drive them
        self.monotonic: Callable[[], float] = time.monotonic
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    # -- bookkeeping ----------------------------------------------------------------------

    def _write(self, run: SyncRun) -> None:
        with self.uow_factory() as uow:
            now = self.clock.now()
            if not uow.runs.heartbeat(run.id, self.worker_id, now):
                raise RunTakenOver(run.id)
            uow.runs.update(run, worker_id=self.worker_id, heartbeat_at=now)
            uow.commit()

    async def _stage(self, run: SyncRun, stage: RunStage, counts: dict[str, Any]) -> SyncRun:
        run = replace(run, stage=stage, counts=dict(counts))
        await asyncio.to_thread(self._write, run)
        return run

    async def _heartbeat(self, run_id: str, lost: asyncio.Event) -> None:
        def beat() -> bool:
            with self.uow_factory() as uow:
                ok = uow.runs.heartbeat(run_id, self.worker_id, self.clock.now())
                uow.commit()
                return ok

        while True:
            await asyncio.sleep(self.settings.heartbeat.total_seconds())
            try:
                if not await asyncio.to_thread(beat):
                    lost.set()
                    return
            except Exception as exc:
                if not database_lost(exc):
                    log.exception("run %s: heartbeat failed", run_id)

    # -- the stages -----------------------------------------------------------------------

    async def execute(self, run: SyncRun) -> SyncRun:
        """Run a claimed run (stage computing) to the end. Never raises for a failed run:
        the failure is recorded on the run."""
        lost = asyncio.Event()
        beat = asyncio.create_task(self._heartbeat(run.id, lost), name=f"heartbeat {run.id}")
        started = run.started_at or self.clock.now()
        counts: dict[str, Any] = {}
        interrupted: BaseException | None = None
        try:
            targets = await asyncio.to_thread(self._targets, run.scope)
            made_since: dict[str, Destination] = {}
            stages = await asyncio.to_thread(self._stages, run.id)
            resumed = _resumed(stages)
            if resumed:
                # its destinations read again: one made since it first started is not one it
                # was made for (its own under that id was deleted meanwhile, maybe)
                targets, made_since = _made_since(targets, started)
            carry = await asyncio.to_thread(owed, self.uow_factory, run)
            if run.trigger is Trigger.REMASTER or carry is not None:
                # before any of its grades is due: the first send to each of the columns it
                # rewrites checks that column first (other runs rewrite none: no transaction)
                await asyncio.to_thread(self._owe_rewrites, run, targets, carry)
            if _computed_before(stages):
                # resumed after it had computed: what it computed stands, so a remaster does
                # not make pending again what it already delivered (the ledger knows)
                counts.update({k: v for k, v in run.counts.items() if k in _COMPUTED})
            else:
                counts.update(await self._computing(run, targets, lost))
                if carry is not None:
                    counts["carried"] = await self._carrying(run, carry)
            run = await self._stage(run, RunStage.PROVISIONING, counts)
            failed: dict[str, Reason] = {}
            resent: list[str] = []
            counts["columns"] = await self._provisioning(run, targets, failed, carry, resent)
            run = await self._stage(run, RunStage.SENDING, counts)
            # one patience for the run, wherever it sends
            patience = Patience(self.settings.retry_patience.total_seconds(), self.monotonic())
            sent = await self._sending(run, counts, lost, patience)
            if failed:
                # columns that failed get one more try once the results are sent (a 5xx or
                # a throttle then has passed); what fails again is carried (services.carry)
                before = len(resent)
                failed = await self._provision_again(run, targets, failed, carry, counts, resent)
                if len(resent) > before:
                    # grades that went to a column as it was, now written: they go again
                    sent.add(await self._sending(run, counts, lost, patience))
            if failed:
                counts["columns_failed"] = list(failed)
                counts["column_failures"] = _by_rule(failed)
            run = await self._stage(run, RunStage.VERIFYING, counts)
            counts.update(
                await self._verifying(
                    run,
                    sent,
                    started,
                    targets,
                    counts=counts,
                    lost=lost,
                    patience=patience,
                    not_ours=made_since,
                )
            )
            held = await self._counted(run, started, targets, patience, counts)
            for _ in range(2):
                # results that became pending while the run verified (new grades) are sent
                # now, and a timed pause that ends within the patience the run has left is
                # waited out as in sending: a run ends with results pending only behind a
                # pause it does not wait for (an admin's until resumed, or one ending later)
                if not self._owed(counts, held):
                    break
                await self._sending(run, counts, lost, patience)
                held = await self._counted(run, started, targets, patience, counts)
            paused = [h.destination for h in held if h.pending]
            gone = await asyncio.to_thread(self._deleted, run, targets, started, made_since)
            if gone:
                # one made again under the id of a deleted one has a ledger of its own: not
                # the run's (a deleted one's went with it)
                not_ours = await asyncio.to_thread(self._not_ours, run.scope, started, targets)
                left_out = sorted({*not_ours, *gone})
                counts.update(
                    await asyncio.to_thread(summarise, self.reads, run.scope, started, left_out)
                )
            _count_deleted(counts, gone)
            outcome = _outcome(counts)
            message = _gone(gone) + _headline(outcome, counts) + _describe(counts, paused, failed)
            if not targets and not paused and not gone:
                message = _nothing_to_sync(made_since)
            else:
                message += _alongside(await asyncio.to_thread(self._overlapping, run, started))
        except RunTakenOver:
            log.warning("run %s was requeued while this worker ran it; leaving it", run.id)
            beat.cancel()
            return run
        except asyncio.CancelledError:
            beat.cancel()
            raise
        except Exception as exc:
            if database_lost(exc):
                interrupted = exc
            else:
                log.exception("run %s failed", run.id)
                outcome = RunOutcome.FAILED
                message = f"The run stopped: {type(exc).__name__}: {exc}"
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        if interrupted is not None:
            return await self._interrupted(run, interrupted)
        done = replace(
            run,
            stage=RunStage.FINISHED,
            outcome=outcome,
            counts=counts,
            message=message,
            finished_at=self.clock.now(),
        )
        try:
            await asyncio.to_thread(self._write, done)
        except RunTakenOver:
            return run
        except Exception as exc:
            if not database_lost(exc):
                raise
            return await self._interrupted(run, exc)
        return done

    def _overlapping(self, run: SyncRun, started: datetime) -> list[str]:
        """The ids of the runs over a scope overlapping the run's that ran while it did (from
        its first start), by their first start."""
        with self.reads() as uow:
            others = uow.runs.running_since(run.scope.tenant_id, started, but=run.id)
        return [o.id for o in others if o.scope.overlaps(run.scope)]

    def _deleted(
        self,
        run: SyncRun,
        targets: Sequence[_Target],
        since: datetime,
        made_since: dict[str, Destination],
    ) -> dict[str, tuple[str, int]]:
        """The run's destinations deleted while it ran (their ledger went with them), each
        with its name and how many results the run delivered there before, by the log (up to
        the first deletion under its id since the run started). One made again under the
        same id meanwhile (`created_at` tells), once or more, is another destination: the
        run's was deleted, and what the run's sends took to those is not counted.
        `made_since`: destinations a resumed run found made since it first started; one whose
        id names a destination deleted since then replaced the run's, under the name its
        deletion recorded (a run asked for one destination keeps that one's). The destination
        a run was asked for, when not among its targets, is looked for among the deletions
        too: a resumed run finds none under its id once it was deleted (and not made again)."""
        ours = {tg.destination.id: tg.destination for tg in targets}
        asked = run.scope.destination_id
        looked_up = {*made_since, *([asked] if asked and asked not in ours else [])}
        if not ours and not looked_up:
            return {}
        tenant = run.scope.tenant_id
        with self.reads() as uow:
            now = uow.destinations.get_many(tenant, {*ours, *looked_up})
            gone = sorted(d for d in ours if _deleted_since(ours[d], now.get(d)))
            names = {d: ours[d].name for d in gone}
            # when the run's own destination under each id was deleted: the first deletion
            # since the run started (the oldest first). What went under the id from then on
            # went to those made again after it, however many times it was made again.
            ended: dict[str, datetime] = {}
            for deletion in uow.destinations.deleted(tenant, {*gone, *looked_up}):
                d = deletion.id
                if d in ended or deletion.deleted_at < since:
                    continue
                ended[d] = deletion.deleted_at
                names.setdefault(
                    d,
                    run.destination_name if asked == d and run.destination_name else deletion.name,
                )
            sent: dict[str, int] = {}
            for d in names:
                # (each deletion is recorded; were none found, one there now under the id
                # was made since, and what went from its making on is its)
                again = now.get(d)
                until = ended.get(d, again.created_at if again else None)
                sent |= uow.deliveries.delivered_by_run(tenant, run.id, [d], since, until=until)
        return {d: (names[d], sent.get(d, 0)) for d in sorted(names)}

    def _stages(self, run_id: str) -> list[str]:
        with self.uow_factory() as uow:
            return [s["stage"] for s in uow.runs.stages(run_id)]

    async def _interrupted(self, run: SyncRun, exc: BaseException) -> SyncRun:
        """The database was lost mid-run: the run is not failed. Once the database answers
        the run goes back to the queue (returned with stage queued) and resumes from where
        it was; the worker that owns it stays its owner meanwhile (a worker that dies in
        the wait leaves it to the heartbeat takeover). Waits until the database answers or
        the task is cancelled (the worker stops)."""
        lost_at = self.clock.now()
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("run %s: the database was lost (%s); it resumes once it answers", run.id, why)
        note = f"database lost at {lost_at:%H:%M:%S} UTC; requeued by {self.worker_id}"

        def requeue() -> bool:
            with self.uow_factory() as uow:
                ok = uow.runs.requeue_own(run.id, self.worker_id, self.clock.now(), note)
                uow.commit()
                return ok

        delay = 0.2
        while True:
            await asyncio.sleep(delay)
            try:
                mine = await asyncio.to_thread(requeue)
            except Exception as again:
                if not database_lost(again):
                    raise
                delay = min(delay * 2, 5.0)
                continue
            if not mine:
                log.warning("run %s was taken over while the database was away", run.id)
                return run
            log.warning("run %s: the database answers again; resuming it", run.id)
            return replace(run, stage=RunStage.QUEUED)

    def _pauses(
        self, scope: RunScope, patience_left: float, not_ours: Collection[str] = ()
    ) -> list[_Held]:
        """The destinations in the run's scope paused now, by an admin or for a while, that
        hold results of the scope not yet delivered (they wait for the pause). A paused
        destination holding none of them is not what they wait for. Each counts the rows
        that go within `patience_left` seconds: none unless its pause is timed and ends by
        then (a Retry-After, the breaker's cool-down), then those due by then. `not_ours`:
        destinations whose rows the run does not count (made since it first started)."""
        now = self.clock.now()
        by = now + timedelta(seconds=patience_left)
        held: list[_Held] = []
        with self.uow_factory() as uow:
            for d in self._paused_in(uow, scope.tenant_id, scope.destination_id, now):
                if d.id in not_ours:
                    continue
                ends = _pause_end(d)
                goes = 0
                if ends is not None and ends <= by:
                    goes, _, _, _ = uow.ledger.due_summary(
                        by,
                        tenant_id=d.tenant_id,
                        destination_id=d.id,
                        course_id=scope.course_id,
                        activity_ids=scope.activity_ids or None,
                    )
                held.append(_Held.of(d, self._states_at(uow, d, scope), goes))
        return [h for h in held if h.pending or h.retrying]

    @staticmethod
    def _owed(counts: dict[str, Any], held: Sequence[_Held]) -> bool:
        """Whether results of the scope can still go within the run's patience: pending ones
        not behind a pause (grades that arrived meanwhile), and those a timed pause holds
        that go within it (a send answered with a Retry-After retries when that pause ends;
        one backed off for longer does not go, nor does anything behind a longer pause)."""
        return counts["pending"] > sum(h.pending for h in held) or any(h.goes for h in held)

    @staticmethod
    def _states_at(uow: UnitOfWork, dest: Destination, scope: RunScope) -> dict[str, int]:
        """The scope's rows at `dest` by state."""
        rows = uow.ledger.scope_summary(
            dest.tenant_id,
            destination_id=dest.id,
            course_id=scope.course_id,
            activity_ids=scope.activity_ids or None,
        )
        out: dict[str, int] = {}
        for state, _, _, n in rows:
            out[state] = out.get(state, 0) + n
        return out

    @staticmethod
    def _of_scope(
        uow: UnitOfWork, tenant_id: str | None, destination_id: str | None
    ) -> list[Destination]:
        """The destinations of a scope: the one it names, or all of its tenant's."""
        if tenant_id is None:
            return []  # a run's scope always names its tenant
        if destination_id:
            one = uow.destinations.get(tenant_id, destination_id)
            return [one] if one is not None else []
        return uow.destinations.all(tenant_id)

    @classmethod
    def _paused_in(
        cls, uow: UnitOfWork, tenant_id: str | None, destination_id: str | None, now: datetime
    ) -> list[Destination]:
        """The destinations of a scope paused at `now`."""
        return [d for d in cls._of_scope(uow, tenant_id, destination_id) if d.paused_at(now)]

    def _not_ours(
        self, scope: RunScope, first_start: datetime, targets: Sequence[_Target]
    ) -> list[str]:
        """The ids of the scope's destinations a run does not count: those made after it
        first started (their rows are in its scope; its sends take those due, as they take
        any of the scope's). Read anew at each count, so one made while the run runs, in its
        first start or resumed, is left out too. One of the run's `targets` is always its
        own: made by a process whose clock runs ahead of the worker's, it may look made after
        the run started."""
        ours = {(tg.destination.id, tg.destination.created_at) for tg in targets}
        with self.reads() as uow:
            dests = self._of_scope(uow, scope.tenant_id, scope.destination_id)
        return sorted(
            d.id
            for d in dests
            if d.created_at is not None
            and d.created_at > first_start
            and (d.id, d.created_at) not in ours
        )

    async def _counted(
        self,
        run: SyncRun,
        started: datetime,
        targets: Sequence[_Target],
        patience: Patience,
        counts: dict[str, Any],
    ) -> list[_Held]:
        """The run's counts taken now into `counts` (`summarise`), and the pauses that hold
        its results (`_pauses`), both without the destinations it does not count
        (`_not_ours`, read now)."""
        not_ours = await asyncio.to_thread(self._not_ours, run.scope, started, targets)
        counts.update(await asyncio.to_thread(summarise, self.reads, run.scope, started, not_ours))
        return await asyncio.to_thread(
            self._pauses, run.scope, patience.left(self.monotonic()), not_ours
        )

    async def _carrying(self, run: SyncRun, carry: Carry) -> dict[str, Any]:
        """The results a remaster could not rewrite become pending again, as in a remaster
        (`services.carry`); the run's history says so."""
        for (dest, course, activity), people in sorted(carry.results.items()):
            for chunk in _chunks(sorted(people), self.settings.scope_chunk):
                await asyncio.to_thread(
                    compute_activity,
                    self.bulk,
                    self.clock,
                    self.clients.capabilities,
                    tenant_id=run.scope.tenant_id,
                    destination_id=dest,
                    course_id=course,
                    activity_id=activity,
                    person_ids=chunk,
                    remaster=True,
                )
        await asyncio.to_thread(record, self.uow_factory, run.id, carry)
        return {"from_run": carry.from_run, "results": carry.result_count, "columns": carry.columns}

    def _targets(self, scope: RunScope) -> list[_Target]:
        out: list[_Target] = []
        with self.uow_factory() as uow:
            tenant = uow.tenants.get(scope.tenant_id)
            if tenant is None:
                return []
            # a destination an admin paused is in scope too: its results are computed and
            # wait, pending, for the resume (the run says so), its columns with them
            for d in self._of_scope(uow, scope.tenant_id, scope.destination_id):
                if scope.course_id:
                    link = uow.links.course(scope.tenant_id, d.id, scope.course_id)
                    links = [link] if link is not None else []
                else:
                    links = uow.links.courses_for_destination(scope.tenant_id, d.id)
                for link in sorted(links, key=lambda lk: lk.course_id):
                    if migrated_to(link) is not None:  # moved to LTI 1.3: history only
                        continue
                    course = uow.courses.get(scope.tenant_id, link.course_id)
                    if course is None:
                        continue
                    acts = list(scope.activity_ids) or [
                        a.id for a in uow.activities.for_course(scope.tenant_id, course.id)
                    ]
                    out.append(_Target(d, tenant, course, link, acts))
        return out

    def _owe_rewrites(self, run: SyncRun, targets: Sequence[_Target], carry: Carry | None) -> None:
        """The columns the run writes whatever their details (`_rewrites`) are marked to be
        checked (`mark_items_to_check`) until the run, or the first send to one, writes
        it: workers send a grade as soon as it is due (before the run's provisioning, or
        after a pause that held the run's column), and an LMS may turn a score into its
        column's points when it stores it (Canvas does), so a column whose points were
        changed by hand in the LMS is put right before any grade reaches it."""
        with self.uow_factory() as uow:
            for tg in targets:
                d = tg.destination
                caps = self.clients.capabilities(d)
                if isinstance(caps, Reason):  # not usable: the run says why, writes nothing
                    continue
                activities = uow.activities.get_many(tg.tenant.id, tg.activity_ids)
                ids = [
                    a.id
                    for a in activities.values()
                    if _rewrites(run, carry, d.id, a.id) and _column_of(tg, a, caps) is not None
                ]
                uow.links.mark_items_to_check(run.scope.tenant_id, d.id, ids, check_mark(run.id))
            uow.commit()

    async def _computing(
        self, run: SyncRun, targets: list[_Target], lost: asyncio.Event
    ) -> dict[str, Any]:
        remaster = run.trigger in (Trigger.REMASTER, Trigger.REPAIR)
        reset = run.trigger in (Trigger.MANUAL, Trigger.RESYNC)
        stats = ComputeStats()
        for tg in targets:
            learners = await asyncio.to_thread(
                learners_of, self.bulk, tg.course.tenant_id, tg.course.id
            )
            for activity_id in tg.activity_ids:
                if lost.is_set():
                    raise RunTakenOver(run.id)
                people = await asyncio.to_thread(
                    people_of_activity,
                    self.bulk,
                    tg.course.tenant_id,
                    tg.destination.id,
                    tg.course.id,
                    activity_id,
                    learners,
                )
                for chunk in _chunks(people, self.settings.scope_chunk):
                    started = time.monotonic()
                    computed = await asyncio.to_thread(
                        compute_activity,
                        self.bulk,
                        self.clock,
                        self.clients.capabilities,
                        tenant_id=tg.course.tenant_id,
                        destination_id=tg.destination.id,
                        course_id=tg.course.id,
                        activity_id=activity_id,
                        person_ids=chunk,
                        remaster=remaster,
                        reset_failures=reset,
                    )
                    stats.add(computed)
                    if self.statistics.due_after(computed.changed):
                        await asyncio.to_thread(self.statistics.refresh)
                    pause = self.live.pause_after(time.monotonic() - started)
                    if pause:
                        await asyncio.sleep(pause)  # a throttle: live grades go first
        # the run's sending (and live grades meanwhile) read the ledger as it is now
        if self.statistics.catch_up():
            await asyncio.to_thread(self.statistics.refresh)
        return {"computed": stats.keys, "changed": stats.changed, "retried": stats.reset}

    def _load_columns(
        self, tg: _Target
    ) -> tuple[CourseLink | None, dict[str, Activity], dict[str, ItemLink]]:
        with self.uow_factory() as uow:
            t = tg.course.tenant_id
            return (
                uow.links.course(t, tg.destination.id, tg.course.id),
                uow.activities.get_many(t, tg.activity_ids),
                uow.links.items(t, tg.destination.id, tg.activity_ids),
            )

    async def _provisioning(
        self,
        run: SyncRun,
        targets: list[_Target],
        failed: dict[str, Reason],
        rewrite: Carry | None,
        resent: list[str],
        first: dict[str, Reason] | None = None,
    ) -> dict[str, int]:
        """Column counts; the columns that could not be provisioned go into `failed`
        ("destination/activity": why, the rule the destination's refusal names and its
        remedy, so that the run says it and not only the log). Details are written even
        when unchanged in a remaster and for the columns `rewrite` carries from a remaster
        that could not rewrite them. A column the run writes itself while still marked took,
        since the run began, only grades whose send could not write it first (`Provisioner.
        ensure_column`, `for_grades`): they went to it as it was, and are made due again
        (their columns named in `resent`).
        `first`: these columns alone (a second try), with why each failed the first time;
        a failure the same as then is not logged again."""
        counts = {"written": 0, "unchanged": 0, "not_synced": 0, "failed": 0}
        said = first or {}

        def record(key: str, why: Reason) -> bool:
            """Note the failure; whether to log it (not as the first try found it)."""
            failed[key] = why
            return said.get(key) != why

        for tg in targets:
            d = tg.destination
            if first is not None:
                tg = replace(
                    tg, activity_ids=[a for a in tg.activity_ids if f"{d.id}/{a}" in first]
                )
                if not tg.activity_ids:
                    continue
            link, activities, items = await asyncio.to_thread(self._load_columns, tg)
            try:
                client = self.clients.get(d)
                course_link = await self.deliverer.provisioner.course_link(
                    client, d, tg.course, link
                )
            except Exception as exc:
                counts["failed"] += len(tg.activity_ids)
                why = _column_failure(exc)
                fresh = [record(f"{d.id}/{a}", why) for a in tg.activity_ids]  # each noted
                if any(fresh):
                    log.warning("run %s: course %s at %s: %s", run.id, tg.course.id, d.id, exc)
                continue
            for activity_id in tg.activity_ids:
                activity = activities.get(activity_id)
                if activity is None:
                    continue
                column = _column_of(tg, activity, client.capabilities)
                if column is None:
                    counts["not_synced"] += 1
                    continue
                item = items.get(activity_id)
                rewrites = _rewrites(run, rewrite, d.id, activity_id)
                if rewrites and item is not None and item.details_hash != check_mark(run.id):
                    # the run's mark (`_owe_rewrites`) is gone: the first grade sent to the
                    # column since wrote it for the run
                    counts["written"] += 1
                    continue
                try:
                    # a column still marked is written whatever its details
                    _, written = await self.deliverer.provisioner.ensure_column(
                        client, d, course_link, column, item, priority=RUN_PRIORITY
                    )
                except DestinationPaused as paused:
                    # nothing asked of a paused destination: tried again after sending
                    # (which waits out a pause that ends within the run's patience)
                    counts["failed"] += 1
                    if record(f"{d.id}/{activity_id}", _column_failure(paused)):
                        log.info("run %s: column %s waits: %s", run.id, activity_id, paused)
                    continue
                except RemoteFailure as f:
                    if f.failure is FailureClass.NOT_SYNCED:
                        # not sent by design (e.g. not selected for SIS passback); its rows
                        # are skipped with the reason when delivery reaches them
                        counts["not_synced"] += 1
                        continue
                    governor = self.deliverer.governor
                    outcome_of_failure(governor, f, d, governor.limits_for(d))
                    counts["failed"] += 1
                    if record(f"{d.id}/{activity_id}", _column_failure(f)):
                        log.warning("run %s: column %s at %s: %s", run.id, activity_id, d.id, f)
                    continue
                except Exception as exc:
                    counts["failed"] += 1
                    if record(f"{d.id}/{activity_id}", _column_failure(exc)):
                        log.exception("run %s: column %s at %s", run.id, activity_id, d.id)
                    continue
                # a column the run rewrites that this process wrote meanwhile, for a grade
                # of the run, is not written again here: it was written for the run
                counts["written" if written or rewrites else "unchanged"] += 1
                if written and rewrites and run.started_at is not None:
                    again = await asyncio.to_thread(
                        self._resend_sent_since, d, tg.course.id, activity_id, run.started_at
                    )
                    if again:
                        resent.append(f"{d.id}/{activity_id}")
        return counts

    def _resend_sent_since(
        self, d: Destination, course_id: str, activity_id: str, since: datetime
    ) -> int:
        """The column's grades delivered since `since` made due again, as a remaster makes
        them (how many)."""
        with self.uow_factory() as uow:
            # those alone: a column of thousands is not read whole for the few sent meanwhile
            delivered = uow.ledger.delivered_since(
                d.tenant_id,
                since,
                destination_id=d.id,
                course_id=course_id,
                activity_ids=[activity_id],
            )
        people = sorted(p for *_, p in delivered)
        if people:
            log.info(
                "%d grade(s) of %s at %s sent to the column as it was: sent again now it is"
                " written",
                len(people),
                activity_id,
                d.id,
            )
            compute_activity(
                self.bulk,
                self.clock,
                self.clients.capabilities,
                tenant_id=d.tenant_id,
                destination_id=d.id,
                course_id=course_id,
                activity_id=activity_id,
                person_ids=people,
                remaster=True,
            )
        return len(people)

    async def _provision_again(
        self,
        run: SyncRun,
        targets: list[_Target],
        failed: dict[str, Reason],
        carry: Carry | None,
        counts: dict[str, Any],
        resent: list[str],
    ) -> dict[str, Reason]:
        """Try the failed columns once more; returns those that failed again, and why."""
        still: dict[str, Reason] = {}
        again = await self._provisioning(run, targets, still, carry, resent, first=failed)
        columns = counts["columns"]
        for key in ("written", "unchanged", "not_synced"):
            columns[key] += again[key]
        columns["failed"] = columns["failed"] - len(failed) + len(still)
        return still

    async def _sending(
        self, run: SyncRun, counts: dict[str, Any], lost: asyncio.Event, patience: Patience
    ) -> DeliveryStats:
        """Deliver the scope's due rows, waiting for retries and short pauses while the run's
        `patience` lasts; what it has left when this ends is kept for the run's next send."""
        patience.resume(self.monotonic())
        try:
            return await self._sending_with(run, counts, lost, patience)
        finally:
            patience.stop(self.monotonic())

    async def _sending_with(
        self, run: SyncRun, counts: dict[str, Any], lost: asyncio.Event, patience: Patience
    ) -> DeliveryStats:
        scope = DeliveryScope.of_run(run.scope)
        total = DeliveryStats()
        last_progress = self.monotonic()
        delivered = self.deliverer.delivered_to(scope)

        def due() -> tuple[int, int, datetime | None, datetime | None]:
            """The scope's rows that can go, and when more can: a paused destination's rows
            cannot be sent, so they are not waited for (the run's message names the pause),
            but a timed pause that ends in the run's patience is, as a retry would be."""
            now = self.clock.now()
            where: dict[str, Any] = {
                "tenant_id": scope.tenant_id,
                "destination_id": scope.destination_id,
                "course_id": scope.course_id,
                "activity_ids": scope.activity_ids or None,
            }
            with self.uow_factory() as uow:
                paused = self._paused_in(uow, scope.tenant_id, scope.destination_id, now)
                due_now, leased, next_retry, leases_end = uow.ledger.due_summary(
                    now, **where, exclude_destinations=[(d.tenant_id, d.id) for d in paused]
                )
                for d in paused:
                    ends = _pause_end(d)
                    if ends is None or (next_retry is not None and ends >= next_retry):
                        continue  # paused until resumed, or something else is due sooner
                    owed, _, retry_at, _ = uow.ledger.due_summary(
                        ends, **{**where, "tenant_id": d.tenant_id, "destination_id": d.id}
                    )
                    # rows of the scope that go once the pause ends; a send the remote
                    # answered with a Retry-After is retried a hair after its pause ends
                    # (the pause is timed from the answer, the retry from its record)
                    goes = ends if owed else None if retry_at is None else max(ends, retry_at)
                    if goes is not None and (next_retry is None or goes < next_retry):
                        next_retry = goes
            return due_now, leased, next_retry, leases_end

        while True:
            stats = await self.deliverer.deliver(scope, run_id=run.id, stop=lost.is_set)
            if lost.is_set():
                raise RunTakenOver(run.id)
            total.add(stats)
            if self.monotonic() - last_progress > self.settings.heartbeat.total_seconds():
                counts["sent_so_far"] = total.delivered
                await self._stage(run, run.stage, counts)  # sending, or verifying's resend
                last_progress = self.monotonic()
            due_now, leased, next_retry, leases_end = await asyncio.to_thread(due)
            if leases_end is not None:
                # rows another worker holds (it may have died): they go once its lease ends
                held_for = (leases_end - self.clock.now()).total_seconds()
                patience.hold_until(self.monotonic() + max(0.0, held_for))
            settled = stats.delivered + stats.rejected + stats.skipped
            # rows due while the destination takes other results (live grades go first)
            # wait their turn: that is not a destination failing them
            delivered, before = self.deliverer.delivered_to(scope), delivered
            waiting_turn = due_now > 0 and delivered > before
            if not patience.look(
                self.monotonic(), settled, due_now + leased, waiting_turn=waiting_turn
            ):
                break
            remaining = patience.left(self.monotonic())
            if due_now == 0 and leased == 0:
                if next_retry is None:
                    break
                until_retry = (next_retry - self.clock.now()).total_seconds()
                if until_retry > remaining:
                    break
                await self.sleep(max(0.01, until_retry))
                continue
            if due_now > 0 and stats.claimed > 0:
                continue  # new work appeared while the last pass ended
            # rows held by another pass: look again shortly
            await self.sleep(min(remaining, 0.1))
        counts.pop("sent_so_far", None)
        return total

    def _verify_facts(
        self, tenant_id: str, dest_id: str, course_id: str, activity_id: str
    ) -> tuple[
        Destination | None,
        CourseLink | None,
        ItemLink | None,
        dict[str, PersonLink],
        dict[tuple[str, str], LedgerRow],
    ]:
        with self.reads() as uow:
            rows = uow.ledger.get_many(tenant_id, dest_id, course_id, [activity_id])
            # the column's learners only: a SIS's student links hold every learner it has
            people = uow.links.people_for(tenant_id, dest_id, course_id, [p for _, p in rows])
            return (
                uow.destinations.get(tenant_id, dest_id),
                uow.links.course(tenant_id, dest_id, course_id),
                uow.links.item(tenant_id, dest_id, activity_id),
                people,
                rows,
            )

    def _uncounted(
        self, tenant_id: str, dest_id: str, course_id: str, activity_id: str, dest_name: str
    ) -> int:
        """Marks the delivered grades of a column the destination cannot count as rejected
        with the reason (a launch from the activity's link sends them again); how many."""
        now = self.clock.now()
        text = (
            f"{dest_name} holds this grade but does not count it: its column is not tied to "
            "the activity's LTI link, and no launch from that link has been received."
        )
        marked = 0
        with self.uow_factory() as uow:
            rows = uow.ledger.get_many(tenant_id, dest_id, course_id, [activity_id])
            for row in rows.values():
                if row.state is not DeliveryState.DELIVERED:
                    continue
                uow.ledger.save(
                    replace(
                        row,
                        state=DeliveryState.REJECTED,
                        reason_code=NO_RESOURCE_LINK,
                        reason_text=text,
                        updated_at=now,
                    ),
                    course_id,
                )
                marked += 1
            uow.commit()
        return marked

    async def _verifying(
        self,
        run: SyncRun,
        sent: DeliveryStats,
        started: datetime,
        targets: Sequence[_Target] = (),
        *,
        counts: dict[str, Any],
        lost: asyncio.Event,
        patience: Patience,
        not_ours: Collection[str] = (),
    ) -> dict[str, int]:
        tally = {
            "verified": 0,
            "differs": 0,
            "unverifiable": 0,
            "overridden": 0,
            "rescaled": 0,
            "points_kept": 0,
            "uncounted": 0,
        }
        # Columns sent to in this run first, then the rest of the scope: an instructor's
        # edit of a grade sent long ago is found too (services.overrides).
        delivered = sorted(sent.delivered_items)
        scoped = sorted(
            {
                (tg.course.tenant_id, tg.destination.id, tg.course.id, aid)
                for tg in targets
                for aid in tg.activity_ids
            }
            - set(delivered)
        )
        items = (delivered + scoped)[: self.settings.verify_max_items]
        ours = {tg.destination.id: tg.destination for tg in targets}
        overwrite = 0
        for tenant_id, dest_id, course_id, activity_id in items:
            d, course_link, item_link, people, rows = await asyncio.to_thread(
                self._verify_facts, tenant_id, dest_id, course_id, activity_id
            )
            if d is None or course_link is None or item_link is None:
                continue
            if dest_id in not_ours or (dest_id in ours and _deleted_since(ours[dest_id], d)):
                continue  # made again under the id: another destination, not the run's
            client = self.clients.get(d)
            if client.capabilities.needs_resource_link and not item_link.data.get("resourceLinkId"):
                # The platform holds these scores but never counts them (Open edX publishes
                # only a line item tied to its component): not delivered, whatever it answered.
                tally["uncounted"] += await asyncio.to_thread(
                    self._uncounted, tenant_id, dest_id, course_id, activity_id, d.name
                )
                continue
            try:
                # within the destination's limits; a paused one is not asked (unverifiable),
                # and a 429 pauses it until its Retry-After, as a send's does: the next
                # read-backs are not asked of it, nor anything else meanwhile
                backs = await read_back(
                    self.deliverer.governor, client, course_link, item_link, RUN_PRIORITY
                )
            except Exception as exc:
                log.info("run %s: read-back of %s at %s failed: %s", run.id, activity_id, d.id, exc)
                tally["unverifiable"] += 1
                continue
            if not backs:
                tally["unverifiable"] += 1
                continue
            found = await asyncio.to_thread(
                record_overrides,
                self.uow_factory,
                self.clock,
                tenant_id,
                dest_id,
                course_id,
                activity_id,
                backs,
                run_id=run.id,
                client=client,
            )
            tally["overridden"] += found.found
            tally["rescaled"] += found.rescaled
            tally["points_kept"] += found.points_kept
            overwrite += found.resent + found.rescaled
            remote = {b.remote_person_id: b for b in backs}
            for (_, person_id), row in rows.items():
                if row.state is not DeliveryState.DELIVERED or row.desired is None:
                    continue
                if row.key in found.judged:
                    continue  # counted as overridden or rescaled, not as read back different
                if row.delivered_at is None or row.delivered_at < started:
                    continue
                want = desired_from_json(row.desired)
                link = people.get(person_id)
                if want.score_given is None or link is None:
                    continue
                got = remote.get(link.remote_id)
                if got is not None and _same_score(
                    want.score_given, want.score_maximum, got.score_given, got.score_maximum
                ):
                    tally["verified"] += 1
                else:
                    tally["differs"] += 1
        if overwrite:
            # "gradesync wins": the overridden grades were marked pending, and those on a
            # column whose points were changed in the LMS (their column is written again
            # first); send them now, as part of this run, with timestamps after the LMS's
            # edits, waiting as the sending stage does (a slow-down their sends meet ends
            # within its patience)
            await self._sending(run, counts, lost, patience)
        return tally


def _same_score(given: float, maximum: float, got: float | None, got_max: float | None) -> bool:
    """Equal as fractions of the maximum (an LMS may scale a percent to its own points)."""
    if got is None:
        return False
    if maximum > 0 and got_max is not None and got_max > 0:
        return abs(given / maximum - got / got_max) < 1e-6
    return abs(given - got) < 1e-6
