"""NRPS context memberships: as strict as AGS (scope, media type, paging), with members who
left listed by status and the differences since an earlier read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gradesync.sandbox.config import AGS_SCOPES, NRPS_SCOPE
from gradesync.sandbox.lti13 import id_token_claims
from gradesync.sandbox.testing import RunningSandbox

from .conftest import CLIENT_ID, SandboxFactory, ToolKey, base_seed, get_token

MEMBERSHIP_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"


@pytest.fixture
def roster_lms(make_sandbox: SandboxFactory, tool_key: ToolKey) -> Iterator[RunningSandbox]:
    seed = base_seed(tool_key)
    seed["tools"][0]["scopes"] = [*AGS_SCOPES, NRPS_SCOPE]
    with make_sandbox(seed=seed, page_size=2) as running:
        yield running


def _links(response: httpx.Response) -> dict[str, str]:
    out = {}
    for part in response.headers["link"].split(","):
        url, _, rel = part.partition(";")
        out[rel.split("=")[1].strip('" ')] = url.strip(" <>")
    return out


def _read_all(http: httpx.Client, token: str, url: str) -> tuple[list[dict[str, Any]], str]:
    members: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {token}", "Accept": MEMBERSHIP_TYPE}
    next_url: str | None = url
    differences = ""
    while next_url:
        response = http.get(next_url, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith(MEMBERSHIP_TYPE)
        body = response.json()
        assert body["context"]["id"] == "c1"
        members += body["members"]
        links = _links(response)
        next_url, differences = links.get("next"), links["differences"]
    return members, differences


def test_members_paged_then_only_the_differences(
    roster_lms: RunningSandbox, tool_key: ToolKey
) -> None:
    with httpx.Client(base_url=roster_lms.base_url, timeout=10) as http:
        token = get_token(http, roster_lms, tool_key, [NRPS_SCOPE])
        url = roster_lms.base_url + "/api/lti/courses/c1/memberships"
        members, differences = _read_all(http, token, url)
        by_id = {m["user_id"]: m for m in members}
        assert set(by_id) == {"u1", "u2", "t1"}  # three members over two pages
        assert by_id["u1"]["lis_person_sourcedid"] == "s1"
        assert by_id["u1"]["email"] == "ada@example.edu"
        assert by_id["u1"]["status"] == "Active"
        assert by_id["t1"]["roles"] == [
            "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
        ]

        assert _read_all(http, token, differences)[0] == []  # nothing changed since
        roster_lms.admin.unenroll("c1", "u2", status="Inactive")
        changed, _ = _read_all(http, token, differences)
        assert [(m["user_id"], m["status"]) for m in changed] == [("u2", "Inactive")]
        learners, _ = _read_all(http, token, url + "?role=Learner")
        assert {m["user_id"]: m["status"] for m in learners} == {"u1": "Active", "u2": "Inactive"}


def test_strict_like_ags(roster_lms: RunningSandbox, tool_key: ToolKey) -> None:
    url = roster_lms.base_url + "/api/lti/courses/c1/memberships"
    with httpx.Client(base_url=roster_lms.base_url, timeout=10) as http:
        ags_only = get_token(http, roster_lms, tool_key, list(AGS_SCOPES))
        token = get_token(http, roster_lms, tool_key, [NRPS_SCOPE])
        accept = {"Accept": MEMBERSHIP_TYPE}
        assert http.get(url, headers=accept).status_code == 401
        wrong_scope = http.get(url, headers={**accept, "Authorization": f"Bearer {ags_only}"})
        assert wrong_scope.status_code == 403
        auth = {"Authorization": f"Bearer {token}"}
        assert http.get(url, headers={**auth, "Accept": "application/json"}).status_code == 406
        too_many = http.get(url, params={"limit": 0}, headers={**auth, **accept})
        assert too_many.status_code == 400
        assert "limit" in too_many.json()["errors"][0]["message"]
        missing = http.get(url.replace("/c1/", "/nope/"), headers={**auth, **accept})
        assert missing.status_code == 404


def test_launch_carries_the_service_only_when_granted(
    roster_lms: RunningSandbox, sandbox: RunningSandbox
) -> None:
    claim = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
    hint = {
        "course": "c1",
        "user": "u1",
        "message_type": "LtiResourceLinkRequest",
        "resource_link_id": "rl1",
        "target_link_uri": "https://tool.example/launch",
    }
    granted = roster_lms.sandbox
    claims = id_token_claims(granted, None, granted.state.tools[CLIENT_ID], hint, "n")
    assert claims[claim]["context_memberships_url"].endswith("/api/lti/courses/c1/memberships")
    assert claims[claim]["service_versions"] == ["2.0"]
    plain = sandbox.sandbox
    assert claim not in id_token_claims(plain, None, plain.state.tools[CLIENT_ID], hint, "n")
