"""The course grid in headless Chromium says what the LMS holds: a grade no longer sent but
sent before is "Kept in LMS" (not "Not sent") with the score the LMS holds, a refusal says
when it was last tried and is never labelled "Last sent", and a long unbroken activity name
wraps inside the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from gradesync.domain.model import Activity
from gradesync.domain.reasons import ReasonCode
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services import ingest, policies
from gradesync.testing import wait_for
from tests.e2e.conftest import BROKEN_SHORT_WORDS, LiveConsole, grid_cell, sign_in
from tests.e2e.world import INSTRUCTOR, TENANT, School

pytestmark = pytest.mark.browser

RUN_TIMEOUT = 30_000


def test_the_grid_says_what_the_lms_holds_and_when_a_grade_was_last_tried(
    page: Any, live_console: LiveConsole, lms: RunningSandbox, school: School
) -> None:
    sign_in(page, live_console, *INSTRUCTOR)
    page.get_by_role("switch", name="Sync Cells quiz").click()
    page.get_by_role("button", name="Sync now").click()
    progress = page.locator("#run-progress")
    expect(progress).to_have_attribute("data-finished", "true", timeout=RUN_TIMEOUT)
    expect(grid_cell(page, "u-ada", "cells")).to_contain_text("Sent")

    # a refusal: when it was last tried, what the LMS holds; never "Last sent"
    rejected = grid_cell(page, school.dropped, "cells")
    expect(rejected).to_contain_text("Rejected")
    rejected.locator("summary").click()
    why = rejected.locator(".why")
    expect(why.locator(".last-try")).to_contain_text("Last tried")
    expect(why.locator(".last-try")).to_contain_text("(refused)")
    expect(why.locator(".lms-holds")).to_have_text("The LMS holds no grade from gradesync.")
    expect(why).not_to_contain_text("Last sent")

    # the instructor stops syncing the quiz: Ada's 8 stays in the LMS, and the grid says so
    page.get_by_role("switch", name="Sync Cells quiz").click()
    expect(page.get_by_role("status").filter(has_text="Sync is off for Cells quiz")).to_be_visible()
    kept = grid_cell(page, "u-ada", "cells")
    expect(kept).to_contain_text("Kept in LMS", timeout=RUN_TIMEOUT)
    expect(kept).not_to_contain_text("Not sent")
    expect(kept.locator("summary .score")).to_have_text("8 / 10")  # the score the LMS holds
    kept.locator("summary").click()
    expect(kept.locator(".lms-holds")).to_contain_text("The LMS holds the grade gradesync sent")
    expect(kept.locator(".lms-holds")).to_contain_text(": 8 / 10; it stays there")
    expect(kept.locator(".lms-holds")).to_contain_text("stays there until a new grade is sent")
    expect(kept.locator(".why")).to_contain_text("sync box")
    items = {i.resource_id: i for i in lms.state.courses[school.course_id].line_items.values()}
    assert items["cells"].scores["u-ada"].score_given == 8.0


def test_with_course_sync_off_the_grid_shows_what_the_docs_say(
    page: Any, live_console: LiveConsole, lms: RunningSandbox, school: School
) -> None:
    """docs/console.md said a course with sync off shows every grade as *Not sent*; the grid
    shows a grade sent before as *Kept in LMS* (the LMS keeps it), the others *Not sent*,
    each with the reason. The page is right; the docs say what it shows."""
    sign_in(page, live_console, *INSTRUCTOR)
    page.get_by_role("button", name="Sync now").click()
    expect(page.locator("#run-progress")).to_have_attribute(
        "data-finished", "true", timeout=RUN_TIMEOUT
    )
    expect(grid_cell(page, "u-ada", "genes")).to_contain_text("Sent")

    page.get_by_role("switch", name="Grade sync for Biology 101").click()
    expect(page.get_by_role("status").filter(has_text="Grade sync is off for")).to_be_visible()
    rt = live_console.runtime

    def worked_out_again() -> bool:
        with rt.db.uow() as uow:
            rows = uow.ledger.get_many(TENANT, school.platform_id, school.course_id, ["genes"])
        row = rows.get(("genes", "u-ada"))
        return row is not None and row.reason_code == ReasonCode.COURSE_SYNC_DISABLED.value

    # the worker works the course's grades out again just after the switch
    wait_for(worked_out_again, "Ada's genetics grade worked out with the course off")
    page.reload()
    kept, never = grid_cell(page, "u-ada", "genes"), grid_cell(page, "u-alan", "genes")
    expect(kept).to_contain_text("Kept in LMS")
    expect(never).to_contain_text("Not sent")
    kept.locator("summary").click()
    expect(kept.locator(".why")).to_contain_text("Grade sync is turned off for the course")
    expect(kept.locator(".lms-holds")).to_contain_text("The LMS holds the grade gradesync sent")

    doc = (Path(__file__).parents[2] / "docs" / "console.md").read_text()
    switch = doc.split("- **Grade sync for this course**", 1)[1].split("\n- ", 1)[0]
    switch = " ".join(switch.split())  # as the page reads, not as the file is wrapped
    assert "*Kept in LMS*" in switch and "*Not sent*" in switch, switch


@pytest.mark.parametrize("width", [1280, 375])
def test_a_long_unbroken_activity_name_wraps_inside_the_page(
    page: Any, live_console: LiveConsole, school: School, width: int
) -> None:
    rt = live_console.runtime
    name = "Lab" + "x" * 197
    assert len(name) == 200
    ingest.upsert_activities(
        rt.db.uow,
        rt.clock,
        rt.waker,
        TENANT,
        [Activity(TENANT, "long", school.course_id, name, 10.0)],
    )
    policies.set_activity_policy(
        rt.db.uow, rt.clock, rt.waker, TENANT, "long", {"attempt_selection": "latest"}
    )
    page.set_viewport_size({"width": width, "height": 900})

    def fits(where: str) -> None:
        widths = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.body.scrollWidth,"
            " window.innerWidth]"
        )
        assert widths[0] <= widths[2] and widths[1] <= widths[2], (where, widths)
        # wrapping long names must not cost short words: "Points" never becomes "Poi nts"
        broken = page.evaluate(BROKEN_SHORT_WORDS)
        assert broken == [], (where, broken)

    sign_in(page, live_console, *INSTRUCTOR)
    expect(page.get_by_role("columnheader", name=name)).to_be_visible()
    fits("the course page")
    # the flash and the activity's own policy name it in running text
    page.get_by_role("switch", name=f"Sync {name}").click()
    expect(page.get_by_role("status").filter(has_text=f"Sync is off for {name}")).to_be_visible()
    expect(page.locator('.activity-policies li[data-activity="long"]')).to_contain_text(name)
    fits("the course page after a change")
    page.goto(
        live_console.url(f"/console/diagnosis?course={school.course_id}&activity=long&person=u-ada")
    )
    expect(page.get_by_role("heading", name=f"Ada Byron · {name}")).to_be_visible()
    fits("the diagnosis page")
