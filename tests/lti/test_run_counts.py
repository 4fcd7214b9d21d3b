"""A run's counts after an instructor edits a grade in the LMS, as docs/operations.md
defines them: `verified` and `differs` are about the results this run sent, `overridden` about
grades found changed by hand in the LMS (sent by any run)."""

from __future__ import annotations

from gradesync.sandbox.testing import RunningSandbox
from tests.support.lti import Browser
from tests.support.served import Served, graded_learners


def test_sync_now_after_an_lms_edit_counts_the_edit_as_overridden(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    learners, ctx, item = graded_learners(lms, served, browser, 3)
    lms.admin.instructor_grade(ctx, item.id, learners[0], 9.0, "typed in the LMS")

    run = served.run("manual", "c1")

    counts = run["counts"]
    # nothing was sent in this run, so nothing of it was verified or found different; the
    # edit is counted once, as an override, and the other grades are unchanged
    assert (counts["sent"], counts["unchanged"], counts["keys"]) == (0, 3, 3)
    assert counts["overridden"] == 1
    assert (counts["verified"], counts["differs"], counts["unverifiable"]) == (0, 0, 0)
    assert "1 grade(s) changed by hand in the gradebook" in run["message"]
