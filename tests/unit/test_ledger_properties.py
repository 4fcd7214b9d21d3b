"""Invariants of the ledger under generated interleavings of changes and deliveries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gradesync.domain.ledger import (
    BackoffPolicy,
    Delivered,
    DeliveryOutcome,
    Rejected,
    RetryLater,
    after_delivery,
    desired_from_json,
    desired_to_json,
    is_pending,
    next_score_timestamp,
    reconcile,
    result_hash,
)
from gradesync.domain.model import DeliveryState, LedgerKey, LedgerRow
from gradesync.domain.policy import DesiredResult
from gradesync.domain.reasons import Reason

T0 = datetime(2025, 3, 1, tzinfo=UTC)
KEY = LedgerKey("t", "d1", "a1", "p1")
FAIL = Reason("remote_unavailable", "The LMS answered 503.")
NO = Reason("remote_rejected", "The LMS refused the score.")


def result(score: float) -> DesiredResult:
    return DesiredResult(
        score,
        10.0,
        "FullyGraded",
        "Completed",
        None,
        False,
        False,
        False,
        T0,
        f"score {score}",
        "ev",
    )


@dataclass
class Change:
    score: float


@dataclass
class StartSend:
    pass


@dataclass
class FinishSend:
    outcome: str  # "ok", "retry", "reject"


op_st = st.one_of(
    st.builds(Change, st.sampled_from([0.0, 2.5, 5.0, 7.5, 10.0])),
    st.builds(StartSend),
    st.builds(FinishSend, st.sampled_from(["ok", "ok", "ok", "retry", "reject"])),
)


def outcome_of(name: str) -> DeliveryOutcome:
    outcomes: dict[str, DeliveryOutcome] = {
        "ok": Delivered(200),
        "retry": RetryLater(FAIL, None, 503),
        "reject": Rejected(NO, 422),
    }
    return outcomes[name]


@settings(max_examples=500)
@given(ops=st.lists(op_st, max_size=40), first=st.sampled_from([1.0, 3.0]))
def test_coalescing_never_loses_the_newest_state(
    ops: list[Change | StartSend | FinishSend], first: float
) -> None:
    """Changes arrive while sends are in flight (one at a time per key, as the key lock
    guarantees), sends succeed, fail or are refused. Then the worker drains with a healthy
    destination. The destination ends holding the newest desired state, unless that very
    state was refused, and nothing older ever ends on top."""
    clock = T0
    backoff = BackoffPolicy(max_tries=1000)
    newest = result(first)
    row = reconcile(None, KEY, newest, clock)
    assert row is not None
    remote: str | None = None  # the hash the destination holds
    in_flight: str | None = None
    refused: set[str] = set()  # hashes the destination refused

    def tick() -> datetime:
        nonlocal clock
        clock += timedelta(seconds=1)
        return clock

    for op in ops:
        if isinstance(op, Change):
            newest = result(op.score)
            row = reconcile(row, KEY, newest, tick()) or row
        elif isinstance(op, StartSend):
            if in_flight is None and is_pending(row, clock + timedelta(hours=1)):
                in_flight = row.desired_hash  # the worker reads the *current* desired state
        elif in_flight is not None:
            if op.outcome == "ok":
                remote = in_flight
            elif op.outcome == "reject":
                refused.add(in_flight)
            row = after_delivery(row, in_flight, outcome_of(op.outcome), tick(), backoff=backoff)
            in_flight = None
        # invariants at every step
        assert row.desired_hash == result_hash(newest)
        if row.state is DeliveryState.DELIVERED:
            assert row.delivered_hash == row.desired_hash
    if in_flight is not None:  # the last send completes
        remote = in_flight
        row = after_delivery(row, in_flight, Delivered(200), tick(), backoff=backoff)
    # drain: send what is pending until nothing is
    sends = 0
    while is_pending(row, clock + timedelta(days=1)):
        assert row.desired_hash is not None
        sent = row.desired_hash
        remote = sent
        row = after_delivery(row, sent, Delivered(200), tick(), backoff=backoff)
        sends += 1
        assert sends <= 1  # with a healthy destination one send of the newest settles it
    newest_hash = result_hash(newest)
    if row.state is DeliveryState.REJECTED:
        assert newest_hash in refused  # only a refusal of the newest state itself stops it
    else:
        assert row.state is DeliveryState.DELIVERED
        assert remote == newest_hash == row.delivered_hash


@settings(max_examples=200)
@given(scores=st.lists(st.sampled_from([1.0, 2.0, 3.0, 4.0, 5.0]), min_size=1, max_size=10))
def test_changes_between_sends_make_at_most_one_send(scores: list[float]) -> None:
    row = reconcile(None, KEY, result(9.0), T0)
    assert row is not None
    row = after_delivery(row, row.desired_hash or "", Delivered(200), T0)
    for i, s in enumerate(scores):
        row = reconcile(row, KEY, result(s), T0 + timedelta(seconds=i)) or row
    sent = []
    while is_pending(row, T0 + timedelta(hours=1)):
        sent.append(row.desired_hash)
        row = after_delivery(row, row.desired_hash or "", Delivered(200), T0 + timedelta(hours=1))
    assert sent == [result_hash(result(scores[-1]))]


@given(
    lasts=st.lists(st.integers(-5000, 5000), min_size=1, max_size=30),
)
def test_score_timestamps_strictly_increase(lasts: list[int]) -> None:
    last: datetime | None = None
    for offset in lasts:  # the clock jumps around, even backwards
        ts = next_score_timestamp(last, T0 + timedelta(milliseconds=offset))
        assert last is None or ts > last
        last = ts


@given(
    tries=st.integers(1, 200),
    rng=st.floats(0, 1, exclude_max=True),
    base=st.floats(0.1, 10),
    factor=st.floats(1, 4),
    cap=st.floats(1, 3600),
)
def test_backoff_is_bounded_and_monotonic(
    tries: int, rng: float, base: float, factor: float, cap: float
) -> None:
    policy = BackoffPolicy(base_seconds=base, factor=factor, cap_seconds=cap)
    d = policy.delay(tries, rng).total_seconds()
    nominal = min(cap, base * factor ** (tries - 1))
    assert nominal * 0.5 - 1e-6 <= d <= nominal + 1e-6
    assert policy.delay(tries + 1, rng) >= policy.delay(tries, rng)


desired_st = st.builds(
    DesiredResult,
    score_given=st.none() | st.floats(0, 1e6, allow_nan=False, allow_infinity=False),
    score_maximum=st.floats(0.01, 1e6, allow_nan=False, allow_infinity=False),
    grading_progress=st.sampled_from(["FullyGraded", "Pending", "PendingManual"]),
    activity_progress=st.sampled_from(["Completed", "Submitted", "Initialized"]),
    comment=st.none() | st.text(max_size=50),
    late=st.booleans(),
    missing=st.booleans(),
    excused=st.booleans(),
    scored_at=st.none() | st.datetimes(timezones=st.just(UTC)),
    basis=st.text(max_size=50),
    attempt_event_id=st.none() | st.text(min_size=1, max_size=20),
)


@given(r=desired_st)
def test_desired_json_round_trips_through_storage(r: DesiredResult) -> None:
    stored = json.loads(json.dumps(desired_to_json(r)))
    back = desired_from_json(stored)
    assert back == r
    assert result_hash(back) == result_hash(r)


@given(r=desired_st, state=st.sampled_from(list(DeliveryState)))
def test_reconciling_the_stored_desired_state_is_a_no_op(
    r: DesiredResult, state: DeliveryState
) -> None:
    row = reconcile(None, KEY, r, T0)
    assert row is not None
    if state is not DeliveryState.SKIPPED:
        row = LedgerRow(
            **{**{f: getattr(row, f) for f in row.__dataclass_fields__}, "state": state}
        )
        assert reconcile(row, KEY, r, T0 + timedelta(seconds=1)) is None
