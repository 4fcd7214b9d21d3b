"""The console's grade grid words a grade as it was computed: an excused learner reads
"excused" and a past-due zero "missing", not a bare "no score" or "0 / 20"."""

from __future__ import annotations

from typing import Any

from gradesync.domain.model import DeliveryState, LedgerKey, LedgerRow
from gradesync.services.console_queries import score_text


def _row(**desired: Any) -> LedgerRow:
    base = {"score_given": 8, "score_maximum": 10, "missing": False, "excused": False}
    return LedgerRow(
        LedgerKey("t1", "d1", "a1", "p1"), DeliveryState.DELIVERED, desired={**base, **desired}
    )


def test_a_grade_reads_as_its_score_out_of_its_maximum() -> None:
    assert score_text(_row()) == "8 / 10"


def test_an_excused_grade_reads_excused() -> None:
    assert score_text(_row(score_given=None, excused=True)) == "excused"


def test_a_past_due_zero_says_it_is_missing_work() -> None:
    assert score_text(_row(score_given=0, score_maximum=20, missing=True)) == "0 / 20 missing"


def test_a_pending_grade_has_no_score_and_nothing_to_send_reads_nothing() -> None:
    assert score_text(_row(score_given=None)) == "no score"
    assert score_text(None) is None
