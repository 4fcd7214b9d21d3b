"""A SIS's remedy in its reader's words: it is held as a code and the ids it is about
(`domain.remedies.Remedy`), and each reader's words are made from it. The command line names
its commands; a reader of the API reads its routes and a console administrator its pages,
never a command they cannot run."""

from __future__ import annotations

import re
from dataclasses import replace
from html import unescape

from gradesync.adapters.destinations.oneroster_rules import mapped_class
from gradesync.domain import remedies
from gradesync.domain.ledger import stored
from gradesync.domain.model import Course, CourseLink
from gradesync.domain.remedies import Reader, for_reader, names_command
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services import sis as sis_service
from gradesync.services.delivery.failures import reason_of
from gradesync.services.destination import RemoteFailure
from tests.support.api import ApiEnv, Caller
from tests.support.console import form_token

from .conftest import CLIENT_ID, sis_destination
from .facts import ADA, ALGEBRA, QUIZ_1


def _said(html: str) -> str:
    return " ".join(unescape(html).split())


def _flash(html: str) -> str:
    """The page's error message, as said."""
    found = re.search(r'<p class="flash flash-error" role="alert">(.*?)</p>', html, re.S)
    assert found is not None, html
    return _said(found.group(1))


def test_a_file_based_sis_check_gives_each_step_a_code_and_the_apis_words(api: ApiEnv) -> None:
    """A file-based SIS's check (`POST /destinations/{id}/check`: its SIS route has no API to
    ask) answered its steps as the adapter wrote them for the command line (`gradesync sis
    export-csv`, `gradesync sis categories ... --align`), with no code to tell a program
    what each found; the console's Check showed the same commands."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    put = admin.put(
        "/sis/connections/files",
        json={"file_based": True, "profile": {"category_match": "name"}},
    )
    assert put.status_code == 200, put.text
    steps = admin.post("/destinations/files/check", json={}).json()["steps"][:2]
    assert [(s["name"], s["passed"], s["code"]) for s in steps] == [
        ("file-based SIS", True, "file_based"),
        ("categories", False, "groups_unaligned"),
    ]
    for s in steps:
        assert not names_command(s["evidence"]) and not names_command(s["remedy"] or ""), s
    assert (
        "`PUT /api/v1/sis/connections/files/alignments/GROUP` with its `category_id`"
        in (steps[1]["remedy"])
    )
    api.console_admin("t1")
    page = api.client.get("/console/destinations")
    checked = api.client.post(
        "/console/destinations/files/check", data={"csrf": form_token(page.text)}
    )
    said = _said(checked.text)
    assert "Category alignment on a course's SIS passback page" in said, said
    assert not names_command(said), said
    # aligned by id, nothing to do: the step says so, and its code too
    admin.put("/sis/connections/files", json={"profile": {"category_match": "id"}})
    steps = admin.post("/destinations/files/check", json={}).json()["steps"]
    assert [(s["passed"], s["code"], s["remedy"]) for s in steps][1] == (True, "groups_named", None)


def test_a_refused_client_is_said_in_each_readers_words(api: ApiEnv, sis: RunningSandbox) -> None:
    """A SIS refusing gradesync's client: its check over the API named `gradesync sis add`
    (rewording only what it recognised), and the console showed the SIS's refusal as the
    adapter wrote it for the command line (`sis_words`)."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    body = {"base_url": sis.base_url, "client_id": CLIENT_ID, "client_secret": "not-the-secret"}
    assert admin.put("/sis/connections/sis", json=body).status_code == 200
    assert admin.post("/ingest", json={"courses": [ALGEBRA], "activities": [QUIZ_1]}).is_success
    steps = admin.post("/sis/connections/sis/check").json()
    assert [(s["name"], s["passed"], s["code"]) for s in steps] == [
        ("token", False, "bad_credentials")
    ]
    assert steps[0]["remedy"] == (
        "Check the SIS client id and secret (`PUT /api/v1/sis/connections/sis` with "
        "`client_id` and `client_secret`), then check the connection "
        "(`POST /api/v1/sis/connections/sis/check`)."
    )


def test_the_console_shows_a_sis_refusal_in_its_own_words(api: ApiEnv, sis: RunningSandbox) -> None:
    """The console showed a SIS's refusal with its remedy as the adapter wrote it for the
    command line (`sis_words`): `gradesync sis add ... --client-secret` to an administrator
    who has the connection's settings page."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    body = {"base_url": sis.base_url, "client_id": CLIENT_ID, "client_secret": "s3cret-value"}
    assert admin.put("/sis/connections/sis", json=body).status_code == 200
    assert admin.post("/ingest", json={"courses": [ALGEBRA], "activities": [QUIZ_1]}).is_success
    # the secret gone (a connection saved before one was required): refused before asking
    with api.db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
        assert dest is not None
        uow.destinations.upsert(replace(dest, secret={}), api.runtime.clock.now())
        uow.commit()
    api.console_admin("t1")
    sis_service.map_class(
        api.db.uow,
        tenant_id="t1",
        destination_id="sis",
        course_id="c1",
        class_id="cls-1",
        school_id="sch-1",
    )
    page = api.client.get("/console/sis/sis/courses/c1")
    assert page.status_code == 200
    said = _flash(page.text)
    assert said.startswith("sis could not be asked: The SIS connection has no client"), said
    assert not names_command(said), said
    assert said.endswith(
        "Check the SIS client id and secret on the connection's settings page "
        "(/console/sis/sis/edit), then check it again (Check connection on the SIS page)."
    )
    checked = api.client.post("/console/sis/sis/check", data={"csrf": form_token(page.text)})
    found = re.search(
        r'<section class="card" aria-labelledby="check-h".*?</section>', checked.text, re.S
    )
    assert found is not None, checked.text
    said = _said(found.group(0))
    assert "Failed: token" in said and not names_command(said), said
    assert "settings page (/console/sis/sis/edit)" in said


def test_a_class_without_its_school_is_mapped_again_where_it_is_read() -> None:
    """A class mapped without its school read "Map the class again with --school." to every
    reader: an option of a command only the command line has."""
    dest = sis_destination("https://sis.example.org")
    course = Course("t1", "c 1", "Algebra")
    link = CourseLink("t1", dest.id, course.id, "cls-1", {})
    try:
        mapped_class(dest, course, link)
        raise AssertionError("a class without a school is refused")
    except RemoteFailure as refused:
        failure = refused
    reason = reason_of(failure)
    assert reason.code == "class_not_mapped"
    held = stored(reason)  # as a ledger row keeps it
    api = for_reader(reason.code, held, Reader.API, dest.id, course_id=course.id)
    console = for_reader(reason.code, held, Reader.CONSOLE, dest.id, course_id=course.id)
    instructor = remedies.for_instructor(reason.code, held)
    for text in (api, console, instructor):
        assert text.startswith("The class 'cls-1' has no school sourcedId"), text
        assert "--school" not in text and not names_command(text), text
    assert f"`PUT /api/v1/sis/connections/{dest.id}/classes/c%201`" in api and "school_id" in api
    assert f"/console/sis/{dest.id}/courses/c%201" in console
    # the command line names its command, the class and course filled in
    cli = for_reader(reason.code, held, Reader.CLI, dest.id, course_id=course.id)
    assert cli.endswith(
        f"Map the class again with its school: gradesync sis map-class {dest.id} 'c 1' cls-1 "
        "--school SCHOOL_SOURCEDID"
    )
    # the refusal as it happens, over the API and in the console: made from its code
    assert "`school_id`" in (failure.remedy_for(Reader.API) or "")
    assert "SIS school sourcedId" in (failure.remedy_for(Reader.CONSOLE) or "")


def test_a_refused_selection_names_the_course_it_is_about(api: ApiEnv, sis: RunningSandbox) -> None:
    """Ticking an activity whose course is not mapped was refused with the API's class route
    for `COURSE_ID`: the refusal's words were reworded without the course."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    body = {"base_url": sis.base_url, "client_id": CLIENT_ID, "client_secret": "s3cret-value"}
    assert admin.put("/sis/connections/sis", json=body).status_code == 200
    roster = {"courses": [ALGEBRA], "activities": [QUIZ_1], "people": [ADA]}
    assert admin.post("/ingest", json=roster).is_success
    r = admin.put("/sis/connections/sis/selection", json={"activity_ids": ["q1"]})
    assert r.status_code == 422, r.text
    (problem,) = [p for p in r.json()["detail"] if p["rule"] == "class_not_mapped"]
    assert problem["field"] == "activities[q1].course_id"
    assert "COURSE_ID" not in problem["msg"], problem
    assert "`PUT /api/v1/sis/connections/sis/classes/c1` with its `class_id`" in problem["msg"]
    assert not names_command(problem["msg"])
    # the same check, asked for, says the same
    (check,) = admin.get("/sis/connections/sis/validation", params={"course_id": "c1"}).json()
    assert [p["msg"] for p in check["problems"]] == [problem["msg"]]
    # the console's administrator, refused the same, reads the course's page
    api.console_admin("t1")
    page = api.client.get("/console/sis/sis/courses/c1")
    ticked = api.client.post(
        "/console/sis/sis/courses/c1/activities/q1/switch",
        data={"csrf": form_token(page.text), "sync": "on"},
    )
    said = _flash(ticked.text)
    assert said.startswith("Quiz 1 cannot sync to the SIS: Class not mapped:"), said
    assert "COURSE_ID" not in said and not names_command(said)
    assert "/console/sis/sis/courses/c1, Class and students" in said, said


def test_a_sis_diagnosis_names_the_apis_route_for_a_refused_client(
    api: ApiEnv, sis: RunningSandbox
) -> None:
    """The destination's diagnosis, asked live, repeats its check's steps: a SIS refusing
    gradesync's client read `gradesync sis add ... --client-secret` over the API."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    body = {"base_url": sis.base_url, "client_id": CLIENT_ID, "client_secret": "s3cret-value"}
    assert admin.put("/sis/connections/sis", json=body).status_code == 200
    with api.db.uow() as uow:  # no secret: refused before the SIS is asked
        dest = uow.destinations.get("t1", "sis")
        assert dest is not None
        uow.destinations.upsert(replace(dest, secret={}), api.runtime.clock.now())
        uow.commit()
    r = admin.get("/destinations/sis/diagnosis", params={"live": "true"})
    assert r.status_code == 200, r.text
    (token,) = [c for c in r.json()["checks"] if c["code"].startswith("probe_") and not c["passed"]]
    assert token["remedy"] == (
        "Check the SIS client id and secret (`PUT /api/v1/sis/connections/sis` with "
        "`client_id` and `client_secret`), then check the connection "
        "(`POST /api/v1/sis/connections/sis/check`)."
    )
