"""Grade policies in the console, in headless Chromium against the sandbox LMS: an admin sets
an institution-wide default and the grades it changes reach the LMS without a sync; an
instructor sees where each setting of the course comes from and overrides one for the course.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from gradesync.domain.model import Activity, Attempt
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services import ingest, policies
from gradesync.testing import wait_for
from tests.e2e.conftest import LiveConsole, sign_in
from tests.e2e.world import ADMIN, INSTRUCTOR, TENANT, School

pytestmark = pytest.mark.browser


def _lms_score(lms: RunningSandbox, course: str, activity: str, user: str) -> float | None:
    for item in lms.state.courses[course].line_items.values():
        if item.resource_id == activity and user in item.scores:
            return item.scores[user].score_given
    return None


def _row(page: Any, setting: str) -> Any:
    return page.locator(f'table.policy tr[data-setting="{setting}"]')


def test_admin_sets_an_institution_default_and_the_zero_reaches_the_lms(
    page: Any, live_console: LiveConsole, lms: RunningSandbox, school: School
) -> None:
    rt = live_console.runtime
    # an essay that was due an hour ago; Ada never handed it in
    essay = Activity(
        TENANT,
        "essay",
        school.course_id,
        "Essay",
        10.0,
        due_at=datetime.now(UTC) - timedelta(hours=1),
    )
    ingest.upsert_activities(rt.db.uow, rt.clock, rt.waker, TENANT, [essay])

    def essay_reason() -> str | None:
        with rt.db.uow() as uow:
            rows = uow.ledger.get_many(TENANT, school.platform_id, school.course_id, ["essay"])
        row = rows.get(("essay", "u-ada"))
        return row.reason_code if row is not None else None

    # zeros are off by default: nothing to send for Ada yet
    wait_for(lambda: essay_reason() == "no_attempt_yet", "the essay's skipped row")

    sign_in(page, live_console, *ADMIN)
    page.get_by_role("link", name="Grade policy").click()
    expect(page.get_by_role("heading", level=1, name="Grade policy")).to_be_visible()
    zeros = _row(page, "past_due_zeros")
    expect(zeros.locator(".policy-source")).to_have_text("built-in default")
    page.get_by_label("Zeros for past-due work").select_option("on")
    page.get_by_label("Grace period (minutes)").fill("30")
    page.get_by_role("button", name="Save defaults").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Saved: Zeros for past-due work, Grace period (minutes)."
    )
    expect(zeros.locator(".policy-value")).to_have_text("On")
    expect(zeros.locator(".policy-source")).to_have_text("institution default")
    expect(page.get_by_label("Zeros for past-due work")).to_have_value("on")
    expect(page.get_by_label("Grace period (minutes)")).to_have_value("30")

    # nobody pressed Sync now: the default alone sends Ada's zero (due + 30 min has passed)
    wait_for(
        lambda: _lms_score(lms, school.course_id, "essay", "u-ada") == 0.0,
        "the past-due zero in the LMS",
    )

    # a bad value is refused, naming the setting, and changes nothing
    page.get_by_label("Grace period (minutes)").fill("-5")
    page.get_by_label("Grace period (minutes)").evaluate("e => e.removeAttribute('min')")
    page.get_by_role("button", name="Save defaults").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Grace period (minutes): The grace period is a whole number"
    )
    expect(page.get_by_label("Grace period (minutes)")).to_have_value("30")


def test_instructor_sees_where_each_setting_comes_from_and_overrides_one(
    page: Any, live_console: LiveConsole, lms: RunningSandbox, school: School
) -> None:
    rt = live_console.runtime
    policies.set_tenant_policy(rt.db.uow, rt.clock, rt.waker, TENANT, {"past_due_zeros": "on"})
    policies.set_activity_policy(
        rt.db.uow, rt.clock, rt.waker, TENANT, "cells", {"attempt_selection": "first"}
    )
    # Ada's later, lower attempt on the lab: "highest" (the default) keeps her 17
    later = datetime.now(UTC) - timedelta(minutes=5)
    ingest.ingest(
        rt.db.uow,
        rt.clock,
        rt.waker,
        TENANT,
        ingest.IngestBatch(attempts=[Attempt(TENANT, "ev-9", "genes", "u-ada", 12.0, 20.0, later)]),
    )
    wait_for(
        lambda: _lms_score(lms, school.course_id, "genes", "u-ada") == 17.0,
        "Ada's highest lab grade in the LMS",
    )

    sign_in(page, live_console, *INSTRUCTOR)
    expect(page.get_by_role("heading", name="Grade policy")).to_be_visible()
    expect(_row(page, "past_due_zeros").locator(".policy-source")).to_have_text(
        "institution default"
    )
    attempt = _row(page, "attempt_selection")
    expect(attempt.locator(".policy-value")).to_have_text("Highest score")
    expect(attempt.locator(".policy-source")).to_have_text("built-in default")
    expect(page.locator('.activity-policies li[data-activity="cells"]')).to_contain_text(
        "Attempt that counts: First attempt"
    )

    page.get_by_label("Attempt that counts").select_option("latest")
    page.get_by_role("button", name="Save course policy").click()
    expect(page.get_by_role("status").first).to_contain_text("Saved: Attempt that counts.")
    expect(attempt.locator(".policy-value")).to_have_text("Most recent attempt")
    expect(attempt.locator(".policy-source")).to_have_text("this course")
    shots = os.environ.get("GRADESYNC_SCREENSHOT_DIR")
    if shots:
        page.screenshot(path=str(Path(shots) / "course-policy.png"), full_page=True)
    # the course's override reaches the LMS without a sync: Ada's most recent lab grade
    wait_for(
        lambda: _lms_score(lms, school.course_id, "genes", "u-ada") == 12.0,
        "Ada's most recent lab grade in the LMS",
    )

    # back to the institution's default
    page.get_by_label("Attempt that counts").select_option("")
    page.get_by_role("button", name="Save course policy").click()
    expect(attempt.locator(".policy-source")).to_have_text("built-in default")
    wait_for(
        lambda: _lms_score(lms, school.course_id, "genes", "u-ada") == 17.0,
        "Ada's highest lab grade in the LMS again",
    )
