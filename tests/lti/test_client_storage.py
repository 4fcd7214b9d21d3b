"""The login proved through the platform's client-side storage (`lti_storage_target`), over
real HTTP against the sandbox LMS: what the tool answers at each step, and what it refuses.
(The same in Chromium, with the sandbox's storage frame: tests/e2e/test_lti_client_storage.py.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from gradesync.adapters.db.database import Database
from gradesync.config import Settings
from gradesync.lti.claims import CUSTOM_ACTIVITY, CUSTOM_COURSE
from gradesync.runtime import Runtime
from gradesync.sandbox.testing import RunningSandbox
from gradesync.testing import TEST_SECRET
from gradesync.web.app import create_app
from tests.lti.conftest import Gradesync, add_course, connect, parse_form, unique

_DATA = re.compile(r"<script type='application/json' id='lti-storage'>(.*?)</script>")


def _data(page: str) -> dict[str, Any]:
    found = _DATA.search(page)
    assert found is not None, page[:500]
    return dict(json.loads(found.group(1)))


@dataclass
class Course:
    login_url: str
    tenant_id: str
    course: str
    teacher: str


def _teacher_course(lms: RunningSandbox, gs: Gradesync) -> Course:
    s = connect(lms, gs)
    course = unique("course-")
    add_course(gs.db, s.tenant_id, course, ("hw1", "Homework 1", 10.0))
    teacher = unique("teacher-")
    lms.admin.add_user(sub=teacher, name="Grace Hopper", email=f"{teacher}@example.edu")
    ctx = unique("ctx-")
    lms.admin.add_course(id=ctx, title="LMS course", learners=[], instructors=[teacher])
    link = unique("rl-")
    lms.admin.add_resource_link(
        ctx,
        id=link,
        title="hw1",
        client_id=s.client_id,
        custom={CUSTOM_COURSE: course, CUSTOM_ACTIVITY: "hw1"},
    )
    started = lms.admin.start_launch(
        client_id=s.client_id, user=teacher, course=ctx, resource_link_id=link
    )
    url = started["url"] + "&" + urlencode({"lti_storage_target": "lti_storage_frame"})
    return Course(url, s.tenant_id, course, teacher)


def _storage_page(http: httpx.Client, login_url: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """Login (the page that stores the state), the platform, the launch without the state
    cookie: the page that reads it back. Returns its form and its script's data."""
    login = http.get(login_url)
    assert login.status_code == 200, login.text
    stored = _data(login.text)
    auth = http.get(stored["redirect"])
    assert auth.status_code == 200, auth.text
    action, fields = parse_form(auth.text)
    http.cookies.clear()  # a frame that keeps no third-party cookies
    page = http.post(action, data=fields)
    assert page.status_code == 200, page.text
    assert "lti.get_data" in page.text
    action, form = parse_form(page.text)
    read = _data(page.text)
    assert read["state"] == stored["state"][0] and read["nonce"] == stored["nonce"][0]
    return action, form, read


def test_a_login_offering_storage_stores_the_state_there_and_still_sets_the_cookie(
    lms: RunningSandbox, gradesync_lite: Gradesync
) -> None:
    c = _teacher_course(lms, gradesync_lite)
    with httpx.Client(timeout=10.0) as http:
        login = http.get(c.login_url)
    assert login.status_code == 200, login.text
    assert "gradesync_lti_state=" in login.headers["set-cookie"]  # still the first choice
    data = _data(login.text)
    assert data["target"] == "lti_storage_frame"
    assert data["origin"] == lms.base_url  # the platform's OIDC auth origin, nothing else
    assert data["redirect"].startswith(lms.admin.config()["authorization_url"] + "?")
    state_key, state = data["state"]
    nonce_key, nonce = data["nonce"]
    assert state_key == f"state_{state}" and nonce_key == f"nonce_{nonce}"
    query = parse_qs(urlsplit(data["redirect"]).query)
    assert query["state"] == [state] and query["nonce"] == [nonce]
    assert "lti.put_data" in login.text


def test_a_storage_target_that_is_not_a_frame_name_is_refused(
    lms: RunningSandbox, gradesync_lite: Gradesync
) -> None:
    c = _teacher_course(lms, gradesync_lite)
    url = c.login_url.replace("lti_storage_target=lti_storage_frame", "lti_storage_target=%27%3E")
    with httpx.Client(timeout=10.0) as http:
        resp = http.get(url, headers={"Accept": "application/json"})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "bad_parameter"
    assert "lti_storage_target" in resp.json()["message"]


def test_the_storage_proof_is_taken_only_from_gradesyncs_page_and_only_with_the_logins_values(
    lms: RunningSandbox, gradesync_lite: Gradesync
) -> None:
    gs = gradesync_lite
    c = _teacher_course(lms, gs)
    with httpx.Client(timeout=10.0) as http:
        action, form, read = _storage_page(http, c.login_url)
        state = read["state"].removeprefix("state_")
        nonce = read["nonce"].removeprefix("nonce_")
        proof = {**form, "lti_storage_state": state, "lti_storage_nonce": nonce}

        # a cross-site form posting the right values: not gradesync's page
        forged = http.post(action, data=proof, headers={"Origin": "http://evil.example"})
        assert forged.status_code == 403 and "storage_origin" in forged.text
        no_origin = http.post(action, data=proof)
        assert no_origin.status_code == 403 and "storage_origin" in no_origin.text

        # gradesync's page, but the platform's frame answered another value
        own = {"Origin": gs.base_url}
        wrong = http.post(action, data={**proof, "lti_storage_state": state + "x"}, headers=own)
        assert wrong.status_code == 401 and "storage_mismatch" in wrong.text
        wrong = http.post(action, data={**proof, "lti_storage_nonce": "other"}, headers=own)
        assert wrong.status_code == 401 and "storage_mismatch" in wrong.text
        platform_id = _platform(gs, c.tenant_id)
        with gs.db.uow() as uow:  # nothing of the launch was kept
            assert uow.launches.summary(c.tenant_id, platform_id)[0] == 0

        # the right values from gradesync's page: proved (on http no framed session)
        done = http.post(action, data=proof, headers={**own, "Accept": "application/json"})
        assert done.status_code == 200, done.text
        assert done.json()["login_proof"] == "storage"
        # single use
        again = http.post(action, data=proof, headers=own)
        assert again.status_code == 401 and "nonce_replayed" in again.text
    codes = [r.code for r in gs.rejections(c.tenant_id)]
    assert codes.count("storage_origin") == 2 and codes.count("storage_mismatch") == 2


def _platform(gs: Gradesync, tenant_id: str) -> str:
    with gs.db.uow() as uow:
        return next(d.id for d in uow.destinations.all(tenant_id))


def test_a_frame_that_did_not_answer_leaves_the_launch_unproved(
    lms: RunningSandbox, gradesync_lite: Gradesync
) -> None:
    """No answer from the platform's frame: the launch counts, no console session."""
    c = _teacher_course(lms, gradesync_lite)
    with httpx.Client(timeout=10.0) as http:
        action, form, _ = _storage_page(http, c.login_url)
        resp = http.post(action, data=form, headers={"Origin": gradesync_lite.base_url})
    assert resp.status_code == 200, resp.text
    assert "Open gradesync in a new window" in resp.text
    assert "gradesync_session" not in resp.headers.get("set-cookie", "")


@pytest.fixture
def https_tool(sqlite_db: Database, tmp_path: Path) -> Iterator[tuple[Gradesync, TestClient]]:
    """gradesync whose base URL is https (in process: the browser side is a test client)."""
    base = "https://gradesync.test"
    settings = Settings(
        database_url=sqlite_db.url, secret_key=TEST_SECRET, data_dir=tmp_path, base_url=base
    )
    runtime = Runtime(settings=settings, db=sqlite_db)
    with TestClient(create_app(runtime), base_url=base) as client:
        yield Gradesync(base, sqlite_db, runtime), client


def test_over_https_a_teacher_proved_through_storage_gets_a_partitioned_session_in_the_frame(
    lms: RunningSandbox, https_tool: tuple[Gradesync, TestClient]
) -> None:
    gs, client = https_tool
    c = _teacher_course(lms, gs)
    login = client.get(c.login_url.removeprefix(gs.base_url))
    assert login.status_code == 200, login.text
    cookie = login.headers["set-cookie"].lower()
    assert "samesite=none" in cookie and "secure" in cookie and "partitioned" in cookie
    stored = _data(login.text)
    with httpx.Client(timeout=10.0) as platform:
        auth = platform.get(stored["redirect"])
    action, fields = parse_form(auth.text)
    client.cookies.clear()
    page = client.post(action, data=fields)
    assert page.status_code == 200 and "lti.get_data" in page.text
    action, form = parse_form(page.text)
    proof = {
        **form,
        "lti_storage_state": stored["state"][1],
        "lti_storage_nonce": stored["nonce"][1],
    }
    done = client.post(action, data=proof, headers={"Origin": gs.base_url}, follow_redirects=False)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == f"{gs.base_url}/console/courses/{c.course}"
    session = done.headers["set-cookie"].lower()
    assert session.startswith("gradesync_session=")
    assert "samesite=none" in session and "secure" in session and "partitioned" in session
    assert "samesite=lax" not in session
    course_page = client.get(f"/console/courses/{c.course}", follow_redirects=False)
    assert course_page.status_code == 200 and "Homework 1" in course_page.text

    # signing out in the frame ends that partitioned cookie (a Lax one would be ignored there)
    csrf = re.search(r"name=['\"]csrf['\"] value=['\"]([^'\"]+)", course_page.text)
    assert csrf is not None
    out = client.post("/console/logout", data={"csrf": csrf.group(1)}, follow_redirects=False)
    assert out.status_code in (302, 303), out.text
    ended = out.headers["set-cookie"].lower()
    assert ended.startswith("gradesync_session=null") and "partitioned" in ended
    again = client.get(f"/console/courses/{c.course}", follow_redirects=False)
    assert again.status_code == 303 and "/console/login" in again.headers["location"]
