"""Deep Linking asks the LMS for the columns gradesync already made there (a connection added
again knows none of them) while the instructor's browser waits: once for all the chosen
activities, no further than the page that answers them all, within one short deadline and
within the platform's pause, rate limit and breaker, as any other request to it. However
slow the LMS, the answer comes, and it claims no column it did not find."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.lti.deep_linking import open_session, seal
from gradesync.sandbox.testing import RunningSandbox
from gradesync.testing import wait_for
from tests.lti.conftest import Browser, unique
from tests.support.limits import watch_waits
from tests.support.served import (
    Served,
    courseware_course,
    post_attempt,
    register_tool,
    serve,
)

ACTIVITIES = [f"a{i}" for i in range(1, 6)]


@pytest.fixture
def served(db: Database, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    """gradesync with its default look-up deadline (an LMS that answers at once never
    waits on it), or the settings a test gives (`indirect` parametrization)."""
    yield from serve(db, tmp_path, **getattr(request, "param", {}))


@pytest.fixture
def paging(lms: RunningSandbox) -> Iterator[Callable[..., object]]:
    """Sets how the LMS answers line items listings (`max_page_size`, `line_item_filters`)
    for one test; the module's LMS answers as before afterwards."""
    yield lms.admin.configure
    lms.admin.configure(max_page_size=None, line_item_filters="honoured")


def _course(lms: RunningSandbox, served: Served) -> tuple[str, str, str]:
    """(client id, teacher, LMS course): the tool registered, courseware course c1 with five
    activities, and an LMS course taught by the teacher."""
    client_id = register_tool(lms, served)["client_id"]
    teacher, ctx = unique("teacher-"), unique("ctx-")
    lms.admin.add_course(id=ctx, instructors=[teacher])
    served.ok(
        "POST",
        "/ingest",
        json={
            "courses": [{"id": "c1", "title": "Chemistry"}],
            "activities": [
                {"id": a, "course_id": "c1", "title": f"Lab {a}", "points_possible": 10}
                for a in ACTIVITIES
            ],
        },
    )
    return client_id, teacher, ctx


def _ours(lms: RunningSandbox, ctx: str, *activities: str) -> None:
    """Columns gradesync made for `activities` under an earlier connection: the activity's
    resourceId and gradesync's tag."""
    for a in activities:
        lms.admin.add_line_item(ctx, label=f"Lab {a}", scoreMaximum=10, resourceId=a, tag="grade")


def _respond(
    lms: RunningSandbox,
    browser: Browser,
    client_id: str,
    teacher: str,
    ctx: str,
    meanwhile: Callable[[], object] = lambda: None,
) -> tuple[dict[str, Any], dict[str, int]]:
    """The teacher opens the picker, `meanwhile` happens, and the teacher picks every
    activity: (gradesync's answer, the LMS's line items counters while it was made)."""
    picker = browser.launch(
        lms, client_id=client_id, user=teacher, course=ctx, message_type="LtiDeepLinkingRequest"
    ).json()
    meanwhile()
    lms.admin.reset_counters()
    answer = _pick(browser, picker)
    return answer, lms.admin.counters().get("lineitems", {})


def _pick(browser: Browser, picker: dict[str, Any]) -> dict[str, Any]:
    """The teacher picks every activity in the picker: gradesync's answer."""
    answer = browser.post(
        picker["respond_url"],
        {"session": picker["session"], "course_id": "c1", "activity_ids": ACTIVITIES},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def _requests(lms: RunningSandbox) -> int:
    return lms.admin.counters().get("lineitems", {}).get("requests", 0)


def _respond_faulty(
    lms: RunningSandbox,
    browser: Browser,
    client_id: str,
    teacher: str,
    ctx: str,
    faults: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, int]]:
    """`_respond` while the LMS's line items endpoints meet `faults`."""
    lms.admin.set_faults({"lineitems": faults})
    try:
        return _respond(lms, browser, client_id, teacher, ctx)
    finally:
        lms.admin.clear_faults()


def _asked_for_column(answer: dict[str, Any]) -> dict[str, bool]:
    """Activity -> whether its link asks the LMS to make a column."""
    return {
        item["custom"]["gradesync_activity_id"]: "lineItem" in item
        for item in answer["content_items"]
    }


def test_one_listing_finds_the_columns_of_every_chosen_activity(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    client_id, teacher, ctx = _course(lms, served)
    # columns gradesync made under an earlier connection, and one the LMS's teacher made
    _ours(lms, ctx, "a2", "a4")
    lms.admin.add_line_item(ctx, label="Attendance", scoreMaximum=5)
    answer, counters = _respond(lms, browser, client_id, teacher, ctx)
    # one page of the container's tagged line items, not one question per activity
    assert counters.get("requests") == 1, counters
    assert _asked_for_column(answer) == {
        "a1": True,
        "a2": False,
        "a3": True,
        "a4": False,
        "a5": True,
    }


def test_a_platform_that_ignores_the_filters_is_read_to_the_page_that_answers_them_all(
    lms: RunningSandbox, served: Served, browser: Browser, paging: Callable[..., object]
) -> None:
    """Filters are advisory: an LMS that ignores them answers every line item of the course.
    The listing stops at the page that gives every chosen activity its tagged column; an
    activity with no column there makes it read every page, and is claimed found by none."""
    paging(line_item_filters="ignored", max_page_size=2)
    client_id, teacher, ctx = _course(lms, served)
    lms.admin.add_line_item(ctx, label="Attendance", scoreMaximum=5)
    # a3's column under another tag (made by an older registration): a3's with gradesync's
    # tag, which comes later, is the one its link reuses
    lms.admin.add_line_item(ctx, label="Lab a3 (v1)", scoreMaximum=10, resourceId="a3", tag="v1")
    _ours(lms, ctx, *ACTIVITIES)
    for n in range(5):
        lms.admin.add_line_item(ctx, label=f"Quiz {n}", scoreMaximum=5)
    # 12 line items, 2 a page: a5's comes on the 4th page, 2 more pages follow
    answer, counters = _respond(lms, browser, client_id, teacher, ctx)
    assert counters.get("requests") == 4, counters
    assert _asked_for_column(answer) == dict.fromkeys(ACTIVITIES, False)

    teacher, other = unique("teacher-"), unique("ctx-")
    lms.admin.add_course(id=other, instructors=[teacher])
    _ours(lms, other, "a1", "a2", "a4")
    lms.admin.add_line_item(other, label="Lab a3", scoreMaximum=10, resourceId="a3", tag="v1")
    answer, counters = _respond(lms, browser, client_id, teacher, other)
    # every page: a5 has no column, a3 only one under another tag (its column still, as a
    # grade's send finds it, unless one with gradesync's tag comes later)
    assert counters.get("requests") == 2, counters
    assert _asked_for_column(answer) == {**dict.fromkeys(ACTIVITIES, False), "a5": True}


@pytest.mark.parametrize("served", [{"deep_link_lookup_seconds": 1.0}], indirect=True)
def test_an_lms_slower_than_the_deadline_is_asked_once_and_the_answer_comes(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    """The only test that waits on the deadline: one second, set as an operator sets it."""
    client_id, teacher, ctx = _course(lms, served)
    _ours(lms, ctx, "a2")
    # the LMS holds every line items request far beyond the deadline (and beyond the
    # browser's patience: an answer that waited for it would fail the test); the sandbox
    # releases it when it stops
    faults = {"latency_ms": 600_000}
    answer, counters = _respond_faulty(lms, browser, client_id, teacher, ctx, faults)
    assert counters.get("requests") == 1, counters
    # unanswered, nothing is claimed found: every link asks the LMS for its column, as a
    # first placement does
    assert _asked_for_column(answer) == dict.fromkeys(ACTIVITIES, True)


@pytest.mark.parametrize("until", [None, "2099-01-01T06:00:00Z"], ids=["turned_off", "timed"])
def test_a_platform_paused_since_the_picker_opened_is_not_asked(
    lms: RunningSandbox, served: Served, browser: Browser, until: str | None
) -> None:
    client_id, teacher, ctx = _course(lms, served)
    _ours(lms, ctx, "a2")
    (platform,) = served.ok("GET", "/destinations")
    pause = {"reason": "LMS upgrade", **({"until": until} if until else {})}
    answer, counters = _respond(
        lms,
        browser,
        client_id,
        teacher,
        ctx,
        lambda: served.ok("POST", f"/destinations/{platform['id']}/pause", json=pause),
    )
    assert counters.get("requests", 0) == 0, counters
    assert _asked_for_column(answer) == dict.fromkeys(ACTIVITIES, True)


def test_further_requests_of_the_look_up_waits_its_turn_within_the_platforms_rate_limit(
    lms: RunningSandbox,
    served: Served,
    browser: Browser,
    paging: Callable[..., object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A listing of several pages takes a token for each: at one request per 100 s, the
    first page goes with the one token there is and the next waits, not asked, until the
    limit is lifted."""
    paging(max_page_size=2)
    client_id, teacher, ctx = _course(lms, served)
    _ours(lms, ctx, *ACTIVITIES)  # three pages of the tagged line items
    (platform,) = served.ok("GET", "/destinations")
    limits = f"/destinations/{platform['id']}/limits"
    waited = threading.Event()
    watch_waits(monkeypatch, waited)
    served.ok("PATCH", limits, json={"rate_per_second": 0.01})
    picker = browser.launch(
        lms, client_id=client_id, user=teacher, course=ctx, message_type="LtiDeepLinkingRequest"
    ).json()
    lms.admin.reset_counters()
    answer: dict[str, Any] = {}
    picking = threading.Thread(target=lambda: answer.update(_pick(browser, picker)))
    picking.start()
    try:
        wait_for(waited.is_set, "the look-up's second page waiting for a token")
        assert _requests(lms) == 1  # the first page only
    finally:
        served.ok("PATCH", limits, json={"rate_per_second": None})
        picking.join(timeout=60)
    assert _requests(lms) == 3
    assert _asked_for_column(answer) == dict.fromkeys(ACTIVITIES, False)


@pytest.mark.parametrize("served", [{"breaker_threshold": 1}], indirect=True)
def test_a_failing_look_up_counts_on_the_platforms_breaker(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    """A 5xx answer to the look-up is a failure of the platform, as a send's is: counted on
    its breaker (here opened by one), which pauses it; the next look-up does not ask."""
    client_id, teacher, ctx = _course(lms, served)
    _ours(lms, ctx, "a2")
    (platform,) = served.ok("GET", "/destinations")
    lms.admin.set_faults({"lineitems": {"error_rate": 1.0, "error_status": 500}})
    try:
        answer, counters = _respond(lms, browser, client_id, teacher, ctx)
        assert counters.get("requests") == 1, counters
        assert _asked_for_column(answer) == dict.fromkeys(ACTIVITIES, True)
        paused = wait_for(
            lambda: served.ok("GET", f"/destinations/{platform['id']}").get("pause_reason"),
            "the platform paused by its breaker",
        )
        assert "repeated failures" in paused and "server error" in paused, paused
        again, counters = _respond(lms, browser, client_id, teacher, ctx)
    finally:
        lms.admin.clear_faults()
    assert counters.get("requests", 0) == 0, counters
    assert _asked_for_column(again) == dict.fromkeys(ACTIVITIES, True)


def test_a_refusal_of_one_launchs_container_pauses_nothing(
    lms: RunningSandbox, served: Served, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    """A picker opened before an admin changed the platform's registration carries a line
    items container no longer on the platform's origins (the picker's session is re-sealed
    here as gradesync seals it): the look-up is refused before asking anything, a final
    refusal of this one course's container. It is logged, the choices are left as they
    were, and the platform is not paused: a grade sent to it right after goes."""
    client_id = register_tool(lms, served)["client_id"]
    teacher, learner, ctx = unique("teacher-"), unique("learner-"), unique("ctx-")
    lms.admin.add_course(id=ctx, learners=[learner], instructors=[teacher])
    courseware_course(served, {"id": learner})
    picker = browser.launch(
        lms, client_id=client_id, user=teacher, course=ctx, message_type="LtiDeepLinkingRequest"
    ).json()
    box = served.runtime.db.box
    session = open_session(box, picker["session"], datetime.now(UTC))
    assert session.endpoint is not None
    moved = {**session.endpoint, "lineitems": "https://elsewhere.example/api/lti/x/line_items"}
    lms.admin.reset_counters()
    answer = browser.post(
        picker["respond_url"],
        {
            "session": seal(replace(session, endpoint=moved), box),
            "course_id": "c1",
            "activity_ids": ["a1"],
        },
    )
    assert answer.status_code == 200, answer.text
    assert _asked_for_column(answer.json()) == {"a1": True}
    assert _requests(lms) == 0
    assert "foreign_url" in caplog.text and "could not be asked for its columns" in caplog.text

    # the teacher's link made in the LMS (its column with it); the learner's grade goes
    created = browser.http.post(answer.json()["return_url"], data={"JWT": answer.json()["jwt"]})
    link = str(created.json()["created"][0]["resource_link_id"])
    launched = browser.launch(
        lms, client_id=client_id, user=learner, course=ctx, resource_link_id=link
    )
    assert launched.status_code == 200
    post_attempt(served, "e1", learner, 7)
    (item,) = lms.state.courses[ctx].line_items.values()
    wait_for(lambda: learner in item.scores, "the grade in the LMS, the platform not paused")
    (platform,) = served.ok("GET", "/destinations")
    assert platform["paused_until"] is None and platform["pause_reason"] is None, platform


@pytest.fixture
def distributed(postgres_db: Database, tmp_path: Path) -> Iterator[Served]:
    """`gradesync serve` of the distributed mode: no worker in the process."""
    yield from serve(postgres_db, tmp_path, worker_mode="distributed")


@pytest.mark.postgres
def test_without_a_worker_in_process_the_look_up_keeps_to_the_platforms_limits(
    lms: RunningSandbox, distributed: Served, browser: Browser
) -> None:
    """A look-up made where no worker runs goes through a governor of its own, as every
    request to the platform does: the LMS's 429 pauses the platform for every process (as a
    send's does), and the next look-up, made while it is paused, asks nothing."""
    assert distributed.runtime.worker is None
    client_id, teacher, ctx = _course(lms, distributed)
    _ours(lms, ctx, "a2")
    faults = {"script": ["throttle"], "retry_after": 600}  # a 429 with Retry-After
    answer, counters = _respond_faulty(lms, browser, client_id, teacher, ctx, faults)
    assert counters.get("requests") == 1, counters
    assert _asked_for_column(answer) == dict.fromkeys(ACTIVITIES, True)
    (platform,) = distributed.ok("GET", "/destinations")
    assert platform["paused_until"] is not None, platform
    again, counters = _respond(lms, browser, client_id, teacher, ctx)
    assert counters.get("requests", 0) == 0, counters
    assert _asked_for_column(again) == dict.fromkeys(ACTIVITIES, True)


@pytest.mark.postgres
def test_a_serve_without_a_worker_closes_its_pool_to_the_platforms_when_it_stops(
    lms: RunningSandbox, postgres_db: Database, tmp_path: Path, browser: Browser
) -> None:
    """The HTTP pool a look-up went through is closed when `serve` stops, with no worker
    in the process to close it (it was left open: "Unclosed client session" at exit)."""
    running = serve(postgres_db, tmp_path, worker_mode="distributed")
    gs = next(running)
    try:
        client_id, teacher, ctx = _course(lms, gs)
        _respond(lms, browser, client_id, teacher, ctx)
        pool = gs.runtime.destination_context().http
        assert not pool.is_closed
    finally:
        running.close()  # the server stops, as at a SIGTERM
    assert pool.is_closed and gs.runtime.destinations is None
