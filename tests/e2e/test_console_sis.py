"""SIS passback in the console, driven in headless Chromium against the sandbox SIS the way a
district's SIS admin works: check the connection, link the learners, align an activity group
to one of the SIS's categories, tick activities "Sync to SIS", read the validation list, post
a selection (with its confirmation) and follow the Grade Sync page to its counts. The SIS is
then asked what it holds: exactly the posted selection. Set GRADESYNC_SCREENSHOT_DIR to save
the pages' screenshots (docs/images)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from gradesync.domain.model import (
    Activity,
    Attempt,
    Course,
    DeliveryState,
    Enrollment,
    Person,
    Tenant,
    UserRole,
)
from gradesync.sandbox.config import SandboxConfig
from gradesync.sandbox.testing import RunningSandbox, running_sandbox
from gradesync.services import sis
from gradesync.services.accounts import create_user
from gradesync.services.ingest import IngestBatch
from gradesync.testing import wait_for
from tests.e2e.conftest import LiveConsole, sign_in
from tests.support.sis import CLIENT_SECRET, connect, map_to_class, sis_seed

pytestmark = pytest.mark.browser

T, COURSE, DEST = "district", "alg-1", "sis"
ADMIN = ("sam", "a long sis admin password")
STUDENTS = {"p1": ("Ada Lovelace", "stu-1"), "p2": ("Alan Turing", "stu-2")}
NO_SIS_ID = "p3"
# one unbroken name: it must wrap on the page (the SIS gets it shortened); its group "Labs"
# has no category at the SIS, which validation names
LONG = "Photosynthesis_and_cellular_respiration_review_worksheet_with_extra_practice"
RUN_TIMEOUT = 30_000


@pytest.fixture
def sis_sandbox() -> Iterator[RunningSandbox]:
    config = SandboxConfig.model_validate(
        {"seed": {"sis": sis_seed(s for _, s in STUDENTS.values())}}
    )
    with running_sandbox(config) as sandbox:
        yield sandbox


def _district(console: LiveConsole, sandbox: RunningSandbox) -> None:
    """The district as the courseware and the SIS admin's earlier set-up left it: a course
    mapped to its SIS class, learners with SIS ids (matched by them once their grades are
    worked out) and one without, graded work, nothing ticked for the SIS."""
    rt = console.runtime
    now = datetime.now(UTC)
    due = now + timedelta(days=7)
    with rt.uow() as uow:
        uow.tenants.upsert(Tenant(T, "District 9"), now)
        uow.commit()
    rt.ingest(
        T,
        IngestBatch(
            courses=[Course(T, COURSE, "Algebra I")],
            activities=[
                Activity(T, "quiz1", COURSE, "Quiz 1", 10, due_at=due, category="Quizzes"),
                Activity(T, "hw1", COURSE, "Homework 1", 10, due_at=due, category="Homework"),
                Activity(T, "hw2", COURSE, "Homework 2", 10, due_at=due, category="Homework"),
                Activity(T, "long", COURSE, LONG, 10, due_at=due, category="Labs"),
            ],
            people=[
                *(Person(T, p, name, sis_id=s) for p, (name, s) in STUDENTS.items()),
                Person(T, NO_SIS_ID, "Grace Hopper"),  # the SIS does not know her
            ],
            enrollments=[Enrollment(T, COURSE, p) for p in [*STUDENTS, NO_SIS_ID]],
        ),
    )
    connect(
        rt.uow,
        rt.clock,
        tenant_id=T,
        destination_id=DEST,
        name="Springfield SIS",
        base_url=sandbox.base_url,
        profile={"name_max_length": 30, "due_date_inside_term": True},
        guard=rt.outbound,
    )
    map_to_class(rt.uow, tenant_id=T, destination_id=DEST, course_id=COURSE)
    attempts = [
        Attempt(T, f"ev-{a}-{p}", a, p, score, 10.0, now - timedelta(hours=1))
        for a, scores in {"quiz1": (8.0, 6.5), "hw1": (9.0, 7.0), "hw2": (5.0, 10.0)}.items()
        for p, score in zip(STUDENTS, scores, strict=True)
    ] + [Attempt(T, "ev-quiz1-p3", "quiz1", NO_SIS_ID, 9.0, 10.0, now - timedelta(hours=1))]
    rt.ingest(T, IngestBatch(attempts=attempts))
    create_user(
        rt.uow,
        rt.clock,
        tenant_id=T,
        username=ADMIN[0],
        password=ADMIN[1],
        role=UserRole.ADMIN,
        display_name="Sam SIS-admin",
    )

    # the worker has looked at every grade: none went to the SIS (nothing is ticked)
    def rows() -> dict[tuple[str, str], Any]:
        with rt.uow() as uow:
            return uow.ledger.get_many(T, DEST, COURSE)

    graded = {(a.activity_id, a.person_id) for a in attempts}

    def skipped() -> bool:
        held = rows()
        return all(k in held and held[k].state is DeliveryState.SKIPPED for k in graded)

    wait_for(
        skipped,
        "the unticked activities' grades skipped at the SIS",
        explain=lambda: repr({k: (r.state, r.reason_code) for k, r in rows().items()}),
    )


def _sis_results(sandbox: RunningSandbox) -> dict[tuple[str, str], float]:
    held = sandbox.admin.inspect()["sis"]
    return {
        (r["lineItem"]["sourcedId"], r["student"]["sourcedId"]): r["score"] for r in held["results"]
    }


def _line_item(console: LiveConsole, activity: str) -> str:
    with console.runtime.uow() as uow:
        item = uow.links.item(T, DEST, activity)
    assert item is not None
    return item.remote_id


def change_connection(console: LiveConsole, **settings: Any) -> None:
    """The district's connection with `settings` changed and the others kept, as `gradesync
    sis add sis --OPTION` changes them."""
    rt = console.runtime
    sis.add_connection(
        rt.uow,
        rt.clock,
        tenant_id=T,
        destination_id=DEST,
        guard=rt.outbound,
        **{"name": None, "base_url": None, **settings},
    )


def _shot(page: Any, name: str) -> None:
    shots = os.environ.get("GRADESYNC_SCREENSHOT_DIR")
    if shots:
        page.screenshot(path=str(Path(shots) / name), full_page=True)


def _row(table: Any, header: str) -> Any:
    """The row of a table whose row header is exactly `header`."""
    return table.locator("tr").filter(
        has=table.page.get_by_role("rowheader", name=header, exact=True)
    )


def _no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.evaluate("window.innerWidth")
    assert width <= viewport, f"the page is {width} px wide in a {viewport} px window"


def test_sis_admin_aligns_ticks_validates_and_posts_a_selection(
    page: Any, live_console: LiveConsole, sis_sandbox: RunningSandbox
) -> None:
    _district(live_console, sis_sandbox)
    sign_in(page, live_console, *ADMIN)

    # The connection: its check passes step by step.
    page.get_by_role("link", name="SIS passback").click()
    expect(page.get_by_role("heading", level=1, name="SIS passback")).to_be_visible()
    # its results in the course page's words, not the ledger's ("skipped")
    expect(page.locator(".sis-connection").first).to_contain_text(re.compile(r"Not sent \d+"))
    page.get_by_role("button", name="Check Springfield SIS").click()
    expect(page.locator("#check-result")).to_contain_text("Everything works.")

    # The course: mapped to its class; both learners have SIS ids but are not linked yet.
    page.get_by_role("link", name="Algebra I").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Algebra I")
    # a class sourcedId the SIS does not have is refused when saved, and the class stays
    page.get_by_text("Change the SIS class").click()
    page.get_by_label("SIS class sourcedId").fill("cls-typo")
    page.get_by_role("button", name="Save class").click()
    refused = page.get_by_role("alert")
    expect(refused).to_contain_text("SIS class sourcedId: The SIS has no class 'cls-typo'")
    expect(page.get_by_label("SIS class sourcedId")).to_have_value("cls-1")
    students = page.locator("table.sis-students")
    # the two with SIS ids were matched by them when their grades were worked out; the
    # button links them now (here: again), and names who has none
    expect(page.get_by_role("heading", name="Students: 2 of 3 mapped")).to_be_visible()
    page.get_by_role("button", name="Link learners by their SIS ids").click()
    said = page.get_by_role("status").filter(has_text="2 learners linked")
    expect(said).to_contain_text("No SIS id for 1")
    expect(page.get_by_role("heading", name="Students: 2 of 3 mapped")).to_be_visible()
    expect(students.get_by_role("row", name="Grace Hopper")).to_contain_text("Not mapped")
    expect(students.get_by_role("row", name="Ada Lovelace")).to_contain_text("stu-1")

    # Nothing is ticked yet; the validation list already names what blocks each activity:
    # no group matches a SIS category by id until aligned.
    long_row = page.locator("table.sis-activities tr", has_text=LONG)
    expect(long_row.locator("td.validation")).to_contain_text("No SIS category")

    # Category alignment: the groups match no SIS category by id until aligned.
    align = page.locator("table.sis-align")
    expect(_row(align, "Homework")).to_contain_text("No category")
    page.get_by_label("SIS category for Quizzes").select_option("cat-quiz")
    page.get_by_role("button", name="Align Quizzes").click()
    said = page.get_by_role("status").filter(has_text="now goes to SIS category cat-quiz")
    expect(said).to_be_visible()
    page.get_by_label("SIS category for Homework").select_option("cat-hw")
    page.get_by_role("button", name="Align Homework").click()
    expect(_row(align, "Quizzes")).to_contain_text("Aligned")
    expect(_row(align, "Homework")).to_contain_text("Aligned")

    # Tick three activities "Sync to SIS": ticking only records the choice.
    for title in ("Quiz 1", "Homework 1", "Homework 2"):
        page.get_by_role("switch", name=f"Sync to SIS: {title}").click()
        said = page.get_by_role("status").filter(has_text=f"{title} syncs to the SIS")
        expect(said).to_be_visible()
        expect(page.get_by_role("switch", name=f"Sync to SIS: {title}")).to_have_attribute(
            "aria-checked", "true"
        )
    # validation: the three pass, the long name still names its rule
    acts = page.locator("table.sis-activities")
    for title in ("Quiz 1", "Homework 1", "Homework 2"):
        expect(acts.locator("tr", has_text=title).locator("td.validation")).to_have_text("OK")
    expect(long_row.locator("td.validation")).to_contain_text("No SIS category")
    expect(_row(align, "Labs")).to_contain_text("No category")
    # ticking the unaligned one is refused, in words (its code is the badge's tooltip)
    page.get_by_role("switch", name=f"Sync to SIS: {LONG}").click()
    refused = page.get_by_role("alert").filter(has_text="cannot sync to the SIS")
    expect(refused).to_contain_text("No SIS category: ")
    expect(refused).not_to_contain_text("category_missing")
    expect(page.get_by_role("switch", name=f"Sync to SIS: {LONG}")).to_have_attribute(
        "aria-checked", "false"
    )
    _no_sideways_scroll(page)
    _shot(page, "sis-course-page.png")
    assert _sis_results(sis_sandbox) == {}, "ticking sent nothing"

    # The course page, with the SIS selected: an activity not ticked does not show "On".
    page.goto(live_console.url(f"/console/courses/{COURSE}?destination={DEST}"))
    expect(page.get_by_role("switch", name=f"Sync to SIS: {LONG}")).to_have_attribute(
        "aria-checked", "false"
    )
    expect(page.get_by_role("switch", name="Sync to SIS: Quiz 1")).to_have_attribute(
        "aria-checked", "true"
    )
    page.get_by_role("link", name="SIS passback: align, validate and post grades").click()

    # Post a selection: Quiz 1 and Homework 1 only (Homework 2 stays ticked, not posted).
    page.get_by_label("Post Homework 2").uncheck()
    page.get_by_label(f"Post {LONG}").check()  # not ticked, no category: left out
    page.get_by_role("button", name="Post grades…").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Post grades of Algebra I")
    going = page.get_by_role("list", name="Activities to post")
    expect(going.get_by_role("listitem")).to_have_text(["Homework 1", "Quiz 1"])
    left_out = page.get_by_role("list", name="Left out")
    # one reason after another, each its words then what to do (not "Not ticked Sync ...")
    expect(left_out).to_contain_text("Not ticked: Sync to SIS is off for it.")
    expect(left_out).to_contain_text("No SIS category")
    assert _sis_results(sis_sandbox) == {}, "nothing is sent before the confirmation"
    page.get_by_role("button", name="Yes, post grades").click()

    # The Grade Sync page: its stages to Done, the counts and each result's reason.
    expect(page.get_by_role("heading", level=1)).to_contain_text("Grade Sync")
    status = page.locator("#run-progress [data-field='status']")
    expect(status).to_contain_text("Succeeded", timeout=RUN_TIMEOUT)
    progress = page.locator("#run-progress")
    expect(progress.locator("li.stage-done")).to_have_count(7)
    expect(progress.locator("[data-field='counts']")).to_contain_text("sent")
    expect(progress.locator("[data-field='counts']")).to_contain_text("4")
    # when the run finishes, its results, times and stage history are refreshed in place
    expect(progress).to_have_attribute("data-tables-fresh", "true")
    finished = page.locator("#sis-results dl.facts div", has_text="Finished").locator("dd")
    expect(finished).not_to_have_text("—")
    # in the browser's zone, as the page's other times (the refreshed part is localized too)
    expect(finished.locator("time")).to_have_attribute("data-localized", "true")
    results = page.locator("table.sis-results")
    expect(results.locator("tbody tr")).to_have_count(6)  # Grace has no Homework 1 yet
    expect(results.locator("tbody tr", has_text="Homework 2")).to_have_count(0)
    # the learner the SIS does not know: not sent, and why
    grace = results.locator("tr", has_text="Grace Hopper").filter(has_text="Quiz 1")
    expect(grace).to_contain_text("Not sent")
    expect(grace.locator("td").last).not_to_be_empty()
    ada_quiz = results.locator("tr", has_text="Quiz 1").filter(has_text="Ada Lovelace")
    expect(ada_quiz).to_contain_text("8 / 10")
    expect(results.get_by_text("Sent", exact=True)).to_have_count(4)
    _no_sideways_scroll(page)
    _shot(page, "sis-grade-sync.png")

    expect(page.get_by_role("status").filter(has_text="still waiting")).to_contain_text(
        "Homework 2"
    )
    # the general run page leads back to the Grade Sync page
    grade_sync_url = page.url
    run_id = grade_sync_url.rstrip("/").rsplit("/", 1)[-1]
    page.goto(live_console.url(f"/console/runs/{run_id}"))
    page.get_by_role("link", name="Open its Grade Sync page").click()
    expect(page).to_have_url(grade_sync_url)

    # The SIS holds exactly the posted selection.
    quiz, hw1 = _line_item(live_console, "quiz1"), _line_item(live_console, "hw1")
    assert _sis_results(sis_sandbox) == {
        (quiz, "stu-1"): 8.0,
        (quiz, "stu-2"): 6.5,
        (hw1, "stu-1"): 9.0,
        (hw1, "stu-2"): 7.0,
    }
    held_items = {li["sourcedId"] for li in sis_sandbox.admin.inspect()["sis"]["lineItems"]}
    assert held_items == {quiz, hw1}
    # the course page's grid, the SIS chosen: a cell says what the SIS holds, not an LMS
    page.goto(live_console.url(f"/console/courses/{COURSE}?destination={DEST}"))
    sent = page.locator('td[data-person="p1"][data-activity="quiz1"]')
    expect(sent.locator(".lms-holds")).to_contain_text("The SIS holds the grade gradesync sent")

    # Remaster of one activity: its scores and line item go again, nothing else.
    page.goto(live_console.url(f"/console/sis/{DEST}/courses/{COURSE}"))
    acts = page.locator("table.sis-activities")
    expect(acts.locator("tr", has_text="Homework 2")).to_contain_text("Waiting for Post grades")
    expect(acts.locator("tr", has_text="Quiz 1")).not_to_contain_text("Waiting for Post grades")
    for title in ("Homework 1", "Homework 2"):
        page.get_by_label(f"Post {title}").uncheck()
    page.get_by_label("Remaster: send every score").check()
    page.get_by_role("button", name="Post grades…").click()
    expect(page.locator("main")).to_contain_text("Remaster: every score of 1 activity")
    page.get_by_role("button", name="Yes, remaster").click()
    expect(status).to_contain_text("Succeeded", timeout=RUN_TIMEOUT)
    expect(page.locator("dl.facts").first).to_contain_text("Remaster")
    expect(progress.locator("[data-field='counts']")).to_contain_text("sent")
    results = page.locator("table.sis-results")
    expect(results.locator("tbody tr")).to_have_count(3)
    assert set(_sis_results(sis_sandbox)) == {
        (quiz, "stu-1"),
        (quiz, "stu-2"),
        (hw1, "stu-1"),
        (hw1, "stu-2"),
    }
    # both posts are in the course's Grade Sync list
    page.get_by_role("link", name="Algebra I at Springfield SIS").click()
    expect(page.locator("table[aria-labelledby='runs-h'] tbody tr")).to_have_count(2)

    # On a phone the pages still fit the screen: tables scroll inside their box, names wrap.
    page.set_viewport_size({"width": 390, "height": 844})
    for path in (f"/console/sis/{DEST}/courses/{COURSE}", "/console/sis", page.url):
        page.goto(live_console.url(path) if path.startswith("/") else path)
        _no_sideways_scroll(page)


def test_every_sis_form_needs_its_token_and_connection_settings_need_an_admin(
    live_console: LiveConsole, sis_sandbox: RunningSandbox
) -> None:
    """Each state-changing SIS route refuses a forged token and changes nothing; an
    instructor of the course may tick and post, but not change the connection's settings."""
    import httpx

    from gradesync.web.console import sis as sis_pages
    from gradesync.web.console import sis_mapping, sis_posting, sis_settings
    from tests.support.console import form_token
    from tests.support.console import sign_in as sign_in_over_http

    _district(live_console, sis_sandbox)
    rt = live_console.runtime
    create_user(
        rt.uow,
        rt.clock,
        tenant_id=T,
        username="teach",
        password="an instructor's password",
        role=UserRole.INSTRUCTOR,
        course_ids=[COURSE],
    )
    ids = {
        "destination_id": DEST,
        "course_id": COURSE,
        "activity_id": "quiz1",
        "person_id": "p1",
        "run_id": "none",
    }
    routes = [
        *sis_pages.router.routes,
        *sis_mapping.router.routes,
        *sis_posting.router.routes,
        *sis_settings.router.routes,
    ]
    posts = [r for r in routes if "POST" in getattr(r, "methods", ())]
    assert len(posts) == 10
    page = f"/console/sis/{DEST}/courses/{COURSE}"
    with httpx.Client(base_url=live_console.base_url) as admin:
        sign_in_over_http(admin, *ADMIN)
        for route in posts:
            url = "/console" + route.path.format(**ids)  # type: ignore[attr-defined]
            forged = {"csrf": "forged", "sync": "on", "class_id": "x", "group": "Quizzes"}
            refused = admin.post(url, data={**forged, "category_id": "cat-quiz"})
            assert refused.status_code == 403, url
        with rt.uow() as uow:
            item = uow.links.item(T, DEST, "quiz1")
            dest = uow.destinations.get(T, DEST)
        assert item is None and dest is not None and "category_map" not in dest.config
        assert admin.get(page).status_code == 200
        listed = admin.get("/console/destinations").text
        assert 'aria-label="SIS passback of Springfield SIS"' in listed
    # the group aligned (an admin's form): ticking asks the SIS for the category
    sis.align_category(
        rt.uow, rt.clock, tenant_id=T, destination_id=DEST, group="Quizzes", category_id="cat-quiz"
    )
    with httpx.Client(base_url=live_console.base_url) as teacher:
        sign_in_over_http(teacher, "teach", "an instructor's password")
        html = teacher.get(page)
        assert html.status_code == 200 and "Link learners" not in html.text
        token = form_token(html.text)
        align = teacher.post(
            f"{page}/align", data={"csrf": token, "group": "Quizzes", "category_id": "cat-quiz"}
        )
        assert align.status_code == 403
        assert teacher.get("/console/sis").status_code == 403
        tick = teacher.post(f"{page}/activities/quiz1/switch", data={"csrf": token, "sync": "on"})
        assert tick.status_code == 303
    with rt.uow() as uow:
        item = uow.links.item(T, DEST, "quiz1")
    assert item is not None and item.data["sync_to_sis"] is True
    # a category the SIS does not have: refused in words, the alignment kept as it was
    with httpx.Client(base_url=live_console.base_url, follow_redirects=True) as admin:
        sign_in_over_http(admin, *ADMIN)
        token = form_token(admin.get(page).text)
        bogus = admin.post(
            f"{page}/align", data={"csrf": token, "group": "Quizzes", "category_id": "cat-bogus"}
        )
        assert bogus.status_code == 200 and "now goes to" not in bogus.text
        assert "SIS category: The SIS has no category" in bogus.text, bogus.text
    with rt.uow() as uow:
        dest = uow.destinations.get(T, DEST)
    assert dest is not None and dest.config["category_map"] == {"Quizzes": "cat-quiz"}


def test_sis_pages_when_the_sis_cannot_be_asked_or_takes_files(
    live_console: LiveConsole, sis_sandbox: RunningSandbox
) -> None:
    """A SIS that does not answer: the page still opens, says so in the SIS's words and
    validates what it can. A file-based SIS: no API to ask, categories typed in, posting
    works the same."""
    import socket

    import httpx

    from tests.support.console import form_token
    from tests.support.console import sign_in as sign_in_over_http

    _district(live_console, sis_sandbox)
    rt = live_console.runtime
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    # another server: the secret is given again, as it must be for the token request to go
    change_connection(
        live_console, base_url=f"http://127.0.0.1:{closed}", client_secret=CLIENT_SECRET
    )
    sis.add_connection(
        rt.uow,
        rt.clock,
        tenant_id=T,
        destination_id="files",
        name="CSV SIS",
        base_url=None,
        file_based=True,
    )
    map_to_class(rt.uow, tenant_id=T, destination_id="files", course_id=COURSE, class_id="cls-9")
    with httpx.Client(base_url=live_console.base_url, timeout=30.0, follow_redirects=True) as admin:
        sign_in_over_http(admin, *ADMIN)
        down = admin.get(f"/console/sis/{DEST}/courses/{COURSE}")
        assert down.status_code == 200
        assert "Springfield SIS could not be asked" in down.text
        assert "Quiz 1" in down.text and "Students: 2 of 3 mapped" in down.text
        checked = admin.post(f"/console/sis/{DEST}/check", data={"csrf": form_token(down.text)})
        assert checked.status_code == 200 and "Springfield SIS" in checked.text
        assert "Everything works." not in checked.text

        page = f"/console/sis/files/courses/{COURSE}"
        files = admin.get(page)
        assert files.status_code == 200 and "could not be asked" not in files.text
        assert 'name="category_id" aria-label="SIS category sourcedId for Quizzes"' in files.text
        token = form_token(files.text)
        aligned = admin.post(
            f"{page}/align", data={"csrf": token, "group": "Quizzes", "category_id": "cat-quiz"}
        )
        assert aligned.status_code == 200  # followed to the page
        tick = admin.post(f"{page}/activities/quiz1/switch", data={"csrf": token, "sync": "on"})
        assert tick.status_code == 200 and "Quiz 1 syncs to the SIS" in tick.text
        posted = admin.post(
            f"{page}/post", data={"csrf": token, "activity_ids": ["quiz1"], "confirm": "yes"}
        )
        assert posted.status_code == 200 and "Grade Sync" in posted.text
        assert str(posted.url).startswith(f"{live_console.base_url}{page}/runs/")
    with rt.uow() as uow:
        dest = uow.destinations.get(T, "files")
    assert dest is not None and dest.config["category_map"] == {"Quizzes": "cat-quiz"}
