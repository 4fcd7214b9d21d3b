"""LTI Dynamic Registration on the platform side: the configuration names the endpoint; a
registration needs the one-time token and every required field, refused by name."""

from __future__ import annotations

from typing import Any

import httpx

from gradesync.sandbox.config import AGS_SCORE, NRPS_SCOPE
from gradesync.sandbox.testing import RunningSandbox

TOOL = "https://purl.imsglobal.org/spec/lti-tool-configuration"


def _registration(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "application_type": "web",
        "response_types": ["id_token"],
        "grant_types": ["implicit", "client_credentials"],
        "initiate_login_uri": "https://tool.example/login",
        "redirect_uris": ["https://tool.example/launch"],
        "client_name": "A tool",
        "jwks_uri": "https://tool.example/jwks.json",
        "token_endpoint_auth_method": "private_key_jwt",
        "scope": f"{AGS_SCORE} {NRPS_SCOPE}",
        TOOL: {
            "domain": "tool.example",
            "target_link_uri": "https://tool.example/launch",
            "claims": ["iss", "sub"],
            "messages": [{"type": "LtiDeepLinkingRequest"}],
        },
    }
    body.update(changes)
    return body


def test_registration_is_strict_and_one_time(sandbox: RunningSandbox, http: httpx.Client) -> None:
    config = http.get("/.well-known/openid-configuration").json()
    endpoint = config["registration_endpoint"]
    assert config["https://purl.imsglobal.org/spec/lti-platform-configuration"][
        "messages_supported"
    ]
    token = sandbox.admin.registration_token()["registration_token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert http.post(endpoint, json=_registration()).status_code == 401
    bad = http.post(
        endpoint,
        json=_registration(response_types=["code"], jwks_uri="nope", scope="made-up"),
        headers=auth,
    )
    assert bad.status_code == 400
    words = bad.json()["error_description"]
    for field in ("response_types", "jwks_uri", "scope"):
        assert field in words
    good = http.post(endpoint, json=_registration(), headers=auth)
    assert good.status_code == 200, good.text
    answer = good.json()
    tool = sandbox.state.tools[answer["client_id"]]
    assert answer[TOOL]["deployment_id"] == tool.deployment_id
    assert tool.scopes == [AGS_SCORE, NRPS_SCOPE]
    assert tool.deep_link_url == "https://tool.example/launch"
    assert http.post(endpoint, json=_registration(), headers=auth).status_code == 401  # used
