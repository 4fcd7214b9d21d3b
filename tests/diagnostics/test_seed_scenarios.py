"""Seed 001, cause by cause, against the sandbox LMS over real HTTP: each cause is set up the
way it happens in a school, and gradesync's diagnosis names it (the failed check, its
evidence) and the course triage puts it under its symptom."""

from __future__ import annotations

import re
from html import unescape

from gradesync.lti.claims import AGS_SCOPES
from gradesync.sandbox.state import LineItem
from gradesync.testing import unique
from tests.diagnostics.conftest import World, causes, failed, passed, wait_for
from tests.support.console import form_token

SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"


def _connected(w: World, learners: list[str], **roster: object) -> tuple[str, str, str]:
    """Register, push the roster, create the LMS course, deep link a1: (ctx, link, teacher)."""
    w.register()
    teacher = unique("teacher-")
    w.roster(**roster)  # type: ignore[arg-type]
    ctx = w.lms_course(learners, [teacher])
    (link,) = w.deep_link(teacher, ctx)
    return ctx, link, teacher


def test_a_delivered_grade_passes_every_check(world: World) -> None:
    learner = unique("ada-")
    ctx, link, _ = _connected(world, [learner])
    assert world.launch(learner, ctx, link).status_code == 200
    world.attempt(learner, 7)
    world.wait_state(learner, "delivered")
    d = world.diagnose(learner)
    assert d["ok"], failed(d)
    assert {
        "attempt_recorded",
        "counted_attempt",
        "launched_from_course",
        "column_linked",
        "delivery",
        "last_delivery",
    } <= passed(d)
    counted = next(c for c in d["checks"] if c["code"] == "counted_attempt")
    assert "Highest of 1 graded attempt" in counted["evidence"]
    last = next(c for c in d["checks"] if c["code"] == "last_delivery")
    assert "HTTP 200" in last["evidence"] and "delivered" in last["evidence"]
    assert world.triage()["symptom"] == "all_syncing"


def test_tool_not_configured_to_accept_grades(world: World) -> None:
    """Cause: the LMS does not grant gradesync the grade scopes (no score scope)."""
    learner = unique("bo-")
    world.register(
        tool_scopes=[s for s in AGS_SCOPES if s != SCORE and not s.endswith("/lineitem")]
    )
    teacher = unique("teacher-")
    world.roster()
    ctx = world.lms_course([learner], [teacher])
    (link,) = world.deep_link(teacher, ctx)
    assert world.launch(learner, ctx, link).status_code == 200
    world.attempt(learner, 6)
    row = world.wait_state(learner, "retrying", reason="no_grade_scope")
    assert row["remote_status"] == 403 and SCORE in row["remote_message"]
    d = world.diagnose(learner)
    bad = failed(d)
    assert "delivery" in bad
    assert "not configured to accept grades" in bad["delivery"]["evidence"] or (
        "Assignment and Grade Services" in (bad["delivery"]["remedy"] or "")
    )
    # the destination's own check names the token step
    dest = world.ok("GET", "/destinations/lms/diagnosis", params={"live": "true"})
    dfailed = failed(dest)
    assert "probe_scopes" in dfailed, dest["checks"]
    assert "granted:" in dfailed["probe_scopes"]["evidence"]
    t = world.triage()
    assert t["symptom"] == "nothing_syncing"
    assert "not_configured_for_grades" in causes(t, "course")


def test_blueprint_locked_column_owned_by_another_tool(world: World) -> None:
    """Cause: a Canvas Blueprint sync locks the graded item: the column now belongs to the
    Blueprint, and the LMS refuses gradesync's scores with 412."""
    learner = unique("cy-")
    ctx, link, _ = _connected(world, [learner])
    assert world.launch(learner, ctx, link).status_code == 200
    world.attempt(learner, 6)
    world.wait_state(learner, "delivered")
    # The Blueprint takes the item over (as the LMS would on a Blueprint sync). The sandbox
    # has no admin route for it, so the test sets the owner; the handlers read it per request.
    world.item(ctx).client_id = "blueprint-tool"
    world.attempt(learner, 8)
    row = world.wait_state(learner, "rejected", reason="line_item_foreign")
    assert row["remote_status"] == 412
    bad = failed(world.diagnose(learner))
    assert "Blueprint" in (bad["delivery"]["remedy"] or "")
    assert "line_item_foreign" in bad["column_linked"]["evidence"]
    t = world.triage()
    assert t["symptom"] == "some_activities"
    assert causes(t, "activities")["column_locked"]["activities"] == ["a1"]


def test_deployment_scope_problem(world: World) -> None:
    """Cause: launches come from a deployment gradesync does not know (shared Canvas)."""
    learner = unique("di-")
    world.register(lms_deployment="other-institution", our_deployments=("d1",))
    world.roster()
    teacher = unique("teacher-")
    ctx = world.lms_course([learner], [teacher])
    started = world.lms.admin.start_launch(
        client_id=world.client_id, user=teacher, course=ctx, message_type="LtiDeepLinkingRequest"
    )
    refused = world.browser.http.get(started["url"])  # the LMS's login initiation
    assert refused.status_code == 403 and "unknown_deployment" in refused.text
    dest = world.ok("GET", "/destinations/lms/diagnosis")
    bad = failed(dest)
    assert "launches_accepted" in bad
    assert "unknown_deployment" in bad["launches_accepted"]["evidence"]
    assert "other-institution" in bad["launches_accepted"]["evidence"]
    assert "Deployment scope" in (bad["launches_accepted"]["remedy"] or "")
    t = world.triage()
    assert t["symptom"] == "nothing_syncing"
    assert {"deployment_problem", "course_not_connected"} <= set(causes(t, "course"))


def test_assignment_unpublished_in_the_lms(world: World) -> None:
    learner = unique("el-")
    ctx, link, _ = _connected(world, [learner])
    assert world.launch(learner, ctx, link).status_code == 200
    item = world.item(ctx)
    world.lms.admin.patch_line_item(ctx, item.id, published=False)
    world.attempt(learner, 5)
    row = world.wait_state(learner, "rejected", reason="unpublished")
    assert row["remote_status"] == 422
    bad = failed(world.diagnose(learner))
    assert "Publish" in (bad["delivery"]["remedy"] or "")
    t = world.triage()
    assert t["symptom"] == "some_activities"
    assert causes(t, "activities")["activity_unpublished"]["activities"] == ["a1"]


def test_activity_unpublished_or_not_graded_in_gradesync(world: World) -> None:
    """Causes: the activity is not published; the link was not made 'Graded' (no points)."""
    learner = unique("fa-")
    ctx, link, _ = _connected(
        world,
        [learner],
        activities=[
            {"id": "a1", "title": "Lab 1", "points_possible": 10},
            {"id": "a2", "title": "Lab 2", "points_possible": 10, "published": False},
            {"id": "a3", "title": "Lab 3", "points_possible": 0},
        ],
    )
    assert world.launch(learner, ctx, link).status_code == 200
    for a in ("a1", "a2", "a3"):
        world.attempt(learner, 5, activity=a)
    world.wait_state(learner, "delivered")
    world.wait_state(learner, "skipped", activity="a2", reason="not_published")
    assert "activity_published" in failed(world.diagnose(learner, "a2"))
    assert "activity_graded" in failed(world.diagnose(learner, "a3"))
    t = world.triage()
    assert t["symptom"] == "some_activities"
    acts = causes(t, "activities")
    assert acts["activity_unpublished"]["activities"] == ["a2"]
    assert acts["not_graded"]["activities"] == ["a3"]


def test_learner_never_launched_from_the_lms(world: World) -> None:
    """Cause: the learner entered through a direct login, never through the course link."""
    ok_learner, direct = unique("gi-"), unique("ha-")
    ctx, link, _ = _connected(
        world, [ok_learner, direct], people=[{"id": direct, "name": "Ha Direct"}]
    )
    assert world.launch(ok_learner, ctx, link).status_code == 200
    world.ok("POST", "/ingest", json={"enrollments": [{"course_id": "c1", "person_id": direct}]})
    world.attempt(ok_learner, 9)
    world.attempt(direct, 9)
    world.wait_state(ok_learner, "delivered")
    world.wait_state(direct, "skipped", reason="no_person_link")
    bad = failed(world.diagnose(direct))
    assert "never launched" in bad["launched_from_course"]["evidence"]
    assert "clicking a gradesync link" in bad["launched_from_course"]["remedy"]
    t = world.triage()
    assert t["symptom"] == "some_learners"
    assert causes(t, "learners")["not_launched"]["learners"] == [direct]


def test_learner_launched_from_another_course(world: World) -> None:
    """Cause: the learner opened gradesync from a different LMS course than intended."""
    learner = unique("io-")
    world.register()
    teacher = unique("teacher-")
    world.roster("c1")
    world.roster("c2", activities=[{"id": "b1", "title": "Essay", "points_possible": 10}])
    ctx1 = world.lms_course([], [teacher])  # the intended course: learner not in it in the LMS
    ctx2 = world.lms_course([learner], [teacher])
    world.deep_link(teacher, ctx1, "c1", ("a1",))
    (link2,) = world.deep_link(teacher, ctx2, "c2", ("b1",))
    assert world.launch(learner, ctx2, link2).status_code == 200
    world.ok("POST", "/ingest", json={"enrollments": [{"course_id": "c1", "person_id": learner}]})
    world.attempt(learner, 7)
    world.wait_state(learner, "rejected", reason="unknown_user")
    bad = failed(world.diagnose(learner))
    evidence = bad["launched_from_course"]["evidence"]
    assert "another course" in evidence and "c2" in evidence
    t = world.triage("c1")
    assert causes(t, "learners")["launched_elsewhere"]["learners"] == [learner]


def test_duplicate_accounts(world: World) -> None:
    """Cause: the work was done in a second account (same email) the LMS does not know."""
    lms_account = unique("jo-")
    other = unique("jo-personal-")
    ctx, link, _ = _connected(world, [lms_account])
    assert world.launch(lms_account, ctx, link).status_code == 200
    email = f"{lms_account}@example.edu"  # the sandbox gives the LMS account this email
    world.ok(
        "POST",
        "/ingest",
        json={
            "people": [{"id": other, "name": "Jo Personal", "email": email.upper()}],
            "enrollments": [{"course_id": "c1", "person_id": other}],
        },
    )
    world.attempt(other, 10)
    world.wait_state(other, "skipped", reason="no_person_link")
    bad = failed(world.diagnose(other))
    assert lms_account in bad["duplicate_accounts"]["evidence"]
    assert "launched from this course" in bad["duplicate_accounts"]["evidence"]
    # seen from the account the LMS knows: no attempt there, but the other account has one
    mine = failed(world.diagnose(lms_account))
    assert other in mine["attempt_recorded"]["evidence"]
    t = world.triage()
    assert causes(t, "learners")["duplicate_accounts"]["learners"] == [other]


def test_work_outside_course_dates(world: World) -> None:
    learner = unique("ka-")
    ctx, link, _ = _connected(
        world, [learner], starts_at="2026-01-05T00:00:00Z", ends_at="2026-02-01T00:00:00Z"
    )
    assert world.launch(learner, ctx, link).status_code == 200
    world.attempt(learner, 9, at="2026-03-01T10:00:00Z")
    world.wait_state(learner, "skipped", reason="outside_course_dates")
    bad = failed(world.diagnose(learner))
    assert "outside the dates" in bad["inside_course_dates"]["evidence"]
    t = world.triage()
    assert t["symptom"] == "some_learners"
    assert learner in causes(t, "learners")["outside_course_dates"]["learners"]


def test_user_without_the_learner_role(world: World) -> None:
    learner, ta = unique("lu-"), unique("ta-")
    ctx, link, _ = _connected(world, [learner])
    world.lms.admin.add_user(sub=ta, name="Tia Assistant")
    world.lms.admin.enroll(ctx, ta, role="instructor")
    assert world.launch(learner, ctx, link).status_code == 200
    assert world.launch(ta, ctx, link).status_code == 200
    world.attempt(learner, 8)
    world.attempt(ta, 8)
    world.wait_state(learner, "delivered")
    world.wait_state(ta, "skipped", reason="not_a_learner")
    bad = failed(world.diagnose(ta))
    assert "'instructor'" in bad["enrolled_as_learner"]["evidence"]
    t = world.triage()
    # staff get no grades: said apart, not a problem of the course
    assert "wrong_role" not in causes(t, "learners")
    assert [c["learners"] for c in t["excluded"] if c["code"] == "wrong_role"] == [[ta]]


def _typed_over_in_the_lms(world: World) -> tuple[str, LineItem]:
    """A learner whose 7/10, delivered, an instructor then typed over in the LMS (2/10):
    the learner and the LMS's line item."""
    learner = unique("mo-")
    ctx, link, _ = _connected(world, [learner])
    assert world.launch(learner, ctx, link).status_code == 200
    world.attempt(learner, 7)
    world.wait_state(learner, "delivered")
    item = world.item(ctx)
    world.lms.admin.instructor_grade(ctx, item.id, learner, 2.0, "typed by hand")
    return learner, item


def test_grade_typed_into_the_lms_is_found_kept_then_repaired(world: World) -> None:
    """The open problem of vendors' help pages: an instructor typed a grade in the LMS; a
    resync does not put gradesync's grade back. gradesync finds the override on verify,
    keeps it by default, and a repair resync resends its grade with a fresh timestamp,
    recorded in the history."""
    learner, item = _typed_over_in_the_lms(world)
    run = world.run("resync")
    assert run["counts"]["overridden"] == 1, run
    assert item.scores[learner].score_given == 2.0  # keep the LMS edit (the default)
    listed = world.ok("GET", "/courses/c1/overrides")
    assert [(o["person_id"], o["policy"], o["sent_given"]) for o in listed] == [
        (learner, "keep_lms_edit", 7.0)
    ]
    bad = failed(world.diagnose(learner))
    assert "2/10" in bad["lms_agrees"]["evidence"] and "7/10" in bad["lms_agrees"]["evidence"]
    # a second resync sends nothing over the edit
    again = world.run("resync")
    assert item.scores[learner].score_given == 2.0 and again["counts"]["sent"] == 0

    edited_at = item.scores[learner].timestamp
    out = world.ok(
        "POST", "/courses/c1/repair", json={"activity_ids": ["a1"], "person_ids": [learner]}
    )
    assert out["marked"] == 1 and out["run"] is None
    wait_for(lambda: item.scores[learner].score_given == 7.0, "gradesync's grade back")
    assert item.scores[learner].source == "tool"
    assert item.scores[learner].timestamp > edited_at
    row = world.wait_state(learner, "delivered")
    assert row["reason_code"] is None
    log = world.runtime.db
    with log.uow() as uow:
        from gradesync.domain.model import LedgerKey

        history = uow.deliveries.for_key(LedgerKey(world.tenant, "lms", "a1", learner))
    outcomes = [h["outcome"] for h in reversed(history)]
    assert outcomes[-3:] == ["overridden", "repair", "delivered"], outcomes
    assert "api-key" in next(h for h in history if h["outcome"] == "repair")["remote_message"]
    assert world.diagnose(learner)["ok"]


def test_a_repair_that_cannot_read_the_lms_timestamps_says_so(world: World) -> None:
    """The repair reads the LMS's timestamps first; when that read fails it still resends,
    and its answer names the column, the LMS's words and what it means."""
    learner, item = _typed_over_in_the_lms(world)
    world.lms.admin.set_faults({"results": {"script": ["error"] * 5, "error_status": 500}})

    out = world.ok(
        "POST", "/courses/c1/repair", json={"activity_ids": ["a1"], "person_ids": [learner]}
    )
    world.lms.admin.clear_faults()

    assert out["marked"] == 1
    [unread] = out["unread"]
    assert (unread["destination_id"], unread["activity_id"]) == ("lms", "a1")
    assert unread["error"] == "retry_later/server_error: injected server error"
    assert "gradesync's clock" in out["warning"] and "may ignore them" in out["warning"]
    # the sandbox LMS's clock is gradesync's: the resend lands all the same
    wait_for(lambda: item.scores[learner].score_given == 7.0, "gradesync's grade back")
    with world.runtime.db.uow() as uow:
        from gradesync.domain.model import LedgerKey

        history = uow.deliveries.for_key(LedgerKey(world.tenant, "lms", "a1", learner))
    line = next(h for h in history if h["outcome"] == "repair")
    assert line["payload"]["remote_timestamp"] is None
    assert line["payload"]["remote_timestamp_unread"] == unread["error"]


def test_gradesync_wins_overwrites_the_lms_edit(world: World) -> None:
    learner = unique("ne-")
    ctx, link, _ = _connected(world, [learner], policy={"keep_lms_edits": False})
    assert world.launch(learner, ctx, link).status_code == 200
    world.attempt(learner, 9)
    world.wait_state(learner, "delivered")
    item = world.item(ctx)
    world.lms.admin.instructor_grade(ctx, item.id, learner, 3.0)
    run = world.run("manual")
    assert run["counts"]["overridden"] == 1
    assert item.scores[learner].score_given == 9.0 and item.scores[learner].source == "tool"
    assert world.diagnose(learner)["ok"]


def test_destinations_check_end_to_end(world: World) -> None:
    """Before going live: token, the course's gradebook, a test result sent and read back."""
    learner = unique("ol-")
    ctx, link, _ = _connected(world, [learner])
    assert world.launch(learner, ctx, link).status_code == 200
    # a learner the course does not have is refused, named as the request names it
    r = world.call("POST", "/destinations/lms/check", json={"learner_id": "u-nobody"})
    assert r.status_code == 422, r.text
    assert [(d["field"], d["rule"]) for d in r.json()["detail"]] == [
        ("learner_id", "unknown_person")
    ]
    out = world.ok("POST", "/destinations/lms/check", json={"send_test": True})
    assert out["ok"], out
    names = [s["name"] for s in out["steps"]]
    assert "A test result is accepted" in names and "The test result reads back" in names
    # the test column goes again (tests/diagnostics/test_check_test_result.py)
    assert names[-1] == "The test column is removed"
    assert not [
        i
        for i in world.lms.state.courses[ctx].line_items.values()
        if i.label == "gradesync connection check"
    ]
    assert world.ok("POST", "/destinations/lms/check", json={"send_test": True})["ok"]


def test_every_lms_check_step_names_what_it_found_in_a_code(world: World) -> None:
    """An LMS's check steps had no `code` (a SIS's had): a program had to read their names,
    which are words for people."""

    def codes(**body: object) -> list[str]:
        return [s["code"] for s in world.ok("POST", "/destinations/lms/check", json=body)["steps"]]

    own = ["registration_complete", "token_granted", "scopes_granted"]
    world.register()
    assert codes() == [*own, "no_course_connected"]
    learner, teacher = unique("cc-"), unique("teacher-")
    world.roster()
    ctx = world.lms_course([learner], [teacher])
    (link,) = world.deep_link(teacher, ctx)
    assert codes() == [*own, "gradebook_reachable", "columns_listed"]
    assert codes(send_test=True) == [
        *own,
        "gradebook_reachable",
        "test_column_ready",
        "no_learner_launched",
        "test_column_removed",
    ]
    assert world.launch(learner, ctx, link).status_code == 200
    assert codes(send_test=True) == [
        *own,
        "gradebook_reachable",
        "test_column_ready",
        "test_result_accepted",
        "test_result_read_back",
        "test_column_removed",
    ]
    world.attempt(learner, 7)
    world.wait_state(learner, "delivered")
    assert codes() == [*own, "gradebook_reachable", "columns_listed", "results_read"]


def test_the_consoles_check_goes_on_to_the_courses_gradebook(world: World) -> None:
    """The console's Check ran only the destination's own steps (registration, token,
    scopes) and said "Everything works." where `destinations check` and the API's check go on
    to the course's gradebook: the console now runs the same steps, with the same codes."""
    learner, teacher = unique("cc-"), unique("teacher-")
    world.register()
    world.roster()
    ctx = world.lms_course([learner], [teacher])
    (link,) = world.deep_link(teacher, ctx)
    assert world.launch(learner, ctx, link).status_code == 200
    world.attempt(learner, 7)
    world.wait_state(learner, "delivered")
    with world.console() as browser:
        token = form_token(browser.get("/console/destinations").text)
        page = browser.post("/console/destinations/lms/check", data={"csrf": token})
    assert page.status_code == 200, page.text
    api = [s["code"] for s in world.ok("POST", "/destinations/lms/check")["steps"]]
    assert api[3:] == ["gradebook_reachable", "columns_listed", "results_read"], api
    assert re.findall(r'data-code="([^"]+)"', page.text) == api
    said = " ".join(unescape(page.text).split())
    assert "Passed: The course's gradebook is reachable" in said, said


def test_a_paused_destinations_check_ends_saying_grades_wait(world: World) -> None:
    """An LMS that answers every step says nothing of whether gradesync sends it grades: the
    check of a paused destination said it works. It now ends with a step saying the pause,
    with how to resume it in the reader's words, until the destination is resumed."""
    world.register()
    own = ["registration_complete", "token_granted", "scopes_granted", "no_course_connected"]
    world.ok("POST", "/destinations/lms/pause", json={"reason": "term break"})
    out = world.ok("POST", "/destinations/lms/check")
    assert [s["code"] for s in out["steps"]] == [*own, "destination_paused"]
    last = out["steps"][-1]
    assert not last["passed"] and not out["ok"]
    assert "paused (term break)" in last["evidence"], last
    assert "POST /api/v1/destinations/lms/resume" in last["remedy"], last
    world.ok("POST", "/destinations/lms/resume")
    assert [s["code"] for s in world.ok("POST", "/destinations/lms/check")["steps"]] == own
