"""Console pages over HTTP (no browser): access rules, CSRF, and the dashboard's numbers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import Request
from fastapi.responses import RedirectResponse
from fastapi.testclient import TestClient

from gradesync.adapters.db.database import Database
from gradesync.config import Settings
from gradesync.domain.model import (
    Activity,
    Attempt,
    Course,
    CourseLink,
    DeliveryState,
    Destination,
    DestinationKind,
    Enrollment,
    LedgerKey,
    LedgerRow,
    Person,
    RunOutcome,
    RunScope,
    RunStage,
    Schedule,
    ScheduleKind,
    SyncRun,
    Tenant,
    Trigger,
    UserRole,
)
from gradesync.domain.pauses import PauseCause
from gradesync.runtime import Runtime
from gradesync.services import auth, destination_admin
from gradesync.services.accounts import create_user
from gradesync.services.console_queries import percentile, summarise_deliveries
from gradesync.services.runs import request_run
from gradesync.testing import TEST_SECRET, add_destination
from gradesync.web.app import create_app
from gradesync.web.console.charts import (
    DELIVERED,
    REJECTED,
    SENT,
    Series,
    line_chart,
    rate_bars,
)
from gradesync.web.console.session import sign_in_from_launch
from tests.support.console import sign_in
from tests.support.schedules import save_old_schedules
from tests.support.statements import statements

PASSWORD = "correct horse battery"
HOUR = timedelta(hours=1)


@pytest.fixture
def app_client(db: Database) -> Iterator[tuple[TestClient, Runtime]]:
    runtime = Runtime(settings=Settings(database_url=db.url, secret_key=TEST_SECRET), db=db)
    now = runtime.clock.now()
    with db.uow() as uow:
        uow.tenants.upsert(Tenant("t1", "School"), now)
        uow.courses.upsert(Course("t1", "bio", "Biology"))
        uow.courses.upsert(Course("t1", "chem", "Chemistry"))
        uow.activities.upsert(Activity("t1", "q1", "bio", "Quiz 1", 10.0, sync_enabled=False))
        uow.commit()
    create_user(
        db.uow,
        runtime.clock,
        tenant_id="t1",
        username="ada",
        password=PASSWORD,
        role=UserRole.ADMIN,
    )
    create_user(
        db.uow,
        runtime.clock,
        tenant_id="t1",
        username="ins",
        password=PASSWORD,
        role=UserRole.INSTRUCTOR,
        course_ids=["bio"],
    )
    with TestClient(create_app(runtime)) as c:
        yield c, runtime


def _login(c: TestClient, user: str, form_page: str = "/console/courses/bio") -> str:
    """Sign in; returns the CSRF token a page with forms carries."""
    assert sign_in(c, user, PASSWORD).is_success
    page = c.get(form_page)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, "pages with forms carry a CSRF token"
    return found.group(1)


def _daily_schedule(c: TestClient, runtime: Runtime, token: str) -> Schedule:
    """The tenant's one schedule, added through the console's form: daily at 07:00 UTC."""
    made = c.post(
        "/console/schedules",
        data={"csrf": token, "kind": "daily", "spec": "07:00", "time_zone": "UTC"},
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    with runtime.db.uow() as uow:
        [s] = uow.schedules.all("t1")
    return s


def test_instructor_sees_only_their_course(app_client: tuple[TestClient, Runtime]) -> None:
    c, _ = app_client
    _login(c, "ins")
    assert c.get("/console/courses/bio").status_code == 200
    other = c.get("/console/courses/chem")
    assert other.status_code == 404 and "Chemistry" not in other.text
    for admin_page in (
        "/console/schedules",
        "/console/destinations",
        "/console/dashboard",
        "/console/runs",
    ):
        assert c.get(admin_page).status_code == 403, admin_page


def test_an_instructor_with_no_course_is_told_so_not_that_there_is_none(
    app_client: tuple[TestClient, Runtime],
) -> None:
    c, runtime = app_client
    create_user(
        runtime.uow,
        runtime.clock,
        tenant_id="t1",
        username="new",
        password=PASSWORD,
        role=UserRole.INSTRUCTOR,
    )
    _login(c, "new", "/console/")
    page = c.get("/console/").text
    assert "No course is assigned to you yet" in page and "No course yet." not in page


def test_switch_needs_the_forms_token_and_then_changes_the_activity(
    app_client: tuple[TestClient, Runtime],
) -> None:
    c, runtime = app_client
    token = _login(c, "ins")
    url = "/console/courses/bio/activities/q1/switch"
    refused = c.post(url, data={"sync": "on", "csrf": "forged"}, follow_redirects=False)
    assert refused.status_code == 403
    with runtime.db.uow() as uow:
        assert uow.activities.get("t1", "q1").sync_enabled is False  # type: ignore[union-attr]
    ok = c.post(url, data={"sync": "on", "csrf": token}, follow_redirects=False)
    assert ok.status_code == 303
    with runtime.db.uow() as uow:
        assert uow.activities.get("t1", "q1").sync_enabled is True  # type: ignore[union-attr]


def test_a_value_the_forms_never_send_is_refused_and_changes_nothing(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """`sync=maybe` switched the course off (anything but "on" read as off), `scope=maybe`
    aligned for every course, `remaster=maybe` posted without remastering: each form takes
    its own values only and says which field was wrong."""
    c, runtime = app_client
    with runtime.db.uow() as uow:
        uow.courses.upsert(Course("t1", "bio", "Biology", sync_enabled=True))
        uow.commit()
    _file_sis_for_bio(runtime)
    token = _login(c, "ada")
    posts = [
        ("/console/courses/bio/switch", {"sync": "maybe"}, "sync: Input should be"),
        ("/console/courses/bio/activities/q1/switch", {"sync": "yes"}, "sync: Input should be"),
        ("/console/sis/sis/courses/bio/activities/q1/switch", {"sync": "1"}, "sync: Input"),
        (
            "/console/sis/sis/courses/bio/align",
            {"group": "Quizzes", "category_id": "cat-a", "scope": "maybe"},
            "scope: Input should be",
        ),
        ("/console/courses/bio/sync", {"action": "resync", "confirm": "ok"}, "confirm: Input"),
        (
            "/console/sis/sis/courses/bio/post",
            {"activity_ids": ["q1"], "confirm": "yes", "remaster": "maybe"},
            "remaster: Input should be",
        ),
    ]
    for url, data, said in posts:
        r = c.post(url, data={"csrf": token, **data}, follow_redirects=False)
        assert r.status_code == 422, (url, r.status_code)
        assert said in unescape(r.text) and "Nothing was changed" in r.text, url
    with runtime.db.uow() as uow:
        assert uow.courses.get("t1", "bio").sync_enabled is True  # type: ignore[union-attr]
        assert uow.activities.get("t1", "q1").sync_enabled is False  # type: ignore[union-attr]
        link = uow.links.course("t1", "sis", "bio")
        assert not (link.data.get("category_map") if link else None)
        assert uow.runs.history("t1", course_id="bio", limit=5) == []
    # the forms' own values still work
    ok = c.post(
        "/console/courses/bio/switch", data={"csrf": token, "sync": "off"}, follow_redirects=False
    )
    assert ok.status_code == 303
    with runtime.db.uow() as uow:
        assert uow.courses.get("t1", "bio").sync_enabled is False  # type: ignore[union-attr]


def test_a_form_refused_before_its_page_runs_names_fields_by_their_labels(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """A form its page's own code never read (a file for a text field) named the field by
    its name in lower case, "student id", where the page labels it "SIS student sourcedId"."""
    c, runtime = app_client
    _file_sis_for_bio(runtime)
    token = _login(c, "ada")
    r = c.post(
        "/console/sis/sis/courses/bio/students/p1",
        data={"csrf": token},
        files={"student_id": ("id.txt", b"s-1")},
    )
    assert r.status_code == 422
    said = " ".join(unescape(re.sub(r"<[^>]+>", " ", r.text)).split())
    assert "SIS student sourcedId: Input should be a valid string." in said, said
    assert "student id" not in said.lower() and "student_id" not in said
    with runtime.db.uow() as uow:
        assert uow.links.person("t1", "sis", "p1", "bio") is None


def test_bad_schedule_is_refused_naming_the_field(app_client: tuple[TestClient, Runtime]) -> None:
    c, runtime = app_client
    token = _login(c, "ada", "/console/schedules")
    r = c.post(
        "/console/schedules",
        data={"csrf": token, "kind": "daily", "spec": "25:99", "time_zone": "UTC"},
    )
    assert r.status_code == 422
    # named by the form's label, not its field's name
    assert "When: " in r.text and "spec:" not in r.text
    # a form posted without a field the browser would have required: a page, not JSON, that
    # names the field by its label too
    r = c.post("/console/schedules", data={"csrf": token, "kind": "daily", "time_zone": "UTC"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
    assert "The form was not accepted" in r.text and "When: required." in r.text
    with runtime.db.uow() as uow:
        assert uow.schedules.all("t1") == []


def test_a_schedule_is_edited_through_its_form(app_client: tuple[TestClient, Runtime]) -> None:
    """The edit form's Save reaches the edit (a route for actions once took it: 404), and an
    emptied time zone is the course's, as when a schedule is added."""
    c, runtime = app_client
    with runtime.db.uow() as uow:
        uow.courses.upsert(Course("t1", "bio", "Biology", time_zone="America/Chicago"))
        uow.commit()
    token = _login(c, "ada", "/console/schedules")
    s = _daily_schedule(c, runtime, token)
    assert c.get(f"/console/schedules/{s.id}/edit").status_code == 200
    form = {"csrf": token, "kind": "daily", "spec": "06:30", "time_zone": "", "course_id": "bio"}
    saved = c.post(f"/console/schedules/{s.id}/edit", data=form, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    with runtime.db.uow() as uow:
        edited = uow.schedules.get(s.id)
    assert edited is not None
    assert (edited.spec, edited.time_zone, edited.scope.course_id) == (
        "06:30",
        "America/Chicago",
        "bio",
    )
    # saved again as shown, first run untouched, with a new rule: the first run that has not
    # come yet moves to the new rule's first slot, as `gradesync schedules edit` does
    page = c.get(f"/console/schedules/{s.id}/edit").text
    shown = re.search(r'name="first_run_at" type="datetime-local" value="([^"]*)"', page)
    assert shown is not None and shown.group(1)
    form = {**form, "kind": "weekly", "spec": "mon-fri 07:00", "first_run_at": shown.group(1)}
    saved = c.post(f"/console/schedules/{s.id}/edit", data=form, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    with runtime.db.uow() as uow:
        weekly = uow.schedules.get(s.id)
    assert weekly is not None and weekly.first_run_at == weekly.next_run_at
    assert weekly.first_run_at.astimezone(ZoneInfo("America/Chicago")).strftime("%a %H:%M") in {
        f"{day} 07:00" for day in ("Mon", "Tue", "Wed", "Thu", "Fri")
    }


def test_a_schedule_edit_names_every_problem(app_client: tuple[TestClient, Runtime]) -> None:
    c, runtime = app_client
    token = _login(c, "ada", "/console/schedules")
    s = _daily_schedule(c, runtime, token)
    form = {"csrf": token, "kind": "daily", "spec": "25:00", "time_zone": "Mars/Base"}
    r = c.post(f"/console/schedules/{s.id}/edit", data=form, follow_redirects=False)
    assert r.status_code == 422
    assert "When: " in r.text and "Time zone: " in r.text
    with runtime.db.uow() as uow:
        assert uow.schedules.get(s.id) == s


@pytest.mark.parametrize("form_of", ["add", "edit"])
def test_a_bad_first_run_is_named_beside_every_other_problem(
    app_client: tuple[TestClient, Runtime], form_of: str
) -> None:
    """A first run that is no date is one problem among the others, not the only one named."""
    c, runtime = app_client
    token = _login(c, "ada", "/console/schedules")
    s = _daily_schedule(c, runtime, token)
    bad = {
        "csrf": token,
        "kind": "daily",
        "spec": "25:00",
        "time_zone": "Mars/Base",
        "course_id": "no-such-course",
        "first_run_at": "next tuesday",
    }
    url = "/console/schedules" if form_of == "add" else f"/console/schedules/{s.id}/edit"
    r = c.post(url, data=bad, follow_redirects=False)
    assert r.status_code == 422, r.text
    [said] = re.findall(r'<p class="flash flash-error" role="alert">([^<]*)</p>', r.text)
    for label in ("First run: ", "When: ", "Time zone: ", "Course: "):
        assert label in unescape(said), (label, said)
    with runtime.db.uow() as uow:
        assert uow.schedules.all("t1") == [s]


def test_the_schedules_page_lists_schedules_an_earlier_version_stored(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """One at the end of year 9999 and one whose rule no longer parses: listed beside the
    others (the page once answered 500 with an OverflowError)."""
    c, runtime = app_client
    save_old_schedules(runtime.db, "t1", "api-key:old")
    _login(c, "ada", "/console/schedules")
    page = c.get("/console/schedules")
    assert page.status_code == 200, page.text
    for shown in ("every 744 hours", "daily 7pm", "9999-12-31"):
        assert shown in unescape(page.text), shown
    assert c.get("/console/schedules/sch_lastrun/edit").status_code == 200


def test_a_time_the_courses_zone_cannot_show_is_shown_in_utc(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """0001-01-01T01:00Z is still year 0 in Chicago, 9999-12-31T23:00Z already year 10000 in
    Kiritimati: both valid in UTC, so shown in UTC, as is a time in a zone no longer known
    (the course page, the SIS course page and the schedules page once answered 500)."""
    c, runtime = app_client
    _file_sis_for_bio(runtime)
    early = datetime(1, 1, 1, 1, 0, tzinfo=UTC)
    late = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    with runtime.db.uow() as uow:
        uow.courses.upsert(
            Course("t1", "bio", "Biology", "America/Chicago", starts_at=early, ends_at=late)
        )
        uow.activities.upsert(Activity("t1", "old-a", "bio", "Old A", 10.0, due_at=early))
        uow.commit()
    runtime.schedules().create(
        "t1",
        "ada",
        kind="interval",
        spec="744h",
        time_zone="Pacific/Kiritimati",
        first_run_at=late,
    )
    with runtime.db.uow() as uow:  # stored under a zone name tzdata no longer has
        uow.schedules.save(
            Schedule(
                "sch_gone",
                "t1",
                RunScope("t1"),
                ScheduleKind.DAILY,
                "07:00",
                "Mars/Olympus_Mons",
                "api-key:old",
                first_run_at=datetime(2030, 1, 1, 7, 0, tzinfo=UTC),
                next_run_at=datetime(2030, 1, 1, 7, 0, tzinfo=UTC),
                created_at=datetime(2025, 1, 1, tzinfo=UTC),
            )
        )
        uow.commit()
    _login(c, "ada")
    for url in ("/console/courses/bio", "/console/sis/sis/courses/bio"):
        page = c.get(url)
        assert page.status_code == 200, (url, page.text)
        assert "0001-01-01 01:00 UTC" in page.text, url
    page = c.get("/console/schedules")
    assert page.status_code == 200, page.text
    assert "9999-12-31 23:00 UTC" in page.text and "2030-01-01 07:00 UTC" in page.text
    with runtime.db.uow() as uow:
        [s] = [s for s in uow.schedules.all("t1") if s.id != "sch_gone"]
    edit = c.get(f"/console/schedules/{s.id}/edit")
    assert edit.status_code == 200, edit.text
    # a local field cannot hold it: left empty, which keeps the first run as it is
    assert 'name="first_run_at" type="datetime-local" value=""' in edit.text


def test_diagnose_after_choosing_another_course_shows_that_course(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """The Diagnose form sends the course with the last course's activity and learner: a
    change of course shows the new course's lists, not a 404."""
    c, runtime = app_client
    with runtime.db.uow() as uow:
        uow.activities.upsert(Activity("t1", "lab1", "chem", "Lab 1", 5.0))
        uow.commit()
    _login(c, "ada", "/console/diagnosis")
    r = c.get("/console/diagnosis", params={"course": "chem", "activity": "q1", "person": "p1"})
    assert r.status_code == 200, r.text
    assert "Lab 1" in r.text and "Quiz 1" not in r.text


def _file_sis_for_bio(runtime: Runtime) -> None:
    """A file-based SIS, "sis", with Biology mapped to a class."""
    from gradesync.services.sis import add_connection, map_class

    add_connection(
        runtime.uow, runtime.clock, tenant_id="t1", destination_id="sis", name="SIS",
        base_url=None, file_based=True,
    )  # fmt: skip
    map_class(runtime.uow, tenant_id="t1", destination_id="sis", course_id="bio",
              class_id="cls-1", school_id="sch-1")  # fmt: skip


def test_with_a_sis_shown_an_activity_that_is_off_says_its_switch_is_for_every_gradebook(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """In the Sync to SIS column, an activity off everywhere shows the switch that turns it
    on everywhere: it says so, not posing as the SIS tick."""
    c, runtime = app_client
    _file_sis_for_bio(runtime)
    _login(c, "ada", "/console/courses/bio")
    page = c.get("/console/courses/bio", params={"destination": "sis"}).text
    assert "Sync to SIS" in page
    assert 'aria-label="Sync Quiz 1 to every gradebook"' in page
    assert "sync is off for every gradebook" in page


@pytest.mark.parametrize("action", ["remaster", "resync"])
def test_remaster_and_resync_cover_the_gradebook_shown_and_say_which(
    app_client: tuple[TestClient, Runtime], action: str
) -> None:
    """With the SIS shown, Remaster (and Resync) runs for the SIS alone and its
    confirmation names it: it once ran for every gradebook of the course, overwriting the
    LMS's grades too, and said nothing of it. With no gradebook shown, the confirmation
    names every gradebook it overwrites."""
    c, runtime = app_client
    _file_sis_for_bio(runtime)
    add_destination(runtime.uow, "t1", "lms", name="Canvas", links={"bio": "https://lms/c/1"})
    token = _login(c, "ada")
    url = "/console/courses/bio/sync"
    asked = c.post(url, data={"csrf": token, "action": action, "destination": "sis"})
    words = re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", "", asked.text)))
    assert "Only the gradebook SIS: the course's other gradebook is left as it is." in words
    assert "Canvas" not in words
    every = c.post(url, data={"csrf": token, "action": action})
    words = re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", "", every.text)))
    assert "Every gradebook of the course: Canvas, SIS." in words

    done = c.post(
        url, data={"csrf": token, "action": action, "destination": "sis", "confirm": "yes"}
    )
    found = re.search(r"started \(run ([^)]+)\)", done.text)
    assert found, done.text
    with runtime.db.uow() as uow:
        run = uow.runs.get(found.group(1))
    assert run is not None and run.scope.destination_id == "sis"
    # a gradebook the course does not have is refused, not run for every one
    r = c.post(url, data={"csrf": token, "action": action, "destination": "nope", "confirm": "yes"})
    assert r.status_code == 404


def test_learners_are_listed_in_natural_order(app_client: tuple[TestClient, Runtime]) -> None:
    """Learner 2 before Learner 10 on the SIS course page, the course page's grid and the
    diagnosis form (string order listed Learner 0, 1, 10, 100, 2)."""
    c, runtime = app_client
    _file_sis_for_bio(runtime)
    numbers = [0, 1, 2, 10, 100]
    with runtime.db.uow() as uow:
        for n in reversed(numbers):
            uow.people.upsert(Person("t1", f"p{n}", f"Learner {n}"))
            uow.enrollments.upsert(Enrollment("t1", "bio", f"p{n}"))
        uow.commit()
    _login(c, "ada")
    for url in ("/console/sis/sis/courses/bio", "/console/courses/bio", "/console/diagnosis"):
        page = c.get(url, params={"course": "bio"} if "diagnosis" in url else None)
        assert page.status_code == 200, url
        listed = [int(n) for n in re.findall(r"Learner (\d+)", page.text)]
        assert list(dict.fromkeys(listed)) == numbers, (url, listed)


def test_sync_now_covers_the_gradebook_shown_like_resync_and_remaster(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """With the SIS shown, Sync now runs for the SIS alone, as Resync and Remaster do, and
    says so: it once ran for every gradebook of the course whatever the page showed."""
    c, runtime = app_client
    _file_sis_for_bio(runtime)
    add_destination(runtime.uow, "t1", "lms", name="Canvas", links={"bio": "https://lms/c/1"})
    token = _login(c, "ada")
    shown = c.get("/console/courses/bio", params={"destination": "sis"}).text
    form = re.search(r'<form[^>]*id="run-form".*?</form>', shown, re.S)
    assert form and '<input type="hidden" name="destination" value="sis">' in form.group(0)

    done = c.post(
        "/console/courses/bio/sync", data={"csrf": token, "action": "sync", "destination": "sis"}
    )
    found = re.search(r"Sync now started \(run ([^)]+)\) for SIS only\.", done.text)
    assert found, done.text
    with runtime.db.uow() as uow:
        run = uow.runs.get(found.group(1))
    assert run is not None and run.scope.destination_id == "sis"
    r = c.post(
        "/console/courses/bio/sync", data={"csrf": token, "action": "sync", "destination": "nope"}
    )
    assert r.status_code == 404  # a gradebook the course does not have is refused


def test_an_instructor_posting_grades_sees_nothing_of_another_course(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """Post grades for their own course, naming another course's activity by hand: refused,
    and the other activity's title is not shown (the confirmation once listed it)."""
    c, runtime = app_client
    _file_sis_for_bio(runtime)
    with runtime.db.uow() as uow:
        uow.activities.upsert(Activity("t1", "lab1", "chem", "Secret Lab", 5.0))
        uow.commit()
    token = _login(c, "ins")
    r = c.post("/console/sis/sis/courses/bio/post", data={"csrf": token, "activity_ids": ["lab1"]})
    assert r.status_code == 404 and "Secret Lab" not in r.text


def test_an_instructor_diagnosing_sees_only_people_of_their_course(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """Diagnose with a person id typed in: an instructor learns nothing of someone with no
    enrollment, attempt or grade in their course; an admin sees "not enrolled"."""
    c, runtime = app_client
    with runtime.db.uow() as uow:
        uow.people.upsert(Person("t1", "p9", "Grace Hidden"))
        uow.commit()
    pair = {"course": "bio", "activity": "q1", "person": "p9"}
    _login(c, "ins")
    r = c.get("/console/diagnosis", params=pair)
    assert r.status_code == 404 and "Grace Hidden" not in r.text
    # said as for an id that does not exist: nothing tells the instructor it does
    unknown = c.get("/console/diagnosis", params={**pair, "person": "nobody"})
    assert unknown.status_code == 404
    assert "person 'p9' not found" in unescape(r.text)
    assert "person 'nobody' not found" in unescape(unknown.text)
    c.cookies.clear()
    _login(c, "ada")
    r = c.get("/console/diagnosis", params=pair)
    assert r.status_code == 200 and "Grace Hidden" in r.text and "not enrolled" in r.text


def test_aligning_for_every_course_says_when_this_course_keeps_its_own(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """A course's own alignment wins over the connection's: aligning a group for every
    course from that course's page says the course keeps its own, instead of promising a
    change it will not see."""
    c, runtime = app_client
    _file_sis_for_bio(runtime)
    token = _login(c, "ada")
    url = "/console/sis/sis/courses/bio/align"
    own = {"csrf": token, "group": "Quizzes", "category_id": "cat-a", "scope": "course"}
    assert "now goes to SIS category cat-a (this course)" in c.post(url, data=own).text
    r = c.post(url, data={**own, "category_id": "cat-b", "scope": "connection"})
    assert "now goes to SIS category cat-b (every course)" in r.text
    assert "This course keeps its own alignment, to category cat-a." in r.text


def test_dashboard_numbers() -> None:
    since = datetime(2025, 1, 1, tzinfo=UTC)
    until = since + timedelta(hours=2)
    rows = [
        {
            "destination_id": "a",
            "sent_at": since + timedelta(minutes=5),
            "outcome": "delivered",
            "latency_ms": 100.0,
        },
        {
            "destination_id": "a",
            "sent_at": since + timedelta(minutes=6),
            "outcome": "rejected",
            "latency_ms": 300.0,
        },
        {
            "destination_id": "b",
            "sent_at": since + timedelta(minutes=70),
            "outcome": "delivered",
            "latency_ms": 50.0,
        },
        {
            "destination_id": "b",
            "sent_at": since - timedelta(minutes=1),
            "outcome": "delivered",
            "latency_ms": 1.0,
        },  # before the window: not counted
    ]
    d = summarise_deliveries(rows, {"a": "Canvas", "b": "SIS"}, since, until, 2)
    assert [b.sends for b in d.buckets] == [2, 1]
    assert d.buckets[0].p50_ms == 100.0 and d.buckets[0].p99_ms == 300.0
    assert d.sends == 3
    rates = {r.name: r for r in d.destinations}
    assert rates["Canvas"].success_rate == 0.5 and rates["Canvas"].rejection_rate == 0.5
    assert rates["SIS"].success_rate == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and percentile([], 50) is None


def test_dashboard_counts_only_sends_not_override_or_repair_lines(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """The delivery log also records an override seen and a repair asked for: events, not
    sends. Counted as sends they made every destination's success rate look lower."""
    c, runtime = app_client
    now = runtime.clock.now()
    key = LedgerKey("t1", "lms", "q1", "p1")
    with runtime.db.uow() as uow:
        uow.destinations.upsert(Destination("t1", "lms", DestinationKind.LTI13_AGS, "Canvas"), now)
        line = {"key": key, "sent_at": now - timedelta(minutes=5), "payload": None}
        uow.deliveries.add_many(
            [line | {"outcome": "delivered", "latency_ms": 20.0}] * 3
            + [line | {"outcome": "overridden"}]
            + [line | {"outcome": "repair"}] * 2
        )
        uow.commit()
    _login(c, "ada", "/console/dashboard")
    page = c.get("/console/dashboard").text
    assert "<dt>Grades sent</dt><dd>3</dd>" in page
    row = re.search(r'<th scope="row">Canvas</th>((?:<td>[^<]*</td>)+)', page)
    assert row is not None
    assert re.findall(r"<td>([^<]*)</td>", row.group(1)) == ["3", "3", "0", "0", "100%", "0%"]


def test_an_empty_sync_history_says_grades_go_without_a_sync(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """Grades sent as they arrive are no sync run: an empty history said "No sync has run
    yet." alone while grades had gone, as if nothing had been sent."""
    c, _ = app_client
    _login(c, "ada", "/console/destinations")
    said = " ".join(unescape(c.get("/console/runs").text).split())
    assert "No sync has run yet. Grades are sent as they arrive without one" in said


def test_the_dashboard_names_a_deleted_destination_as_deleted(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """The delivery log outlives a deleted destination: the dashboard listed it by its bare
    id ("Deleted destination moodle-2019"), its name kept nowhere. It names it as it was,
    marked deleted, apart from one made again under its id; one deleted before names were
    kept is its id, marked deleted."""
    c, runtime = app_client
    now = runtime.clock.now()

    def sent(did: str, at: datetime) -> None:
        with runtime.db.uow() as uow:
            line = {"key": LedgerKey("t1", did, "q1", "p1"), "sent_at": at, "payload": None}
            uow.deliveries.add_many([line | {"outcome": "delivered", "latency_ms": 20.0}])
            uow.commit()

    def destination(did: str, name: str) -> None:
        with runtime.db.uow() as uow:
            uow.destinations.upsert(Destination("t1", did, DestinationKind.LTI13_AGS, name), now)
            uow.commit()

    for did, name in (("lms", "Canvas"), ("moodle-2019", "Moodle of the old campus")):
        destination(did, name)
        sent(did, now - timedelta(minutes=5))
    sent("old-sis", now - timedelta(minutes=5))  # deleted before its name was kept
    destination_admin.delete(runtime.uow, runtime.clock, "t1", "moodle-2019")
    destination("moodle-2019", "Moodle 2023")  # made again: another destination
    sent("moodle-2019", runtime.clock.now())
    _login(c, "ada", "/console/dashboard")
    page = c.get("/console/dashboard").text
    rows = re.findall(r'<tr( data-deleted="[^"]*")?><th scope="row">(.*?)</th>', page)
    assert [(d, unescape(re.sub(r"<[^>]+>", "", h))) for d, h in rows] == [
        ("", "Canvas"),
        ("", "Moodle 2023"),
        (' data-deleted="moodle-2019"', "Moodle of the old campus (deleted)"),
        (' data-deleted="old-sis"', "old-sis (deleted)"),
    ]
    said = unescape(page)
    assert "Moodle of the old campus (deleted) 100% delivered" in said  # the chart's words
    assert ">Moodle 2023</text>" in said and ">old-sis (deleted)</text>" in said  # its labels
    assert ">Moodle of the… (deleted)</text>" in said  # cut to fit, never the mark
    assert "/destinations/old-sis" not in page  # nothing links to what is gone


def test_sync_history_names_a_deleted_destination_by_the_name_it_had(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """Sync history and a run's page showed a deleted destination by its bare id (its name
    kept nowhere); made again under the same id, another destination took the old runs'
    name. A run asked for before names were kept, of one deleted since, is its id."""
    c, runtime = app_client

    def destination(name: str) -> None:
        with runtime.db.uow() as uow:
            d = Destination("t1", "lms", DestinationKind.LTI13_AGS, name)
            uow.destinations.upsert(d, runtime.clock.now())
            uow.commit()

    def asked(scope: RunScope) -> str:
        return request_run(runtime.uow, None, runtime.clock, scope, Trigger.MANUAL, "ada")[0].id

    with runtime.db.uow() as uow:
        at = runtime.clock.now() - HOUR
        uow.runs.add(
            SyncRun("r-before", RunScope("t1", "sis"), Trigger.MANUAL, "ada", created_at=at)
        )
        uow.commit()
    destination("Moodle")
    old = asked(RunScope("t1", "lms"))
    destination_admin.delete(runtime.uow, runtime.clock, "t1", "lms")
    destination("Canvas")
    new = asked(RunScope("t1", "lms", "bio"))
    _login(c, "ada", "/console/runs")
    page = c.get("/console/runs").text
    rows = re.findall(
        r'<a href="/console/runs/([^"]+)">.*?</td>\s*<td>.*?</td>\s*<td>(.*?)</td>', page
    )
    assert dict(rows) == {new: "Canvas", old: "Moodle (deleted)", "r-before": "sis (deleted)"}
    for run_id, name in ((old, "Moodle (deleted)"), (new, "Canvas")):
        assert f"<dt>Destination</dt><dd>{name}</dd>" in c.get(f"/console/runs/{run_id}").text


def test_charts_are_labelled_images() -> None:
    svg = line_chart(
        "Delivery latency",
        "median 12 ms",
        ["a", "b", "c"],
        [Series("median", [1.0, None, 3.0])],
        unit=" ms",
    )
    assert 'role="img"' in svg and "<title" in svg and "median 12 ms</desc>" in svg
    bars = rate_bars("Outcome", "Canvas 50% delivered", [("Canvas <lms>", 0.5, 0.25)])
    assert "Canvas &lt;lms&gt;" in bars and "50% / 25%" in bars


def _validated_launch(request: Request) -> RedirectResponse:
    """Stands for the LTI launch route after it validated an instructor's launch."""
    rt: Runtime = request.app.state.runtime
    sign_in_from_launch(
        request,
        rt.db.uow,
        rt.clock.now(),
        tenant_id="t1",
        person_id="p-9",
        display_name="Dr Who",
        course_id="chem",
    )
    return RedirectResponse("/console/courses/chem", status_code=303)


def test_launch_hand_over_opens_the_course(app_client: tuple[TestClient, Runtime]) -> None:
    """After a validated launch, the instructor lands in their course without a password."""
    c, runtime = app_client
    c.app.add_api_route("/test-launch", _validated_launch, methods=["POST"])  # type: ignore[attr-defined]
    page = c.post("/test-launch")
    assert page.status_code == 200 and "Chemistry" in page.text and "Dr Who" in page.text
    assert c.get("/console/courses/bio").status_code == 404  # only the launched course
    with runtime.db.uow() as uow:
        user = uow.users.get("t1", "lti:p-9")
    assert user is not None and user.role is UserRole.INSTRUCTOR and user.course_ids == ("chem",)


def test_outcomes_look_the_same_in_every_chart_and_axis_labels_stay_inside() -> None:
    labels = ["10:00", "11:00", "12:00"]
    lines = line_chart(
        "Grades sent",
        "d",
        labels,
        [
            Series("sent", [3.0, 2.0, 1.0], SENT),
            Series("delivered", [2.0, 2.0, 1.0], DELIVERED),
            Series("rejected", [1.0, 0.0, 0.0], REJECTED),
        ],
    )
    bars = rate_bars("Outcome", "d", [("LMS", 0.75, 0.25)])
    delivered, rejected = DELIVERED[0], REJECTED[0]
    assert f'stroke="{delivered}" stroke-width="2" points=' in lines  # solid
    assert f'stroke="{rejected}" stroke-width="2" stroke-dasharray="{REJECTED[1]}"' in lines
    assert f'fill="{delivered}"' in bars and f'fill="{rejected}"' in bars
    # the first label starts at the plot's left edge, the last ends at its right edge
    assert re.search(r'text-anchor="start"[^>]*>10:00<', lines)
    assert re.search(r'text-anchor="end"[^>]*>12:00<', lines)


def test_the_plot_leaves_room_for_its_longest_y_label() -> None:
    """Sub-millisecond latencies give labels like "0.625 ms": the plot starts far enough
    right that they are drawn inside the chart (a browser check: test_console_flows)."""
    fast = line_chart("Latency", "d", ["a", "b"], [Series("p50", [0.2, 2.4])], unit=" ms")
    slow = line_chart("Latency", "d", ["a", "b"], [Series("p50", [20.0, 90.0])], unit=" ms")
    for chart, longest in ((fast, "0.625 ms"), (slow, "100 ms")):
        ends = [float(x) for x in re.findall(r'<text x="([0-9.]+)"[^>]*text-anchor="end"', chart)]
        assert f">{longest}<" in chart
        assert min(ends) >= 7.0 * len(longest), (min(ends), longest)


def test_the_destinations_page_says_a_destinations_limits(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """Grades waiting behind a slow rate limit were explained only in a grid cell's
    diagnosis: the Destinations page did not say a limit was set."""
    c, runtime = app_client
    limits = {"concurrency": 2, "rate_per_second": 0.01}
    with runtime.db.uow() as uow:
        uow.destinations.upsert(
            Destination("t1", "lms", DestinationKind.LTI13_AGS, "Canvas", config=limits),
            runtime.clock.now(),
        )
        uow.destinations.upsert(
            Destination("t1", "free", DestinationKind.LTI13_AGS, "Moodle"), runtime.clock.now()
        )
        uow.commit()
    _login(c, "ada", "/console/destinations")
    said = " ".join(unescape(re.sub(r"<[^>]+>", " ", c.get("/console/destinations").text)).split())
    assert "limits: 2 request(s) at once, 0.01 request(s) a second (one every 100 s)" in said
    assert said.count("limits:") == 1  # a destination without limits says none


def test_the_destinations_page_counts_grades_in_the_course_pages_words(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """The Destinations page counted the ledger's states ("delivered 1, skipped 3") where the
    course page says "Sent", "Kept in LMS", "Overridden" and "Not sent"."""
    c, runtime = app_client
    now = runtime.clock.now()
    S = DeliveryState
    rows = {  # person: (state, sent before, reason)
        "p1": (S.DELIVERED, True, None),
        "p2": (S.SKIPPED, True, "not_due"),  # kept in the LMS
        "p3": (S.SKIPPED, False, "not_due"),
        "p4": (S.SKIPPED, False, None),
        "p5": (S.REJECTED, True, "instructor_override"),
        "p6": (S.PENDING, False, None),
        "p7": (S.RETRYING, False, "timeout"),
    }
    with runtime.db.uow() as uow:
        uow.destinations.upsert(Destination("t1", "lms", DestinationKind.LTI13_AGS, "Canvas"), now)
        for pid, (state, sent, reason) in rows.items():
            key = LedgerKey("t1", "lms", "q1", pid)
            uow.ledger.save(
                LedgerRow(
                    key, state, "h", {}, "h" if sent else None, reason_code=reason, updated_at=now
                ),
                "bio",
            )
        uow.commit()
    _login(c, "ada", "/console/destinations")
    said = " ".join(unescape(re.sub(r"<[^>]+>", " ", c.get("/console/destinations").text)).split())
    assert "Sent 1, Pending 1, Retrying 1, Overridden 1, Kept in LMS 1, Not sent 2" in said, said
    assert "skipped" not in said and "delivered 1" not in said


def test_dashboard_shows_the_backlog_and_a_paused_destination(
    app_client: tuple[TestClient, Runtime],
) -> None:
    c, runtime = app_client
    now = runtime.clock.now()
    with runtime.db.uow() as uow:
        uow.people.upsert(Person("t1", "p1", "Ada Byron"))
        uow.destinations.upsert(
            Destination(
                "t1",
                "lms",
                DestinationKind.LTI13_AGS,
                "Canvas",
                enabled=False,
                pause_reason="LMS upgrade tonight.",  # a sentence of its own
            ),
            now,
        )
        uow.ledger.save(
            LedgerRow(
                LedgerKey("t1", "lms", "q1", "p1"),
                DeliveryState.PENDING,
                "h",
                {"score_given": 1.0},
                updated_at=now - timedelta(minutes=42),
            ),
            "bio",
        )
        uow.commit()
    token = _login(c, "ada", "/console/destinations")
    page = c.get("/console/dashboard").text
    assert "Canvas is paused" in page and "LMS upgrade tonight. 1 grade waits for it." in page
    assert "tonight.." not in page
    assert re.search(r'data-kpi="waiting">1<', page)
    assert re.search(r'data-kpi="oldest">4[12]\.\d min<', page)
    assert "Ada Byron" in page and "Quiz 1" in page and "Biology" in page
    r = c.post(
        "/console/destinations/lms/resume",
        data={"csrf": token, "back": "dashboard"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/console/dashboard"
    page = c.get("/console/dashboard").text
    assert "Canvas is paused" not in page and "Canvas is delivering again." in page


def test_a_time_under_a_heading_naming_its_zone_does_not_name_it_again(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """ "UTC" stood under "Due (UTC)" in every row, and under the dashboard's "Per time slot
    (UTC)"; a zone the heading names is said there once (America/Chicago's too)."""
    c, runtime = app_client
    due = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with runtime.db.uow() as uow:
        uow.activities.upsert(Activity("t1", "q1", "bio", "Quiz 1", 10.0, due_at=due))
        uow.commit()
    _login(c, "ada")

    def due_column(course: str) -> tuple[str, list[str]]:
        page = c.get(f"/console/courses/{course}").text
        heading = re.search(r'<th scope="col">(Due[^<]*)</th>', page)
        assert heading is not None, page
        cells = re.findall(r"<td>(\d{4}-\d\d-\d\d [^<]*)</td>", page)
        return heading.group(1), cells

    assert due_column("bio") == ("Due (UTC)", ["2026-03-01 12:00"])
    with runtime.db.uow() as uow:
        uow.courses.upsert(Course("t1", "bio", "Biology", time_zone="America/Chicago"))
        uow.commit()
    assert due_column("bio") == ("Due (America/Chicago)", ["2026-03-01 06:00"])
    page = c.get("/console/dashboard").text
    table = page[page.index("<caption>Per time slot (UTC)</caption>") :]
    slots = re.findall(r"<tr><td>([^<]*)</td>", table)
    assert len(slots) == 24 and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", t) for t in slots)


def _canvas_with_grades_waiting(runtime: Runtime, rate: float | None, **changes: Any) -> None:
    """Canvas (with `rate_per_second` `rate`, and `changes`) connected to Biology, where two
    learners' grades of Quiz 1 wait to be sent."""
    now = runtime.clock.now()
    canvas = Destination("t1", "lms", DestinationKind.LTI13_AGS, "Canvas")
    config = {"rate_per_second": rate} if rate is not None else {}
    with runtime.db.uow() as uow:
        uow.destinations.upsert(replace(canvas, config=config, **changes), now)
        uow.links.save_course(CourseLink("t1", "lms", "bio", "ctx-bio"))
        for pid in ("p1", "p2"):
            uow.people.upsert(Person("t1", pid, pid))
            row = LedgerRow(LedgerKey("t1", "lms", "q1", pid), DeliveryState.PENDING, "h", {})
            uow.ledger.save(replace(row, updated_at=now), "bio")
        uow.commit()


RATE_HELD = (
    "Canvas is held back by its rate limit. 2 grades wait to be sent to 'Canvas': 'Canvas' "
    "has a rate limit of 0.01 requests per second, so sending them takes about 3 minutes. "
    "Nothing to do if that pace is meant."
)


def test_the_dashboard_says_a_rate_limit_holds_grades_and_who_changes_it(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """Grades waiting on a destination's rate limit: the Dashboard said "Delivering" and
    nothing else, as if they went at once. It says so as it says a pause, with who can
    change the limit; a limit that keeps up is not said, and a pause is said instead."""
    c, runtime = app_client
    _canvas_with_grades_waiting(runtime, 0.01)
    _login(c, "ada", "/console/dashboard")

    def said() -> str:
        page = c.get("/console/dashboard").text
        return " ".join(unescape(re.sub(r"<[^>]+>", " ", page)).split())

    page = said()
    assert RATE_HELD in page
    assert (
        "Otherwise raise or clear its rate limit: an administrator with an API key does "
        "(`PATCH /api/v1/destinations/lms/limits`), or whoever runs gradesync at its command "
        "line (`destinations limits`; docs/operations.md)." in page
    )
    assert re.search(r"Canvas 2 \S+ \S+ UTC Rate limited 0.01 requests per second", page)
    assert "Delivering" not in page
    _canvas_with_grades_waiting(runtime, 100.0)  # two grades go within the second
    page = said()
    assert "rate limit" not in page and "Delivering" in page
    _canvas_with_grades_waiting(runtime, 0.01, enabled=False, pause_reason="term closed")
    page = said()
    assert "Canvas is paused : term closed." in page and "rate limit" not in page


def test_a_course_s_sync_panel_says_a_rate_limit_holds_its_grades_in_the_viewer_s_words(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """The course's Sync in progress panel said "Sending grades…" while a rate limit held
    the grades for minutes: it says so, live, an administrator reading where the limit is
    changed and an instructor whom to ask; the page says it without a run to follow too."""
    c, runtime = app_client
    _canvas_with_grades_waiting(runtime, 0.01)

    def panel(user: str) -> str:
        _login(c, user)
        page = c.get("/console/courses/bio").text
        found = re.search(r'<section class="card progress".*?</section>', page, re.S)
        shown = found.group(0) if found else page
        return " ".join(unescape(re.sub(r"<[^>]+>", "", shown)).split())

    # no run yet: the grades sent as they arrive wait all the same
    assert RATE_HELD in panel("ada") and "Sync in progress" not in panel("ada")
    with runtime.db.uow() as uow:
        scope = RunScope("t1", None, "bio")
        uow.runs.add(SyncRun("r-bio", scope, Trigger.MANUAL, "ada", created_at=runtime.clock.now()))
        uow.commit()
    admin = panel("ada")
    assert admin.startswith("Sync in progress") and RATE_HELD in admin
    assert "(`PATCH /api/v1/destinations/lms/limits`)" in admin
    [held] = c.get("/console/runs/r-bio/progress").json()["held"]
    assert held["destination_id"] == "lms"
    assert held["headline"] == "Canvas is held back by its rate limit."
    assert "(`PATCH /api/v1/destinations/lms/limits`)" in held["text"]
    instructor = panel("ins")
    assert RATE_HELD in instructor and "PATCH" not in instructor
    assert (
        "Ask a gradesync administrator to raise or clear this destination's rate limit if that "
        "pace is not meant." in instructor
    )
    [held] = c.get("/console/runs/r-bio/progress").json()["held"]
    assert "Ask a gradesync administrator" in held["text"]


def test_the_dashboard_says_when_recorded_attempts_are_not_worked_out(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """A worker that fails on every computation (or none running) left grades unworked
    while the dashboard said "Nothing waits": the ledger it counted never saw them."""
    c, runtime = app_client
    now = runtime.clock.now()
    _login(c, "ada", "/console/dashboard")
    with runtime.db.uow() as uow:
        uow.dirty.mark_many([("t1", "bio", "q1", "p1")], now)
        uow.commit()
    page = c.get("/console/dashboard").text
    assert re.search(r'data-kpi="to-compute">1<', page)
    assert "Nothing waits" not in page and "1 is still to be worked out" in page
    assert "data-stuck" not in page  # just recorded: computing takes a moment
    # marked ten minutes ago instead (marked again, a grade keeps when it was first marked)
    with runtime.db.uow() as uow:
        uow.dirty.claim(10)
        uow.dirty.mark_many([("t1", "bio", "q1", "p1")], now - timedelta(minutes=10))
        uow.commit()
    page = c.get("/console/dashboard").text
    assert "1 grade waits to be worked out" in page and "the oldest for 10.0 min" in page, page


def test_run_history_names_destination_schedule_and_who_asked(
    app_client: tuple[TestClient, Runtime],
) -> None:
    c, runtime = app_client
    now = runtime.clock.now()
    scope = RunScope("t1", "lms", "bio")
    with runtime.db.uow() as uow:
        uow.destinations.upsert(Destination("t1", "lms", DestinationKind.LTI13_AGS, "Canvas"), now)
        uow.schedules.save(
            Schedule(
                "s1",
                "t1",
                scope,
                ScheduleKind.WEEKLY,
                "mon 07:00",
                "Europe/Paris",
                "ada",
                created_at=now,
            )
        )
        uow.runs.add(
            SyncRun("r-sched", scope, Trigger.SCHEDULE, "ada", created_at=now), schedule_id="s1"
        )
        uow.runs.add(SyncRun("r-hand", RunScope("t1"), Trigger.MANUAL, "grace", created_at=now))
        uow.commit()
    _login(c, "ada", "/console/destinations")
    page = c.get("/console/runs").text
    assert "Canvas" in page and "Biology" in page and "All destinations" in page
    assert "schedule: weekly mon 07:00 (Europe/Paris)" in page
    local = r'<time datetime="[^"]+" data-local="">\d{4}-\d\d-\d\d \d\d:\d\d UTC</time>'
    assert re.search(local, page)
    assert not re.search(r"\d\d:\d\d:\d\d\.\d{6}", page)  # no microseconds
    one = c.get("/console/runs/r-sched").text
    assert "Canvas" in one and "weekly mon 07:00" in one and "Asked by" in one
    assert c.get("/favicon.ico").status_code == 204  # asked with every page: not a 404
    # a filter nothing matches says so, not that no sync has ever run
    empty = c.get("/console/runs", params={"trigger": "remaster"}).text
    assert "No sync matches these filters." in empty and "No sync has run yet" not in empty
    # a type no run has (a hand-edited address) is said, not quietly dropped from the filter
    bogus = c.get("/console/runs", params={"trigger": "bogus"}).text
    assert "flash-error" in bogus and "No sync type &#39;bogus&#39;" in bogus
    # so is a course the school does not have: every run, not an empty history
    nope = c.get("/console/runs", params={"course": "nope"})
    assert nope.status_code == 200 and "No course &#39;nope&#39;" in nope.text
    assert "r-hand" in nope.text and "r-sched" in nope.text

    # the page reads its runs' stages at once: forty more runs, no more statements
    with statements(runtime.db) as two:
        c.get("/console/runs")
    with runtime.db.uow() as uow:
        for i in range(40):
            uow.runs.add(SyncRun(f"r-{i}", RunScope("t1"), Trigger.MANUAL, "grace", created_at=now))
        uow.commit()
    with statements(runtime.db) as many:
        page = c.get("/console/runs").text
    assert all(f"/console/runs/r-{i}" in page for i in range(40))
    assert len(many) == len(two), [s.split("\n")[0][:80] for s in many]


def test_last_sync_is_the_latest_run_that_included_the_course(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """A run of every course (a schedule over all courses, no course in its scope) syncs this
    course too; the course page's Last sync showed an older run of the course alone."""
    c, runtime = app_client
    now = runtime.clock.now()
    with runtime.db.uow() as uow:
        uow.destinations.upsert(Destination("t1", "lms", DestinationKind.LTI13_AGS, "Canvas"), now)
        uow.destinations.upsert(Destination("t1", "sis", DestinationKind.ONEROSTER_CSV, "SIS"), now)
        uow.links.save_course(CourseLink("t1", "lms", "bio", "ctx-bio"))
        at = now - timedelta(hours=3)
        runs = [
            SyncRun("r-bio", RunScope("t1", "lms", "bio"), Trigger.MANUAL, "ada", created_at=at),
            # every course at every destination, then at Canvas: both included Biology
            SyncRun("r-all", RunScope("t1"), Trigger.SCHEDULE, "ada", created_at=at + HOUR),
            SyncRun(
                "r-lms", RunScope("t1", "lms"), Trigger.RESYNC, "ada", created_at=at + 2 * HOUR
            ),
            # every course at a SIS Biology is not connected to: not Biology's
            SyncRun("r-sis", RunScope("t1", "sis"), Trigger.MANUAL, "ada", created_at=now),
            # another course alone
            SyncRun("r-chem", RunScope("t1", "lms", "chem"), Trigger.MANUAL, "ada", created_at=now),
        ]
        for run in runs:
            finished = replace(run, stage=RunStage.FINISHED, outcome=RunOutcome.SUCCEEDED)
            uow.runs.add(replace(finished, finished_at=run.created_at))
        uow.commit()
    _login(c, "ada")
    page = c.get("/console/courses/bio").text
    last = re.search(r'id="run-progress" data-run-id="([^"]+)"', page)
    assert last is not None and last.group(1) == "r-lms", page
    assert "Last sync" in page and "Resync of all courses by ada" in page
    history = c.get("/console/courses/bio/history").text
    assert re.findall(r'/console/runs/(r-[a-z]+)"', history) == ["r-lms", "r-all", "r-bio"]
    assert "Resync, all courses" in history and "Schedule, all courses" in history
    assert "<td>Sync now</td>" in history  # the course's own run says no more


def test_an_instructor_opens_the_runs_of_every_course_their_course_page_lists(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """The course page lists a run of every course as the course's Last sync, linked and
    followed live: its page and progress answered 404 to the course's instructor, who still
    sees no run that did not include their course."""
    c, runtime = app_client
    now = runtime.clock.now()
    with runtime.db.uow() as uow:
        uow.destinations.upsert(Destination("t1", "lms", DestinationKind.LTI13_AGS, "Canvas"), now)
        uow.destinations.upsert(Destination("t1", "sis", DestinationKind.ONEROSTER_CSV, "SIS"), now)
        uow.links.save_course(CourseLink("t1", "lms", "bio", "ctx-bio"))
        for run_id, scope in (
            ("r-all", RunScope("t1")),
            ("r-lms", RunScope("t1", "lms")),
            ("r-sis", RunScope("t1", "sis")),  # Biology is not connected to the SIS
            ("r-chem", RunScope("t1", "lms", "chem")),
        ):
            uow.runs.add(SyncRun(run_id, scope, Trigger.SCHEDULE, "ada", created_at=now))
        uow.commit()
    _login(c, "ins")
    listed = set(re.findall(r'/console/runs/(r-[a-z]+)"', c.get("/console/courses/bio").text))
    assert listed == {"r-all", "r-lms"}, listed
    for run_id in ("r-all", "r-lms"):
        assert c.get(f"/console/runs/{run_id}").status_code == 200, run_id
        assert c.get(f"/console/runs/{run_id}/progress").status_code == 200, run_id
    for run_id in ("r-sis", "r-chem"):
        assert c.get(f"/console/runs/{run_id}").status_code == 404, run_id
        assert c.get(f"/console/runs/{run_id}/progress").status_code == 404, run_id


def test_adding_a_sis_over_an_existing_id_is_refused_and_changes_nothing(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """The console's SIS form adds a REST connection; given the id of a file-based one it
    used to turn it into REST and replace its settings."""
    c, runtime = app_client
    from gradesync.services.sis import add_connection

    add_connection(
        runtime.uow,
        runtime.clock,
        tenant_id="t1",
        destination_id="sis",
        name="District SIS (files)",
        base_url=None,
        file_based=True,
    )
    token = _login(c, "ada", "/console/destinations")
    form = {
        "csrf": token,
        "kind": "sis",
        "id": "sis",
        "name": "Other SIS",
        "base_url": "https://sis.example.edu/ims/oneroster/v1p2",
        "client_id": "gs",
        "client_secret": "a-secret",
    }
    r = c.post("/console/destinations", data=form, follow_redirects=False)
    assert r.status_code == 422 and "already exists" in r.text
    with runtime.db.uow() as uow:
        kept = uow.destinations.get("t1", "sis")
    assert kept is not None
    assert (kept.kind, kept.name) == (DestinationKind.ONEROSTER_CSV, "District SIS (files)")
    assert "base_url" not in kept.config
    # the LTI 1.1 form too: it replaced the consumer (and its comments) and said "Added"
    from gradesync.services.lti11_consumers import ConsumerSpec, add_consumer

    spec = ConsumerSpec("t1", "moodle11", "Moodle", "k-1", "x" * 20, ("moodle.example.edu",))
    with runtime.db.uow() as uow:
        add_consumer(uow, replace(spec, comments=True), runtime.clock.now())
        uow.commit()
    lti11 = {
        "csrf": token,
        "kind": "lti11",
        "id": "moodle11",
        "name": "Moodle",
        "consumer_key": "k-moodle",
        "consumer_secret": "a-long-enough-secret",
        "allowed_hosts": "moodle.example.edu",
    }
    r = c.post("/console/destinations", data=lti11, follow_redirects=False)
    assert r.status_code == 422 and "already exists" in r.text
    with runtime.db.uow() as uow:
        still = uow.destinations.get("t1", "moodle11")
    assert still is not None and still.config["comments"] is True


def test_the_lti11_form_splits_host_names_on_commas_and_names_the_field_by_its_label(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """ "LMS host names" takes several between commas (its hint) or lines: `not a host!` is
    one host refused whole (split on spaces, `not` and `a` passed as hosts), and the refusal
    names the field's label, not a hidden list index."""
    c, runtime = app_client
    token = _login(c, "ada", "/console/destinations")
    lti11 = {
        "csrf": token,
        "kind": "lti11",
        "id": "moodle11",
        "name": "Moodle",
        "consumer_key": "k-moodle",
        "consumer_secret": "a-long-enough-secret",
        "allowed_hosts": "not a host!",
    }
    r = c.post("/console/destinations", data=lti11, follow_redirects=False)
    said = unescape(r.text)
    assert r.status_code == 422 and "LMS host names: 'not a host!'" in said, said
    assert "allowed hosts" not in said and "'not'" not in said
    with runtime.db.uow() as uow:
        assert uow.destinations.get("t1", "moodle11") is None
    several = {**lti11, "allowed_hosts": "a.example.edu, b.example.edu\nc.example.edu,"}
    r = c.post("/console/destinations", data=several, follow_redirects=False)
    assert r.status_code == 303, r.text
    with runtime.db.uow() as uow:
        made = uow.destinations.get("t1", "moodle11")
    assert made is not None
    assert made.config["allowed_hosts"] == ["a.example.edu", "b.example.edu", "c.example.edu"]


def test_a_timed_pause_that_ran_out_is_not_shown_as_a_pause(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """Nothing clears a throttle's pause when it ends (the engine just sends again): every
    surface shows the destination as active once its time has passed, and one still in force
    as paused."""
    c, runtime = app_client
    now = runtime.clock.now()
    with runtime.db.uow() as uow:
        for dest_id, name in (("lms", "Canvas"), ("sis", "District SIS")):
            kind = DestinationKind.LTI13_AGS if dest_id == "lms" else DestinationKind.ONEROSTER_REST
            uow.destinations.upsert(Destination("t1", dest_id, kind, name), now)
        uow.destinations.set_pause(
            "t1", "lms", now - timedelta(minutes=5), "asked to slow down", PauseCause.SLOW_DOWN
        )
        uow.destinations.set_pause(
            "t1", "sis", now + timedelta(minutes=5), "breaker open", PauseCause.CIRCUIT_OPEN
        )
        uow.commit()
    _login(c, "ada", "/console/destinations")
    page = c.get("/console/destinations").text
    assert 'aria-label="Pause Canvas"' in page and "asked to slow down" not in page
    assert "breaker open" in page and 'aria-label="Resume District SIS"' in page
    token = auth.create_key(runtime.db.uow, runtime.clock, "t1", "ops", ("admin",)).token
    api = {"Authorization": f"Bearer {token}"}
    lms = c.get("/api/v1/destinations/lms", headers=api).json()
    assert (lms["paused_until"], lms["pause_reason"]) == (None, None)
    sis = c.get("/api/v1/destinations/sis", headers=api).json()
    assert sis["pause_reason"] == "breaker open" and sis["paused_until"] is not None


def test_the_grid_says_when_its_gradebook_is_paused(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """Grades of a paused gradebook wait as Pending: the grid says why, with the admin's
    reason, and says nothing once a timed pause has run out."""
    c, runtime = app_client
    now = runtime.clock.now()
    canvas = Destination("t1", "lms", DestinationKind.LTI13_AGS, "Canvas")

    def save(d: Destination) -> None:
        with runtime.db.uow() as uow:
            uow.destinations.upsert(d, now)
            uow.commit()

    save(replace(canvas, enabled=False, pause_reason="LMS upgrade tonight"))
    _login(c, "ada", "/console/courses/bio")
    page = c.get("/console/courses/bio", params={"destination": "lms"}).text
    assert "Canvas is paused: LMS upgrade tonight. Its grades wait here, and go once" in page
    assert "go once it is resumed" in page
    # a reason that is a sentence of its own (the breaker's) is set inside without its stop
    breaker = "Circuit breaker open after 5 failures; gradesync probes it again by itself."
    save(replace(canvas, paused_until=now + timedelta(minutes=5), pause_reason=breaker))
    page = c.get("/console/courses/bio", params={"destination": "lms"}).text
    assert "probes it again by itself. Its grades wait here, and go once it sends again" in page
    assert "itself.." not in page
    save(replace(canvas, paused_until=now - timedelta(minutes=1), pause_reason="Retry-After"))
    grid = c.get("/console/courses/bio/grid", params={"destination": "lms"}).text
    assert "is paused" not in grid


def test_a_course_not_connected_to_the_gradebook_shown_says_so_in_every_cell(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """A learner graded 8.5/10 in a course no launch has connected to the LMS yet (and no
    class is mapped to it at the SIS): nothing is sent, so each cell says *Not sent* and
    opens on why, as the page does above the grid; never a bare "No grade yet"."""
    c, runtime = app_client
    now = runtime.clock.now()
    with runtime.db.uow() as uow:
        uow.destinations.upsert(
            Destination("t1", "lms", DestinationKind.LTI13_AGS, "Sandbox LMS"), now
        )
        uow.activities.upsert(Activity("t1", "q3", "bio", "Quiz 3", 10.0))
        uow.people.upsert(Person("t1", "ada", "Ada L"))
        uow.enrollments.upsert(Enrollment("t1", "bio", "ada"))
        uow.attempts.add(Attempt("t1", "evt-81723", "q3", "ada", 8.5, 10.0, now), now)
        uow.commit()
    _login(c, "ada", "/console/courses/bio")
    reason = (
        "Biology is not connected to Sandbox LMS: no launch from the LMS course has been "
        "received yet, so no grade of it is sent there."
    )
    for url in ("/console/courses/bio", "/console/courses/bio/grid"):
        page = unescape(c.get(url, params={"destination": "lms"}).text)
        cell = re.search(r'<td class="cell-([a-z_]+)" data-person="ada" data-activity="q3">'
                         r"(.*?)</td>", page, re.S)  # fmt: skip
        assert cell is not None, page
        assert cell.group(1) == "not_sent"
        assert "<details>" in cell.group(2) and "Not sent" in cell.group(2)
        assert reason in cell.group(2)
        assert "Diagnose this grade" in cell.group(2)
        assert reason in page.split('<table aria-labelledby="grid-h"')[0]  # said above the grid
        assert "No grade yet" not in page and 'Not worked out yet</span> <span class="small">0' in (
            page
        )
    # the diagnosis page gives the same reason for that gradebook
    diag = unescape(
        c.get(
            "/console/diagnosis", params={"course": "bio", "activity": "q3", "person": "ada"}
        ).text
    )
    assert reason in diag and "Nothing computed for this pair" not in diag

    # at a SIS, what connects the course is a class mapped to it
    from gradesync.services.sis import add_connection

    add_connection(
        runtime.uow, runtime.clock, tenant_id="t1", destination_id="sis", name="District SIS",
        base_url=None, file_based=True,
    )  # fmt: skip
    page = unescape(c.get("/console/courses/bio", params={"destination": "sis"}).text)
    assert "Biology is not connected to District SIS: it is not mapped to a SIS class" in page

    # once connected, a pair not worked out yet says so, and opens on it too
    with runtime.db.uow() as uow:
        uow.links.save_course(CourseLink("t1", "lms", "bio", "ctx-bio"))
        uow.commit()
    page = unescape(c.get("/console/courses/bio/grid", params={"destination": "lms"}).text)
    assert "is not connected" not in page
    assert "Not worked out yet" in page and "Sync now works it out" in page


def test_the_diagnosis_page_tells_an_instructor_who_does_what_each_check_needs(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """An instructor cannot run the commands the checks' remedies name: the diagnosis page
    says what to ask an administrator for, by the check (as the grid's cell does), not the
    general words for every check."""
    c, runtime = app_client
    now = runtime.clock.now()
    with runtime.db.uow() as uow:
        sis = Destination("t1", "sis", DestinationKind.ONEROSTER_CSV, "District SIS")
        uow.destinations.upsert(replace(sis, enabled=False, pause_reason="term closed"), now)
        uow.activities.upsert(Activity("t1", "q3", "bio", "Quiz 3", 10.0))
        uow.people.upsert(Person("t1", "ada", "Ada L"))
        uow.enrollments.upsert(Enrollment("t1", "bio", "ada"))
        uow.attempts.add(Attempt("t1", "evt-3", "q3", "ada", 8.5, 10.0, now), now)
        uow.commit()
    pair = {"course": "bio", "activity": "q3", "person": "ada"}
    _login(c, "ins", "/console/courses/bio")
    page = unescape(c.get("/console/diagnosis", params=pair).text)
    assert "Ask a gradesync administrator to map this course to its SIS class." in page
    assert "Ask a gradesync administrator to fix what paused this destination" in page
    assert "gradesync sis map-class" not in page and "destinations resume" not in page
    # an administrator reads the console's action that does it, not a command they may have
    # no command line to run: the course's SIS page maps the class, the Destinations page
    # resumes (in the checks, the gradebook's reason and the course grid alike)
    _login(c, "ada", "/console/courses/bio")
    page = unescape(c.get("/console/diagnosis", params=pair).text)
    mapping = (
        "Map the course to its SIS class on the course's SIS passback page "
        "(/console/sis/sis/courses/bio, Class and students), then tick 'Sync to SIS' there"
    )
    assert mapping in page
    assert "then resume it (its Resume button on the Destinations page)" in page
    assert "gradesync sis" not in page and "destinations resume" not in page
    grid = unescape(c.get("/console/courses/bio", params={"destination": "sis"}).text)
    assert mapping in grid and "gradesync sis" not in grid
    sis_page = c.get("/console/sis/sis/courses/bio").text
    assert "Map to a SIS class" in sis_page and "Save class" in sis_page


def test_the_diagnosis_page_names_the_check_button_for_refused_credentials(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """An LMS refusing gradesync's credentials read "then run `gradesync destinations check`"
    to an administrator in the console, which checks a destination itself: its Check button
    on the Destinations page is named instead."""
    c, runtime = app_client
    now = runtime.clock.now()
    with runtime.db.uow() as uow:
        lms = Destination("t1", "lms", DestinationKind.LTI13_AGS, "Canvas")
        uow.destinations.upsert(lms, now)
        uow.activities.upsert(Activity("t1", "q3", "bio", "Quiz 3", 10.0))
        uow.people.upsert(Person("t1", "ada", "Ada L"))
        uow.enrollments.upsert(Enrollment("t1", "bio", "ada"))
        uow.attempts.add(Attempt("t1", "evt-3", "q3", "ada", 8.5, 10.0, now), now)
        uow.ledger.save(
            LedgerRow(
                LedgerKey("t1", "lms", "q3", "ada"),
                DeliveryState.REJECTED,
                "h",
                {"score_given": 8.5, "score_maximum": 10.0},
                tries=1,
                reason_code="bad_credentials",
                reason_text="The LMS refused the token.",
                remote_status=401,
                updated_at=now,
            ),
            "bio",
        )
        uow.commit()
    _login(c, "ada", "/console/courses/bio")
    pair = {"course": "bio", "activity": "q3", "person": "ada"}
    page = unescape(c.get("/console/diagnosis", params=pair).text)
    assert "Then check the destination (its Check button on the Destinations page)." in page
    assert "destinations check" not in page
    assert 'aria-label="Check Canvas">Check</button>' in c.get("/console/destinations").text


def test_sync_now_says_at_once_that_a_gradebook_of_the_course_is_paused(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """The run would wait for it and end "partly failed" half a minute later."""
    c, runtime = app_client
    now = runtime.clock.now()
    with runtime.db.uow() as uow:
        canvas = Destination("t1", "lms", DestinationKind.LTI13_AGS, "Canvas")
        uow.destinations.upsert(replace(canvas, enabled=False, pause_reason="term closed"), now)
        uow.links.save_course(CourseLink("t1", "lms", "bio", "ctx-bio"))
        uow.commit()
    token = _login(c, "ada", "/console/courses/bio")
    page = c.post("/console/courses/bio/sync", data={"csrf": token, "action": "sync"}).text
    assert "Sync now started" in page or "already going" in page
    assert "Canvas is paused (term closed): this course&#39;s grades for it wait as Pending" in (
        page
    )
    assert "until it is resumed" in page


def test_a_grace_period_past_a_year_is_refused_in_the_form_s_words(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """Twenty digits of grace once saved, then overflowed every computation of the tenant."""
    c, runtime = app_client
    token = _login(c, "ada", "/console/policy")
    assert 'max="527040"' in c.get("/console/policy").text
    r = c.post("/console/policy", data={"csrf": token, "grace_period_minutes": "9" * 20})
    assert r.status_code == 200  # the page again, after the redirect
    assert "Nothing was saved: Grace period (minutes): The grace period is a whole number" in (
        r.text
    )
    with runtime.db.uow() as uow:
        tenant = uow.tenants.get("t1")
    assert tenant is not None and tenant.policy.grace_period_minutes is None


@pytest.mark.parametrize("dest_id", ["", "my sis!", "x" * 300])
def test_the_sis_add_form_refuses_an_id_the_pages_cannot_link_to(
    app_client: tuple[TestClient, Runtime], dest_id: str
) -> None:
    c, runtime = app_client
    token = _login(c, "ada", "/console/destinations")
    form = {
        "csrf": token,
        "kind": "sis",
        "id": dest_id,
        "name": "District SIS",
        "base_url": "https://sis.example.edu/ims/oneroster/gradebook/v1p2",
        "client_id": "c",
        "client_secret": "s",
    }
    r = c.post("/console/destinations", data=form)
    assert r.status_code == 422
    assert "Short id: An id is 1-128 letters" in r.text
    with runtime.db.uow() as uow:
        assert [d.id for d in uow.destinations.all("t1")] == [], "nothing saved"


def test_error_pages_keep_the_menu_and_unknown_addresses_are_pages(
    app_client: tuple[TestClient, Runtime],
) -> None:
    c, _ = app_client
    signed_out = c.get("/console/nope")
    assert signed_out.status_code == 404 and "There is no such page" in signed_out.text
    assert "Sign out" not in signed_out.text
    _login(c, "ada", "/console/")
    for url, status, words in (
        ("/console/nope", 404, "There is no such page in the console."),
        ("/console/sis/nope", 404, "There is no such page in the console."),
        ("/console/courses/nope", 404, "No such course."),
        # a form's address, reloaded or opened with Back
        ("/console/destinations/lms/check", 405, "This address is where a form is sent"),
    ):
        r = c.get(url)
        assert r.status_code == status and r.headers["content-type"].startswith("text/html"), url
        assert words in r.text and "Sign out" in r.text, url
    # the API's answers stay JSON
    api = c.get("/api/v1/nope")
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}


def test_an_admin_sets_how_lms_rosters_match_on_the_grade_policy_page(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """No console page set the tenant's roster_match (only `gradesync tenants roster-match`
    did): the Grade policy page does, as the command does; a wrong value is refused naming
    the field and its rule, and only an admin may."""
    from gradesync.domain.model import RosterMatch
    from gradesync.services.tenants import roster_match

    c, runtime = app_client

    def stored() -> RosterMatch:
        return roster_match(runtime.uow, "t1")

    _login(c, "ins")
    assert c.get("/console/policy").status_code == 403
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/console/courses/bio").text)
    assert token is not None
    r = c.post(
        "/console/policy/roster-match", data={"csrf": token.group(1), "roster_match": "email"}
    )
    assert r.status_code == 403 and stored() is RosterMatch.SIS_ID
    c.cookies.clear()

    token_ = _login(c, "ada", "/console/policy")
    page = c.get("/console/policy").text
    assert 'action="/console/policy/roster-match"' in page and 'name="roster_match"' in page
    assert re.search(r'<option value=""\s+selected>Built-in default \(SIS id', page)
    # without the form's token: refused, nothing saved
    r = c.post("/console/policy/roster-match", data={"roster_match": "email"})
    assert r.status_code == 403 and stored() is RosterMatch.SIS_ID

    r = c.post("/console/policy/roster-match", data={"csrf": token_, "roster_match": "email"})
    assert r.status_code == 200 and "Saved: LMS roster members are matched by Email." in r.text
    assert stored() is RosterMatch.EMAIL
    assert '<option value="email" selected>Email</option>' in r.text

    r = c.post("/console/policy/roster-match", data={"csrf": token_, "roster_match": "name"})
    assert "Nothing was saved: Roster matching: roster_match must be one of" in unescape(r.text)
    assert stored() is RosterMatch.EMAIL
    # a post without the field (a script's, not the page's) is refused, not read as the default
    r = c.post("/console/policy/roster-match", data={"csrf": token_})
    assert r.status_code == 422 and "roster match: required" in unescape(r.text)
    assert "Nothing was changed" in r.text
    assert stored() is RosterMatch.EMAIL
    # the built-in default again
    r = c.post("/console/policy/roster-match", data={"csrf": token_, "roster_match": ""})
    assert "matched by SIS id" in r.text and stored() is RosterMatch.SIS_ID
    with runtime.db.uow() as uow:
        tenant = uow.tenants.get("t1")
    assert tenant is not None and tenant.policy.roster_match is None


def test_a_missing_sis_category_and_a_broken_lti11_consumer_name_what_fixes_them_in_the_grid(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """A SIS's refusal of a group it has no category for, and an LTI 1.1 consumer gradesync
    cannot send with, read `gradesync sis categories ... --align` and `gradesync lti11
    add-consumer` in an admin's course grid: they name the course's Category alignment, and
    who changes a consumer (the Destinations page adds one but changes none) and how."""
    from gradesync.adapters.destinations.lti11 import ConsumerConfig
    from gradesync.domain.remedies import stored_text
    from gradesync.services import sis
    from gradesync.services.delivery.failures import reason_of
    from gradesync.services.destination import RemoteFailure

    c, runtime = app_client
    now = runtime.clock.now()
    consumer = Destination(
        "t1", "lms11", DestinationKind.LTI11_OUTCOMES, "Moodle 1.1", config={"consumer_key": "k"}
    )
    try:
        ConsumerConfig.from_destination(consumer)
        raise AssertionError("a consumer without a secret is refused")
    except RemoteFailure as failure:
        broken = reason_of(failure)
    category = (
        "Activity group 'Labs': not aligned to a category. — Align the group to the SIS's "
        "category under Category alignment on the course's SIS page in the console, or: "
        "gradesync sis categories sis --align GROUP=CATEGORY_SOURCEDID"
    )
    sis.add_connection(
        runtime.uow, runtime.clock, tenant_id="t1", destination_id="sis", name="District SIS",
        base_url=None, file_based=True,
    )  # fmt: skip
    sis.map_class(
        runtime.uow, tenant_id="t1", destination_id="sis", course_id="bio", class_id="cls-1",
        school_id="sch-1", waker=runtime.waker,
    )  # fmt: skip
    with runtime.db.uow() as uow:
        # the group the SIS refused (a remedy names the activity's group, never reads it back
        # from the words)
        uow.activities.upsert(
            Activity("t1", "q1", "bio", "Quiz 1", 10.0, sync_enabled=False, category="Labs")
        )
        uow.destinations.upsert(consumer, now)
        uow.links.save_course(CourseLink("t1", "lms11", "bio", "ctx-bio"))
        uow.people.upsert(Person("t1", "ada", "Ada L"))
        uow.enrollments.upsert(Enrollment("t1", "bio", "ada"))
        for dest, code, text in (
            ("sis", "category_missing", category),  # a row stored as words, as before
            ("lms11", broken.code, stored_text(broken.text, broken.fix)),  # as stored now
        ):
            row = LedgerRow(
                LedgerKey("t1", dest, "q1", "ada"),
                DeliveryState.REJECTED,
                reason_code=code,
                reason_text=text,
                updated_at=now,
            )
            uow.ledger.save(row, "bio")
        uow.commit()
    _login(c, "ada", "/console/courses/bio")
    grid = unescape(c.get("/console/courses/bio", params={"destination": "sis"}).text)
    assert (
        "Align the group to one of the SIS's categories under Category alignment on the "
        "course's SIS passback page (/console/sis/sis/courses/bio)." in grid
    )
    assert "gradesync sis" not in grid
    assert "Category alignment" in c.get("/console/sis/sis/courses/bio").text
    grid = unescape(c.get("/console/courses/bio", params={"destination": "lms11"}).text)
    assert "the Destinations page adds a consumer but does not change one" in grid
    assert "(`PUT /api/v1/lti11/consumers/lms11`)" in grid
    assert "Then resume it (its Resume button on the Destinations page)." in grid
    assert "gradesync lti11" not in grid


def test_the_schedules_page_names_the_destination_and_logs_in_the_schedules_zone(
    app_client: tuple[TestClient, Runtime],
) -> None:
    """A schedule scoped to a destination shows the destination's name, not its id, and the
    log's times read in the schedule's zone, as the table's do."""
    c, runtime = app_client
    with runtime.db.uow() as uow:
        uow.destinations.upsert(
            Destination("t1", "lms-7", DestinationKind.LTI13_AGS, "Biology LMS"),
            runtime.clock.now(),
        )
        uow.commit()
    token = _login(c, "ada", "/console/schedules")
    made = c.post(
        "/console/schedules",
        data={
            "csrf": token,
            "kind": "daily",
            "spec": "07:00",
            "time_zone": "America/New_York",
            "course_id": "bio",
            "destination_id": "lms-7",
        },
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    page = c.get("/console/schedules").text
    scope = re.search(r'<td class="small">Biology → ([^<]*)</td>', page)
    assert scope and scope.group(1) == "Biology LMS", page
    log = page.split('aria-labelledby="log-h"', 1)[1]
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d E[SD]T</td>", log), log
