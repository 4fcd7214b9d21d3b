"""The course grid in headless Chromium says what the LMS holds: a grade no longer sent but
sent before is "Kept in LMS" (not "Not sent"), a refusal says when it was last tried and is
never labelled "Last sent", and a long unbroken activity name wraps inside the page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from gradesync.domain.model import Activity
from gradesync.sandbox.config import SandboxConfig
from gradesync.sandbox.testing import RunningSandbox, running_sandbox
from gradesync.services import ingest, policies
from tests.e2e.conftest import BROKEN_SHORT_WORDS, LiveConsole, sign_in
from tests.e2e.world import INSTRUCTOR, TENANT, School, build_school

pytestmark = pytest.mark.browser

RUN_TIMEOUT = 30_000


@pytest.fixture
def lms() -> Iterator[RunningSandbox]:
    with running_sandbox(SandboxConfig(mode="canvas")) as sandbox:
        yield sandbox


@pytest.fixture
def school(lms: RunningSandbox, live_console: LiveConsole) -> School:
    return build_school(lms, live_console)


def _cell(page: Any, person: str, activity: str) -> Any:
    return page.locator(f'td[data-person="{person}"][data-activity="{activity}"]')


def test_the_grid_says_what_the_lms_holds_and_when_a_grade_was_last_tried(
    page: Any, live_console: LiveConsole, lms: RunningSandbox, school: School
) -> None:
    sign_in(page, live_console, *INSTRUCTOR)
    page.get_by_role("switch", name="Sync Cells quiz").click()
    page.get_by_role("button", name="Sync now").click()
    progress = page.locator("#run-progress")
    expect(progress).to_have_attribute("data-finished", "true", timeout=RUN_TIMEOUT)
    expect(_cell(page, "u-ada", "cells")).to_contain_text("Sent")

    # a refusal: when it was last tried, what the LMS holds; never "Last sent"
    rejected = _cell(page, school.dropped, "cells")
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
    kept = _cell(page, "u-ada", "cells")
    expect(kept).to_contain_text("Kept in LMS", timeout=RUN_TIMEOUT)
    expect(kept).not_to_contain_text("Not sent")
    kept.locator("summary").click()
    expect(kept.locator(".lms-holds")).to_contain_text("The LMS holds the grade gradesync sent")
    expect(kept.locator(".lms-holds")).to_contain_text("stays there until a new grade is sent")
    expect(kept.locator(".why")).to_contain_text("sync box")
    items = {i.resource_id: i for i in lms.state.courses[school.course_id].line_items.values()}
    assert items["cells"].scores["u-ada"].score_given == 8.0


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
