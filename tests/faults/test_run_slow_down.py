"""A run and the LMS's 429 with `Retry-After: 1`: the destination is paused for that second
(the governor's slow-down pause), which ends well within the run's patience, so the run waits
it out and its results go with it, instead of ending "partly failed" with results pending
behind a pause that was about to end. The sandbox LMS answers the 429 (its fault script)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gradesync.sandbox.testing import RunningSandbox
from gradesync.testing import wait_for
from tests.support.lti import Browser
from tests.support.served import (
    Served,
    graded_learners,
    launched_learner,
    post_attempt,
    register_tool,
)


@pytest.mark.parametrize("edited", [1, 3])
def test_a_slow_down_while_a_run_resends_grades_typed_into_the_lms_is_waited_out(
    lms: RunningSandbox, served: Served, browser: Browser, edited: int
) -> None:
    """One grade typed into the LMS: its resend meets the 429 and waits as `retrying` for the
    pause's end; three, sent one at a time: the two after the 429 wait as `pending`."""
    learners, ctx, item = graded_learners(lms, served, browser, edited)

    # gradesync wins: the run that reads back grades typed into the LMS sends its own again
    served.ok("PATCH", "/tenant/policy", json={"keep_lms_edits": False})
    # one send at a time, so the sends after the 429 wait for the pause (pending)
    served.ok("PATCH", "/destinations/lms/limits", json={"concurrency": 1})
    for p in learners:
        lms.admin.instructor_grade(ctx, item.id, p, 9.0, "typed in the LMS")
    lms.admin.reset_counters()
    lms.admin.set_faults({"scores": {"script": ["throttle"], "retry_after": 1}})
    try:
        run = served.run("manual", "c1")
    finally:
        lms.admin.clear_faults()

    counts = run["counts"]
    assert lms.admin.counters()["scores"]["throttle"] == 1  # the resend met the 429
    assert counts["overridden"] == edited, counts
    assert (counts["pending"], counts["retrying"], counts["sent"]) == (0, 0, edited), run["message"]
    assert run["outcome"] == "succeeded", run["message"]
    assert "pending" not in run["message"] and "paused" not in run["message"], run["message"]
    assert {p: item.scores[p].score_given for p in learners} == dict.fromkeys(learners, 6.0)


def test_a_429_to_a_run_s_read_back_pauses_the_lms_until_its_retry_after(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    """The read-back that verifies a run's grades meets a 429 asking for an hour: the LMS is
    paused for that hour, as a grade's 429 pauses it, and the run's other read-back is not
    asked of it. Before, the 429 was only counted as unverifiable and the run asked on."""
    reg = register_tool(lms, served)
    learner, ctx = launched_learner(lms, served, browser, reg["client_id"])
    served.ok(
        "POST",
        "/ingest",
        json={
            "activities": [{"id": "a2", "course_id": "c1", "title": "Lab 2", "points_possible": 10}]
        },
    )
    wait_for(lambda: len(lms.state.courses[ctx].line_items) == 2, "both line items")
    post_attempt(served, "e1", learner, 7)
    wait_for(
        lambda: any(learner in li.scores for li in lms.state.courses[ctx].line_items.values()),
        "the grade in the LMS",
    )

    lms.admin.reset_counters()
    lms.admin.set_faults({"results": {"script": ["throttle"], "retry_after": 3600}})
    try:
        run = served.run("manual", "c1")
    finally:
        lms.admin.clear_faults()
    counters = lms.admin.counters()
    assert counters["results"]["throttle"] == 1, counters
    assert counters["results"]["requests"] == 1, counters  # nothing more asked while paused
    assert run["counts"]["unverifiable"] == 2, run["counts"]
    dest = wait_for(
        lambda: (d := served.ok("GET", "/destinations/lms"))["paused_until"] and d,
        "the slow-down pause",
    )
    assert "slow down" in dest["pause_reason"], dest
    until = datetime.fromisoformat(dest["paused_until"])
    assert until > datetime.now(UTC) + timedelta(minutes=55), dest  # its Retry-After
