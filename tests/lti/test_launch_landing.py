"""What a resource link launch leaves behind, over real HTTP against the sandbox LMS:
a teacher lands signed in on their own course's console page (and only that course); a
learner keeps the launch page; a launch without a name or email keeps the known ones."""

from __future__ import annotations

from gradesync.domain.model import UserRole
from gradesync.lti.claims import CUSTOM_ACTIVITY, CUSTOM_COURSE
from gradesync.sandbox.testing import RunningSandbox
from tests.lti.conftest import Browser, Gradesync, add_course, connect, unique


def _link(lms: RunningSandbox, ctx: str, client_id: str, course: str, activity: str) -> str:
    link_id = unique("rl-")
    lms.admin.add_resource_link(
        ctx,
        id=link_id,
        title=activity,
        client_id=client_id,
        custom={CUSTOM_COURSE: course, CUSTOM_ACTIVITY: activity},
    )
    return link_id


def _browser_launch(lms: RunningSandbox, browser: Browser, **spec: object):  # type: ignore[no-untyped-def]
    """The launch as a browser posts it (an HTML form, no JSON Accept header)."""
    started = lms.admin.start_launch(**spec)
    action, fields = browser.login(started["url"])
    return browser.http.post(action, data=fields)


def test_instructor_lands_signed_in_on_their_course_only(
    lms: RunningSandbox, gradesync: Gradesync, browser: Browser
) -> None:
    s = connect(lms, gradesync)
    course = unique("course ")  # a space in the id: the redirect must quote it
    other = unique("other-")
    add_course(gradesync.db, s.tenant_id, course, ("hw1", "Homework 1", 10.0))
    add_course(gradesync.db, s.tenant_id, other, ("hw9", "Secret homework", 10.0))
    teacher = unique("teacher-")
    lms.admin.add_user(sub=teacher, name="Ada Lovelace", email=f"{teacher}@example.edu")
    ctx = unique("ctx-")
    lms.admin.add_course(id=ctx, title="LMS course", learners=[], instructors=[teacher])
    link = _link(lms, ctx, s.client_id, course, "hw1")

    resp = _browser_launch(
        lms, browser, client_id=s.client_id, user=teacher, course=ctx, resource_link_id=link
    )
    assert resp.status_code == 303, resp.text
    quoted = course.replace(" ", "%20")
    assert resp.headers["location"] == f"{gradesync.base_url}/console/courses/{quoted}"

    page = browser.http.get(resp.headers["location"])
    assert page.status_code == 200, page.text
    assert "Homework 1" in page.text
    assert "Ada Lovelace" in page.text  # signed in under the launch's name

    with gradesync.db.uow() as uow:
        user = uow.users.get(s.tenant_id, f"lti:{teacher}")
    assert user is not None and user.role is UserRole.INSTRUCTOR
    assert user.course_ids == (course,)

    # Another course of the same tenant stays out of reach.
    assert browser.http.get(f"{gradesync.base_url}/console/courses/{other}").status_code == 404

    # A client asking for JSON (an API-style launch) still gets the facts, not a redirect.
    facts = browser.launch(
        lms, client_id=s.client_id, user=teacher, course=ctx, resource_link_id=link
    )
    assert facts.status_code == 200 and facts.json()["course_id"] == course


def test_a_launch_without_the_login_cookie_opens_no_console_session(
    lms: RunningSandbox, gradesync: Gradesync, browser: Browser
) -> None:
    """Login CSRF through LTI: without the cookie set when the login started, nothing proves
    this browser started it, so no console session is opened (the launch still counts)."""
    s = connect(lms, gradesync)
    course = unique("course-")
    add_course(gradesync.db, s.tenant_id, course, ("hw1", "Homework 1", 10.0))
    teacher = unique("teacher-")
    lms.admin.add_user(sub=teacher, name="Grace Hopper", email=f"{teacher}@example.edu")
    ctx = unique("ctx-")
    lms.admin.add_course(id=ctx, title="LMS course", learners=[], instructors=[teacher])
    link = _link(lms, ctx, s.client_id, course, "hw1")
    started = lms.admin.start_launch(
        client_id=s.client_id, user=teacher, course=ctx, resource_link_id=link
    )
    action, fields = browser.login(started["url"])
    browser.http.cookies.clear()  # a frame that keeps no third-party cookies
    resp = browser.http.post(action, data=fields)
    assert resp.status_code == 200, resp.text
    assert "Open gradesync in a new window" in resp.text
    assert "gradesync_session" not in resp.headers.get("set-cookie", "")
    page = browser.http.get(f"{gradesync.base_url}/console/courses/{course}")
    assert page.status_code == 303 and "/console/login" in page.headers["location"]
    with gradesync.db.uow() as uow:  # the launch itself was recorded
        launches, _ = uow.launches.summary(s.tenant_id, s.platform_id)
    assert launches == 1


def test_learner_keeps_the_launch_page_and_gets_no_console_session(
    lms: RunningSandbox, gradesync: Gradesync, browser: Browser
) -> None:
    s = connect(lms, gradesync)
    add_course(gradesync.db, s.tenant_id, "chem", ("lab", "Lab", 5.0))
    learner = unique("learner-")
    ctx = unique("ctx-")
    lms.admin.add_course(id=ctx, title="LMS chem", learners=[learner], instructors=[])
    link = _link(lms, ctx, s.client_id, "chem", "lab")
    resp = _browser_launch(
        lms, browser, client_id=s.client_id, user=learner, course=ctx, resource_link_id=link
    )
    assert resp.status_code == 200 and "Welcome" in resp.text
    console = browser.http.get(f"{gradesync.base_url}/console/courses/chem")
    assert console.status_code == 303 and "/console/login" in console.headers["location"]
    with gradesync.db.uow() as uow:
        assert uow.users.get(s.tenant_id, f"lti:{learner}") is None


def test_launch_without_name_or_email_keeps_the_known_ones(
    lms: RunningSandbox, gradesync: Gradesync, browser: Browser
) -> None:
    s = connect(lms, gradesync)
    add_course(gradesync.db, s.tenant_id, "bio", ("quiz", "Quiz", 5.0))
    learner = unique("learner-")
    lms.admin.add_user(
        sub=learner, name="Grace Hopper", email=f"{learner}@example.edu", sis_id="SIS-1"
    )
    ctx = unique("ctx-")
    lms.admin.add_course(id=ctx, title="LMS bio", learners=[learner], instructors=[])
    link = _link(lms, ctx, s.client_id, "bio", "quiz")

    def launch() -> None:
        resp = browser.launch(
            lms, client_id=s.client_id, user=learner, course=ctx, resource_link_id=link
        )
        assert resp.status_code == 200, resp.text

    launch()
    # The LMS's privacy settings change: no name, no email, no SIS id any more.
    lms.admin.add_user(sub=learner)
    launch()
    with gradesync.db.uow() as uow:
        person = uow.people.get(s.tenant_id, learner)
        plink = uow.links.person(s.tenant_id, s.platform_id, learner)
    assert person is not None
    assert (person.name, person.email, person.sis_id) == (
        "Grace Hopper",
        f"{learner}@example.edu",
        "SIS-1",
    )
    assert plink is not None and plink.remote_id == learner
    assert plink.data == {"name": "Grace Hopper", "email": f"{learner}@example.edu"}

    # Only given and family names: the name is made of them; the email stays.
    lms.admin.add_user(sub=learner, given_name="Grace", family_name="Brewster")
    launch()
    with gradesync.db.uow() as uow:
        person = uow.people.get(s.tenant_id, learner)
    assert person is not None
    assert (person.name, person.email) == ("Grace Brewster", f"{learner}@example.edu")


def test_launch_with_a_name_over_the_limit_is_refused_not_cut(
    lms: RunningSandbox, gradesync: Gradesync, browser: Browser
) -> None:
    s = connect(lms, gradesync)
    add_course(gradesync.db, s.tenant_id, "geo", ("map", "Map", 5.0))
    learner = unique("learner-")
    lms.admin.add_user(sub=learner, name="N" * 1100)
    ctx = unique("ctx-")
    lms.admin.add_course(id=ctx, title="LMS geo", learners=[learner], instructors=[])
    link = _link(lms, ctx, s.client_id, "geo", "map")

    resp = browser.launch(
        lms, client_id=s.client_id, user=learner, course=ctx, resource_link_id=link
    )

    assert resp.status_code == 400, resp.text
    assert "at most 1024 characters" in resp.text
    with gradesync.db.uow() as uow:
        assert uow.people.get(s.tenant_id, learner) is None
