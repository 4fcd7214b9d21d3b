"""The console's grade grid words a grade as it was computed: an excused learner reads
"excused" and a past-due zero "missing", not a bare "no score" or "0 / 20". At an LMS, which
has no excused state (the flag is not sent there), an excused learner reads as excused all
the same, with what the LMS gets instead."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gradesync.domain.model import DeliveryState, DestinationKind, LedgerKey, LedgerRow
from gradesync.services.console_queries import score_text, status_labels, why_text

SIS = DestinationKind.ONEROSTER_REST
LMS = DestinationKind.LTI13_AGS
LTI11 = DestinationKind.LTI11_OUTCOMES


def _row(**desired: Any) -> LedgerRow:
    base = {"score_given": 8, "score_maximum": 10, "missing": False, "excused": False}
    return LedgerRow(
        LedgerKey("t1", "d1", "a1", "p1"), DeliveryState.DELIVERED, desired={**base, **desired}
    )


def test_a_grade_reads_as_its_score_out_of_its_maximum() -> None:
    assert score_text(_row(), LMS) == "8 / 10"


def test_an_excused_grade_reads_excused() -> None:
    assert score_text(_row(score_given=None, excused=True, learner_excused=True), SIS) == (
        "excused"
    )


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        (LMS, "excused (the LMS gets no score: it has no excused state)"),
        (LTI11, "excused (the LMS's grade is removed: it has no excused state)"),
    ],
)
def test_an_excused_learner_at_an_lms_reads_excused_with_what_the_lms_gets(
    kind: DestinationKind, said: str
) -> None:
    excused = _row(score_given=None, grading_progress="FullyGraded", learner_excused=True)
    assert score_text(excused, kind) == said
    # a row worked out before the fact was kept: only an excused result is fully graded
    # with no score
    older = _row(score_given=None, grading_progress="FullyGraded")
    assert score_text(older, kind) == said


def test_a_past_due_zero_says_it_is_missing_work() -> None:
    assert score_text(_row(score_given=0, score_maximum=20, missing=True), LMS) == (
        "0 / 20 missing"
    )


def test_a_pending_grade_has_no_score_and_nothing_to_send_reads_nothing() -> None:
    assert score_text(_row(score_given=None, grading_progress="Pending"), LMS) == "no score"
    assert score_text(_row(score_given=None), LMS) == "no score"
    assert score_text(None, LMS) is None


def test_a_grade_kept_is_kept_in_the_gradebook_it_is_in() -> None:
    assert status_labels(LMS)["kept"] == "Kept in LMS"
    assert status_labels(LTI11)["kept"] == "Kept in LMS"
    assert status_labels(SIS)["kept"] == "Kept in SIS"
    assert status_labels(DestinationKind.ONEROSTER_CSV)["kept"] == "Kept in SIS"
    assert status_labels(SIS)["sent"] == "Sent"


def test_a_retry_the_destination_asked_for_says_no_try_was_counted() -> None:
    """A 429 counts no try: the grid said "(tried 0 time(s))" after repeated 429 answers."""
    at = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    waiting = LedgerRow(
        LedgerKey("t1", "d1", "a1", "p1"), DeliveryState.RETRYING, next_attempt_at=at
    )
    said = why_text(waiting)
    assert said is not None and "tried 0" not in said
    assert said.endswith("(no failed try counted: the destination asked gradesync to wait).")
    failed = why_text(LedgerRow(waiting.key, DeliveryState.RETRYING, tries=2, next_attempt_at=at))
    assert failed == "Next try at 2026-12-07 09:00:00 UTC (tried 2 time(s))."
