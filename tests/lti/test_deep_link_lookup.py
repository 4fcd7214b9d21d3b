"""Deep Linking asks the LMS for the columns gradesync already made there (a connection added
again knows none of them) while the instructor's browser waits: once for all the chosen
activities, within one short deadline, and within the platform's pause. However slow the
LMS, the answer comes, and it claims no column it did not find."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.sandbox.testing import RunningSandbox
from tests.lti.conftest import Browser, unique
from tests.support.served import Served, register_tool, serve

ACTIVITIES = [f"a{i}" for i in range(1, 6)]
# seconds the look-up may take in all (the default): an LMS that answers at once answers
# within it even on a loaded machine, and the browser (10 s) waits longer
DEADLINE = 5.0


@pytest.fixture
def served(db: Database, tmp_path: Path) -> Iterator[Served]:
    yield from serve(db, tmp_path, deep_link_lookup_seconds=DEADLINE)


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
    answer = browser.post(
        picker["respond_url"],
        {"session": picker["session"], "course_id": "c1", "activity_ids": ACTIVITIES},
    )
    counters = lms.admin.counters().get("lineitems", {})
    assert answer.status_code == 200, answer.text
    return answer.json(), counters


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
    for a in ("a2", "a4"):
        lms.admin.add_line_item(ctx, label=f"Lab {a}", scoreMaximum=10, resourceId=a, tag="grade")
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


def test_an_lms_slower_than_the_deadline_is_asked_once_and_the_answer_comes(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    client_id, teacher, ctx = _course(lms, served)
    lms.admin.add_line_item(ctx, label="Lab a2", scoreMaximum=10, resourceId="a2", tag="grade")
    # the LMS holds every line items request far beyond the deadline (asked once per
    # activity, the answer would wait for each in turn, up to the AGS timeout)
    lms.admin.set_faults({"lineitems": {"latency_ms": 12 * DEADLINE * 1000}})
    try:
        answer, counters = _respond(lms, browser, client_id, teacher, ctx)
    finally:
        lms.admin.clear_faults()
    assert counters.get("requests") == 1, counters
    # unanswered, nothing is claimed found: every link asks the LMS for its column, as a
    # first placement does
    assert _asked_for_column(answer) == dict.fromkeys(ACTIVITIES, True)


@pytest.mark.parametrize("until", [None, "2099-01-01T06:00:00Z"], ids=["turned_off", "timed"])
def test_a_platform_paused_since_the_picker_opened_is_not_asked(
    lms: RunningSandbox, served: Served, browser: Browser, until: str | None
) -> None:
    client_id, teacher, ctx = _course(lms, served)
    lms.admin.add_line_item(ctx, label="Lab a2", scoreMaximum=10, resourceId="a2", tag="grade")
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


def test_the_look_up_waits_its_turn_within_the_platforms_rate_limit(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    client_id, teacher, ctx = _course(lms, served)
    lms.admin.add_line_item(ctx, label="Lab a2", scoreMaximum=10, resourceId="a2", tag="grade")
    (platform,) = served.ok("GET", "/destinations")
    # one request per 100 s: the first look-up takes the one there is
    served.ok("PATCH", f"/destinations/{platform['id']}/limits", json={"rate_per_second": 0.01})
    first, counters = _respond(lms, browser, client_id, teacher, ctx)
    assert counters.get("requests") == 1, counters
    assert _asked_for_column(first)["a2"] is False
    # the next would wait far beyond the deadline for its turn: it is not asked
    again, counters = _respond(lms, browser, client_id, teacher, ctx)
    assert counters.get("requests", 0) == 0, counters
    assert _asked_for_column(again) == dict.fromkeys(ACTIVITIES, True)
