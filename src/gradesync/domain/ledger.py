"""The delivery ledger: per (destination, activity, learner), what we want there and what we
last know is there, and the pure transitions between those states.

- `reconcile` folds a newly computed desired result into the row: changed means PENDING.
- `after_delivery` folds a delivery outcome into the row re-read just before writing.

Delivery always sends the row's *current* desired state, so any number of changes between two
sends coalesce into one send of the newest, and an older value cannot end on top: a send only
marks the row DELIVERED when what was sent is still what is desired.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from gradesync.domain import reasons
from gradesync.domain.canonical import digest, iso, number, parse_iso
from gradesync.domain.model import WAITING_STATES, DeliveryState, LedgerKey, LedgerRow
from gradesync.domain.policy import DesiredResult, NoResult
from gradesync.domain.reasons import Reason
from gradesync.domain.remedies import stored_text

__all__ = [
    "BackoffPolicy",
    "Delivered",
    "DeliveryOutcome",
    "Rejected",
    "RetryLater",
    "after_delivery",
    "desired_from_json",
    "desired_to_json",
    "is_pending",
    "next_score_timestamp",
    "reconcile",
    "reopened",
    "result_hash",
    "waiting_since",
]


# --- the desired result, hashed and stored -------------------------------------------------


def result_hash(result: DesiredResult) -> str:
    """sha256 of the canonical JSON of exactly what is sent. `basis`, `attempt_event_id`,
    `points_possible` and `learner_excused` explain the result but are not sent, so they do
    not make a key pending."""
    return digest(
        {
            "score_given": number(result.score_given) if result.score_given is not None else None,
            "score_maximum": number(result.score_maximum),
            "grading_progress": result.grading_progress,
            "activity_progress": result.activity_progress,
            "comment": result.comment,
            "late": result.late,
            "missing": result.missing,
            "excused": result.excused,
            "scored_at": iso(result.scored_at) if result.scored_at is not None else None,
        }
    )


def desired_to_json(result: DesiredResult) -> dict[str, Any]:
    """The JSON form kept in `LedgerRow.desired` (datetimes as ISO strings). `learner_excused`
    is there only when true: the desired result of a learner who is not excused is stored as
    it was before the fact was kept, so no row is rewritten for it."""
    out: dict[str, Any] = {
        "score_given": result.score_given,
        "score_maximum": result.score_maximum,
        "grading_progress": result.grading_progress,
        "activity_progress": result.activity_progress,
        "comment": result.comment,
        "late": result.late,
        "missing": result.missing,
        "excused": result.excused,
        "scored_at": iso(result.scored_at) if result.scored_at is not None else None,
        "basis": result.basis,
        "attempt_event_id": result.attempt_event_id,
        "points_possible": result.points_possible,
    }
    if result.learner_excused:
        out["learner_excused"] = True
    return out


def desired_from_json(d: dict[str, Any]) -> DesiredResult:
    """Inverse of `desired_to_json`."""
    given = d["score_given"]
    scored_at = d.get("scored_at")
    return DesiredResult(
        score_given=float(given) if given is not None else None,
        score_maximum=float(d["score_maximum"]),
        grading_progress=str(d["grading_progress"]),
        activity_progress=str(d["activity_progress"]),
        comment=d.get("comment"),
        late=bool(d.get("late", False)),
        missing=bool(d.get("missing", False)),
        excused=bool(d.get("excused", False)),
        scored_at=parse_iso(scored_at) if scored_at is not None else None,
        basis=str(d.get("basis", "")),
        attempt_event_id=d.get("attempt_event_id"),
        points_possible=float(points) if (points := d.get("points_possible")) is not None else None,
        learner_excused=bool(d.get("learner_excused", False)),
    )


# --- reconcile: facts changed (or were recomputed) -----------------------------------------


def reconcile(
    row: LedgerRow | None,
    key: LedgerKey,
    outcome: DesiredResult | NoResult,
    now: datetime,
    *,
    remaster: bool = False,
) -> LedgerRow | None:
    """The row to write for a newly computed outcome, or None when nothing changes.

    - A new or changed desired result: PENDING, tries reset. When the new result equals what
      was last delivered (5 -> 7 -> 5 before the 7 went out), the destination already holds it:
      DELIVERED without a send.
    - The same desired result: None (never resent), whatever the state, so a REJECTED row
      stays rejected and a RETRYING row keeps its schedule until the facts change. If only
      the explanation changed (basis, counted attempt), the row is rewritten in its state.
    - remaster: PENDING even when unchanged (and even when delivered or rejected).
    - NoResult: SKIPPED with the reason; what was delivered before is kept, for diagnostics
      (gradesync never deletes a grade it sent). None when already skipped for that reason.
    """
    if isinstance(outcome, NoResult):
        return _skip(row, key, outcome.reason, now)
    desired = desired_to_json(outcome)
    desired_hash = result_hash(outcome)
    if row is None:
        return LedgerRow(
            key=key,
            state=DeliveryState.PENDING,
            desired_hash=desired_hash,
            desired=desired,
            updated_at=now,
        )
    unchanged = desired_hash == row.desired_hash and row.state is not DeliveryState.SKIPPED
    if unchanged and not remaster:
        if desired == row.desired:
            return None
        return replace(row, desired=desired, updated_at=now)
    already_there = desired_hash == row.delivered_hash and not remaster
    return replace(
        row,
        state=DeliveryState.DELIVERED if already_there else DeliveryState.PENDING,
        desired_hash=desired_hash,
        desired=desired,
        tries=0,
        next_attempt_at=None,
        reason_code=None,
        reason_text=None,
        updated_at=now,
        pending_since=None,  # a new value: pending from `now` (updated_at)
    )


def stored(reason: Reason) -> str:
    """A reason as a row keeps it: what happened, and its remedy's code and ids rather than
    any reader's words for it (`remedies.stored_text`; each reader's are made when read)."""
    return stored_text(reason.text, reason.fix)


def _skip(row: LedgerRow | None, key: LedgerKey, reason: Reason, now: datetime) -> LedgerRow | None:
    if row is None:
        return LedgerRow(
            key=key,
            state=DeliveryState.SKIPPED,
            reason_code=reason.code,
            reason_text=stored(reason),
            updated_at=now,
        )
    if (
        row.state is DeliveryState.SKIPPED
        and row.reason_code == reason.code
        and row.reason_text == stored(reason)
    ):
        return None
    return replace(
        row,
        state=DeliveryState.SKIPPED,
        desired_hash=None,
        desired=None,
        tries=0,
        next_attempt_at=None,
        reason_code=reason.code,
        reason_text=stored(reason),
        updated_at=now,
        pending_since=None,
    )


# --- reopened: tried again at once ----------------------------------------------------------


def reopened(
    row: LedgerRow,
    now: datetime,
    *,
    reason_code: str | None = None,
    reason_text: str | None = None,
) -> LedgerRow:
    """`row` PENDING again with a fresh count of tries: its desired result did not change,
    but what held it back (a refusal, failing sends, a grade typed into the LMS) is taken as
    cured. It waits from `now`, its reopening, not from when its value first became pending:
    a row held back for a day neither goes ahead of the grades that came meanwhile nor reads
    as a day late. The reason is what the row says while it waits: none by default,
    `overridden` for a grade sent again over an LMS edit."""
    return replace(
        row,
        state=DeliveryState.PENDING,
        tries=0,
        next_attempt_at=None,
        reason_code=reason_code,
        reason_text=reason_text,
        updated_at=now,
        pending_since=None,  # pending from `now` (updated_at), see `waiting_since`
    )


# --- after_delivery: the destination answered ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivered:
    remote_status: int | None = None
    remote_message: str | None = None


@dataclass(frozen=True, slots=True)
class RetryLater:
    reason: Reason
    retry_after: timedelta | None = None  # the remote's Retry-After, honoured as given
    remote_status: int | None = None
    remote_message: str | None = None
    # A failure of this key alone (the destination works): its own, smaller bound on tries.
    max_tries: int | None = None
    # The wait is gradesync's pause for the destination's settings (bad credentials, no
    # scope), not the remote's Retry-After: counted as such in /metrics.
    misconfigured: bool = False


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: Reason
    remote_status: int | None = None
    remote_message: str | None = None


DeliveryOutcome = Delivered | RetryLater | Rejected


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Exponential backoff with jitter, bounded in delay (cap) and in tries (then REJECTED)."""

    base_seconds: float = 1.0
    factor: float = 2.0
    cap_seconds: float = 300.0
    max_tries: int = 12

    def delay(self, tries: int, rng_value: float) -> timedelta:
        """Delay before try number `tries + 1`, given `tries` failures so far (>= 1).

        "Equal jitter": a uniform pick in [d/2, d) spreads retries of many keys that failed
        together, while never retrying sooner than half the nominal delay."""
        try:
            nominal = min(self.cap_seconds, self.base_seconds * self.factor ** max(tries - 1, 0))
        except OverflowError:
            nominal = self.cap_seconds
        jitter = min(max(rng_value, 0.0), 1.0)
        return timedelta(seconds=nominal * (0.5 + 0.5 * jitter))


def _state_after_send(row: LedgerRow, sent_hash: str) -> DeliveryState:
    """Where a row goes once a send is settled, given what is desired *now*."""
    if row.state is DeliveryState.SKIPPED:
        return DeliveryState.SKIPPED  # policy said stop while we were sending
    if row.desired_hash == sent_hash:
        return DeliveryState.DELIVERED
    return DeliveryState.PENDING  # a newer desired state arrived meanwhile: send it next


def due_now(row: LedgerRow, now: datetime) -> bool:
    """What a claim would take at `now`, were the row not leased: pending, or a retry whose
    time has come."""
    if row.state is DeliveryState.PENDING:
        return True
    at = row.next_attempt_at
    return row.state is DeliveryState.RETRYING and (at is None or at <= now)


def waiting_since(row: LedgerRow) -> datetime | None:
    """When the row's current desired value became pending, if it is waiting to be sent:
    kept in `pending_since` once a send failed, else the PENDING row's `updated_at`. None
    for a row not waiting, or retrying since before this was recorded."""
    if row.state not in WAITING_STATES:
        return None
    if row.pending_since is not None:
        return row.pending_since
    return row.updated_at if row.state is DeliveryState.PENDING else None


def after_delivery(
    row: LedgerRow,
    sent_hash: str,
    outcome: DeliveryOutcome,
    now: datetime,
    *,
    sent_timestamp: datetime | None = None,
    rng_value: float = 0.5,
    backoff: BackoffPolicy = BackoffPolicy(),
) -> LedgerRow:
    """Fold a delivery outcome into `row`, the current row re-read just before writing.

    Delivered: the destination holds `sent_hash`. The row is DELIVERED only if that is still
    the desired hash; otherwise it stays PENDING and the newer state goes next.
    RetryLater: RETRYING at now + Retry-After (not counted as a failed try), or else at now +
    backoff with tries + 1; after `max_tries` failures (or the outcome's own, smaller bound
    for a failure of this key alone) the key is REJECTED (retries_exhausted) instead of
    retrying for ever. This holds even if the desired state
    changed while sending: the newer state goes at the retry time, to a destination that just
    failed.
    Rejected: REJECTED with the reason and the remote's words, unless the desired state
    changed meanwhile (the rejection was of an older value): then PENDING (or DELIVERED when
    the remote already holds the newer desired state).
    """
    last_timestamp = row.last_timestamp
    if sent_timestamp is not None and (last_timestamp is None or sent_timestamp > last_timestamp):
        last_timestamp = sent_timestamp
    if isinstance(outcome, Delivered):
        # one copy of the row, not two: the path of every result delivered
        state = _state_after_send(row, sent_hash)
        skipped = state is DeliveryState.SKIPPED
        return replace(
            row,
            state=state,
            delivered_hash=sent_hash,
            delivered_at=now,
            tries=0,
            next_attempt_at=None,
            reason_code=row.reason_code if skipped else None,
            reason_text=row.reason_text if skipped else None,
            remote_status=outcome.remote_status,
            remote_message=outcome.remote_message,
            last_timestamp=last_timestamp,
            updated_at=now,
            # still waiting (a newer value arrived meanwhile): when its value became pending
            pending_since=waiting_since(row) if state is DeliveryState.PENDING else None,
        )
    base = replace(
        row,
        remote_status=outcome.remote_status,
        remote_message=outcome.remote_message,
        last_timestamp=last_timestamp,
        updated_at=now,
        # a row still waiting afterwards keeps when its value became pending (the delivery
        # latency runs from there, retries included); one that settled forgets it
        pending_since=waiting_since(row),
    )
    if row.state is DeliveryState.SKIPPED:
        # nothing more to send; keep the skip reason, note the remote's answer
        return replace(base, pending_since=None)
    if isinstance(outcome, RetryLater):
        if outcome.retry_after is not None:
            # "slow down" is about the destination, not this key: it does not count as a
            # failed try, and the remote's Retry-After is honoured as given.
            return replace(
                base,
                state=DeliveryState.RETRYING,
                next_attempt_at=now + outcome.retry_after,
                reason_code=outcome.reason.code,
                reason_text=stored(outcome.reason),
            )
        tries = row.tries + 1
        bound = backoff.max_tries
        if outcome.max_tries is not None:
            bound = min(bound, outcome.max_tries)
        if tries >= bound:
            gave_up = reasons.retries_exhausted(tries, outcome.reason)
            return replace(
                base,
                state=DeliveryState.REJECTED,
                tries=tries,
                next_attempt_at=None,
                reason_code=gave_up.code,
                reason_text=stored(gave_up),
                pending_since=None,
            )
        return replace(
            base,
            state=DeliveryState.RETRYING,
            tries=tries,
            next_attempt_at=now + backoff.delay(tries, rng_value),
            reason_code=outcome.reason.code,
            reason_text=stored(outcome.reason),
        )
    if row.desired_hash != sent_hash:
        # The refused value is no longer wanted. The remote did not apply it, so if what is
        # wanted now is what it already holds, nothing needs sending.
        holds_it = row.desired_hash is not None and row.desired_hash == row.delivered_hash
        return replace(
            base,
            state=DeliveryState.DELIVERED if holds_it else DeliveryState.PENDING,
            tries=0,
            next_attempt_at=None,
            reason_code=None,
            reason_text=None,
            pending_since=None if holds_it else base.pending_since,
        )
    return replace(
        base,
        state=DeliveryState.REJECTED,
        tries=row.tries + 1,
        next_attempt_at=None,
        reason_code=outcome.reason.code,
        reason_text=stored(outcome.reason),
        pending_since=None,
    )


# --- scheduling helpers --------------------------------------------------------------------


DEFAULT_TIMESTAMP_STEP = timedelta(milliseconds=1)


def next_score_timestamp(
    last: datetime | None, now: datetime, step: timedelta = DEFAULT_TIMESTAMP_STEP
) -> datetime:
    """AGS score timestamps must strictly increase per (line item, learner); some platforms
    reject an equal one (Moodle), so a clock that did not move still yields a later one.
    `step` is the smallest difference the destination tells apart (Moodle keeps whole
    seconds: 1 s), so the next timestamp is at least `step` after the last one."""
    if last is None:
        return now
    return max(now, last + max(step, DEFAULT_TIMESTAMP_STEP))


def is_pending(row: LedgerRow, now: datetime) -> bool:
    """Due for a send now: PENDING, or RETRYING whose time has come."""
    if row.state is DeliveryState.PENDING:
        return True
    if row.state is DeliveryState.RETRYING:
        return row.next_attempt_at is None or row.next_attempt_at <= now
    return False
