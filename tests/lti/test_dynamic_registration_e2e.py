"""LTI Dynamic Registration end to end over real HTTP: the LMS opens gradesync's one
registration URL, a gradesync admin signs in and confirms, gradesync registers itself with
the sandbox LMS (which checks every field) and stores the platform; then launches work."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import httpx
import pytest

from gradesync.domain.model import UserRole
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services.accounts import create_user
from gradesync.testing import unique
from tests.lti.conftest import Browser
from tests.support.console import form_token
from tests.support.served import Served

PASSWORD = "correct horse battery"
NRPS = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"


def _admin(served: Served) -> str:
    name = unique("admin-")
    create_user(
        served.runtime.db.uow,
        served.runtime.clock,
        tenant_id=served.tenant,
        username=name,
        password=PASSWORD,
        role=UserRole.ADMIN,
    )
    return name


def _confirmation(http: httpx.Client, url: str, admin: str) -> dict[str, str]:
    """Open the registration URL as the LMS does; sign in; the confirmation form's fields."""
    first = http.get(url)
    assert first.status_code == 303 and "/console/login" in first.headers["location"]
    login = http.get(first.headers["location"])
    next_url = re.search(r'name="next" value="([^"]+)"', login.text)
    assert next_url, login.text
    signed = http.post(
        "/console/login",
        data={
            "username": admin,
            "password": PASSWORD,
            "next": next_url.group(1).replace("&amp;", "&"),
            "csrf": form_token(login.text),
        },
    )
    assert signed.status_code == 303
    page = http.get(signed.headers["location"])
    assert page.status_code == 200, page.text
    assert "Register gradesync in this LMS?" in page.text
    return dict(re.findall(r'name="(\w+)" value="([^"]*)"', page.text))


def test_one_url_registers_gradesync_and_launches_work(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    admin = _admin(served)
    offer = lms.admin.registration_token()
    url = "/console/lti/register?" + urlencode(offer)
    with httpx.Client(base_url=served.base_url, timeout=10) as http:
        form = _confirmation(http, url, admin)
        assert form["registration_token"] == offer["registration_token"]
        # a registration gradesync would refuse is refused before the LMS is asked: its
        # one-time token is still good for the corrected one
        before = len(lms.sandbox.registrations)
        bad = http.post("/console/lti/register", data={**form, "platform_id": "not an id!"})
        assert bad.status_code == 400 and "id" in bad.text
        assert len(lms.sandbox.registrations) == before
        form["platform_id"] = unique("lms-")
        done = http.post("/console/lti/register", data=form)
        assert done.status_code == 200, done.text
        assert "org.imsglobal.lti.close" in done.text

        # the LMS checked and stored the tool's registration
        registered = lms.sandbox.registrations[-1]
        assert registered["jwks_uri"] == served.base_url + "/lti/jwks.json"
        assert NRPS in str(registered["scope"]).split()
        (tool,) = [t for t in lms.state.tools.values() if t.jwks_url == registered["jwks_uri"]]
        # gradesync stored the platform with the client id and deployment the LMS gave
        platforms = served.ok("GET", "/platforms")
        (platform,) = [p for p in platforms if p["id"] == form["platform_id"]]
        assert platform["client_id"] == tool.client_id
        assert platform["deployment_ids"] == [tool.deployment_id]

        # the console shows the one URL to paste; the manual Canvas JSON asks for the roster too
        page = http.get("/console/destinations").text
        assert served.base_url + "/console/lti/register" in page
        # the URL the console gives a Canvas admin serves Canvas's own JSON, not one nested
        (canvas_url,) = re.findall(
            r'Canvas: paste this URL\)</dt><dd><input readonly value="([^"]+)"', page
        )
        canvas = http.get(canvas_url.removeprefix(served.base_url)).json()
        assert NRPS in canvas["scopes"] and canvas["target_link_uri"].startswith(served.base_url)

        # the token was for one registration only: a second try is refused, by the LMS
        again = http.post("/console/lti/register", data={**form, "platform_id": unique("lms-")})
        assert again.status_code == 400
        assert "registration token" in again.text

    teacher, ctx = unique("teacher-"), unique("ctx-")
    lms.admin.add_course(id=ctx, instructors=[teacher])
    picker = browser.launch(
        lms,
        client_id=tool.client_id,
        user=teacher,
        course=ctx,
        message_type="LtiDeepLinkingRequest",
    )
    assert picker.status_code == 200, picker.text
    assert picker.json()["platform"] == form["platform_id"]


@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("/lti/jwks.json", "issuer: required"),  # reachable, but not a configuration
        ("http://169.254.169.254/latest/meta-data", "openid_configuration:"),  # never asked
    ],
)
def test_a_bad_or_forbidden_configuration_is_refused(served: Served, where: str, said: str) -> None:
    admin = _admin(served)
    bogus = served.base_url + where if where.startswith("/") else where
    url = "/console/lti/register?" + urlencode({"openid_configuration": bogus})
    with httpx.Client(base_url=served.base_url, timeout=10) as http:
        first = http.get(url)
        login = http.get(first.headers["location"])
        next_url = re.search(r'name="next" value="([^"]+)"', login.text)
        assert next_url
        signed = http.post(
            "/console/login",
            data={
                "username": admin,
                "password": PASSWORD,
                "next": next_url.group(1).replace("&amp;", "&"),
                "csrf": form_token(login.text),
            },
        )
        page = http.get(signed.headers["location"])
        assert page.status_code == 400
        assert said in page.text
        assert "could not be read" not in page.text  # refused before any connection
