"""End to end through LTI 1.3: register through the API, deep link, launch, post an attempt,
and the grade arrives in the sandbox gradebook by itself; resync sends nothing new; remaster
resends. Also: a grade that waited for the learner's first launch goes out after it."""

from __future__ import annotations

from gradesync.domain.model import LedgerKey
from gradesync.sandbox.state import LineItem
from gradesync.sandbox.testing import RunningSandbox
from gradesync.testing import wait_for
from tests.lti.conftest import Browser, unique
from tests.support.served import Served, deep_link, post_attempt, register_tool


def _roster(gs: Served, learner: str) -> None:
    gs.ok(
        "POST",
        "/ingest",
        json={
            "courses": [{"id": "c1", "title": "Chemistry"}],
            "activities": [
                {"id": "a1", "course_id": "c1", "title": "Lab 1", "points_possible": 10}
            ],
            "people": [{"id": learner, "name": "Learner"}],
            "enrollments": [{"course_id": "c1", "person_id": learner}],
        },
    )


def _graded(lms: RunningSandbox, served: Served, browser: Browser) -> tuple[str, str, LineItem]:
    """(LMS course, learner, the deep linked activity's line item) once the learner's grade
    of 7 is in it."""
    reg = register_tool(lms, served)
    teacher, learner = unique("teacher-"), unique("learner-")
    ctx = unique("ctx-")
    lms.admin.add_course(id=ctx, learners=[learner], instructors=[teacher])
    _roster(served, learner)
    link = deep_link(lms, browser, reg["client_id"], teacher, ctx)
    launched = browser.launch(
        lms, client_id=reg["client_id"], user=learner, course=ctx, resource_link_id=link
    )
    assert launched.status_code == 200
    (item,) = lms.state.courses[ctx].line_items.values()
    post_attempt(served, "e1", learner, 7)
    wait_for(lambda: item.scores.get(learner), "the grade in the LMS")
    return ctx, learner, item


def test_grade_arrives_by_itself_then_resync_and_remaster(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    ctx, learner, item = _graded(lms, served, browser)
    course = lms.state.courses[ctx]
    record = item.scores[learner]
    assert (record.score_given, record.score_maximum) == (7.0, 10.0)

    post_attempt(served, "e2", learner, 9)  # the highest attempt counts
    wait_for(lambda: item.scores[learner].score_given == 9.0, "the better grade")
    sends = item.scores[learner].history

    resync = served.run("resync", "c1")
    assert resync["outcome"] == "succeeded", resync
    assert item.scores[learner].history == sends  # nothing differed: nothing sent

    remaster = served.run("remaster", "c1")
    assert remaster["outcome"] == "succeeded", remaster
    assert item.scores[learner].history == sends + 1  # resent
    assert item.scores[learner].score_given == 9.0
    assert len(course.line_items) == 1  # never a duplicate column


def test_a_remaster_puts_a_column_right_before_it_resends_the_column_s_grades(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    """A column's points changed by hand in the LMS (what a remaster puts right): the grade
    the remaster resends reaches the column only once its points are rewritten. An LMS that
    turns a score into the column's points when it stores it (Canvas) would otherwise keep
    the grade on the hand-made scale. The rewrite is slowed down (2 s a line item request)
    so that a worker sending the grade as soon as it is due would come first."""
    ctx, learner, item = _graded(lms, served, browser)
    sends = item.scores[learner].history

    lms.admin.patch_line_item(ctx, item.id, scoreMaximum=50)
    lms.admin.set_faults({"lineitems": {"latency_ms": 2000}})
    try:
        remaster = served.run("remaster", "c1")
    finally:
        lms.admin.clear_faults()
    assert remaster["outcome"] == "succeeded", remaster
    assert remaster["counts"]["columns"]["written"] == 1, remaster["counts"]
    assert item.score_maximum == 10.0
    record = item.scores[learner]
    assert record.history == sends + 1  # resent once
    assert record.column_points == 10.0, "the grade was stored before its column was put right"


def test_a_column_whose_points_were_changed_in_the_lms_is_put_back_and_its_grades_resent(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    """The column's points changed in the LMS (10 -> 99): the 7 sent read 7 of 99. A run's
    read-back said an instructor had overridden the grade and, the course keeping LMS edits,
    left 7 % in the gradebook. Now the run puts the column's points back and sends the grade
    again, and says so."""
    ctx, learner, item = _graded(lms, served, browser)
    sends = item.scores[learner].history
    lms.admin.patch_line_item(ctx, item.id, scoreMaximum=99)
    run = served.run("manual", "c1")
    assert run["outcome"] == "succeeded", run
    assert run["counts"]["rescaled"] == 1 and run["counts"]["overridden"] == 0, run["counts"]
    assert "1 grade(s) sent again after their column's points" in run["message"], run["message"]
    assert item.score_maximum == 10.0
    assert item.scores[learner].history == sends + 1
    assert item.scores[learner].column_points == 10.0
    (grade,) = [
        g
        for g in served.ok("GET", f"/people/{learner}/grades")["destinations"]["lms"]
        if g["activity_id"] == "a1"
    ]
    assert grade["state"] == "delivered" and grade["reason_code"] != "overridden", grade
    assert served.ok("GET", "/courses/c1/overrides") == []


def test_points_set_by_hand_again_after_a_put_back_read_as_sent_are_put_back_again(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    """The column's points changed in the LMS, put back and the grade read back as sent;
    later someone sets the same points by hand again. The bound of the put-back took the
    column's newest rescale found, whenever, so this one was taken for an LMS keeping its
    points: nothing was written back or sent, and the grade was said to have been. A rescale
    ends once a read-back finds the column as sent: this is a new one, put back again."""
    ctx, learner, item = _graded(lms, served, browser)
    lms.admin.patch_line_item(ctx, item.id, scoreMaximum=99)
    assert served.run("manual", "c1")["counts"]["rescaled"] == 1
    assert item.score_maximum == 10.0
    fine = served.run("manual", "c1")  # read back as sent: the rescale is over
    assert (fine["counts"]["rescaled"], fine["counts"]["points_kept"]) == (0, 0), fine["counts"]
    sends = item.scores[learner].history

    lms.admin.patch_line_item(ctx, item.id, scoreMaximum=99)  # by hand, to the same points
    run = served.run("manual", "c1")
    assert run["outcome"] == "succeeded", run
    assert (run["counts"]["rescaled"], run["counts"]["points_kept"]) == (1, 0), run["counts"]
    assert item.score_maximum == 10.0  # written back
    assert item.scores[learner].history == sends + 1  # and sent again
    assert item.scores[learner].column_points == 10.0
    (grade,) = [
        g
        for g in served.ok("GET", f"/people/{learner}/grades")["destinations"]["lms"]
        if g["activity_id"] == "a1"
    ]
    assert grade["state"] == "delivered" and grade["reason_code"] != "points_kept", grade


def test_a_column_whose_lms_keeps_its_own_points_is_put_back_once_then_said_as_a_problem(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    """The LMS keeps its own points for the column (something sets them back after every
    change): the 7 sent of 10 reads 7 of 99 again after gradesync wrote the points back and
    sent it again. Every run rewrote the column and resent the grade, for ever, and said
    nothing more. Now the run after the first says the LMS keeps its points for the column,
    sends nothing, and the course's diagnosis names it with what to do; a new grade and a
    remaster still go."""
    ctx, learner, item = _graded(lms, served, browser)
    lms.admin.patch_line_item(ctx, item.id, scoreMaximum=99, points_kept=True)
    first = served.run("manual", "c1")
    assert first["counts"]["rescaled"] == 1, first["counts"]
    sends = item.scores[learner].history
    assert item.score_maximum == 99.0  # the rewrite was answered, not applied

    for _ in range(2):  # said the same on every run, sending nothing
        run = served.run("manual", "c1")
        assert run["outcome"] == "succeeded", run
        assert run["counts"]["rescaled"] == 0, run["counts"]
        assert run["counts"]["points_kept"] == 1, run["counts"]
        assert "keeps its own points for their column" in run["message"], run["message"]
        assert item.scores[learner].history == sends, "sent again to a column that keeps its points"
    (grade,) = [
        g
        for g in served.ok("GET", f"/people/{learner}/grades")["destinations"]["lms"]
        if g["activity_id"] == "a1"
    ]
    assert grade["state"] == "delivered" and grade["reason_code"] == "points_kept", grade
    triage = served.ok("GET", "/courses/c1/diagnosis")
    assert triage["symptom"] == "some_activities", triage
    (cause,) = triage["causes"]["activities"]
    assert (cause["code"], cause["activities"]) == ("column_points_kept", ["a1"]), cause
    assert "99" in cause["evidence"] and "remaster" in cause["remedy"].lower(), cause
    checks = served.ok("GET", f"/activities/a1/learners/{learner}/diagnosis")["checks"]
    (agrees,) = [c for c in checks if c["code"] == "lms_agrees"]
    assert not agrees["passed"] and "keeps its own points (99)" in agrees["evidence"], agrees
    with served.runtime.uow() as uow:  # recorded once, not on every run
        lines = uow.deliveries.for_key(LedgerKey(served.tenant, "lms", "a1", learner))
    assert [x["outcome"] for x in lines].count("points_kept") == 1, lines

    post_attempt(served, "e2", learner, 9)  # a new grade goes as usual
    wait_for(lambda: item.scores[learner].score_given == 9.0, "the better grade")
    assert item.scores[learner].history == sends + 1
    remaster = served.run("remaster", "c1")  # and so does a remaster asked for
    assert remaster["outcome"] == "succeeded", remaster
    assert item.scores[learner].history == sends + 2
    assert remaster["counts"]["rescaled"] == 0, remaster["counts"]


def test_a_column_s_points_set_back_in_the_lms_are_no_longer_a_problem(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    """What the problem asks for done (the column's points set back in the LMS): the next
    run reads the grade as sent, and the course no longer lists it."""
    ctx, learner, item = _graded(lms, served, browser)
    lms.admin.patch_line_item(ctx, item.id, scoreMaximum=99, points_kept=True)
    served.run("manual", "c1")
    assert served.run("manual", "c1")["counts"]["points_kept"] == 1
    lms.admin.patch_line_item(ctx, item.id, scoreMaximum=10, points_kept=False)
    run = served.run("manual", "c1")
    assert (run["counts"]["points_kept"], run["counts"]["rescaled"]) == (0, 0), run["counts"]
    (grade,) = [
        g
        for g in served.ok("GET", f"/people/{learner}/grades")["destinations"]["lms"]
        if g["activity_id"] == "a1"
    ]
    assert grade["state"] == "delivered" and grade["reason_code"] is None, grade
    assert served.ok("GET", "/courses/c1/diagnosis")["symptom"] == "all_syncing"


def test_grade_waiting_for_the_first_launch_goes_out_after_it(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    reg = register_tool(lms, served)
    teacher, learner = unique("teacher-"), unique("learner-")
    ctx = unique("ctx-")
    lms.admin.add_course(id=ctx, learners=[learner], instructors=[teacher])
    _roster(served, learner)
    link = deep_link(lms, browser, reg["client_id"], teacher, ctx)
    post_attempt(served, "e1", learner, 6)
    grades = wait_for(
        lambda: [
            g
            for g in served.ok("GET", f"/people/{learner}/grades")["destinations"].get("lms", [])
            if g["reason_code"] == "no_person_link"
        ],
        "the 'never launched' reason",
    )
    assert "never launched" in grades[0]["reason_text"]
    (item,) = lms.state.courses[ctx].line_items.values()
    assert learner not in item.scores
    assert (
        browser.launch(
            lms, client_id=reg["client_id"], user=learner, course=ctx, resource_link_id=link
        ).status_code
        == 200
    )
    record = wait_for(lambda: item.scores.get(learner), "the grade after the launch")
    assert record.score_given == 6.0


def test_a_launch_that_links_a_course_creates_its_line_items_before_any_grade(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    """No deep linking: the course's first launch links it, and the line items of the
    activities gradesync knows are created then, so no first grade waits for one."""
    reg = register_tool(lms, served)
    learner, ctx = unique("learner-"), unique("ctx-")
    lms.admin.add_course(
        id=ctx,
        learners=[learner],
        resource_links=[{"id": "rl", "title": "gradesync", "client_id": reg["client_id"]}],
    )
    activities = [f"{ctx}-a1", f"{ctx}-a2"]
    served.ok(
        "POST",
        "/ingest",
        json={
            "courses": [{"id": ctx, "title": "Physics"}],
            "activities": [
                {"id": a, "course_id": ctx, "title": f"Lab {a}", "points_possible": 10}
                for a in activities
            ],
            "people": [{"id": learner, "name": "Learner"}],
            "enrollments": [{"course_id": ctx, "person_id": learner}],
        },
    )
    course = lms.state.courses[ctx]
    assert not course.line_items  # not linked yet: nowhere to create them
    launched = browser.launch(
        lms, client_id=reg["client_id"], user=learner, course=ctx, resource_link_id="rl"
    )
    assert launched.status_code == 200
    items = wait_for(
        lambda: len(course.line_items) == 2 and list(course.line_items.values()),
        "the course's line items",
    )
    assert sorted(i.resource_id or "" for i in items) == activities
    assert not any(i.scores for i in items)  # created ahead of any grade


def test_a_grade_kept_in_the_lms_says_the_score_the_lms_holds(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    """A grade gradesync stopped sending (`skipped`, the console's *Kept in LMS*) listed no
    score: the LMS still holds one, the one gradesync sent or, after a readback found it
    changed there, that one."""
    ctx, learner, item = _graded(lms, served, browser)

    def sync(on: bool) -> dict[str, object]:
        activity = {"id": "a1", "course_id": "c1", "title": "Lab 1", "points_possible": 10}
        served.ok("POST", "/ingest", json={"activities": [{**activity, "sync_enabled": on}]})

        def cell() -> dict[str, object] | None:
            got = served.ok("GET", f"/people/{learner}/grades")["destinations"]["lms"]
            one = next(g for g in got if g["activity_id"] == "a1")
            return one if (one["state"] == "skipped") != on else None

        return wait_for(cell, f"the grade {'sent' if on else 'kept'}")

    kept = sync(False)
    assert kept["held"] == {"score_given": 7.0, "score_maximum": 10.0, "read_back": False}
    assert sync(True)["held"] is None  # sent again: what is desired says it

    # changed by hand in the LMS, found by a run's readback; the course keeps LMS edits
    lms.admin.instructor_grade(ctx, item.id, learner, 9.0)
    run = served.run("manual", "c1")
    assert run["counts"].get("overridden") == 1, run
    kept = sync(False)
    assert kept["held"] == {"score_given": 9.0, "score_maximum": 10.0, "read_back": True}
