"""The delivery ledger's transitions, rule by rule."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gradesync.domain.ledger import (
    BackoffPolicy,
    Delivered,
    Rejected,
    RetryLater,
    after_delivery,
    desired_from_json,
    desired_to_json,
    is_pending,
    next_score_timestamp,
    reconcile,
    reopened,
    result_hash,
    waiting_since,
)
from gradesync.domain.model import DeliveryState, LedgerKey, LedgerRow
from gradesync.domain.policy import DesiredResult, NoResult
from gradesync.domain.reasons import Reason, not_a_learner, practice_item

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY = LedgerKey("t", "d1", "a1", "p1")
S = DeliveryState


def result(score: float | None = 7.5, **kw: object) -> DesiredResult:
    base = DesiredResult(
        score_given=score,
        score_maximum=10.0,
        grading_progress="FullyGraded",
        activity_progress="Completed",
        comment=None,
        late=False,
        missing=False,
        excused=False,
        scored_at=datetime(2025, 3, 1, 11, 0, tzinfo=UTC),
        basis="Highest of 1 graded attempt(s): 7.5/10 from ev-1.",
        attempt_event_id="ev-1",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def must(row: LedgerRow | None) -> LedgerRow:
    assert row is not None, "expected a row to write"
    return row


def later(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def delivered_row(r: DesiredResult) -> LedgerRow:
    row = reconcile(None, KEY, r, NOW)
    assert row is not None
    return after_delivery(row, result_hash(r), Delivered(200), later(1))


TRANSIENT = Reason("remote_unavailable", "The LMS answered 503 Service Unavailable.")
REFUSED = Reason("remote_rejected", "The LMS said the user is not in the course.")


# --- result_hash and the JSON form ----------------------------------------------------------


def test_result_hash_is_pinned() -> None:
    r = result(comment="ok", basis="b")
    assert result_hash(r) == "c614a3aa810e3b4faba84dd805328e65ac9cdba391156145c6ba3adfc09a6a08"


def test_result_hash_is_the_same_in_another_process() -> None:
    code = (
        "from datetime import datetime, UTC;"
        "from gradesync.domain.policy import DesiredResult;"
        "from gradesync.domain.ledger import result_hash;"
        "print(result_hash(DesiredResult(7.5, 10.0, 'FullyGraded', 'Completed', None, False,"
        " False, False, datetime(2025, 3, 1, 11, tzinfo=UTC), 'x', 'y')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
    )
    assert out.stdout.strip() == result_hash(result())


@pytest.mark.parametrize(
    "change",
    [
        {"score_given": 8.0},
        {"score_given": None},
        {"score_maximum": 20.0},
        {"grading_progress": "Pending"},
        {"activity_progress": "Submitted"},
        {"comment": "well done"},
        {"late": True},
        {"missing": True},
        {"excused": True},
        {"scored_at": datetime(2025, 3, 2, tzinfo=UTC)},
        {"scored_at": None},
    ],
)
def test_every_sent_field_is_hashed(change: dict[str, object]) -> None:
    assert result_hash(replace(result(), **change)) != result_hash(result())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"basis": "something else"},
        {"attempt_event_id": "ev-9"},
        {"points_possible": 20.0},  # what an LTI 1.1 fraction was computed on: logged only
        {"learner_excused": True},  # said where the flag is not sent (an LMS): not sent
        {"score_given": 7.5},  # int/float spelling
        {"scored_at": datetime(2025, 3, 1, 12, 0, tzinfo=UTC) - timedelta(hours=1)},
    ],
)
def test_what_is_not_sent_is_not_hashed(change: dict[str, object]) -> None:
    assert result_hash(replace(result(), **change)) == result_hash(result())  # type: ignore[arg-type]


def test_same_instant_in_another_zone_hashes_alike() -> None:
    from zoneinfo import ZoneInfo

    there = datetime(2025, 3, 1, 5, 0, tzinfo=ZoneInfo("America/Chicago"))  # 11:00 UTC
    assert result_hash(result(scored_at=there)) == result_hash(result())


def test_zero_and_negative_zero_hash_alike() -> None:
    assert result_hash(result(score=-0.0)) == result_hash(result(score=0.0))


@pytest.mark.parametrize(
    "r",
    [
        result(),
        result(score=None, grading_progress="Pending", comment="x", scored_at=None),
        result(late=True, missing=True, excused=True, attempt_event_id=None),
        replace(result(), points_possible=10.0),
        result(score=None, learner_excused=True),
    ],
)
def test_json_round_trip(r: DesiredResult) -> None:
    import json

    stored = json.loads(json.dumps(desired_to_json(r)))
    assert desired_from_json(stored) == r


def test_a_learner_not_excused_is_stored_as_before_the_fact_was_kept() -> None:
    """`learner_excused` is stored only when true: no row of a learner who is not excused
    changes for it, so none is rewritten when its grade is worked out again."""
    assert "learner_excused" not in desired_to_json(result())
    assert desired_to_json(result(score=None, learner_excused=True))["learner_excused"] is True


def test_an_excused_row_stored_without_the_fact_is_not_sent_again() -> None:
    """A delivered LMS row of an excused learner, stored before `learner_excused` was kept,
    takes it when worked out again, and stays delivered (the same grade: nothing to send)."""
    excused = result(score=None, learner_excused=True)
    old = delivered_row(replace(excused, learner_excused=False))
    new = must(reconcile(old, KEY, excused, later(5)))
    assert new.state is S.DELIVERED and new.desired_hash == old.desired_hash
    assert new.desired is not None and new.desired["learner_excused"] is True


# --- reconcile --------------------------------------------------------------------------------


def test_new_key_is_pending() -> None:
    row = reconcile(None, KEY, result(), NOW)
    assert row is not None
    assert row.state is S.PENDING
    assert row.desired_hash == result_hash(result())
    assert row.desired == desired_to_json(result())
    assert row.delivered_hash is None and row.tries == 0 and row.updated_at == NOW
    assert is_pending(row, NOW)


def test_unchanged_is_never_resent() -> None:
    row = delivered_row(result())
    assert row.state is S.DELIVERED
    assert reconcile(row, KEY, result(), later(60)) is None


def test_unchanged_pending_stays_as_is() -> None:
    row = reconcile(None, KEY, result(), NOW)
    assert row is not None
    assert reconcile(row, KEY, result(), later(1)) is None


def test_changed_score_makes_it_pending() -> None:
    row = delivered_row(result())
    new = reconcile(row, KEY, result(score=9.0), later(60))
    assert new is not None and new.state is S.PENDING
    assert new.delivered_hash == row.delivered_hash  # what is there is still known


def test_status_only_change_makes_it_pending() -> None:
    row = delivered_row(result())
    new = reconcile(row, KEY, result(late=True), later(60))
    assert new is not None and new.state is S.PENDING


def test_explanation_only_change_rewrites_without_a_send() -> None:
    row = delivered_row(result())
    new = reconcile(row, KEY, result(basis="Highest of 2 graded attempt(s)..."), later(60))
    assert new is not None
    assert new.state is S.DELIVERED and new.desired_hash == row.desired_hash
    assert new.desired is not None and new.desired["basis"].startswith("Highest of 2")


def test_back_to_what_is_delivered_needs_no_send() -> None:
    row = delivered_row(result(score=5))
    row = must(reconcile(row, KEY, result(score=7), later(10)))
    assert row is not None and row.state is S.PENDING
    row = must(reconcile(row, KEY, result(score=5), later(11)))
    assert row is not None and row.state is S.DELIVERED
    assert not is_pending(row, later(11))


def test_remaster_resends_unchanged() -> None:
    row = delivered_row(result())
    new = reconcile(row, KEY, result(), later(60), remaster=True)
    assert new is not None and new.state is S.PENDING and is_pending(new, later(60))


def test_remaster_retries_a_rejected_key() -> None:
    row = delivered_row(result())
    row = must(reconcile(row, KEY, result(score=9.0), later(60)))
    assert row is not None
    row = after_delivery(row, row.desired_hash or "", Rejected(REFUSED, 422, "no"), later(61))
    assert row.state is S.REJECTED
    assert reconcile(row, KEY, result(score=9.0), later(70)) is None
    new = reconcile(row, KEY, result(score=9.0), later(70), remaster=True)
    assert new is not None and new.state is S.PENDING and new.tries == 0


def test_rejected_stays_rejected_until_the_facts_change() -> None:
    row = reconcile(None, KEY, result(), NOW)
    assert row is not None
    row = after_delivery(row, result_hash(result()), Rejected(REFUSED, 422, "user gone"), later(1))
    assert row.state is S.REJECTED
    assert row.reason_code == "remote_rejected" and row.remote_message == "user gone"
    assert not is_pending(row, later(10_000))
    assert reconcile(row, KEY, result(), later(2)) is None
    changed = reconcile(row, KEY, result(score=8), later(3))
    assert changed is not None and changed.state is S.PENDING
    assert changed.reason_code is None and changed.tries == 0


def test_changed_while_retrying_resets_tries() -> None:
    row = reconcile(None, KEY, result(), NOW)
    assert row is not None
    row = after_delivery(row, result_hash(result()), RetryLater(TRANSIENT, None, 503), later(1))
    assert row.state is S.RETRYING and row.tries == 1
    new = reconcile(row, KEY, result(score=3), later(2))
    assert new is not None and new.state is S.PENDING and new.tries == 0
    assert new.next_attempt_at is None


def test_unchanged_while_retrying_keeps_the_schedule() -> None:
    row = reconcile(None, KEY, result(), NOW)
    assert row is not None
    row = after_delivery(row, result_hash(result()), RetryLater(TRANSIENT), later(1))
    assert reconcile(row, KEY, result(), later(1.5)) is None


def test_no_result_is_skipped_with_its_reason() -> None:
    row = reconcile(None, KEY, NoResult(practice_item("Warm-up", 10.0, marked_practice=True)), NOW)
    assert row is not None
    assert row.state is S.SKIPPED and row.reason_code == "practice_item"
    assert row.reason_text is not None and "Warm-up" in row.reason_text
    assert row.desired is None and row.desired_hash is None
    assert not is_pending(row, NOW)


def test_same_skip_is_not_rewritten_but_a_new_reason_is() -> None:
    row = reconcile(None, KEY, NoResult(practice_item("Warm-up", 10.0, marked_practice=True)), NOW)
    assert row is not None
    assert (
        reconcile(
            row, KEY, NoResult(practice_item("Warm-up", 10.0, marked_practice=True)), later(1)
        )
        is None
    )
    assert (
        reconcile(
            row,
            KEY,
            NoResult(practice_item("Warm-up", 10.0, marked_practice=True)),
            later(1),
            remaster=True,
        )
        is None
    )
    other = reconcile(row, KEY, NoResult(not_a_learner("instructor")), later(2))
    assert other is not None and other.reason_code == "not_a_learner"


def test_skip_after_delivery_keeps_what_was_delivered() -> None:
    row = delivered_row(result())
    new = reconcile(row, KEY, NoResult(not_a_learner("observer")), later(60))
    assert new is not None and new.state is S.SKIPPED
    assert new.delivered_hash == result_hash(result()) and new.delivered_at == later(1)


def test_skipped_then_same_as_delivered_needs_no_send() -> None:
    row = delivered_row(result())
    row = must(reconcile(row, KEY, NoResult(not_a_learner("observer")), later(60)))
    assert row is not None
    back = reconcile(row, KEY, result(), later(120))
    assert back is not None and back.state is S.DELIVERED and back.reason_code is None


def test_skipped_then_a_result_is_pending() -> None:
    row = reconcile(None, KEY, NoResult(practice_item("Q", 10.0, marked_practice=True)), NOW)
    assert row is not None
    new = reconcile(row, KEY, result(), later(1))
    assert new is not None and new.state is S.PENDING and new.reason_code is None


def test_five_quick_attempts_make_one_send_of_the_newest() -> None:
    row: LedgerRow | None = None
    sends: list[str] = []
    for i in range(5):
        row = reconcile(row, KEY, result(score=float(i + 1)), later(i)) or row
    assert row is not None
    while is_pending(row, later(10)):
        assert row.desired_hash is not None
        sends.append(row.desired_hash)
        row = after_delivery(row, row.desired_hash, Delivered(200), later(10))
    assert sends == [result_hash(result(score=5.0))]
    assert row.state is S.DELIVERED


# --- after_delivery ---------------------------------------------------------------------------


def test_delivered() -> None:
    row = reconcile(None, KEY, result(), NOW)
    assert row is not None
    ts = later(0.5)
    done = after_delivery(
        row, result_hash(result()), Delivered(200, "ok"), later(1), sent_timestamp=ts
    )
    assert done.state is S.DELIVERED
    assert done.delivered_hash == result_hash(result()) and done.delivered_at == later(1)
    assert done.remote_status == 200 and done.remote_message == "ok"
    assert done.last_timestamp == ts and done.tries == 0
    assert not is_pending(done, later(2))


def test_newer_desired_while_sending_stays_pending() -> None:
    row = reconcile(None, KEY, result(score=5), NOW)
    assert row is not None
    sent = row.desired_hash
    assert sent is not None
    row = reconcile(row, KEY, result(score=9), later(0.5))  # arrives mid-send
    assert row is not None
    done = after_delivery(row, sent, Delivered(200), later(1))
    assert done.state is S.PENDING and done.delivered_hash == sent
    assert done.desired_hash == result_hash(result(score=9))


def test_a_late_ack_of_an_older_value_does_not_mark_the_newer_delivered() -> None:
    # A (delivered) -> B sent -> back to A before B's ack: the remote now holds B, so A must go.
    row = delivered_row(result(score=5))
    row = must(reconcile(row, KEY, result(score=7), later(10)))
    assert row is not None
    b = row.desired_hash
    assert b is not None
    row = must(reconcile(row, KEY, result(score=5), later(11)))
    assert row is not None and row.state is S.DELIVERED
    done = after_delivery(row, b, Delivered(200), later(12))
    assert done.state is S.PENDING and is_pending(done, later(12))
    assert done.desired_hash == result_hash(result(score=5)) and done.delivered_hash == b


def test_rejection_of_an_older_value_leaves_the_newer_pending() -> None:
    row = reconcile(None, KEY, result(score=5), NOW)
    assert row is not None
    sent = row.desired_hash or ""
    row = reconcile(row, KEY, result(score=9), later(0.5))
    assert row is not None
    done = after_delivery(row, sent, Rejected(REFUSED, 422), later(1))
    assert done.state is S.PENDING and done.remote_status == 422


def test_rejection_of_an_older_value_when_the_remote_holds_the_newer() -> None:
    row = delivered_row(result(score=5))
    row = must(reconcile(row, KEY, result(score=7), later(10)))
    assert row is not None
    b = row.desired_hash or ""
    row = must(reconcile(row, KEY, result(score=5), later(11)))
    assert row is not None
    done = after_delivery(row, b, Rejected(REFUSED, 422), later(12))
    assert done.state is S.DELIVERED


def test_outcome_on_a_row_skipped_meanwhile_stays_skipped() -> None:
    row = reconcile(None, KEY, result(), NOW)
    assert row is not None
    skipped = reconcile(row, KEY, NoResult(not_a_learner("observer")), later(0.5))
    assert skipped is not None
    for outcome in (Delivered(200), RetryLater(TRANSIENT, None, 503), Rejected(REFUSED, 422)):
        done = after_delivery(skipped, result_hash(result()), outcome, later(1))
        assert done.state is S.SKIPPED and done.reason_code == "not_a_learner"
    done = after_delivery(skipped, result_hash(result()), Delivered(200), later(1))
    assert done.delivered_hash == result_hash(result())


@pytest.mark.parametrize(
    ("tries_before", "rng", "expected_seconds"),
    [
        (0, 0.5, 0.75),  # first failure: base 1 s, jittered into [0.5, 1)
        (0, 0.0, 0.5),
        (1, 0.0, 1.0),  # second failure: 2 s nominal
        (3, 0.999, 7.996),  # fourth: 8 s nominal
        (10, 0.0, 150.0),  # 1024 s capped at 300
    ],
)
def test_retry_backoff(tries_before: int, rng: float, expected_seconds: float) -> None:
    row = reconcile(None, KEY, result(), NOW)
    assert row is not None
    row = replace(row, tries=tries_before)
    done = after_delivery(
        row,
        result_hash(result()),
        RetryLater(TRANSIENT, None, 503, "down"),
        later(1),
        rng_value=rng,
    )
    assert done.state is S.RETRYING and done.tries == tries_before + 1
    assert done.reason_code == "remote_unavailable" and done.remote_message == "down"
    assert done.next_attempt_at is not None
    wait = (done.next_attempt_at - later(1)).total_seconds()
    assert wait == pytest.approx(expected_seconds, abs=1e-3)
    assert not is_pending(done, done.next_attempt_at - timedelta(milliseconds=1))
    assert is_pending(done, done.next_attempt_at)


def test_retry_after_is_honoured_and_not_counted() -> None:
    row = reconcile(None, KEY, result(), NOW)
    assert row is not None
    done = after_delivery(
        row, result_hash(result()), RetryLater(TRANSIENT, timedelta(seconds=42), 429), later(1)
    )
    assert done.state is S.RETRYING and done.tries == 0
    assert done.next_attempt_at == later(43)


def test_retries_are_bounded() -> None:
    policy = BackoffPolicy(max_tries=3)
    row = reconcile(None, KEY, result(), NOW)
    assert row is not None
    h = result_hash(result())
    row = after_delivery(row, h, RetryLater(TRANSIENT), later(1), backoff=policy)
    row = after_delivery(row, h, RetryLater(TRANSIENT), later(2), backoff=policy)
    assert row.state is S.RETRYING and row.tries == 2
    row = after_delivery(row, h, RetryLater(TRANSIENT), later(3), backoff=policy)
    assert row.state is S.REJECTED and row.reason_code == "retries_exhausted"
    assert row.reason_text is not None and "503" in row.reason_text
    assert not is_pending(row, later(10_000))


def test_a_failure_of_one_key_has_its_own_smaller_bound() -> None:
    policy = BackoffPolicy(max_tries=12)
    row = reconcile(None, KEY, result(), NOW)
    assert row is not None
    h = result_hash(result())
    row = after_delivery(row, h, RetryLater(TRANSIENT, max_tries=2), later(1), backoff=policy)
    assert row.state is S.RETRYING and row.tries == 1
    row = after_delivery(row, h, RetryLater(TRANSIENT, max_tries=2), later(2), backoff=policy)
    assert row.state is S.REJECTED and row.reason_code == "retries_exhausted"


def test_huge_tries_do_not_overflow() -> None:
    assert BackoffPolicy(factor=10.0).delay(10_000, 0.0) == timedelta(seconds=150)


def test_reopened_is_pending_at_once_with_what_it_delivered_and_wants() -> None:
    row = delivered_row(result(score=5))
    row = must(reconcile(row, KEY, result(score=7), later(10)))
    h = row.desired_hash
    row = after_delivery(row, h or "", RetryLater(TRANSIENT, None, 503, "down"), later(11))
    row = after_delivery(row, h or "", Rejected(REFUSED, 422, "no user"), later(12))
    assert row.state is S.REJECTED and row.tries == 2

    again = reopened(row, later(20))

    assert again.state is S.PENDING and again.tries == 0 and again.next_attempt_at is None
    assert again.reason_code is None and again.reason_text is None
    assert again.updated_at == later(20)
    assert is_pending(again, later(20))
    # what is wanted, what is there and what the remote last said stay as they were
    kept = ("desired_hash", "desired", "delivered_hash", "delivered_at", "last_timestamp")
    for name in (*kept, "remote_status", "remote_message"):
        assert getattr(again, name) == getattr(row, name), name


def test_a_reopened_row_waits_from_its_reopening() -> None:
    """A row whose sends kept failing since NOW, reopened a day later, waits from then: the
    delivery latency, the backlog's age and its place in the claim start at the reopening,
    not at the value's first pending (which would put it first and read as a day late)."""
    row = must(reconcile(None, KEY, result(), NOW))
    row = after_delivery(row, result_hash(result()), RetryLater(TRANSIENT), later(1))
    assert row.state is S.RETRYING and waiting_since(row) == NOW

    again = reopened(row, later(86_400))

    assert again.updated_at == later(86_400) and waiting_since(again) == later(86_400)


def test_a_row_reopened_with_a_reason_says_it_while_it_waits() -> None:
    row = delivered_row(result())
    again = reopened(row, later(5), reason_code="overridden", reason_text="Typed in the LMS.")
    assert (again.state, again.reason_code, again.reason_text) == (
        S.PENDING,
        "overridden",
        "Typed in the LMS.",
    )
    assert waiting_since(again) == later(5)


def test_last_timestamp_never_goes_back() -> None:
    row = reconcile(None, KEY, result(), NOW)
    assert row is not None
    row = replace(row, last_timestamp=later(100))
    done = after_delivery(
        row, result_hash(result()), Delivered(200), later(101), sent_timestamp=later(50)
    )
    assert done.last_timestamp == later(100)


@pytest.mark.parametrize(
    ("last", "now", "expected"),
    [
        (None, NOW, NOW),
        (NOW - timedelta(seconds=1), NOW, NOW),
        (NOW, NOW, NOW + timedelta(milliseconds=1)),  # equal is refused by Moodle
        (NOW + timedelta(seconds=5), NOW, NOW + timedelta(seconds=5, milliseconds=1)),  # clock skew
    ],
)
def test_next_score_timestamp(last: datetime | None, now: datetime, expected: datetime) -> None:
    assert next_score_timestamp(last, now) == expected


@pytest.mark.parametrize(
    ("state", "next_at", "expected"),
    [
        (S.PENDING, None, True),
        (S.RETRYING, None, True),
        (S.RETRYING, NOW, True),
        (S.RETRYING, NOW + timedelta(seconds=1), False),
        (S.DELIVERED, None, False),
        (S.REJECTED, None, False),
        (S.SKIPPED, None, False),
    ],
)
def test_is_pending(state: DeliveryState, next_at: datetime | None, expected: bool) -> None:
    assert is_pending(LedgerRow(KEY, state, next_attempt_at=next_at), NOW) is expected


# --- waiting_since: where the delivery latency starts --------------------------------------


def test_a_pending_value_waits_from_when_it_was_computed() -> None:
    row = must(reconcile(None, KEY, result(), NOW))
    assert waiting_since(row) == NOW and row.pending_since is None


def test_retries_keep_when_the_value_became_pending() -> None:
    h = result_hash(result())
    row = must(reconcile(None, KEY, result(), NOW))
    row = after_delivery(row, h, RetryLater(TRANSIENT, None, 503), later(1))
    row = after_delivery(row, h, RetryLater(TRANSIENT, timedelta(seconds=5), 429), later(3))
    assert row.state is S.RETRYING and row.updated_at == later(3)
    assert row.pending_since == NOW and waiting_since(row) == NOW
    done = after_delivery(row, h, Delivered(200), later(9))
    assert done.state is S.DELIVERED and done.pending_since is None
    assert waiting_since(done) is None


def test_a_new_value_while_retrying_waits_from_its_own_moment() -> None:
    row = must(reconcile(None, KEY, result(score=5), NOW))
    row = after_delivery(row, result_hash(result(score=5)), RetryLater(TRANSIENT), later(1))
    row = must(reconcile(row, KEY, result(score=9), later(2)))
    assert row.state is S.PENDING and waiting_since(row) == later(2)
    # the newer value fails in turn: it keeps its own moment
    row = after_delivery(row, result_hash(result(score=9)), RetryLater(TRANSIENT), later(3))
    assert waiting_since(row) == later(2)


def test_a_settled_row_forgets_when_it_waited() -> None:
    h = result_hash(result())
    retrying = after_delivery(
        must(reconcile(None, KEY, result(), NOW)), h, RetryLater(TRANSIENT), later(1)
    )
    refused = after_delivery(retrying, h, Rejected(REFUSED, 422), later(2))
    assert refused.pending_since is None and waiting_since(refused) is None
    exhausted = after_delivery(
        retrying, h, RetryLater(TRANSIENT), later(2), backoff=BackoffPolicy(max_tries=2)
    )
    assert exhausted.state is S.REJECTED and exhausted.pending_since is None
    skipped = must(
        reconcile(
            retrying, KEY, NoResult(practice_item("Lab 1", 10.0, marked_practice=True)), later(2)
        )
    )
    assert skipped.pending_since is None and waiting_since(skipped) is None
