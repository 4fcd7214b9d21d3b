"""Fixtures: a seeded sandbox on loopback and a tool key to sign JWTs with (the tool side)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gradesync.sandbox.config import AGS_SCOPES, SandboxConfig
from gradesync.sandbox.testing import RunningSandbox, running_sandbox

CLIENT_ID = "tool-1"
DEPLOYMENT = "dep-1"
TOOL_LOGIN = "https://tool.example/lti/login"
TOOL_LAUNCH = "https://tool.example/lti/launch"
TOOL_DEEP_LINK = "https://tool.example/lti/deep-link"


class ToolKey:
    def __init__(self) -> None:
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex
        jwk = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        jwk.update(kid=self.kid, alg="RS256", use="sig")
        self.jwk = jwk

    def sign(self, claims: dict[str, Any], kid: str | None = None) -> str:
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": kid or self.kid})


@pytest.fixture(scope="session")
def tool_key() -> ToolKey:
    return ToolKey()


@pytest.fixture(scope="session")
def other_key() -> ToolKey:
    return ToolKey()


def base_seed(tool_key: ToolKey) -> dict[str, Any]:
    return {
        "users": [
            {"sub": "u1", "name": "Ada Learner", "email": "ada@example.edu", "sis_id": "s1"},
            {"sub": "u2", "name": "Bo Learner", "sis_id": "s2"},
            {"sub": "t1", "name": "Tia Teacher"},
        ],
        "courses": [
            {
                "id": "c1",
                "title": "Biology 101",
                "learners": ["u1", "u2"],
                "instructors": ["t1"],
                "resource_links": [{"id": "rl1", "title": "Quiz 1", "client_id": CLIENT_ID}],
            }
        ],
        "tools": [
            {
                "client_id": CLIENT_ID,
                "deployment_id": DEPLOYMENT,
                "public_key": tool_key.jwk,
                "oidc_login_url": TOOL_LOGIN,
                "redirect_uris": [TOOL_LAUNCH],
                "target_link_uri": TOOL_LAUNCH,
                "deep_link_url": TOOL_DEEP_LINK,
                "scopes": list(AGS_SCOPES),
            }
        ],
        "lti11_consumers": [{"key": "consumer-1", "secret": "s3cret"}],
        "sis": {
            "clients": [{"client_id": "sis-client", "client_secret": "sis-secret"}],
            "terms": [{"sourcedId": "t2024", "start": "2024-01-08", "end": "2024-05-31"}],
            "classes": [
                {
                    "sourcedId": "cls1",
                    "title": "Biology 101 - A",
                    "school": "sch1",
                    "term": "t2024",
                    "students": ["s1", "s2"],
                },
                {"sourcedId": "cls2", "school": "sch1", "term": "t2024", "students": ["s3"]},
            ],
            "categories": [
                {"sourcedId": "cat-quiz", "title": "Quizzes", "classes": ["cls1"]},
                {"sourcedId": "cat-hw", "title": "Homework"},
            ],
        },
    }


SandboxFactory = Callable[..., AbstractContextManager[RunningSandbox]]


@pytest.fixture
def make_sandbox(tool_key: ToolKey) -> SandboxFactory:
    """Start a seeded sandbox: make_sandbox(mode="canvas", faults={...})."""

    def factory(**overrides: Any) -> AbstractContextManager[RunningSandbox]:
        raw: dict[str, Any] = {"seed": base_seed(tool_key)}
        raw.update(overrides)
        return running_sandbox(SandboxConfig.model_validate(raw))

    return factory


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> Iterator[RunningSandbox]:
    with make_sandbox() as running:
        yield running


@pytest.fixture
def http(sandbox: RunningSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.base_url, timeout=10) as client:
        yield client


def assertion(
    key: ToolKey,
    aud: str,
    *,
    client_id: str = CLIENT_ID,
    lifetime: int = 300,
    jti: str | None = None,
    **extra: Any,
) -> str:
    issued = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": issued,
        "exp": issued + lifetime,
        "jti": jti or uuid.uuid4().hex,
        **extra,
    }
    return key.sign(claims)


def token_request(client: httpx.Client, signed: str, scopes: list[str]) -> httpx.Response:
    return client.post(
        "/login/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": signed,
            "scope": " ".join(scopes),
        },
    )


def get_token(
    client: httpx.Client, running: RunningSandbox, key: ToolKey, scopes: list[str] | None = None
) -> str:
    response = token_request(
        client, assertion(key, running.base_url + "/login/oauth2/token"), scopes or list(AGS_SCOPES)
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])
