"""The LMS roster (NRPS) end to end over real HTTP: a learner who never launched is matched
by SIS id after a launch from the course and gets a grade; a learner who leaves the LMS
course is not sent to any more, and says so; roster reads are counted under their platform."""

from __future__ import annotations

from typing import Any

from gradesync.lti.claims import AGS_SCOPES
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services.tenants import set_roster_match
from gradesync.testing import wait_for
from tests.lti.conftest import Browser, unique
from tests.support.metrics import scrape, value
from tests.support.served import (
    Served,
    courseware_course,
    deep_link,
    post_attempt,
    register_tool,
)

NRPS = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"


def _grades(gs: Served, person: str) -> list[dict[str, Any]]:
    return list(gs.ok("GET", f"/people/{person}/grades")["destinations"].get("lms", []))


def _launch_evidence(gs: Served, person: str) -> str:
    diagnosis = gs.ok("GET", f"/activities/a1/learners/{person}/diagnosis")
    (check,) = [c for c in diagnosis["checks"] if c["code"] == "launched_from_course"]
    return str(check["evidence"])


def test_never_launched_learner_gets_a_grade_and_a_leaver_gets_none(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    reg = register_tool(lms, served, scopes=[*AGS_SCOPES, NRPS])
    teacher, lms_user, other = unique("teacher-"), unique("lms-"), unique("lms-")
    sis_id = unique("SIS-")
    ctx = unique("ctx-")
    lms.admin.add_user(sub=lms_user, name="Ada Lovelace", sis_id=sis_id)
    lms.admin.add_course(id=ctx, learners=[lms_user, other], instructors=[teacher])
    learner = unique("cw-")  # the courseware's own id: never the LMS's
    courseware_course(served, {"id": learner, "sis_id": sis_id})
    link = deep_link(lms, browser, reg["client_id"], teacher, ctx)
    # the teacher opens the link: the launch offers the roster, read in the background
    launched = browser.launch(
        lms, client_id=reg["client_id"], user=teacher, course=ctx, resource_link_id=link
    )
    assert launched.status_code == 200
    post_attempt(served, "e1", learner, 8)
    (item,) = lms.state.courses[ctx].line_items.values()
    record = wait_for(lambda: item.scores.get(lms_user), "the grade of a learner never launched")
    assert record.score_given == 8.0
    assert learner not in item.scores
    assert "matched by SIS id" in _launch_evidence(served, learner)
    stranger = unique("cw-")  # a courseware learner the LMS course does not list
    courseware_course(served, {"id": stranger, "sis_id": unique("SIS-")})
    served.run("resync", "c1")
    assert "Not in the LMS course" in _launch_evidence(served, stranger)

    # the learner leaves the LMS course; "Sync now" reads the differences first
    lms.admin.unenroll(ctx, lms_user, status="Inactive")
    post_attempt(served, "e2", learner, 10)
    run = served.run("resync", "c1")
    assert run["outcome"] == "succeeded", run
    (grade,) = _grades(served, learner)
    assert grade["reason_code"] == "left_course", grade
    assert "left the course on" in grade["reason_text"]
    assert "(NRPS)" in grade["reason_text"]
    assert item.scores[lms_user].score_given == 8.0  # nothing sent, no 422 asked for


def test_matched_by_email_when_the_tenant_says_so(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    set_roster_match(served.runtime.uow, served.runtime.clock, served.tenant, "email")
    reg = register_tool(lms, served, scopes=[*AGS_SCOPES, NRPS])
    teacher, lms_user, ctx = unique("teacher-"), unique("lms-"), unique("ctx-")
    email = f"{unique('grace')}@example.edu"
    lms.admin.add_user(sub=lms_user, name="Grace Hopper", email=email.upper())
    lms.admin.add_course(id=ctx, learners=[lms_user], instructors=[teacher])
    learner = unique("cw-")
    courseware_course(served, {"id": learner, "email": email})
    link = deep_link(lms, browser, reg["client_id"], teacher, ctx)
    post_attempt(served, "e1", learner, 5)
    (item,) = lms.state.courses[ctx].line_items.values()
    assert learner not in item.scores and lms_user not in item.scores  # waits for the roster
    browser.launch(lms, client_id=reg["client_id"], user=teacher, course=ctx, resource_link_id=link)
    record = wait_for(lambda: item.scores.get(lms_user), "the grade, matched by email")
    assert record.score_given == 5.0
    assert "matched by email" in _launch_evidence(served, learner)


def test_roster_reads_are_counted_under_their_platform(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    """`gradesync_outbound_requests_total` by tenant and destination includes the roster
    reads, after a launch (a background task) and before a run, as it includes the scores:
    an operator sees which platform's memberships endpoint is failing."""
    reg = register_tool(lms, served, scopes=[*AGS_SCOPES, NRPS])
    teacher, ctx = unique("teacher-"), unique("ctx-")
    lms.admin.add_course(id=ctx, learners=[], instructors=[teacher])
    courseware_course(served)
    # every roster read fails with a status no other request of this test gets
    lms.admin.set_faults({"memberships": {"script": ["error"] * 50, "error_status": 503}})
    try:
        refused = {"tenant": served.tenant, "destination": "lms", "status": "503"}
        link = deep_link(lms, browser, reg["client_id"], teacher, ctx)
        # the teacher opens the link: the launch reads the roster in the background
        browser.launch(
            lms, client_id=reg["client_id"], user=teacher, course=ctx, resource_link_id=link
        )
        wait_for(
            lambda: value(scrape(served), "gradesync_outbound_requests_total", **refused) >= 1,
            "the launch's roster read counted under its platform",
        )
        before = value(scrape(served), "gradesync_outbound_requests_total", **refused)
        served.run("resync", "c1")  # a course-wide run: no destination in its own scope
        after = value(scrape(served), "gradesync_outbound_requests_total", **refused)
        assert after > before
    finally:
        lms.admin.clear_faults()
