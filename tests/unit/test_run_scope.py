"""Which run scopes may hold a result in common (`RunScope.overlaps`): runs over such scopes
at once each count that result as sent, and their messages say so (services.sync)."""

from __future__ import annotations

import pytest

from gradesync.domain.model import RunScope


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        (RunScope("t1", "lms", "c1"), RunScope("t1", None, "c1"), True),
        (RunScope("t1", "lms", "c1"), RunScope("t1", "lms"), True),
        (RunScope("t1"), RunScope("t1", "sis", "c2", ("a9",)), True),
        (RunScope("t1", "lms", "c1", ("a1", "a2")), RunScope("t1", "lms", "c1", ("a2",)), True),
        (RunScope("t1", "lms", "c1", ("a1",)), RunScope("t1", None, "c1"), True),
        (RunScope("t1", "lms", "c1"), RunScope("t2", "lms", "c1"), False),
        (RunScope("t1", "lms", "c1"), RunScope("t1", "sis", "c1"), False),
        (RunScope("t1", "lms", "c1"), RunScope("t1", None, "c2"), False),
        (RunScope("t1", "lms", "c1", ("a1",)), RunScope("t1", "lms", "c1", ("a2",)), False),
    ],
)
def test_scopes_overlap_where_a_result_may_be_in_both(
    a: RunScope, b: RunScope, overlap: bool
) -> None:
    assert a.overlaps(b) is overlap
    assert b.overlaps(a) is overlap
