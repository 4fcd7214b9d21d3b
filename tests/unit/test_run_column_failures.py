"""A run's message names its failed columns by what happened, once for columns that failed
alike (a course's refused link fails all of its columns), naming a few of them; never a
remedy in one reader's words, nor an error's own message."""

from __future__ import annotations

from gradesync.domain.reasons import Reason
from gradesync.domain.remedies import SEPARATOR, Remedy
from gradesync.services.sync import _column_failure, _why


def test_columns_that_failed_alike_are_named_once_with_a_few_of_them() -> None:
    refused = Reason("sis_credentials", "The SIS refused the client id (401).")
    failed = {f"sis/a{i}": refused for i in range(1, 7)}
    failed["sis/b1"] = Reason("category_missing", "Activity group 'Labs': no SIS category.")
    assert _why(failed) == (
        " (sis/a1, sis/a2, sis/a3 and 3 more, sis_credentials: The SIS refused the client id "
        "(401).) (sis/b1, category_missing: Activity group 'Labs': no SIS category.)"
    )


def test_a_remedy_is_left_to_each_reader() -> None:
    coded = Reason("category_missing", "No SIS category.", Remedy("category_missing", "sis"))
    worded = Reason("bad_request", f"The LMS said no.{SEPARATOR}Ask the LMS admin.")
    assert _why({"sis/a": coded, "lms/b": worded}) == (
        " (lms/b, bad_request: The LMS said no.) (sis/a, category_missing: No SIS category.)"
    )


def test_an_unexpected_error_is_named_by_its_class_not_its_message() -> None:
    reason = _column_failure(ValueError("Ada Lovelace's grade"))
    assert reason.code == "internal_error"
    assert "ValueError" in reason.text and "Ada" not in reason.text
