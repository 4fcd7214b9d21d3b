"""Columns (line items) obey a destination's pause as scores do: an admin's pause, or the
slow-down pause of a 429 with Retry-After. A column known ahead of its first grade waits for
the pause and is created once the destination is resumed; a run's columns stop at the first
429. The sandbox LMS answers the 429s (its fault script) and counts the line item requests."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from gradesync.adapters.db.database import Database
from gradesync.sandbox.testing import RunningSandbox
from gradesync.testing import wait_for
from tests.support.lti import Browser
from tests.support.served import (
    Served,
    launched_learner,
    new_activity,
    post_attempt,
    register_tool,
    serve,
)

WAITS = "wait for the pause"  # what the provisioner logs for columns held by a pause

Linked = tuple[str, str]  # (learner, LMS course)


def _line_item_requests(lms: RunningSandbox) -> int:
    return lms.admin.counters().get("lineitems", {}).get("requests", 0)


def _labels(lms: RunningSandbox, ctx: str) -> set[str]:
    return {li.label for li in lms.state.courses[ctx].line_items.values()}


def _held_back(lms: RunningSandbox, caplog: pytest.LogCaptureFixture) -> bool:
    """The new column either went out (the defect) or waits for the pause."""
    return _line_item_requests(lms) > 0 or WAITS in caplog.text


def _assert_new_column_held_back(
    lms: RunningSandbox, served: Served, caplog: pytest.LogCaptureFixture, defect: str
) -> None:
    """Activity a2 ("Lab 2") ingested while the LMS is paused: its column waits."""
    lms.admin.reset_counters()
    new_activity(served, "a2", "Lab 2")
    wait_for(lambda: _held_back(lms, caplog), "the new column sent or held back")
    assert _line_item_requests(lms) == 0, defect


@pytest.fixture
def linked(
    lms: RunningSandbox, served: Served, browser: Browser, caplog: pytest.LogCaptureFixture
) -> Linked:
    """(learner, LMS course): a launched learner's course whose deep linked activity's line
    item exists, with what the provisioner logs captured (`_held_back` reads it)."""
    caplog.set_level(logging.INFO, logger="gradesync.services.delivery.provisioning")
    reg = register_tool(lms, served)
    learner, ctx = launched_learner(lms, served, browser, reg["client_id"])
    wait_for(lambda: _labels(lms, ctx) == {"Lab 1"}, "the deep linked activity's line item")
    return learner, ctx


def test_an_admin_pause_holds_a_new_activity_s_line_item_until_resumed(
    lms: RunningSandbox, served: Served, caplog: pytest.LogCaptureFixture, linked: Linked
) -> None:
    _, ctx = linked

    served.ok("POST", "/destinations/lms/pause", json={"reason": "exam week"})
    _assert_new_column_held_back(lms, served, caplog, "a line item request reached a paused LMS")
    assert _labels(lms, ctx) == {"Lab 1"}

    served.ok("POST", "/destinations/lms/resume")
    wait_for(lambda: "Lab 2" in _labels(lms, ctx), "the held column created once resumed")


def test_a_slow_down_pause_holds_a_new_activity_s_line_item_until_it_ends(
    lms: RunningSandbox, served: Served, caplog: pytest.LogCaptureFixture, linked: Linked
) -> None:
    learner, ctx = linked

    # a grade's send meets a 429 asking for an hour: the destination is paused for it
    lms.admin.set_faults({"scores": {"script": ["throttle"], "retry_after": 3600}})
    post_attempt(served, "e1", learner, 7)
    wait_for(
        lambda: served.ok("GET", "/destinations/lms").get("paused_until"), "the slow-down pause"
    )
    lms.admin.clear_faults()
    _assert_new_column_held_back(
        lms, served, caplog, "a line item request reached an LMS that asked to wait"
    )

    # the pause ends (here lifted by an admin rather than waited out): the column goes, and
    # the grade the 429 held
    served.ok("POST", "/destinations/lms/resume")
    wait_for(lambda: "Lab 2" in _labels(lms, ctx), "the held column created after the pause")
    (lab1,) = (li for li in lms.state.courses[ctx].line_items.values() if li.label == "Lab 1")
    wait_for(lambda: learner in lab1.scores, "the held grade sent after the pause")


@pytest.fixture
def served_polling_hourly(db: Database, tmp_path: Path) -> Iterator[Served]:
    """A worker that looks for work on its own only hourly: whatever it does sooner, it
    was told to."""
    yield from serve(db, tmp_path, worker_poll_seconds=3600)


def test_a_run_s_columns_stop_at_the_first_429_and_are_not_tried_again_during_its_pause(
    lms: RunningSandbox, served_polling_hourly: Served, browser: Browser
) -> None:
    served = served_polling_hourly
    reg = register_tool(lms, served)
    learner, ctx = launched_learner(lms, served, browser, reg["client_id"])
    new_activity(served, "a2", "Lab 2")
    wait_for(lambda: _labels(lms, ctx) == {"Lab 1", "Lab 2"}, "both line items")
    post_attempt(served, "e1", learner, 7)
    (lab1,) = (li for li in lms.state.courses[ctx].line_items.values() if li.label == "Lab 1")
    wait_for(lambda: learner in lab1.scores, "the grade in the LMS")
    first = lab1.scores[learner].updated_at
    lms.admin.patch_line_item(ctx, lab1.id, scoreMaximum=50)  # by hand, in the LMS

    # a remaster rewrites both columns: the first write meets a 429 asking for an hour
    lms.admin.reset_counters()
    lms.admin.set_faults({"lineitems": {"script": ["throttle"], "retry_after": 3600}})
    try:
        run = served.run("remaster", "c1")
    finally:
        lms.admin.clear_faults()
    counters = lms.admin.counters()
    assert counters["lineitems"]["throttle"] == 1
    # neither the other column nor the failed one's second try after sending went out, nor
    # verifying's read-back
    assert counters["lineitems"]["requests"] == 1, counters
    assert "results" not in counters, counters
    assert run["counts"]["unverifiable"] >= 1, run["counts"]
    assert run["counts"]["columns"]["failed"] == 2, run["counts"]
    assert "paused" in run["message"], run["message"]
    # nor the grade the remaster sends again: it checks its column first (the run's mark),
    # so it met the pause and waits for it
    assert "scores" not in counters, counters
    assert lab1.scores[learner].updated_at == first
    assert run["counts"]["pending"] == 1, run["counts"]

    # resumed, the grade goes (and the column with it) at once: the resume wakes the worker,
    # and its pass once the worker has read the pause lifted
    served.ok("POST", "/destinations/lms/resume")
    wait_for(lambda: lab1.scores[learner].updated_at != first, "the grade sent again")
    # the column the 429 left as the LMS had it was put right before the grade went
    assert lab1.score_maximum == 10.0
    assert lab1.scores[learner].column_points == 10.0


def test_a_remaster_of_a_paused_lms_waits_for_the_resume_and_puts_its_columns_right_first(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    """An admin's pause holds a remaster's grades and columns: the run computes them and says
    they wait, and the resume sends them, each column put right before its grade."""
    reg = register_tool(lms, served)
    learner, ctx = launched_learner(lms, served, browser, reg["client_id"])
    (lab1,) = lms.state.courses[ctx].line_items.values()
    post_attempt(served, "e1", learner, 7)
    wait_for(lambda: learner in lab1.scores, "the grade in the LMS")
    first = lab1.scores[learner].updated_at

    served.ok("POST", "/destinations/lms/pause", json={"reason": "exam week"})
    lms.admin.patch_line_item(ctx, lab1.id, scoreMaximum=50)  # by hand, in the LMS
    lms.admin.reset_counters()
    run = served.run("remaster", "c1")
    assert run["counts"]["pending"] == 1, run["counts"]
    assert run["counts"]["columns"]["failed"] == 1, run["counts"]
    assert "exam week" in run["message"] and "resumed" in run["message"], run["message"]
    assert lms.admin.counters() == {}  # nothing asked of the paused LMS

    served.ok("POST", "/destinations/lms/resume")
    wait_for(lambda: lab1.scores[learner].updated_at != first, "the grade sent on the resume")
    assert lab1.score_maximum == 10.0
    assert lab1.scores[learner].column_points == 10.0

    # again, the run's own column write meeting a 429 whose pause the run waits out: the
    # grade it then sends checks its column first (this process checked it once before)
    lms.admin.patch_line_item(ctx, lab1.id, scoreMaximum=50)
    lms.admin.set_faults({"lineitems": {"script": ["throttle"], "retry_after": 2}})
    lms.admin.reset_counters()
    try:
        run = served.run("remaster", "c1")
    finally:
        lms.admin.clear_faults()
    assert run["counts"]["sent"] == 1, run["counts"]
    # the column read and written once, by the grade's send: the run's second try finds it
    # written for it (before, the run wrote it a second time)
    assert run["counts"]["columns"]["written"] == 1, run["counts"]
    assert lms.admin.counters()["lineitems"]["served"] == 2, lms.admin.counters()
    assert lab1.score_maximum == 10.0
    assert lab1.scores[learner].column_points == 10.0


def test_a_429_to_a_column_made_ahead_pauses_the_lms_and_the_column_waits_for_it(
    lms: RunningSandbox, served: Served, caplog: pytest.LogCaptureFixture, linked: Linked
) -> None:
    _, ctx = linked

    lms.admin.reset_counters()
    lms.admin.set_faults({"lineitems": {"script": ["throttle"], "retry_after": 3600}})
    new_activity(served, "a2", "Lab 2")
    # the column's 429 answered: it waits for the pause (or, before, was left to a grade)
    answered = (WAITS, "not created ahead")
    wait_for(lambda: any(w in caplog.text for w in answered), "the column's 429 answered")
    lms.admin.clear_faults()
    dest = served.ok("GET", "/destinations/lms")
    assert dest["paused_until"] and "slow down" in dest["pause_reason"], dest
    assert lms.admin.counters()["lineitems"] == {
        "requests": 1,
        "max_open": 1,
        "max_inflight": 1,
        "throttle": 1,
    }

    served.ok("POST", "/destinations/lms/resume")
    wait_for(lambda: "Lab 2" in _labels(lms, ctx), "the column created once resumed")
