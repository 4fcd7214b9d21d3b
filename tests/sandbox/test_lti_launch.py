"""OIDC third-party login, id_tokens, and deep linking, driven as a tool would drive them."""

from __future__ import annotations

import re
import time
import uuid
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from jwt import PyJWKClient

from gradesync.sandbox.testing import RunningSandbox

from .conftest import CLIENT_ID, DEPLOYMENT, TOOL_LAUNCH, TOOL_LOGIN, ToolKey

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"
AGS = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"


def _login(http: httpx.Client, **launch: Any) -> dict[str, str]:
    """Start a launch in the browser way and return the params the tool's login URL gets."""
    response = http.get("/lti/launch", params={"client_id": CLIENT_ID, **launch})
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(TOOL_LOGIN + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _auth_params(login: dict[str, str], **override: str) -> dict[str, str]:
    params = {
        "scope": "openid",
        "response_type": "id_token",
        "response_mode": "form_post",
        "prompt": "none",
        "client_id": login["client_id"],
        "redirect_uri": TOOL_LAUNCH,
        "login_hint": login["login_hint"],
        "lti_message_hint": login["lti_message_hint"],
        "state": "st-" + uuid.uuid4().hex,
        "nonce": "n-" + uuid.uuid4().hex,
    }
    params.update(override)
    return params


def _form(html: str) -> dict[str, str]:
    action = re.search(r'<form method="post" action="([^"]+)"', html)
    assert action
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', html))
    return {"action": unescape(action.group(1)), **{k: unescape(v) for k, v in fields.items()}}


def _verify(running: RunningSandbox, token: str) -> dict[str, Any]:
    key = PyJWKClient(running.base_url + "/.well-known/jwks.json").get_signing_key_from_jwt(token)
    return jwt.decode(
        token, key.key, algorithms=["RS256"], audience=CLIENT_ID, issuer=running.base_url
    )


def test_resource_link_launch(sandbox: RunningSandbox, http: httpx.Client) -> None:
    item = sandbox.admin.add_line_item(
        "c1", label="Quiz 1", scoreMaximum=10, resourceLinkId="rl1", client_id=CLIENT_ID
    )
    login = _login(http, user="u1", course="c1", resource_link_id="rl1")
    assert login["iss"] == sandbox.base_url
    assert login["login_hint"] == "u1" and login["lti_deployment_id"] == DEPLOYMENT
    assert login["target_link_uri"] == TOOL_LAUNCH
    params = _auth_params(login)
    response = http.post("/lti/authorize", data=params)
    assert response.status_code == 200
    assert "document.forms[0].submit()" in response.text
    form = _form(response.text)
    assert form["action"] == TOOL_LAUNCH and form["state"] == params["state"]
    claims = _verify(sandbox, form["id_token"])
    assert claims["nonce"] == params["nonce"] and claims["sub"] == "u1"
    assert claims[LTI + "message_type"] == "LtiResourceLinkRequest"
    assert claims[LTI + "deployment_id"] == DEPLOYMENT
    assert claims[LTI + "resource_link"]["id"] == "rl1"
    assert claims[LTI + "context"]["id"] == "c1"
    assert claims[LTI + "roles"] == ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"]
    assert claims[LTI + "lis"]["person_sourcedid"] == "s1"
    endpoint = claims[AGS]
    assert endpoint["lineitems"] == sandbox.base_url + "/api/lti/courses/c1/line_items"
    assert endpoint["lineitem"] == item["id"]
    assert "https://purl.imsglobal.org/spec/lti-ags/scope/score" in endpoint["scope"]


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"redirect_uri": "https://evil.example/steal"}, "redirect_uri"),
        ({"response_mode": "query"}, "response_mode"),
        ({"scope": "profile"}, "scope"),
        ({"prompt": "login"}, "prompt"),
        ({"nonce": ""}, "nonce"),
        ({"login_hint": "u2"}, "login_hint"),
        ({"lti_message_hint": "forged"}, "lti_message_hint"),
        ({"client_id": "nobody"}, "client_id"),
    ],
)
def test_bad_authorization_requests_are_refused(
    http: httpx.Client, override: dict[str, str], needle: str
) -> None:
    login = _login(http, user="u1", course="c1", resource_link_id="rl1")
    response = http.get("/lti/authorize", params=_auth_params(login, **override))
    assert response.status_code == 400
    assert response.json()["error_description"].startswith(needle)


def test_launch_for_unenrolled_user_is_refused(http: httpx.Client) -> None:
    response = http.get(
        "/lti/launch",
        params={"client_id": CLIENT_ID, "user": "ghost", "course": "c1", "resource_link_id": "rl1"},
    )
    assert response.status_code == 400 and "user" in response.json()["error_description"]


def _deep_link_request(sandbox: RunningSandbox, http: httpx.Client) -> dict[str, Any]:
    started = sandbox.admin.start_launch(
        client_id=CLIENT_ID, user="t1", course="c1", message_type="LtiDeepLinkingRequest"
    )
    login = started["params"]
    assert login["target_link_uri"] == "https://tool.example/lti/deep-link"
    response = http.post("/lti/authorize", data=_auth_params(login))
    claims = _verify(sandbox, _form(response.text)["id_token"])
    assert claims[LTI + "message_type"] == "LtiDeepLinkingRequest"
    return claims


def _response_jwt(
    key: ToolKey, sandbox: RunningSandbox, settings: dict[str, Any], **override: Any
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": CLIENT_ID,
        "aud": sandbox.base_url,
        "iat": now,
        "exp": now + 300,
        "nonce": uuid.uuid4().hex,
        LTI + "message_type": "LtiDeepLinkingResponse",
        LTI + "version": "1.3.0",
        LTI + "deployment_id": DEPLOYMENT,
        DL + "data": settings["data"],
        DL + "content_items": [
            {
                "type": "ltiResourceLink",
                "title": "Chapter 3 quiz",
                "url": "https://tool.example/lti/launch?activity=ch3",
                "lineItem": {
                    "label": "Ch. 3 quiz",
                    "scoreMaximum": 25,
                    "resourceId": "ch3",
                    "tag": "quiz",
                },
            }
        ],
    }
    claims.update(override)
    return key.sign(claims)


def test_deep_linking_creates_graded_links(
    sandbox: RunningSandbox, http: httpx.Client, tool_key: ToolKey
) -> None:
    claims = _deep_link_request(sandbox, http)
    settings = claims[DL + "deep_linking_settings"]
    assert settings["accept_types"] == ["ltiResourceLink"] and settings["accept_multiple"] is True
    assert settings["deep_link_return_url"] == sandbox.base_url + "/lti/deep_links"
    signed = _response_jwt(tool_key, sandbox, settings)
    response = http.post(settings["deep_link_return_url"], data={"JWT": signed})
    assert response.status_code == 200, response.text
    created = response.json()["created"][0]
    course = sandbox.admin.inspect("c1")["lms"]["courses"][0]
    item = next(i for i in course["line_items"] if i["label"] == "Ch. 3 quiz")
    assert item["scoreMaximum"] == 25 and item["resourceId"] == "ch3" and item["tag"] == "quiz"
    assert item["resourceLinkId"] == created["resource_link_id"]
    assert item["client_id"] == CLIENT_ID
    # The same response again is a replay.
    again = http.post(settings["deep_link_return_url"], data={"JWT": signed})
    assert again.status_code == 400 and "nonce" in again.json()["error_description"]


@pytest.mark.parametrize(
    ("override", "status", "needle"),
    [
        ({"aud": "https://other-lms.example"}, 401, "aud"),
        ({"exp": 1000}, 401, "exp"),
        ({LTI + "deployment_id": "other"}, 400, "deployment_id"),
        ({DL + "data": "made-up"}, 400, "data"),
    ],
)
def test_bad_deep_linking_responses_are_refused(
    sandbox: RunningSandbox,
    http: httpx.Client,
    tool_key: ToolKey,
    override: dict[str, Any],
    status: int,
    needle: str,
) -> None:
    settings = _deep_link_request(sandbox, http)[DL + "deep_linking_settings"]
    signed = _response_jwt(tool_key, sandbox, settings, **override)
    response = http.post("/lti/deep_links", data={"JWT": signed})
    assert response.status_code == status
    assert response.json()["error_description"].startswith(needle)


def test_deep_linking_response_signed_by_another_key_is_refused(
    sandbox: RunningSandbox, http: httpx.Client, other_key: ToolKey
) -> None:
    settings = _deep_link_request(sandbox, http)[DL + "deep_linking_settings"]
    response = http.post(
        "/lti/deep_links", data={"JWT": _response_jwt(other_key, sandbox, settings)}
    )
    assert response.status_code == 401
    assert response.json()["error_description"].startswith("signature")
