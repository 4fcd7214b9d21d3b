"""A full LTI 1.3 launch and deep linking against the sandbox LMS, over real HTTP."""

from __future__ import annotations

import httpx

from gradesync.domain.model import Activity, ActivityKind, Role
from gradesync.lti.claims import CUSTOM_ACTIVITY, CUSTOM_COURSE
from gradesync.lti.routes import what_to_do
from gradesync.sandbox.testing import RunningSandbox
from gradesync.testing import seeding
from tests.lti.conftest import Browser, Gradesync, add_course, connect, unique


def _course(lms: RunningSandbox, learners: list[str], instructors: list[str]) -> str:
    cid = unique("ctx-")
    lms.admin.add_course(id=cid, title=f"LMS {cid}", learners=learners, instructors=instructors)
    return cid


def test_deep_linking_then_learner_launch_binds_everything(
    lms: RunningSandbox, gradesync: Gradesync, browser: Browser
) -> None:
    s = connect(lms, gradesync)
    add_course(
        gradesync.db, s.tenant_id, "algebra", ("quiz1", "Quiz 1", 10.0), ("quiz2", "Quiz 2", 20.0)
    )
    teacher, student = unique("teacher-"), unique("student-")
    ctx = _course(lms, [student], [teacher])

    # The instructor adds two activities through deep linking.
    resp = browser.launch(
        lms, client_id=s.client_id, user=teacher, course=ctx, message_type="LtiDeepLinkingRequest"
    )
    assert resp.status_code == 200, resp.text
    picker = resp.json()
    assert picker["message_type"] == "LtiDeepLinkingRequest"
    assert picker["role"] == Role.INSTRUCTOR.value
    assert [c["id"] for c in picker["courses"]] == ["algebra"]
    chosen = browser.post(
        picker["respond_url"],
        {"session": picker["session"], "course_id": "algebra", "activity_ids": ["quiz1", "quiz2"]},
    )
    assert chosen.status_code == 200, chosen.text
    answer = chosen.json()
    # The browser posts the signed response to the LMS, which verifies it with our JWKS.
    created = browser.http.post(answer["return_url"], data={"JWT": answer["jwt"]})
    assert created.status_code == 200, created.text
    links = created.json()["created"]
    assert [link["title"] for link in links] == ["Quiz 1", "Quiz 2"]

    # The gradebook columns exist at once, with our resourceId and tag.
    state = lms.state.courses[ctx]
    by_resource = {i.resource_id: i for i in state.line_items.values()}
    assert set(by_resource) == {"quiz1", "quiz2"}
    assert by_resource["quiz1"].label == "Quiz 1" and by_resource["quiz1"].score_maximum == 10.0
    assert by_resource["quiz2"].tag == "grade"

    # The LMS context is now bound to the course.
    with gradesync.db.uow() as uow:
        course_link = uow.links.course(s.tenant_id, s.platform_id, "algebra")
    assert course_link is not None
    assert course_link.data["context"]["id"] == ctx
    assert course_link.remote_id.endswith(f"/api/lti/courses/{ctx}/line_items")

    # A learner opens the first link: person, enrollment, links and the launch are recorded.
    link = links[0]
    assert state.resource_links[link["resource_link_id"]].custom == {
        CUSTOM_COURSE: "algebra",
        CUSTOM_ACTIVITY: "quiz1",
    }
    resp = browser.launch(
        lms,
        client_id=s.client_id,
        user=student,
        course=ctx,
        resource_link_id=link["resource_link_id"],
    )
    assert resp.status_code == 200, resp.text
    facts = resp.json()
    assert facts["course_id"] == "algebra" and facts["activity_id"] == "quiz1"
    assert facts["role"] == "learner" and facts["notes"] == []
    with gradesync.db.uow() as uow:
        person = uow.people.get(s.tenant_id, student)
        enrollment = uow.enrollments.get(s.tenant_id, "algebra", student)
        person_link = uow.links.person(s.tenant_id, s.platform_id, student, "algebra")
        item_link = uow.links.item(s.tenant_id, s.platform_id, "quiz1")
        launches = uow.launches.records_for_person(s.tenant_id, student)
    assert person is not None
    assert enrollment is not None and enrollment.role is Role.LEARNER
    assert person_link is not None and person_link.remote_id == student
    assert item_link is not None and item_link.remote_id == link["line_item"]
    assert len(launches) == 1 and launches[0].course_id == "algebra"
    assert launches[0].resource_link_id == link["resource_link_id"]


def test_deep_linking_reuses_the_column_and_offers_only_gradable_published_activities(
    lms: RunningSandbox, gradesync: Gradesync, browser: Browser
) -> None:
    s = connect(lms, gradesync)
    t = s.tenant_id
    seeding.add_course(
        gradesync.db.uow,
        t,
        "bio",
        ("lab", "Lab", 10.0),
        Activity(t, "warmup", "bio", "Warm-up", 0.0, kind=ActivityKind.PRACTICE),
        Activity(t, "draft", "bio", "Draft quiz", 5.0, published=False),
    )
    teacher = unique("teacher-")
    ctx = _course(lms, [], [teacher])

    def deep_link() -> list[dict[str, object]]:
        resp = browser.launch(
            lms,
            client_id=s.client_id,
            user=teacher,
            course=ctx,
            message_type="LtiDeepLinkingRequest",
        )
        assert resp.status_code == 200, resp.text
        picker = resp.json()
        (course,) = picker["courses"]
        assert [a["id"] for a in course["activities"]] == ["lab"]  # no practice, no draft
        chosen = browser.post(
            picker["respond_url"],
            {"session": picker["session"], "course_id": "bio", "activity_ids": ["lab"]},
        )
        assert chosen.status_code == 200, chosen.text
        answer = chosen.json()
        created = browser.http.post(answer["return_url"], data={"JWT": answer["jwt"]})
        assert created.status_code == 200, created.text
        links: list[dict[str, object]] = created.json()["created"]
        return links

    (first,) = deep_link()
    state = lms.state.courses[ctx]
    assert [i.resource_id for i in state.line_items.values()] == ["lab"]
    resp = browser.launch(
        lms,
        client_id=s.client_id,
        user=teacher,
        course=ctx,
        resource_link_id=str(first["resource_link_id"]),
    )
    assert resp.status_code == 200, resp.text
    with gradesync.db.uow() as uow:
        item = uow.links.item(t, s.platform_id, "lab")
    assert item is not None and item.remote_id == first["line_item"]

    # The activity placed again (another unit of the course): a second link, the same column.
    (second,) = deep_link()
    assert second["resource_link_id"] != first["resource_link_id"]
    assert [i.resource_id for i in state.line_items.values()] == ["lab"]


def test_learner_cannot_deep_link(
    lms: RunningSandbox, gradesync: Gradesync, browser: Browser
) -> None:
    s = connect(lms, gradesync)
    student = unique("student-")
    ctx = _course(lms, [student], [])
    resp = browser.launch(
        lms, client_id=s.client_id, user=student, course=ctx, message_type="LtiDeepLinkingRequest"
    )
    assert resp.status_code == 403
    assert resp.json()["error"] == "not_instructor"


def test_a_learners_refused_launch_page_says_what_to_do(
    lms: RunningSandbox, gradesync: Gradesync, browser: Browser
) -> None:
    s = connect(lms, gradesync)
    student = unique("student-")
    ctx = _course(lms, [student], [])
    started = lms.admin.start_launch(
        client_id=s.client_id, user=student, course=ctx, message_type="LtiDeepLinkingRequest"
    )
    action, fields = browser.login(started["url"])
    first = browser.http.post(action, data=fields)  # as a browser: HTML
    assert first.status_code == 403 and first.headers["content-type"].startswith("text/html")
    assert "Open the activity from your course page" in first.text, first.text
    assert "not_instructor" in first.text  # the details, for support
    assert "/console/static/console.css" in first.text  # styled as the console
    assert httpx.get(f"{gradesync.base_url}/console/static/console.css").status_code == 200
    # a launch reloaded or kept too long: the learner can get past it alone
    assert "open the activity again" in what_to_do("nonce_replayed")
    assert "Tell your instructor" in what_to_do("unknown_deployment")


def test_launch_from_another_course_is_reported_not_bound(
    lms: RunningSandbox, gradesync: Gradesync, browser: Browser
) -> None:
    """Seed 001's first cause: the learner entered from another LMS course."""
    s = connect(lms, gradesync)
    add_course(gradesync.db, s.tenant_id, "bio", ("lab", "Lab", 5.0))
    teacher, student = unique("teacher-"), unique("student-")
    right = _course(lms, [], [teacher])
    wrong = _course(lms, [student], [teacher])
    # bind `right` to the course by deep linking
    picker = browser.launch(
        lms, client_id=s.client_id, user=teacher, course=right, message_type="LtiDeepLinkingRequest"
    ).json()
    answer = browser.post(
        picker["respond_url"],
        {"session": picker["session"], "course_id": "bio", "activity_ids": ["lab"]},
    ).json()
    created = browser.http.post(answer["return_url"], data={"JWT": answer["jwt"]}).json()["created"]
    # The same link copied into the other course (as a course copy does).
    lms.admin.add_resource_link(
        wrong,
        id=unique("rl-"),
        title="Lab",
        client_id=s.client_id,
        custom={CUSTOM_COURSE: "bio", CUSTOM_ACTIVITY: "lab"},
    )
    link_id = next(iter(lms.state.courses[wrong].resource_links))
    resp = browser.launch(
        lms, client_id=s.client_id, user=student, course=wrong, resource_link_id=link_id
    )
    assert resp.status_code == 200
    facts = resp.json()
    assert facts["course_id"] is None
    assert any("another LMS course" in n for n in facts["notes"])
    with gradesync.db.uow() as uow:
        assert uow.enrollments.get(s.tenant_id, "bio", student) is None
        link = uow.links.course(s.tenant_id, s.platform_id, "bio")
        launches = uow.launches.records_for_person(s.tenant_id, student)
    assert link is not None and link.data["context"]["id"] == right  # not moved by the stray launch
    assert launches[0].claims["https://purl.imsglobal.org/spec/lti/claim/context"]["id"] == wrong
    assert created  # the right course got its column
