"""The course grid's remedies fit who reads them, in headless Chromium: an instructor is not
told to run a gradesync command (they have no command line, and an admin's commands would not
be theirs to run) but who does it; an admin still reads the command."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from gradesync.domain.passback import PassbackRule
from gradesync.sandbox.config import SandboxConfig
from gradesync.sandbox.testing import RunningSandbox, running_sandbox
from gradesync.services import sis
from gradesync.testing import wait_for
from tests.e2e.conftest import LiveConsole, sign_in
from tests.e2e.world import ADMIN, INSTRUCTOR, TENANT, School, build_school

pytestmark = pytest.mark.browser

ASK = "Ask a gradesync administrator to"
RUN_TIMEOUT = 30_000


@pytest.fixture
def lms() -> Iterator[RunningSandbox]:
    with running_sandbox(SandboxConfig(mode="canvas")) as sandbox:
        yield sandbox


@pytest.fixture
def school(lms: RunningSandbox, live_console: LiveConsole) -> School:
    """The school, with a file-based SIS connection the course is mapped to, and its
    learners linked to their students: no activity is ticked "Sync to SIS" yet."""
    school = build_school(lms, live_console)
    rt = live_console.runtime
    sis.add_connection(
        rt.db.uow,
        rt.clock,
        tenant_id=TENANT,
        destination_id="sis",
        name="District SIS",
        base_url=None,
        file_based=True,
    )
    sis.map_class(
        rt.db.uow,
        tenant_id=TENANT,
        destination_id="sis",
        course_id=school.course_id,
        class_id="cls-1",
        school_id="sch-1",
        waker=rt.waker,
    )
    for n, pid in enumerate(sorted(school.learners), 1):
        sis.map_student(
            rt.db.uow,
            tenant_id=TENANT,
            destination_id="sis",
            person_id=pid,
            student_id=f"s{n}",
            waker=rt.waker,
        )

    return school


def _synced(page: Any, live_console: LiveConsole, school: School) -> None:
    """The course with the SIS shown, then Sync now: the run works the grades out there."""
    page.goto(live_console.url(f"/console/courses/{school.course_id}?destination=sis"))
    page.get_by_role("button", name="Sync now").click()
    expect(page.locator("#run-progress")).to_have_attribute(
        "data-finished", "true", timeout=RUN_TIMEOUT
    )
    rt = live_console.runtime

    def worked_out() -> bool:
        with rt.db.uow() as uow:
            rows = uow.ledger.get_many(TENANT, "sis", school.course_id)
        row = rows.get(("genes", "u-ada"))
        return row is not None and row.reason_code == PassbackRule.NOT_SELECTED.value

    wait_for(worked_out, "Ada's genetics grade worked out for the SIS")
    page.reload()


def _why(page: Any, person: str, activity: str) -> Any:
    cell = page.locator(f'td[data-person="{person}"][data-activity="{activity}"]')
    cell.locator("summary").click()
    return cell.locator(".why")


def test_an_instructor_reads_who_ticks_the_activity_not_a_command(
    page: Any, live_console: LiveConsole, school: School
) -> None:
    sign_in(page, live_console, *INSTRUCTOR)
    _synced(page, live_console, school)
    why = _why(page, "u-ada", "genes")
    expect(why).to_contain_text("is not selected for SIS passback")
    expect(why).to_contain_text(f"{ASK} tick 'Sync to SIS' for this activity.")
    expect(page.locator("table.grid")).not_to_contain_text("gradesync sis")
    summary = page.locator('td[data-person="u-ada"][data-activity="genes"] summary')
    assert "gradesync sis" not in (summary.get_attribute("title") or "")


def test_an_admin_reads_where_the_console_ticks_it_not_a_command(
    page: Any, live_console: LiveConsole, school: School
) -> None:
    sign_in(page, live_console, *ADMIN)
    page.goto(live_console.url(f"/console/courses/{school.course_id}"))
    _synced(page, live_console, school)
    why = _why(page, "u-ada", "genes")
    expect(why).to_contain_text(
        f"Tick 'Sync to SIS' for it on the course's SIS passback page "
        f"(/console/sis/sis/courses/{school.course_id}, Sync to SIS and validation)."
    )
    expect(why).not_to_contain_text(ASK)
    expect(page.locator("table.grid")).not_to_contain_text("gradesync sis")
