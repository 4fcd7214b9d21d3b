"""A column's look-up on an LMS that takes the line items container's filters as advisory:
it answers every line item of the course, two a page (the sandbox's `line_item_filters:
ignored`). Finding the activity's column reads no further than the page that holds it, and
each page goes within the LMS's limits: a rate token per page, under the one slot the
column's write holds (a cap of 1 here: a page that waited for a second slot would wait
for ever)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from gradesync.sandbox.testing import RunningSandbox
from gradesync.testing import wait_for
from tests.support.limits import watch_waits
from tests.support.lti import Browser
from tests.support.served import (
    Served,
    launched_learner,
    new_activity,
    post_attempt,
    register_tool,
)

LIMITS = "/destinations/lms/limits"


@pytest.fixture
def ignoring(lms: RunningSandbox) -> Iterator[None]:
    """The LMS ignores the container's filters, and gradesync's page size, for one test
    (the module's LMS answers as before afterwards)."""
    lms.admin.configure(line_item_filters="ignored", max_page_size=2)
    yield
    lms.admin.configure(line_item_filters="honoured", max_page_size=None)


def _line_item_requests(lms: RunningSandbox) -> int:
    return lms.admin.counters().get("lineitems", {}).get("requests", 0)


def _labels(lms: RunningSandbox, ctx: str) -> list[str]:
    return [li.label for li in lms.state.courses[ctx].line_items.values()]


def _linked_course(lms: RunningSandbox, served: Served, browser: Browser) -> tuple[str, str]:
    """(learner, LMS course): a1 deep linked (its column "Lab 1" the course's first line
    item), one slot for the LMS's requests."""
    reg = register_tool(lms, served)
    learner, ctx = launched_learner(lms, served, browser, reg["client_id"])
    wait_for(lambda: _labels(lms, ctx) == ["Lab 1"], "the deep linked activity's line item")
    served.ok("PATCH", LIMITS, json={"concurrency": 1})
    return learner, ctx


def _second_page_waiting(
    lms: RunningSandbox, served: Served, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The LMS course, 10 line items in it, where a new activity a3's column is looked up
    at one request per 100 s: its first page sent, the second waiting for a token."""
    _, ctx = _linked_course(lms, served, browser)
    for n in range(9):
        lms.admin.add_line_item(ctx, label=f"Quiz {n}", scoreMaximum=5)
    waited = threading.Event()
    watch_waits(monkeypatch, waited)
    served.ok("PATCH", LIMITS, json={"rate_per_second": 0.01})
    lms.admin.reset_counters()
    new_activity(served, "a3", "Lab 3")
    wait_for(waited.is_set, "the look-up's second page waiting for a token")
    assert _line_item_requests(lms) == 1  # the first page only
    return ctx


def test_a_column_made_before_is_adopted_from_the_page_that_holds_it(
    lms: RunningSandbox, served: Served, browser: Browser, ignoring: None
) -> None:
    """a2's column, made under an earlier connection, is listed second: its look-up reads
    the first page of six, not every line item of the course."""
    learner, ctx = _linked_course(lms, served, browser)
    lms.admin.add_line_item(ctx, label="Lab 2", scoreMaximum=10, resourceId="a2", tag="grade")
    for n in range(9):
        lms.admin.add_line_item(ctx, label=f"Quiz {n}", scoreMaximum=5)
    lms.admin.reset_counters()

    new_activity(served, "a2", "Lab 2")
    post_attempt(served, "e1", learner, 7, activity_id="a2")
    (lab2,) = (li for li in lms.state.courses[ctx].line_items.values() if li.label == "Lab 2")
    wait_for(lambda: learner in lab2.scores, "the grade in the adopted column")
    assert _line_item_requests(lms) == 1, lms.admin.counters()
    assert _labels(lms, ctx).count("Lab 2") == 1


def test_each_page_of_a_column_s_look_up_waits_for_its_own_rate_token(
    lms: RunningSandbox,
    served: Served,
    browser: Browser,
    ignoring: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At one request per 100 s, a new column's look-up sends its first page with the one
    token there is and waits, not asked, for the next; lifted, the column is made once."""
    try:
        ctx = _second_page_waiting(lms, served, browser, monkeypatch)
    finally:
        served.ok("PATCH", LIMITS, json={"rate_per_second": None})
    wait_for(lambda: "Lab 3" in _labels(lms, ctx), "the column made once the limit is lifted")
    assert _labels(lms, ctx).count("Lab 3") == 1
    # every page of 10 line items (5), the new one, and every page again (6: it is last)
    wait_for(lambda: _line_item_requests(lms) == 12, "the look-up after creating it")


def test_a_pause_met_between_the_pages_holds_the_column_until_resumed(
    lms: RunningSandbox,
    served: Served,
    browser: Browser,
    ignoring: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An admin pauses the LMS while a look-up's second page waits for its token: the page
    is not asked, and the column waits for the pause as one met before its first request
    does; resumed, it is made once."""
    caplog.set_level(logging.INFO, logger="gradesync.services.delivery.provisioning")
    try:
        ctx = _second_page_waiting(lms, served, browser, monkeypatch)
        served.ok("POST", "/destinations/lms/pause", json={"reason": "exam week"})
    finally:
        served.ok("PATCH", LIMITS, json={"rate_per_second": None})
    wait_for(lambda: "wait for the pause" in caplog.text, "the column held by the pause")
    assert _line_item_requests(lms) == 1  # the first page only
    assert "Lab 3" not in _labels(lms, ctx)

    served.ok("POST", "/destinations/lms/resume")
    wait_for(lambda: "Lab 3" in _labels(lms, ctx), "the column made once resumed")
    assert _labels(lms, ctx).count("Lab 3") == 1


def test_a_column_s_write_after_its_look_up_waits_for_a_rate_token_of_its_own(
    lms: RunningSandbox,
    served: Served,
    browser: Browser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At one request per 100 s, a new column's look-up (one page: the LMS honours the
    filters) takes the one token there is; the line item's POST after it waits for a token
    of its own, not sent, instead of going on the look-up's. Lifted, the column is made
    once."""
    _, ctx = _linked_course(lms, served, browser)
    waited = threading.Event()
    watch_waits(monkeypatch, waited)
    try:
        served.ok("PATCH", LIMITS, json={"rate_per_second": 0.01})
        lms.admin.reset_counters()
        new_activity(served, "a3", "Lab 3")
        wait_for(waited.is_set, "the column's write waiting for a token")
        assert _line_item_requests(lms) == 1  # the look-up only
        assert "Lab 3" not in _labels(lms, ctx)
    finally:
        served.ok("PATCH", LIMITS, json={"rate_per_second": None})
    wait_for(lambda: "Lab 3" in _labels(lms, ctx), "the column made once the limit is lifted")
    assert _labels(lms, ctx).count("Lab 3") == 1
