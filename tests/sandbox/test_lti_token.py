"""The LTI 1.3 token endpoint: client assertions checked as a real platform checks them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from gradesync.sandbox.config import AGS_LINEITEM, AGS_SCORE
from gradesync.sandbox.testing import RunningSandbox, serve_in_thread
from gradesync.testing import wait_for

from .conftest import CLIENT_ID, ToolKey, assertion, token_request


def _aud(sandbox: RunningSandbox) -> str:
    return sandbox.base_url + "/login/oauth2/token"


def test_valid_assertion_gets_token_with_requested_scopes(
    sandbox: RunningSandbox, http: httpx.Client, tool_key: ToolKey
) -> None:
    response = token_request(http, assertion(tool_key, _aud(sandbox)), [AGS_SCORE])
    assert response.status_code == 200
    body = response.json()
    assert body["scope"] == AGS_SCORE
    assert body["expires_in"] == 3600
    assert body["token_type"] == "Bearer"
    assert len(body["access_token"]) > 20


def test_tokens_issued_are_tallied_per_client_and_scope_set(
    sandbox: RunningSandbox, http: httpx.Client, tool_key: ToolKey
) -> None:
    for scopes in ([AGS_SCORE], [AGS_SCORE], [AGS_SCORE, AGS_LINEITEM]):
        assert token_request(http, assertion(tool_key, _aud(sandbox)), scopes).status_code == 200
    refused = token_request(http, assertion(tool_key, "https://elsewhere.example"), [AGS_SCORE])
    assert refused.status_code == 401  # a refusal issues nothing
    issued = http.get("/_sandbox/tokens/issued").json()
    assert issued["oneroster"] == []
    assert sorted((t["scopes"], t["count"]) for t in issued["lti"]) == [
        (sorted([AGS_SCORE, AGS_LINEITEM]), 1),
        ([AGS_SCORE], 2),
    ]
    assert {t["client_id"] for t in issued["lti"]} == {CLIENT_ID}


def test_issuer_is_accepted_as_audience(
    sandbox: RunningSandbox, http: httpx.Client, tool_key: ToolKey
) -> None:
    response = token_request(http, assertion(tool_key, sandbox.base_url), [AGS_SCORE])
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        ("bad_signature", "signature"),
        ("wrong_aud", "aud"),
        ("expired", "exp"),
        ("unknown_client", "iss"),
        ("sub_mismatch", "sub"),
    ],
)
def test_bad_assertions_are_refused(
    sandbox: RunningSandbox,
    http: httpx.Client,
    tool_key: ToolKey,
    other_key: ToolKey,
    make: str,
    expected: str,
) -> None:
    aud = _aud(sandbox)
    signed = {
        # Signed by a key the platform does not know, but naming the registered kid.
        "bad_signature": lambda: other_key.sign(
            {
                "iss": CLIENT_ID,
                "sub": CLIENT_ID,
                "aud": aud,
                "iat": 1,
                "exp": 4102444800,
                "jti": "x",
            },
            kid=tool_key.kid,
        ),
        "wrong_aud": lambda: assertion(tool_key, "https://elsewhere.example/token"),
        "expired": lambda: assertion(tool_key, aud, lifetime=-60),
        "unknown_client": lambda: assertion(tool_key, aud, client_id="nobody"),
        "sub_mismatch": lambda: assertion(tool_key, aud, sub="someone-else"),
    }[make]()
    response = token_request(http, signed, [AGS_SCORE])
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.json()["error_description"].startswith(expected)


def test_replayed_jti_is_refused(
    sandbox: RunningSandbox, http: httpx.Client, tool_key: ToolKey
) -> None:
    signed = assertion(tool_key, _aud(sandbox), jti="once-only")
    assert token_request(http, signed, [AGS_SCORE]).status_code == 200
    again = token_request(http, signed, [AGS_SCORE])
    assert again.status_code == 401
    assert "jti" in again.json()["error_description"]


def test_only_registered_scopes_are_granted(
    sandbox: RunningSandbox, http: httpx.Client, tool_key: ToolKey
) -> None:
    sandbox.admin.register_tool(
        client_id="narrow", public_key=tool_key.jwk, deployment_id="d", scopes=[AGS_SCORE]
    )
    aud = _aud(sandbox)
    mixed = token_request(
        http, assertion(tool_key, aud, client_id="narrow"), [AGS_SCORE, AGS_LINEITEM]
    )
    assert mixed.status_code == 200
    assert mixed.json()["scope"] == AGS_SCORE
    none = token_request(http, assertion(tool_key, aud, client_id="narrow"), [AGS_LINEITEM])
    assert none.status_code == 400
    assert none.json()["error"] == "invalid_scope"


def test_wrong_grant_type_and_missing_assertion(
    sandbox: RunningSandbox, http: httpx.Client
) -> None:
    response = http.post("/login/oauth2/token", data={"grant_type": "password"})
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"
    response = http.post(
        "/login/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        },
    )
    assert response.status_code == 400
    assert "client_assertion" in response.json()["error_description"]


@pytest.fixture
def jwks_server(tool_key: ToolKey) -> Iterator[tuple[str, list[int]]]:
    """The tool's JWKS URL, served over real HTTP; counts fetches."""
    hits: list[int] = []

    async def jwks(request: object) -> JSONResponse:
        hits.append(1)
        return JSONResponse({"keys": [tool_key.jwk]})

    app = Starlette(routes=[Route("/jwks", jwks)])
    with serve_in_thread(app) as handle:
        yield handle.base_url + "/jwks", hits


def test_keys_are_fetched_from_jwks_url_once_and_cached(
    sandbox: RunningSandbox,
    http: httpx.Client,
    tool_key: ToolKey,
    other_key: ToolKey,
    jwks_server: tuple[str, list[int]],
) -> None:
    url, hits = jwks_server
    sandbox.admin.register_tool(client_id="jwks-tool", jwks_url=url, deployment_id="d")
    aud = _aud(sandbox)
    for _ in range(3):
        response = token_request(http, assertion(tool_key, aud, client_id="jwks-tool"), [AGS_SCORE])
        assert response.status_code == 200, response.text
    assert len(hits) == 1
    unknown_kid = other_key.sign(
        {
            "iss": "jwks-tool",
            "sub": "jwks-tool",
            "aud": aud,
            "iat": 1,
            "exp": 4102444800,
            "jti": "k",
        }
    )
    response = token_request(http, unknown_kid, [AGS_SCORE])
    assert response.status_code == 401
    assert response.json()["error_description"].startswith("kid")


def test_a_token_request_during_the_key_fetch_waits_for_it(
    sandbox: RunningSandbox, http: httpx.Client, tool_key: ToolKey
) -> None:
    """Two token requests at once signed with a key the platform has not fetched yet (a
    tool's first grades and its first roster read): the second waits for the first's fetch
    of the JWKS instead of being refused for a kid it is about to know."""
    hits: list[int] = []
    answer = threading.Event()

    async def jwks(request: object) -> JSONResponse:
        hits.append(1)
        await asyncio.to_thread(answer.wait, 30)  # the tool's JWKS, slow to answer
        return JSONResponse({"keys": [tool_key.jwk]})

    with serve_in_thread(Starlette(routes=[Route("/jwks", jwks)])) as handle:
        sandbox.admin.register_tool(
            client_id="slow-jwks", jwks_url=handle.base_url + "/jwks", deployment_id="d"
        )
        sandbox.admin.reset_counters()
        aud = _aud(sandbox)
        with ThreadPoolExecutor(2) as pool:
            asked = [
                pool.submit(
                    token_request,
                    http,
                    assertion(tool_key, aud, client_id="slow-jwks"),
                    [AGS_SCORE],
                )
                for _ in range(2)
            ]
            wait_for(
                lambda: hits and sandbox.admin.counters()["token"]["requests"] == 2,
                "both token requests in, the JWKS fetch under way",
            )
            answer.set()
            answers = [f.result(timeout=30) for f in asked]
    assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
    assert len(hits) == 1
