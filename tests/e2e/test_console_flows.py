"""The console driven in headless Chromium the way people use it, against the sandbox LMS.

Instructor: sign in, turn an activity's sync on, press Sync now, watch the run finish, find
why a learner's grade was rejected. Admin: pause a schedule, add and check an LMS, read the
dashboard. Set GRADESYNC_SCREENSHOT_DIR to save the course page's screenshot (the README's).
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from gradesync.domain.model import Attempt
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services import destination_admin, ingest
from gradesync.testing import wait_for
from tests.e2e.conftest import (
    BROKEN_SHORT_WORDS,
    CUT_CAPTIONS,
    SCROLLING_TABLES,
    LiveConsole,
    grid_cell,
    sign_in,
)
from tests.e2e.world import ADMIN, INSTRUCTOR, TENANT, School

pytestmark = pytest.mark.browser

RUN_TIMEOUT = 30_000  # ms: a run against loopback takes well under a second


def test_instructor_syncs_and_finds_why_a_grade_was_rejected(
    page: Any, live_console: LiveConsole, lms: RunningSandbox, school: School
) -> None:
    sign_in(page, live_console, *INSTRUCTOR)
    # An instructor with one course lands in it.
    expect(page.get_by_role("heading", level=1, name="Biology 101")).to_be_visible()

    # "Cells quiz" is not synced yet: turn its switch on.
    switch = page.get_by_role("switch", name="Sync Cells quiz")
    expect(switch).to_have_attribute("aria-checked", "false")
    switch.click()
    expect(page.get_by_role("status").filter(has_text="Sync is on for Cells quiz")).to_be_visible()
    expect(page.get_by_role("switch", name="Sync Cells quiz")).to_have_attribute(
        "aria-checked", "true"
    )

    # Sync now, and watch the run go through its stages to the end. The LMS answers scores
    # slowly here, so the page shows the run while it is still going and follows it live.
    lms.admin.set_faults({"scores": {"latency_ms": 2000}})
    page.get_by_role("button", name="Sync now").click()
    expect(page.get_by_text(re.compile(r"Sync now started \(run "))).to_be_visible()
    progress = page.locator("#run-progress")
    expect(progress.get_by_role("heading")).to_have_text("Sync in progress")
    expect(progress).to_have_attribute("data-finished", "false")
    expect(progress).to_have_attribute("data-stage", "sending", timeout=RUN_TIMEOUT)
    expect(progress.locator("li[aria-current=step]")).to_have_text(re.compile("Sending grades"))
    expect(progress).to_have_attribute("data-finished", "true", timeout=RUN_TIMEOUT)
    expect(progress.get_by_role("heading")).to_have_text("Last sync")
    # a learner the LMS no longer knows is an accepted rejection, not a failed run
    expect(progress.get_by_role("status")).to_contain_text("Finished: Succeeded")
    expect(progress.locator("li.stage-done")).to_have_count(6)
    expect(progress).to_have_attribute("data-tables-fresh", "true")

    # The grid, refreshed in place: Ada's grades are in the gradebook, Alan's were refused.
    expect(grid_cell(page, "u-ada", "cells")).to_contain_text("Sent")
    expect(grid_cell(page, "u-ada", "cells")).to_contain_text("8 / 10")
    expect(grid_cell(page, "u-ada", "genes")).to_contain_text("Sent")
    rejected = grid_cell(page, school.dropped, "cells")
    expect(rejected).to_contain_text("Rejected")
    # Why: open the cell (a click, or Enter on the keyboard).
    rejected.locator("summary").focus()
    page.keyboard.press("Enter")
    expect(rejected.locator(".why")).to_be_visible()
    expect(rejected.locator(".why")).to_contain_text("User not found in course or is not a student")
    expect(rejected.locator(".why")).to_contain_text("HTTP 422")

    # And the LMS really holds Ada's grade.
    items = {i.resource_id: i for i in lms.state.courses[school.course_id].line_items.values()}
    assert items["cells"].scores["u-ada"].score_given == 8.0
    assert "u-alan" not in items["cells"].scores

    # The diagnosis page tells the same story from the records, with the delivery log.
    rejected.get_by_role("link", name="Diagnose this grade").click()
    expect(page.get_by_role("heading", name="Alan Turing · Cells quiz")).to_be_visible()
    checks = page.locator("ol.checks > li")
    expect(checks.first).to_be_visible()
    failed = page.locator("ol.checks > li.check-bad")
    expect(failed.first).to_contain_text("Failed: The grade is delivered")
    expect(failed.first).to_contain_text("What to do: The learner must open gradesync")
    evidence = page.locator(".evidence").first
    expect(evidence).to_contain_text("Rejected")
    expect(evidence.locator(".remote")).to_contain_text("HTTP 422")
    expect(evidence.get_by_role("table")).to_contain_text("rejected")
    # the count says what it counts: the one send, refused (not "tries" of a grade)
    expect(evidence).to_contain_text("Failed sends in a row1")

    shots = os.environ.get("GRADESYNC_SCREENSHOT_DIR")
    if shots:
        page.goto(live_console.url(f"/console/courses/{school.course_id}"))
        cell = grid_cell(page, school.dropped, "cells")
        cell.locator("summary").click()
        expect(cell.locator(".why")).to_be_visible()
        page.set_viewport_size({"width": 1200, "height": 900})
        page.screenshot(path=str(Path(shots) / "course-page.png"), full_page=True)


def test_an_instructor_reads_on_the_diagnosis_page_what_to_ask_an_administrator(
    page: Any, live_console: LiveConsole, school: School
) -> None:
    """A paused gradebook's remedy is a command (`gradesync destinations resume`) an
    instructor cannot run: they read what to ask an administrator for, by the check."""
    rt = live_console.runtime
    with rt.db.uow() as uow:
        lms = uow.destinations.get(TENANT, "lms")
        assert lms is not None
        uow.destinations.upsert(
            replace(lms, enabled=False, pause_reason="term closed"), datetime.now(UTC)
        )
        uow.commit()
    sign_in(page, live_console, *INSTRUCTOR)
    page.goto(
        live_console.url(
            f"/console/diagnosis?course={school.course_id}&activity=cells&person=u-ada"
        )
    )
    ready = page.locator("ol.checks > li.check-bad").filter(has_text="Sandbox LMS")
    expect(ready.first).to_contain_text("Paused: term closed")
    expect(ready.first).to_contain_text(
        "Ask a gradesync administrator to fix what paused this destination, then resume it."
    )
    expect(page.locator("ol.checks")).not_to_contain_text("gradesync destinations resume")


def test_recent_syncs_shows_the_run_finished_without_a_reload(
    page: Any, live_console: LiveConsole, lms: RunningSandbox, school: School
) -> None:
    sign_in(page, live_console, *INSTRUCTOR)
    expect(page.get_by_role("heading", level=1, name="Biology 101")).to_be_visible()
    # the LMS answers slowly, so the page is shown while the run is still going
    lms.admin.set_faults({"scores": {"latency_ms": 1500}})
    page.get_by_role("button", name="Sync now").click()
    expect(page.get_by_text(re.compile(r"Sync now started \(run "))).to_be_visible()
    progress = page.locator("#run-progress")
    run_id = progress.get_attribute("data-run-id")
    history = page.get_by_role("table", name="Recent syncs")
    row = history.locator("tbody tr").filter(has=page.locator(f'a[href="/console/runs/{run_id}"]'))
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(4)).to_have_text("—")  # no outcome while it runs

    expect(progress).to_have_attribute("data-finished", "true", timeout=RUN_TIMEOUT)
    expect(progress).to_have_attribute("data-tables-fresh", "true")
    # the same page, not reloaded: the row says what the Last sync panel says
    expect(row.locator("td").nth(3)).to_have_text("Finished")
    expect(row.locator("td").nth(4)).to_have_text("Succeeded")
    expect(row.locator("td").nth(5)).to_contain_text(re.compile(r"\bsent [1-9]"))


def test_the_sync_panel_and_the_dashboard_say_a_rate_limit_holds_the_grades(
    page: Any, live_console: LiveConsole, school: School
) -> None:
    """A remaster at an LMS limited to a request every 100 s: the course's Sync in progress
    panel showed only its stage for minutes, and the Dashboard "Delivering". Both say that
    the rate limit holds the grades, and who changes it; the panel stops saying so, without
    a reload, once the limit is cleared and the grades have gone."""
    rt = live_console.runtime
    lms = school.platform_id
    destination_admin.set_limits(rt.uow, rt.clock, TENANT, lms, {"rate_per_second": 0.01})
    sign_in(page, live_console, *ADMIN)
    course = live_console.url(f"/console/courses/{school.course_id}")
    page.goto(course)
    page.get_by_role("button", name="Remaster…").click()
    page.get_by_role("button", name="Yes, remaster").click()
    progress = page.locator("#run-progress")
    expect(progress.get_by_role("heading")).to_have_text("Sync in progress")
    held = progress.locator(f'[data-rate-limited="{lms}"]')
    expect(held).to_contain_text("Sandbox LMS is held back by its rate limit.")
    expect(held).to_contain_text("rate limit of 0.01 requests per second, so sending")
    expect(held).to_contain_text(f"`PATCH /api/v1/destinations/{lms}/limits`")

    page.get_by_role("link", name="Dashboard").click()
    note = page.get_by_role("status").filter(has_text="held back by its rate limit")
    expect(note).to_contain_text("Nothing to do if that pace is meant.")
    expect(page.locator(f'[data-destination="{lms}"]')).to_contain_text("Rate limited")

    page.goto(course)
    expect(held).to_be_visible()
    destination_admin.set_limits(rt.uow, rt.clock, TENANT, lms, {"rate_per_second": None})
    expect(progress).to_have_attribute("data-finished", "true", timeout=RUN_TIMEOUT)
    expect(held).to_have_count(0)


def test_admin_pauses_a_schedule(page: Any, live_console: LiveConsole, school: School) -> None:
    sign_in(page, live_console, *ADMIN)
    page.get_by_role("link", name="Schedules").click()
    expect(page.get_by_role("heading", level=1, name="Sync schedules")).to_be_visible()

    # Add a nightly sync of the course, in the course's time zone.
    page.get_by_label("Repeats").select_option("daily")
    page.get_by_label("When").fill("01:30")
    page.get_by_label("Course").select_option(label="Biology 101")
    page.get_by_role("button", name="Add schedule").click()
    expect(page.get_by_text("Schedule added")).to_be_visible()
    row = page.locator("table.schedules tbody tr").first
    expect(row).to_contain_text("America/Chicago")
    expect(row).to_contain_text(ADMIN[0])
    expect(row).to_contain_text(re.compile(r"\d{4}-\d\d-\d\d 01:30 C[SD]T"))  # next run, local

    # Pause it: no next run, "Paused since", and the log says who.
    row.get_by_role("button", name=re.compile("^Pause schedule")).click()
    expect(page.get_by_text(re.compile("^Paused: "))).to_be_visible()
    row = page.locator("table.schedules tbody tr").first
    expect(row).to_contain_text("Paused")
    expect(row.get_by_role("button", name=re.compile("^Resume schedule"))).to_be_visible()
    log = page.get_by_role("table", name="Schedule log")
    expect(log.locator("tbody tr").first).to_contain_text("paused")
    # each line names its schedule in words, not by id
    expect(log.locator("tbody tr").first).to_contain_text("Grade sync daily at 01:30, Biology 101")
    expect(log.locator("tbody tr").first).to_contain_text(ADMIN[0])

    # Run it now while paused: a run starts, recorded with the admin's name.
    row.get_by_role("button", name=re.compile("^Run this schedule now")).click()
    expect(page.get_by_text(re.compile(r"Run \S+ started|joined run"))).to_be_visible()
    expect(log.locator("tbody tr").first).to_contain_text("run now")

    # Resume, then Pause all.
    page.locator("table.schedules tbody tr").first.get_by_role(
        "button", name=re.compile("^Resume schedule")
    ).click()
    expect(page.get_by_text(re.compile("^Resumed: "))).to_be_visible()
    # the time it was paused, in the schedule's own zone, not an ISO stamp
    expect(log.locator("tbody tr").first).to_contain_text(
        re.compile(r"paused since \d{4}-\d\d-\d\d \d\d:\d\d C[SD]T")
    )
    page.get_by_role("button", name="Pause all").click()
    expect(page.get_by_text("Paused 1 schedule(s).")).to_be_visible()


def test_admin_adds_and_checks_an_lms_and_reads_the_dashboard(
    page: Any, live_console: LiveConsole, lms: RunningSandbox, school: School
) -> None:
    sign_in(page, live_console, *ADMIN)
    page.get_by_role("link", name="Destinations").click()
    # The values to paste into the LMS are this server's own URLs.
    expect(page.get_by_label("LTI 1.3 public key set (JWKS) URL")).to_have_value(
        live_console.url("/lti/jwks.json")
    )
    # The existing platform checks out against the sandbox (token, scopes, listing).
    page.get_by_role("button", name="Check Sandbox LMS").click()
    result = page.locator("#check-result")
    expect(result.get_by_role("status")).to_have_text("Everything works.")

    # Bad input is refused, naming the field; nothing is added.
    page.get_by_text("An LMS over LTI 1.3").click()
    form = page.locator("form").filter(has=page.locator('input[value="lti13"]'))
    form.get_by_label("Short id").fill("second-lms")
    form.get_by_label("Name").fill("Second LMS")
    form.get_by_label("Issuer (platform id)").fill("not a url")
    form.get_by_label("Client id").fill("abc")
    form.get_by_label("Deployment id(s)").fill("1")
    form.get_by_label("Platform OIDC authorization URL").fill("https://lms.example.edu/auth")
    form.get_by_label("Platform access token URL").fill("https://lms.example.edu/token")
    form.get_by_label("Platform public key set (JWKS) URL").fill("https://lms.example.edu/jwks")
    form.get_by_role("button", name="Add LMS").click()
    expect(page.get_by_role("alert")).to_contain_text("issuer")
    expect(page.get_by_role("cell", name=re.compile("Second LMS"))).to_have_count(0)

    # Fixed, it is added and listed (its secrets-free settings shown).
    form = page.locator("form").filter(has=page.locator('input[value="lti13"]'))
    form.get_by_label("Issuer (platform id)").fill("https://lms.example.edu")
    form.get_by_role("button", name="Add LMS").click()
    expect(page.get_by_text("Added Second LMS.")).to_be_visible()
    expect(page.get_by_role("rowheader", name=re.compile("Second LMS"))).to_be_visible()

    # Grades flowed (auto sync at set-up): the dashboard draws them, with words for each chart.
    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("img", name="Delivery latency")).to_be_visible()
    expect(page.get_by_role("img", name="Outcome per destination")).to_contain_text("Sandbox LMS")
    sent = page.locator(".kpis div").filter(has_text="Grades sent").locator("dd")
    expect(sent).not_to_have_text("0")


def test_narrow_screen_and_keyboard(page: Any, live_console: LiveConsole, school: School) -> None:
    page.set_viewport_size({"width": 375, "height": 740})
    sign_in(page, live_console, *INSTRUCTOR)
    expect(page.get_by_role("heading", level=1, name="Biology 101")).to_be_visible()
    # Nothing but the tables' own scroll boxes is wider than the phone.
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the screen"
    # The skip link is the first stop, and it moves focus to the content.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    # The activity switch works from the keyboard.
    switch = page.get_by_role("switch", name="Sync Cells quiz")
    switch.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("switch", name="Sync Cells quiz")).to_have_attribute(
        "aria-checked", "true"
    )
    # An instructor sees their course only: no admin pages.
    expect(page.get_by_role("link", name="Schedules")).to_have_count(0)
    page.goto(live_console.url("/console/schedules"))
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()


def test_the_policy_form_fits_a_phone(page: Any, live_console: LiveConsole, school: School) -> None:
    """The "Set here" choices were cut to "Insti" at 375 px: each setting is a card there."""
    page.set_viewport_size({"width": 375, "height": 740})
    sign_in(page, live_console, *ADMIN)
    page.goto(live_console.url("/console/policy"))
    choice = page.get_by_label("Attempt that counts")
    box = choice.bounding_box()
    assert box is not None and box["width"] >= 300, box
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the screen"


def test_destinations_and_the_dashboard_read_on_a_phone(
    page: Any, live_console: LiveConsole, school: School
) -> None:
    """At 375 px the destinations table scrolled in its box (its settings, state and buttons
    off to the right) and the dashboard's centred captions were cut at the box's edge."""
    page.set_viewport_size({"width": 375, "height": 740})
    sign_in(page, live_console, *ADMIN)
    page.get_by_role("link", name="Destinations").click()
    page.get_by_role("button", name="Pause Sandbox LMS").click()
    expect(page.get_by_text("Sandbox LMS is paused")).to_be_visible()

    def readable(where: str) -> None:
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{where}: the page is {overflow}px wider than the screen"
        assert page.evaluate(BROKEN_SHORT_WORDS) == [], where
        assert page.evaluate(CUT_CAPTIONS) == [], where

    # one card per destination: nothing to scroll sideways, each value says what it is
    readable("destinations")
    assert page.evaluate(SCROLLING_TABLES) == []
    lms = page.get_by_role("row").filter(has_text="Sandbox LMS")
    expect(lms.get_by_role("cell", name=re.compile(r"^State: Paused"))).to_be_visible()
    resume = lms.get_by_role("button", name="Resume Sandbox LMS")
    box = resume.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 375, box

    # the dashboard: a grade waits for the paused LMS, so its table has a row and a button
    rt = live_console.runtime
    better = Attempt(TENANT, "ev-9", "genes", "u-ada", 19.0, 20.0, datetime.now(UTC))
    ingest.ingest(rt.db.uow, rt.clock, rt.waker, TENANT, ingest.IngestBatch(attempts=[better]))

    def computed() -> bool:
        with rt.db.uow() as uow:
            return bool(uow.ledger.waiting(TENANT))

    wait_for(computed, "the better grade computed")
    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator('[data-destination="lms"]')).to_be_visible()
    page.get_by_text("The numbers behind the charts").click()
    expect(page.get_by_role("table", name="Per time slot (UTC)")).to_be_visible()
    readable("dashboard")


def test_admin_sees_a_paused_lms_on_the_dashboard_and_resumes_it(
    page: Any, live_console: LiveConsole, school: School
) -> None:
    sign_in(page, live_console, *ADMIN)
    page.get_by_role("link", name="Destinations").click()
    page.get_by_role("button", name="Pause Sandbox LMS").click()
    expect(page.get_by_text("Sandbox LMS is paused")).to_be_visible()
    # a better attempt arrives while the LMS is paused: it waits
    rt = live_console.runtime
    better = Attempt(TENANT, "ev-9", "genes", "u-ada", 19.0, 20.0, datetime.now(UTC))
    ingest.ingest(rt.db.uow, rt.clock, rt.waker, TENANT, ingest.IngestBatch(attempts=[better]))

    def computed() -> bool:  # the worker computes the new grade in the background
        with rt.db.uow() as uow:
            return bool(uow.ledger.waiting(TENANT))

    wait_for(computed, "the better grade computed")
    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator('[data-kpi="waiting"]')).to_have_text("1")
    expect(page.get_by_role("alert")).to_contain_text("Sandbox LMS is paused")
    expect(page.get_by_role("alert")).to_contain_text("paused by ada")
    expect(page.locator("[data-oldest]")).to_contain_text("Ada Byron")
    expect(page.locator("[data-oldest]")).to_contain_text("Genetics lab")

    # every x-axis label is drawn inside its chart (the last one was cut off)
    clipped = page.evaluate(
        """() => [...document.querySelectorAll('svg.chart')].flatMap(svg => {
            const box = svg.getBoundingClientRect();
            return [...svg.querySelectorAll('text')]
              .filter(t => {
                const r = t.getBoundingClientRect();
                return r.right > box.right + 0.5 || r.left < box.left - 0.5;
              })
              .map(t => t.textContent);
        })"""
    )
    assert clipped == []

    page.get_by_role("button", name="Resume Sandbox LMS").click()
    expect(page).to_have_url(re.compile("/console/dashboard$"))
    expect(page.get_by_text("Sandbox LMS is delivering again.")).to_be_visible()
    expect(page.locator("[data-paused]")).to_have_count(0)
