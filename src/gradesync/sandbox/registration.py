"""LTI Dynamic Registration 1.0, platform side: the OpenID configuration names a
registration endpoint; a tool POSTs its client registration there with the one-time
registration token the platform put in the registration URL, and gets a client id and a
deployment. Every field the specification requires is checked, and refused by name.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .common import json_response
from .config import TOOL_SCOPES, ToolSeed
from .context import Sandbox

REGISTRATION_PATH = "/lti/registrations"
TOOL_CONFIG = "https://purl.imsglobal.org/spec/lti-tool-configuration"
PLATFORM_CONFIG = "https://purl.imsglobal.org/spec/lti-platform-configuration"
MESSAGES = ("LtiResourceLinkRequest", "LtiDeepLinkingRequest")


def platform_configuration(sb: Sandbox) -> dict[str, Any]:
    return {
        "product_family_code": sb.state.mode,
        "version": "1.0",
        "messages_supported": [
            {"type": "LtiResourceLinkRequest"},
            {"type": "LtiDeepLinkingRequest", "placements": ["ContentArea"]},
        ],
        "variables": [],
    }


def _refuse(message: str, status: int = 400) -> Response:
    error = "invalid_token" if status == 401 else "invalid_client_metadata"
    return json_response({"error": error, "error_description": message}, status)


def _url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _problems(body: dict[str, Any]) -> list[str]:
    problems = []
    if body.get("application_type") != "web":
        problems.append("application_type: must be 'web'")
    if body.get("response_types") != ["id_token"]:
        problems.append("response_types: must be ['id_token']")
    grants = body.get("grant_types")
    if not isinstance(grants, list) or not {"implicit", "client_credentials"} <= set(grants):
        problems.append("grant_types: must hold 'implicit' and 'client_credentials'")
    if body.get("token_endpoint_auth_method") != "private_key_jwt":
        problems.append("token_endpoint_auth_method: must be 'private_key_jwt'")
    for field in ("initiate_login_uri", "jwks_uri"):
        if not _url(body.get(field)):
            problems.append(f"{field}: required, an http(s) URL")
    uris = body.get("redirect_uris")
    if not isinstance(uris, list) or not uris or not all(_url(u) for u in uris):
        problems.append("redirect_uris: required, a non-empty list of http(s) URLs")
    if not isinstance(body.get("client_name"), str) or not body["client_name"].strip():
        problems.append("client_name: required, a non-blank string")
    scope = body.get("scope", "")
    unknown = [s for s in str(scope).split() if s not in TOOL_SCOPES]
    if not isinstance(scope, str) or unknown:
        problems.append(f"scope: unknown scope(s) {unknown}; allowed: {list(TOOL_SCOPES)}")
    tool = body.get(TOOL_CONFIG)
    if not isinstance(tool, dict):
        problems.append(f"{TOOL_CONFIG}: required, an object")
        return problems
    domain = tool.get("domain")
    if not isinstance(domain, str) or not domain or "/" in domain:
        problems.append(f"{TOOL_CONFIG}.domain: required, a host name (with port if any)")
    if not _url(tool.get("target_link_uri")):
        problems.append(f"{TOOL_CONFIG}.target_link_uri: required, an http(s) URL")
    elif isinstance(domain, str) and urlsplit(tool["target_link_uri"]).netloc != domain:
        problems.append(f"{TOOL_CONFIG}.target_link_uri: must be on the tool's domain")
    claims = tool.get("claims")
    if not isinstance(claims, list) or "sub" not in claims:
        problems.append(f"{TOOL_CONFIG}.claims: required, a list naming at least 'sub'")
    messages = tool.get("messages", [])
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and m.get("type") in MESSAGES for m in messages
    ):
        problems.append(
            f"{TOOL_CONFIG}.messages: each must be an object whose type is in {MESSAGES}"
        )
    return problems


async def register(request: Request) -> Response:
    sb: Sandbox = request.app.state.sandbox
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or token.strip() not in sb.registration_tokens:
        return _refuse("Authorization: a valid, unused registration token is required", 401)
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return _refuse("Content-Type: must be application/json", 415)
    try:
        body = json.loads(await request.body())
    except ValueError:
        return _refuse("body: not valid JSON")
    if not isinstance(body, dict):
        return _refuse("body: must be a JSON object")
    problems = _problems(body)
    if problems:
        return _refuse("; ".join(problems))
    sb.registration_tokens.discard(token.strip())  # one registration per token
    tool_config = body[TOOL_CONFIG]
    deep_link = next(
        (m for m in tool_config.get("messages", []) if m.get("type") == "LtiDeepLinkingRequest"),
        None,
    )
    seed = ToolSeed(
        client_id=secrets.token_hex(8),
        deployment_id=secrets.token_hex(4),
        jwks_url=body["jwks_uri"],
        oidc_login_url=body["initiate_login_uri"],
        redirect_uris=body["redirect_uris"],
        target_link_uri=tool_config["target_link_uri"],
        deep_link_url=(deep_link.get("target_link_uri") or tool_config["target_link_uri"])
        if deep_link is not None
        else None,
        scopes=str(body.get("scope", "")).split(),
    )
    sb.state.add_tool(seed)
    sb.registrations.append(body)
    answer = {
        **body,
        "client_id": seed.client_id,
        TOOL_CONFIG: {**tool_config, "deployment_id": seed.deployment_id},
    }
    return json_response(answer, 200)


routes = [Route(REGISTRATION_PATH, register, methods=["POST"])]
