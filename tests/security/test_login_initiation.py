"""A login initiation names one registration or is refused: gradesync never guesses between
registrations that share an issuer (in one tenant or across tenants). `client_id` names one;
without it, `lti_deployment_id` may, when exactly one registration holds that deployment."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from gradesync.services.outbound import FixedResolver
from tests.support.api import ApiEnv, Caller

ISSUER = "https://lms.example.edu"


def _registration(ident: str, client_id: str, deployments: list[str]) -> dict[str, Any]:
    return {
        "id": ident,
        "issuer": ISSUER,
        "client_id": client_id,
        "deployment_ids": deployments,
        "auth_login_url": f"https://lms.example.edu/{ident}/authorize",
        "auth_token_url": "https://lms.example.edu/token",
        "key_set_url": "https://lms.example.edu/jwks",
    }


@pytest.fixture
def env(api: ApiEnv) -> ApiEnv:
    # the registrations' host resolves from a table (a public address): no DNS query
    api.runtime.outbound = dataclasses.replace(
        api.runtime.outbound, resolver=FixedResolver({"lms.example.edu": ["93.184.216.34"]})
    )
    a = Caller(api.client, api.tenant("school-a", "admin"))
    # one LMS application split into two registrations of one tenant (different client ids);
    # deployment "shared" is in both
    for body in (
        _registration("law", "client-law", ["d-law", "shared"]),
        _registration("med", "client-med", ["d-med", "shared"]),
    ):
        assert a.post("/platforms", json=body).status_code == 201, body
    return api


def _login(env: ApiEnv, **hints: str) -> tuple[int, str, dict[str, Any]]:
    params = {
        "iss": ISSUER,
        "login_hint": "u1",
        "target_link_uri": env.runtime.settings.base_url.rstrip("/") + "/lti/launch",
        **hints,
    }
    r = env.client.get(
        "/lti/login",
        params=params,
        headers={"Accept": "application/json"},
        follow_redirects=False,
    )
    if r.status_code == 302:
        return r.status_code, r.headers["location"], {}
    return r.status_code, "", r.json()


@pytest.mark.parametrize(
    ("hints", "registration", "refusal"),
    [
        ({}, None, "ambiguous_platform"),
        ({"lti_deployment_id": "shared"}, None, "ambiguous_platform"),
        ({"lti_deployment_id": "d-unknown"}, None, "ambiguous_platform"),
        ({"lti_deployment_id": "d-med"}, "med", None),
        ({"client_id": "client-law"}, "law", None),
        ({"client_id": "client-law", "lti_deployment_id": "shared"}, "law", None),
        ({"client_id": "client-law", "lti_deployment_id": "d-med"}, None, "unknown_deployment"),
        ({"client_id": "client-other"}, None, "unknown_platform"),
    ],
)
def test_a_login_names_one_registration_or_is_refused(
    env: ApiEnv, hints: dict[str, str], registration: str | None, refusal: str | None
) -> None:
    status, location, body = _login(env, **hints)
    if refusal is not None:
        assert status in (400, 403), (status, body)
        assert body["error"] == refusal, body
        assert "client_id" in body["message"] or "lti_deployment_id" in body["message"]
        return
    assert status == 302, (status, body)
    url = urlsplit(location)
    assert url.path == f"/{registration}/authorize"
    query = parse_qs(url.query)
    expected_client = {"law": "client-law", "med": "client-med"}[str(registration)]
    assert query["client_id"] == [expected_client]


def test_another_tenants_registration_of_the_issuer_is_never_named(env: ApiEnv) -> None:
    b = Caller(env.client, env.tenant("school-b", "admin"))
    r = b.post("/platforms", json=_registration("lms-b", "client-b", ["d-b"]))
    assert r.status_code == 201, r.text
    status, _, body = _login(env)
    assert (status, body["error"]) == (400, "ambiguous_platform")
    assert "school-a" not in body["message"] and "school-b" not in body["message"]
    status, location, _ = _login(env, client_id="client-b")
    assert status == 302 and urlsplit(location).path == "/lms-b/authorize"
