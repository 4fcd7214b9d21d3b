"""LTI 1.1 -> LTI 1.3 end to end, over real HTTP against the sandbox LMS: a course syncs over
LTI 1.1 (launch, ingest, the engine sends outcomes), then the LMS launches the same link over
LTI 1.3 with the signed `lti1p1` claim. The learner is the same person, the link is the same
column, the course switches destination, and a resync sends nothing for unchanged grades."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from gradesync.lti.lti11_launch import LAUNCH_PATH
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services.lti11_consumers import ConsumerSpec, add_consumer
from gradesync.testing import unique, wait_for
from tests.support.lti import Browser
from tests.support.served import Served, post_attempt, register_tool

SECRET = "lti11-shared-secret-0123456789"


def _lti11_launch(
    lms: RunningSandbox, gs: Served, key: str, ctx: str, user: str, link: str = "a1"
) -> None:
    form = lms.admin.lti11_launch(
        consumer_key=key,
        launch_url=gs.base_url + LAUNCH_PATH,
        course=ctx,
        user=user,
        resource_link_id=link,
        title=f"Lab {link}",
        score_maximum=10,
    )
    assert httpx.post(form["url"], data=form["params"], timeout=10.0).status_code == 200


def _lti13_platform(lms: RunningSandbox, gs: Served) -> str:
    """The LMS upgrades the tool to LTI 1.3 (gradesync identifies people by email there):
    the platform `lms13` in gradesync; its client id."""
    reg = register_tool(lms, gs, platform_id="lms13", person_id_from="email")
    return str(reg["client_id"])


def _lti11_consumer(lms: RunningSandbox, served: Served) -> str:
    """A consumer known to the LMS and to gradesync as destination `lms11`: its key."""
    key = unique("consumer-")
    lms.admin.add_lti11_consumer(key, SECRET)
    with served.runtime.db.uow() as uow:
        add_consumer(
            uow,
            ConsumerSpec(
                tenant_id=served.tenant,
                destination_id="lms11",
                name="LMS (LTI 1.1)",
                consumer_key=key,
                consumer_secret=SECRET,
                allowed_hosts=("127.0.0.1",),
            ),
            datetime.now(UTC),
        )
        uow.commit()
    return key


def test_lti11_course_moves_to_lti13_and_resync_sends_nothing(
    lms: RunningSandbox,
    served: Served,
    browser: Browser,
) -> None:
    key = _lti11_consumer(lms, served)
    learner, other, teacher = unique("learner-"), unique("learner-"), unique("teacher-")
    for sub in (learner, other, teacher):
        lms.admin.add_user(sub=sub, name=sub.title(), email=f"{sub}@example.edu")
    ctx = unique("ctx-")
    lms.admin.add_course(
        id=ctx, title="Chemistry", learners=[learner, other], instructors=[teacher]
    )
    served.ok(
        "POST",
        "/ingest",
        json={
            "courses": [{"id": ctx, "title": "Chemistry"}],
            "activities": [{"id": "a1", "course_id": ctx, "title": "Lab 1", "points_possible": 10}],
            "people": [{"id": p, "name": p.title()} for p in (learner, other)],
            "enrollments": [{"course_id": ctx, "person_id": p} for p in (learner, other)],
        },
    )

    # LTI 1.1: both learners open the link, their grades go out as outcomes.
    _lti11_launch(lms, served, key, ctx, learner)
    _lti11_launch(lms, served, key, ctx, other)
    post_attempt(served, "e1", learner, 7)
    post_attempt(served, "e2", other, 5)
    course = lms.state.courses[ctx]
    (item,) = course.line_items.values()
    wait_for(
        lambda: all(item.scores.get(p) for p in (learner, other)), "the LTI 1.1 grades in the LMS"
    )
    assert {p: item.scores[p].source for p in (learner, other)} == {
        learner: "lti11",
        other: "lti11",
    }
    history = {p: item.scores[p].history for p in (learner, other)}

    client_id = _lti13_platform(lms, served)

    # A forged claim (signed with another secret) moves nothing.
    lms.admin.add_lti11_consumer(key, "not-the-secret")
    forged = browser.launch(
        lms,
        client_id=client_id,
        user=learner,
        course=ctx,
        resource_link_id="a1",
        lti1p1={"consumer_key": key},
    )
    assert forged.status_code == 200, forged.text
    assert forged.json()["person_id"] == f"{learner}@example.edu"  # not taken for the learner
    assert forged.json()["migration"]["migrated"] is False
    lms.admin.add_lti11_consumer(key, SECRET)

    # The real upgrade launch of the same link, with the signed lti1p1 claim.
    resp = browser.launch(
        lms,
        client_id=client_id,
        user=learner,
        course=ctx,
        resource_link_id="a1",
        lti1p1={"consumer_key": key},
    )
    assert resp.status_code == 200, resp.text
    facts = resp.json()
    assert facts["person_id"] == learner  # the LTI 1.1 person, not a new one by email
    assert facts["course_id"] == ctx and facts["activity_id"] == "a1"
    migration = facts["migration"]
    assert migration["migrated"] is True, migration
    assert migration["lti11_destination_id"] == "lms11"
    assert (migration["carried_over"], migration["to_send"]) == (2, 0)
    with served.runtime.db.uow() as uow:
        old_link = uow.links.course(served.tenant, "lms11", ctx)
        item_link = uow.links.item(served.tenant, "lms13", "a1")
        person_link = uow.links.person(served.tenant, "lms13", learner)
        launch = uow.launches.records_for_person(served.tenant, learner)[0]  # newest first
    assert old_link is not None and old_link.data["migrated_to"] == "lms13"
    assert item_link is not None and item_link.remote_id.endswith(f"/line_items/{item.id}")
    assert person_link is not None and person_link.remote_id == learner
    assert launch.claims["gradesync:migration"]["migrated"] is True

    # A resync over LTI 1.3 finds every grade already in the LMS: nothing is sent.
    run = served.run("resync", ctx)
    assert run["outcome"] == "succeeded", run
    assert {p: item.scores[p].history for p in (learner, other)} == history
    assert len(course.line_items) == 1  # the LTI 1.1 column, no duplicate

    # A changed grade goes through the LTI 1.3 platform, into the same column.
    post_attempt(served, "e3", learner, 9)
    record = wait_for(
        lambda: item.scores[learner].score_given == 9.0 and item.scores[learner], "the new grade"
    )
    assert record.source == "tool" and record.history == history[learner] + 1
    assert item.scores[other].history == history[other]


def test_a_link_not_yet_launched_over_lti13_keeps_its_lti11_column(
    lms: RunningSandbox,
    served: Served,
    browser: Browser,
) -> None:
    """Two LTI 1.1 links, one launched over LTI 1.3: the other's grade stays in the column the
    LMS made for its link (found by its resource link id), not in a new, empty one."""
    key = _lti11_consumer(lms, served)
    learner = unique("learner-")
    lms.admin.add_user(sub=learner, name=learner.title(), email=f"{learner}@example.edu")
    ctx = unique("ctx-")
    lms.admin.add_course(id=ctx, title="Physics", learners=[learner], instructors=[])
    served.ok(
        "POST",
        "/ingest",
        json={
            "courses": [{"id": ctx, "title": "Physics"}],
            "activities": [
                {"id": a, "course_id": ctx, "title": f"Lab {a}", "points_possible": 10}
                for a in ("a1", "a2")
            ],
            "people": [{"id": learner, "name": learner.title()}],
            "enrollments": [{"course_id": ctx, "person_id": learner}],
        },
    )
    for n, activity in enumerate(("a1", "a2")):
        _lti11_launch(lms, served, key, ctx, learner, activity)
        post_attempt(served, f"e{n}", learner, 7, activity_id=activity)
    course = lms.state.courses[ctx]
    columns = {i.resource_link_id: i for i in course.line_items.values()}
    wait_for(lambda: all(learner in i.scores for i in columns.values()), "the LTI 1.1 grades")
    history = {link: i.scores[learner].history for link, i in columns.items()}

    client_id = _lti13_platform(lms, served)
    resp = browser.launch(
        lms,
        client_id=client_id,
        user=learner,
        course=ctx,
        resource_link_id="a1",
        lti1p1={"consumer_key": key},
    )
    assert resp.status_code == 200, resp.text
    migration = resp.json()["migration"]
    assert (migration["migrated"], migration["carried_over"]) == (True, 2), migration

    run = served.run("resync", ctx)
    assert run["outcome"] == "succeeded", run
    assert sorted(i.resource_link_id or "" for i in course.line_items.values()) == ["a1", "a2"]
    assert {link: i.scores[learner].history for link, i in columns.items()} == history
    with served.runtime.db.uow() as uow:
        a2 = uow.links.item(served.tenant, "lms13", "a2")
    assert a2 is not None and a2.remote_id.endswith(f"/line_items/{columns['a2'].id}")

    # A changed grade of the link not launched over LTI 1.3 goes into its LTI 1.1 column.
    post_attempt(served, "e9", learner, 9, activity_id="a2")
    wait_for(lambda: columns["a2"].scores[learner].score_given == 9.0, "the new grade")
    assert len(course.line_items) == 2
