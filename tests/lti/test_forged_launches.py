"""Forged and broken launches are refused, with the reason recorded; URLs a launch or a
platform response supplies can never point gradesync at another host (SSRF)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gradesync.adapters.destinations.registry import DestinationContext, build_client
from gradesync.domain.model import Course, CourseLink
from gradesync.lti import claims as c
from gradesync.lti import registration as reg
from gradesync.sandbox.testing import RunningSandbox, serve_in_thread
from gradesync.services.destination import FailureClass, RemoteFailure
from gradesync.services.lti import platforms
from tests.lti.conftest import Gradesync, Setup, add_course, add_tenant, connect, unique
from tests.lti.test_ags_sandbox import column


class Forger:
    """Runs a real OIDC login against gradesync, then posts id_tokens we build."""

    def __init__(self, lms: RunningSandbox, gs: Gradesync, s: Setup) -> None:
        self.lms, self.gs, self.s = lms, gs, s
        self.http = httpx.Client(timeout=10.0, follow_redirects=False)

    def login(self) -> tuple[str, str]:
        resp = self.http.get(
            self.gs.base_url + "/lti/login",
            params={
                "iss": self.lms.base_url,
                "login_hint": "u",
                "target_link_uri": self.gs.base_url + "/lti/launch",
                "client_id": self.s.client_id,
                "lti_deployment_id": self.s.deployment_id,
            },
        )
        assert resp.status_code == 302, resp.text
        query = parse_qs(urlsplit(resp.headers["location"]).query)
        assert query["redirect_uri"] == [self.gs.base_url + "/lti/launch"]
        return query["state"][0], query["nonce"][0]

    def claims(self, nonce: str, **over: Any) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.lms.base_url,
            "aud": self.s.client_id,
            "azp": self.s.client_id,
            "sub": "learner-x",
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            c.MESSAGE_TYPE: c.RESOURCE_LINK_REQUEST,
            c.VERSION: "1.3.0",
            c.DEPLOYMENT_ID: self.s.deployment_id,
            c.ROLES: ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"],
            c.CONTEXT: {"id": "ctx-forged", "title": "Forged"},
            c.RESOURCE_LINK: {"id": "rl-1"},
            c.CUSTOM: {c.CUSTOM_COURSE: "course-f"},
            c.TARGET_LINK_URI: self.gs.base_url + "/lti/launch",
        }
        base.update(over)
        return {k: v for k, v in base.items() if v is not None}

    def sign(self, claims: dict[str, Any]) -> str:
        return self.lms.sandbox.platform_key.sign(claims)

    def post(self, id_token: str, state: str) -> httpx.Response:
        return self.http.post(
            self.gs.base_url + "/lti/launch",
            data={"id_token": id_token, "state": state},
            headers={"Accept": "application/json"},
        )


@pytest.fixture
def forger(lms: RunningSandbox, gradesync_lite: Gradesync) -> Iterator[Forger]:
    s = connect(lms, gradesync_lite)
    add_course(gradesync_lite.db, s.tenant_id, "course-f", ("a1", "A1", 10.0))
    f = Forger(lms, gradesync_lite, s)
    yield f
    f.http.close()


def _refused(resp: httpx.Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"] == code
    return str(body["message"])


def test_a_genuine_launch_passes(forger: Forger) -> None:
    state, nonce = forger.login()
    resp = forger.post(forger.sign(forger.claims(nonce)), state)
    assert resp.status_code == 200, resp.text
    assert resp.json()["course_id"] == "course-f"


def test_forgeries_are_refused_and_recorded(
    forger: Forger, caplog: pytest.LogCaptureFixture
) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    platform_kid = forger.lms.sandbox.platform_key.kid
    cases: list[tuple[str, int, str]] = []

    state, nonce = forger.login()
    forged = jwt.encode(
        forger.claims(nonce), other_key, algorithm="RS256", headers={"kid": platform_kid}
    )
    cases.append(("bad_signature", 401, _refused(forger.post(forged, state), 401, "bad_signature")))

    state, nonce = forger.login()
    resp = forger.post(forger.sign(forger.claims(nonce, aud="somebody-else", azp=None)), state)
    cases.append(("wrong_audience", 401, _refused(resp, 401, "wrong_audience")))

    state, nonce = forger.login()
    resp = forger.post(
        forger.sign(forger.claims(nonce, aud=[forger.s.client_id, "x"], azp="x")), state
    )
    _refused(resp, 401, "wrong_audience")

    state, nonce = forger.login()
    old = int(time.time()) - 3600
    resp = forger.post(forger.sign(forger.claims(nonce, iat=old, exp=old + 300)), state)
    cases.append(("expired", 401, _refused(resp, 401, "expired")))

    state, nonce = forger.login()
    resp = forger.post(forger.sign(forger.claims(nonce, **{c.DEPLOYMENT_ID: "not-ours"})), state)
    message = _refused(resp, 403, "unknown_deployment")
    assert "not-ours" in message
    cases.append(("unknown_deployment", 403, message))

    state, nonce = forger.login()
    resp = forger.post(forger.sign(forger.claims(nonce, iss="https://evil.example")), state)
    _refused(resp, 401, "wrong_issuer")

    state, nonce = forger.login()
    unsigned = jwt.encode(
        forger.claims(nonce), "secret-of-length-32-bytes-at-least!", algorithm="HS256"
    )
    _refused(forger.post(unsigned, state), 401, "bad_algorithm")

    state, nonce = forger.login()
    _refused(forger.post(forger.sign(forger.claims("another-nonce")), state), 401, "nonce_mismatch")

    # a launch that names another site than the login did, or none (the claim is required)
    for target in ("https://phish.example/lti/launch", None):
        state, nonce = forger.login()
        resp = forger.post(forger.sign(forger.claims(nonce, **{c.TARGET_LINK_URI: target})), state)
        message = _refused(resp, 401, "wrong_target")
        assert "target_link_uri" in message
    cases.append(("wrong_target", 401, message))

    # replay: the same genuine launch twice
    state, nonce = forger.login()
    token = forger.sign(forger.claims(nonce))
    assert forger.post(token, state).status_code == 200
    cases.append(
        ("nonce_replayed", 401, _refused(forger.post(token, state), 401, "nonce_replayed"))
    )

    # a state gradesync never issued names no tenant: the operator's log has it (docs/security.md)
    with caplog.at_level("WARNING", logger="gradesync.lti.routes"):
        _refused(forger.post(token, "not-a-state"), 400, "bad_state")
    assert "LTI launch refused: bad_state: " in caplog.text

    recorded = {(r.code, r.message): r for r in forger.gs.rejections(forger.s.tenant_id)}
    assert "bad_state" not in {code for code, _ in recorded}
    for code, _status, message in cases:
        assert recorded[(code, message)].destination_id == forger.s.platform_id
    # nothing was bound by the refused launches: only the two genuine ones were recorded
    with forger.gs.db.uow() as uow:
        assert len(uow.launches.records_for_person(forger.s.tenant_id, "learner-x")) == 1


def test_login_from_unknown_platform_or_deployment_is_refused(forger: Forger) -> None:
    base = forger.gs.base_url + "/lti/login"
    params = {
        "iss": "https://unknown.example",
        "login_hint": "u",
        "target_link_uri": forger.gs.base_url + "/lti/launch",
    }
    resp = forger.http.get(base, params=params, headers={"Accept": "application/json"})
    _refused(resp, 400, "unknown_platform")
    params.update(iss=forger.lms.base_url, client_id=forger.s.client_id, lti_deployment_id="nope")
    resp = forger.http.get(base, params=params, headers={"Accept": "application/json"})
    _refused(resp, 403, "unknown_deployment")
    params.update(
        lti_deployment_id=forger.s.deployment_id, target_link_uri="https://phish.example/"
    )
    resp = forger.http.get(base, params=params, headers={"Accept": "application/json"})
    _refused(resp, 400, "foreign_target")


@pytest.fixture
def stored_forger(lms: RunningSandbox, gradesync: Gradesync) -> Iterator[Forger]:
    """A forger against gradesync on SQLite and PostgreSQL (what is stored is at stake)."""
    s = connect(lms, gradesync)
    add_course(gradesync.db, s.tenant_id, "course-f", ("a1", "A1", 10.0))
    f = Forger(lms, gradesync, s)
    yield f
    f.http.close()


def test_ids_gradesync_cannot_keep_are_refused_naming_the_claim(stored_forger: Forger) -> None:
    """The ids a launch stores or looks gradesync's records up by (LTI 1.3: at most 255
    characters) are refused alike on every database, the claim named: on PostgreSQL an
    over-long resource link id or a NUL character failed in the database (HTTP 500)."""
    f = stored_forger
    long_id = "r" * 256
    cases: list[tuple[dict[str, Any], str]] = [
        ({c.RESOURCE_LINK: {"id": long_id}}, "resource_link.id"),
        ({c.RESOURCE_LINK: {"id": "rl\x001"}}, "resource_link.id"),
        ({c.CONTEXT: {"id": "ctx\x00", "title": "T"}, c.CUSTOM: None}, "context.id"),
        ({c.CUSTOM: {c.CUSTOM_COURSE: "course\x00f"}}, f"custom.{c.CUSTOM_COURSE}"),
        ({"sub": "s" * 256}, "sub"),
    ]
    for over, claim in cases:
        state, nonce = f.login()
        message = _refused(f.post(f.sign(f.claims(nonce, **over)), state), 400, "bad_claim")
        assert message.startswith(claim + " "), message
        # refused before anything is written: the same login still launches
        assert f.post(f.sign(f.claims(nonce)), state).status_code == 200
    recorded = [r for r in f.gs.rejections(f.s.tenant_id) if r.code == "bad_claim"]
    assert len(recorded) == len(cases)
    with f.gs.db.uow() as uow:
        records = uow.launches.records_for_person(f.s.tenant_id, "learner-x")
    assert {r.resource_link_id for r in records} == {"rl-1"}
    # 255 characters is an id like any other
    state, nonce = f.login()
    at_limit = {c.RESOURCE_LINK: {"id": "r" * 255}}
    assert f.post(f.sign(f.claims(nonce, **at_limit)), state).status_code == 200


def test_ags_endpoint_on_a_foreign_host_is_ignored(forger: Forger) -> None:
    state, nonce = forger.login()
    endpoint = {
        "scope": ["https://purl.imsglobal.org/spec/lti-ags/scope/score"],
        "lineitems": "http://169.254.169.254/latest/meta-data/",
        "lineitem": "http://169.254.169.254/latest/meta-data/1",
    }
    resp = forger.post(forger.sign(forger.claims(nonce, **{c.AGS_ENDPOINT: endpoint})), state)
    assert resp.status_code == 200
    assert any("169.254.169.254" in n for n in resp.json()["notes"])
    with forger.gs.db.uow() as uow:
        link = uow.links.course(forger.s.tenant_id, forger.s.platform_id, "course-f")
    assert link is not None and "169.254" not in link.remote_id
    recorded = [
        r for r in forger.gs.rejections(forger.s.tenant_id) if r.code == "ags_endpoint_ignored"
    ]
    assert recorded and "allowed_hosts" in recorded[0].message


def _counting_app(hits: list[str]) -> Starlette:
    async def anything(request: Request) -> JSONResponse:
        hits.append(str(request.url))
        return JSONResponse([])

    return Starlette(routes=[Route("/{path:path}", anything, methods=["GET", "POST", "PUT"])])


async def test_platform_responses_cannot_redirect_the_client(gradesync_lite: Gradesync) -> None:
    """A registered but hostile platform answers with line item ids and Link next URLs on an
    internal host: gradesync sends nothing there."""
    internal_hits: list[str] = []
    with serve_in_thread(_counting_app(internal_hits)) as internal:
        inner = internal.base_url

        async def token(request: Request) -> JSONResponse:
            return JSONResponse({"access_token": "t", "expires_in": 3600, "token_type": "Bearer"})

        async def items(request: Request) -> JSONResponse:
            if request.method == "POST":
                return JSONResponse(
                    {"id": inner + "/item/1", "label": "x", "scoreMaximum": 1}, status_code=201
                )
            page = JSONResponse([])
            # typographic quotes, as one LMS sends them (UTF-8 bytes in the header)
            page.raw_headers.append((b"link", f"<{inner}/page2>; rel=\u201cnext\u201d".encode()))
            return page

        rogue = Starlette(
            routes=[
                Route("/token", token, methods=["POST"]),
                Route("/items", items, methods=["GET", "POST"]),
            ]
        )
        with serve_in_thread(rogue) as platform:
            tenant = unique("t")
            add_tenant(gradesync_lite.db.uow, tenant)
            data = {
                "id": "rogue",
                "issuer": platform.base_url,
                "client_id": "c",
                "deployment_ids": ["1"],
                "auth_login_url": platform.base_url + "/auth",
                "auth_token_url": platform.base_url + "/token",
                "key_set_url": platform.base_url + "/jwks",
            }
            with gradesync_lite.db.uow() as uow:
                dest = platforms.save_platform(
                    uow, reg.platform_of(tenant, data), datetime.now(UTC)
                )
                uow.commit()
            async with httpx.AsyncClient() as http:
                ctx = DestinationContext(http=http, tool_keys=gradesync_lite.keys)
                client = build_client(dest, ctx)
                link = CourseLink(tenant, "rogue", "c1", platform.base_url + "/items")
                with pytest.raises(RemoteFailure) as info:
                    await client.ensure_column(link, column(), None)
                assert info.value.failure is FailureClass.MISCONFIGURED
                assert info.value.code == "foreign_url" and "Link next" in info.value.message
                foreign = CourseLink(tenant, "rogue", "c1", inner + "/items")
                with pytest.raises(RemoteFailure) as info:
                    await client.ensure_course(Course(tenant, "c1", "C"), foreign)
                assert info.value.code == "foreign_url"
    assert internal_hits == []
