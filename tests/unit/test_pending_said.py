"""A pending grade's words follow what moves at its destination: a backlog gradesync is
sending goes in turn; only with nothing moving for 5 minutes is it said not to be sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gradesync.domain.diagnosis import DestinationQueue, pending_said
from gradesync.domain.model import (
    DeliveryState,
    Destination,
    DestinationKind,
    LedgerKey,
    LedgerRow,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LMS = Destination("t1", "lms", DestinationKind.LTI13_AGS, "Canvas")


def _waiting(waited: timedelta) -> LedgerRow:
    return LedgerRow(
        LedgerKey("t1", "lms", "a1", "p1"), DeliveryState.PENDING, updated_at=NOW - waited
    )


def _said(waited: timedelta, queue: DestinationQueue) -> str:
    evidence, remedy, _ = pending_said(LMS, _waiting(waited), "7/10", NOW, queue)
    return f"{evidence} {remedy}"


@pytest.mark.parametrize(
    "queue",
    [
        DestinationQueue(waiting=400, last_send=NOW - timedelta(seconds=30)),
        DestinationQueue(waiting=400, run_beat=NOW - timedelta(seconds=5)),
    ],
    ids=["sent-lately", "run-beating"],
)
def test_a_backlog_that_moves_goes_in_turn(queue: DestinationQueue) -> None:
    said = _said(timedelta(minutes=40), queue)
    assert "399 other grades waiting to be sent to 'Canvas'" in said
    assert "it goes in its turn" in said and "not sending" not in said


@pytest.mark.parametrize(
    "queue",
    [
        DestinationQueue(waiting=400),
        # a run whose worker stopped beating moves nothing
        DestinationQueue(waiting=400, run_beat=NOW - timedelta(minutes=10)),
        DestinationQueue(waiting=400, last_send=NOW - timedelta(minutes=6)),
    ],
    ids=["nothing", "run-stopped", "sent-long-ago"],
)
def test_a_backlog_nothing_moves_is_not_being_sent(queue: DestinationQueue) -> None:
    said = _said(timedelta(minutes=40), queue)
    assert "gradesync is not sending it" in said and "worker is running" in said


def test_a_recent_grade_behind_others_says_they_go_in_turn() -> None:
    said = _said(timedelta(seconds=20), DestinationQueue(waiting=3))
    assert "with 2 other grades waiting to be sent to 'Canvas': gradesync sends them in turn" in (
        said
    )
    assert "Check again in a few minutes" in said and "Reload" not in said


def test_a_rate_limit_that_holds_the_grades_is_named() -> None:
    """A mistyped 0.001/s: doctor names the limit and how long the grades waiting take,
    not "it goes in its turn"."""
    limited = Destination(
        "t1", "lms", DestinationKind.LTI13_AGS, "Canvas", config={"rate_per_second": 0.001}
    )
    row = _waiting(timedelta(seconds=20))
    evidence, remedy, _ = pending_said(limited, row, "7/10", NOW, DestinationQueue(waiting=2))
    assert "'Canvas' has a rate limit of 0.001 requests per second" in evidence
    assert "with 1 other grade waiting" in evidence and "about 33 minutes" in evidence
    assert "raise or clear the rate limit of 'Canvas'" in remedy and "its turn" not in remedy


def test_a_rate_limit_that_keeps_up_is_not_blamed() -> None:
    fast = Destination(
        "t1", "lms", DestinationKind.LTI13_AGS, "Canvas", config={"rate_per_second": 10}
    )
    row = _waiting(timedelta(seconds=20))
    evidence, _, _ = pending_said(fast, row, "7/10", NOW, DestinationQueue(waiting=3))
    assert "rate limit" not in evidence and "in turn" in evidence


@pytest.mark.parametrize(
    ("holds_after", "words"),
    [
        (timedelta(minutes=1), "within a minute"),
        (timedelta(hours=1), "within an hour"),
        (timedelta(seconds=90), "within 90 seconds"),
        (timedelta(minutes=5), "within 5 minutes"),
    ],
)
def test_a_rate_limit_that_keeps_up_says_the_span_it_is_measured_against(
    monkeypatch: pytest.MonkeyPatch, holds_after: timedelta, words: str
) -> None:
    """The destination's rate-limit check names the span a limit is blamed after in the
    words of `RATE_HOLDS_AFTER` itself: changed, the words follow. Before, the words said
    "within a minute" whatever the constant was."""
    from gradesync.domain.diagnosis import destination_checks

    monkeypatch.setattr(destination_checks, "RATE_HOLDS_AFTER", holds_after)
    slow = Destination(
        "t1", "lms", DestinationKind.LTI13_AGS, "Canvas", config={"rate_per_second": 0.5}
    )
    check = destination_checks.rate_limit_check(slow, 10)  # 20 s at 0.5/s: keeps up
    assert check is not None and check.passed
    assert check.evidence == (
        f"10 grades waiting to be sent to 'Canvas', {words} at its rate limit of 0.5 "
        "requests per second."
    )
