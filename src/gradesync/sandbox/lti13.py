"""LTI 1.3 platform side: JWKS, OIDC third-party login, id_tokens, deep linking, token endpoint."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import jwt
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .common import HTTPProblem, json_response
from .config import AGS_SCOPES, NRPS_SCOPE, LineItemSeed, ResourceLinkSeed, ToolSeed
from .context import (
    AGS_PREFIX,
    AUTHORIZE_PATH,
    DEEP_LINK_RETURN_PATH,
    JWKS_PATH,
    LOGIN_START_PATH,
    TOKEN_PATH,
    Sandbox,
)
from .keys import ToolKeyError
from .registration import PLATFORM_CONFIG, REGISTRATION_PATH, platform_configuration
from .state import SeedError

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
ROLE_LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
ROLE_INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
HINT_TTL = 600


def _bad(status: int, error: str, description: str) -> Response:
    return json_response({"error": error, "error_description": description}, status)


# ---- launches ----


def start_launch(sb: Sandbox, request: Request | None, spec: dict[str, Any]) -> dict[str, Any]:
    """Create an OIDC login initiation for a launch; returns the tool login URL and params.

    `spec`: client_id, user, course, and resource_link_id (resource link launch) or
    message_type "LtiDeepLinkingRequest". Optional `lti1p1`: {"consumer_key": an LTI 1.1
    consumer of this sandbox, "user_id": the user's LTI 1.1 id (default: the user's sub, what
    the sandbox's LTI 1.1 launches send)} adds the LTI 1.1 migration claim, signed with that
    consumer's secret as LTI 1.3 core says (an LMS upgrading a tool from LTI 1.1).
    """
    state = sb.state
    client_id = str(spec.get("client_id", ""))
    tool = state.tools.get(client_id)
    if tool is None:
        raise SeedError(f"client_id: no tool registered as {client_id!r}")
    if not tool.oidc_login_url:
        raise SeedError(f"client_id: tool {client_id!r} has no oidc_login_url registered")
    course = state.course(str(spec.get("course", "")))
    user = str(spec.get("user", ""))
    if user not in course.learners and user not in course.instructors:
        raise SeedError(f"user: {user!r} is not enrolled in course {course.id!r}")
    message_type = str(spec.get("message_type", "LtiResourceLinkRequest"))
    if message_type not in ("LtiResourceLinkRequest", "LtiDeepLinkingRequest"):
        raise SeedError(
            "message_type: must be LtiResourceLinkRequest or LtiDeepLinkingRequest, "
            f"got {message_type!r}"
        )
    link_id = spec.get("resource_link_id")
    if message_type == "LtiResourceLinkRequest":
        if not link_id or link_id not in course.resource_links:
            raise SeedError(
                f"resource_link_id: {link_id!r} is not a resource link of course {course.id!r}"
            )
        link = course.resource_links[str(link_id)]
        target = link.url or tool.target_link_uri
    else:
        target = tool.deep_link_url or tool.target_link_uri
    if not target:
        raise SeedError("target_link_uri: neither the link nor the tool registration has one")
    lti1p1 = _lti1p1_spec(sb, spec.get("lti1p1"), user)
    hint = secrets.token_urlsafe(16)
    sb.launch_hints[hint] = {
        "lti1p1": lti1p1,
        "client_id": client_id,
        "user": user,
        "course": course.id,
        "resource_link_id": link_id,
        "message_type": message_type,
        "target_link_uri": target,
        "expires": time.time() + HINT_TTL,
    }
    params = {
        "iss": sb.base(request),
        "login_hint": user,
        "target_link_uri": target,
        "lti_message_hint": hint,
        "client_id": client_id,
        "lti_deployment_id": tool.deployment_id,
    }
    return {"url": f"{tool.oidc_login_url}?{urlencode(params)}", "params": params}


def _lti1p1_spec(sb: Sandbox, value: Any, user: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SeedError("lti1p1: must be an object with consumer_key (and optionally user_id)")
    key = str(value.get("consumer_key") or "")
    if key not in sb.state.lti11_consumers:
        raise SeedError(f"lti1p1.consumer_key: no LTI 1.1 consumer registered as {key!r}")
    user_id = value.get("user_id", user)
    if not isinstance(user_id, str) or not user_id:
        raise SeedError("lti1p1.user_id: must be a non-empty string")
    return {"consumer_key": key, "user_id": user_id}


def lti1p1_claim(sb: Sandbox, spec: dict[str, str], claims: dict[str, Any]) -> dict[str, str]:
    """The LTI 1.1 migration claim: oauth_consumer_key_sign = base64(HMAC-SHA256(LTI 1.1
    secret, key & deployment_id & iss & client_id & exp & nonce)) of this very id_token."""
    key = spec["consumer_key"]
    message = "&".join(
        (
            key,
            str(claims[LTI + "deployment_id"]),
            str(claims["iss"]),
            str(claims["aud"]),
            str(claims["exp"]),
            str(claims["nonce"]),
        )
    )
    secret = sb.state.lti11_consumers[key]
    mac = hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256)
    return {
        "user_id": spec["user_id"],
        "oauth_consumer_key": key,
        "oauth_consumer_key_sign": base64.b64encode(mac.digest()).decode("ascii"),
    }


async def launch_redirect(request: Request) -> Response:
    """Browser entry point: GET /lti/launch?client_id&user&course&resource_link_id[&deep_link=1]."""
    sb: Sandbox = request.app.state.sandbox
    spec: dict[str, Any] = dict(request.query_params)
    if spec.pop("deep_link", None) in ("1", "true"):
        spec["message_type"] = "LtiDeepLinkingRequest"
    try:
        started = start_launch(sb, request, spec)
    except SeedError as exc:
        return _bad(400, "invalid_request", str(exc))
    return RedirectResponse(started["url"], status_code=302)


async def authorize(request: Request) -> Response:
    """OIDC authorization endpoint: validate the tool's auth request, answer with a form_post."""
    sb: Sandbox = request.app.state.sandbox
    params: dict[str, str] = dict(request.query_params)
    if request.method == "POST":
        params.update({k: str(v) for k, v in (await request.form()).items()})
    try:
        id_token, redirect_uri = _authorize(sb, request, params)
    except HTTPProblem as problem:
        return problem.response
    page = (
        "<!doctype html><html><head><title>LTI launch</title></head>"
        '<body onload="document.forms[0].submit()">'
        f'<form method="post" action="{html.escape(redirect_uri)}">'
        f'<input type="hidden" name="id_token" value="{html.escape(id_token)}">'
        f'<input type="hidden" name="state" value="{html.escape(params.get("state", ""))}">'
        '<noscript><button type="submit">Continue</button></noscript>'
        "</form></body></html>"
    )
    return HTMLResponse(page)


def _authorize(sb: Sandbox, request: Request, params: dict[str, str]) -> tuple[str, str]:
    def fail(description: str, error: str = "invalid_request") -> HTTPProblem:
        return HTTPProblem(_bad(400, error, description))

    tool = sb.state.tools.get(params.get("client_id", ""))
    if tool is None:
        raise fail(
            f"client_id: no tool registered as {params.get('client_id')!r}", "unauthorized_client"
        )
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in tool.redirect_uris:
        raise fail(f"redirect_uri: {redirect_uri!r} is not registered for this tool")
    for name, expected in (
        ("scope", "openid"),
        ("response_type", "id_token"),
        ("response_mode", "form_post"),
        ("prompt", "none"),
    ):
        if params.get(name) != expected:
            raise fail(f"{name}: must be {expected!r}, got {params.get(name)!r}")
    nonce = params.get("nonce", "")
    if not nonce:
        raise fail("nonce: required")
    hint = sb.launch_hints.get(params.get("lti_message_hint", ""))
    if hint is None or float(hint["expires"]) < time.time():  # type: ignore[arg-type]
        raise fail("lti_message_hint: unknown or expired; start the launch again")
    if hint["client_id"] != tool.client_id:
        raise fail("lti_message_hint: issued for another client_id")
    if params.get("login_hint") != hint["user"]:
        raise fail("login_hint: does not match the user of this launch")
    claims = id_token_claims(sb, request, tool, hint, nonce)
    return sb.platform_key.sign(claims), redirect_uri


def id_token_claims(
    sb: Sandbox, request: Request | None, tool: ToolSeed, hint: dict[str, Any], nonce: str
) -> dict[str, Any]:
    state = sb.state
    base = sb.base(request)
    course = state.course(hint["course"])
    user = state.users[hint["user"]]
    is_learner = user.sub in course.learners
    issued = int(time.time())
    claims: dict[str, Any] = {
        "iss": base,
        "aud": tool.client_id,
        "azp": tool.client_id,
        "sub": user.sub,
        "iat": issued,
        "exp": issued + 300,
        "nonce": nonce,
        "name": user.name,
        "given_name": user.given_name,
        "family_name": user.family_name,
        "email": user.email,
        LTI + "message_type": hint["message_type"],
        LTI + "version": "1.3.0",
        LTI + "deployment_id": tool.deployment_id,
        LTI + "target_link_uri": hint["target_link_uri"],
        LTI + "roles": [ROLE_LEARNER if is_learner else ROLE_INSTRUCTOR],
        LTI + "context": {
            "id": course.id,
            "label": course.label,
            "title": course.title,
            "type": ["http://purl.imsglobal.org/vocab/lis/v2/course#CourseOffering"],
        },
        LTI + "tool_platform": {
            "guid": base,
            "name": sb.config.platform_name,
            "product_family_code": state.mode,
        },
        LTI + "lis": {"person_sourcedid": user.sis_id or ""},
        LTI + "launch_presentation": {"document_target": "iframe"},
    }
    link_id = hint.get("resource_link_id")
    if hint["message_type"] == "LtiResourceLinkRequest":
        link = course.resource_links[str(link_id)]
        claims[LTI + "resource_link"] = {"id": link.id, "title": link.title}
        claims[LTI + "custom"] = dict(link.custom)
    else:
        data = secrets.token_urlsafe(16)
        sb.deep_link_sessions[data] = {
            "client_id": tool.client_id,
            "course": course.id,
            "expires": time.time() + HINT_TTL,
        }
        claims[DL + "deep_linking_settings"] = {
            "deep_link_return_url": base + DEEP_LINK_RETURN_PATH,
            "accept_types": ["ltiResourceLink"],
            "accept_presentation_document_targets": ["iframe", "window"],
            "accept_multiple": True,
            "auto_create": True,
            "data": data,
        }
    scopes = [s for s in tool.scopes if s in AGS_SCOPES]
    if scopes:
        endpoint: dict[str, Any] = {
            "scope": scopes,
            "lineitems": sb.line_items_url(base, course.id),
        }
        if link_id:
            for item in course.line_items.values():
                if item.resource_link_id == link_id and item.client_id in (None, tool.client_id):
                    endpoint["lineitem"] = sb.line_item_url(base, item)
                    break
        claims[AGS_CLAIM] = endpoint
    if NRPS_SCOPE in tool.scopes:
        claims[NRPS_CLAIM] = {
            "context_memberships_url": f"{base}{AGS_PREFIX}/{course.id}/memberships",
            "service_versions": ["2.0"],
        }
    if hint.get("lti1p1"):
        claims[LTI + "lti1p1"] = lti1p1_claim(sb, hint["lti1p1"], claims)
    return claims


# ---- deep linking response ----


async def deep_link_return(request: Request) -> Response:
    sb: Sandbox = request.app.state.sandbox
    form = await request.form()
    token = str(form.get("JWT", ""))
    if not token:
        return _bad(400, "invalid_request", "JWT: the form field holding the response is required")
    try:
        created = await _accept_deep_link(sb, request, token)
    except HTTPProblem as problem:
        return problem.response
    return json_response({"created": created}, 200)


async def _verify_tool_jwt(
    sb: Sandbox, token: str, audience: list[str] | str, required: list[str]
) -> tuple[ToolSeed, dict[str, Any]]:
    """Verify a JWT a tool signed; checks signature, iss = a registered client_id, aud, exp."""

    def fail(description: str) -> HTTPProblem:
        return HTTPProblem(_bad(401, "invalid_client", description))

    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise fail(f"JWT: malformed ({exc})") from None
    tool = sb.state.tools.get(str(unverified.get("iss", "")))
    if tool is None:
        raise fail(f"iss: {unverified.get('iss')!r} is not a registered client_id")
    if header.get("alg") != "RS256":
        raise fail(f"alg: must be RS256, got {header.get('alg')!r}")
    try:
        key = await sb.tool_keys.key_for(tool, header.get("kid"))
    except ToolKeyError as exc:
        raise fail(f"kid: {exc}") from None
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=audience,
            issuer=tool.client_id,
            options={"require": ["exp", "iat", "iss", "aud", *required]},
            leeway=5,
        )
    except jwt.InvalidSignatureError:
        raise fail("signature: does not verify with the tool's registered key") from None
    except jwt.ExpiredSignatureError:
        raise fail("exp: the JWT has expired") from None
    except jwt.InvalidAudienceError:
        raise fail(f"aud: must be {audience!r}") from None
    except jwt.MissingRequiredClaimError as exc:
        raise fail(f"{exc.claim}: required claim missing") from None
    except jwt.PyJWTError as exc:
        raise fail(f"JWT: {exc}") from None
    return tool, claims


async def _accept_deep_link(sb: Sandbox, request: Request, token: str) -> list[dict[str, Any]]:
    base = sb.base(request)
    tool, claims = await _verify_tool_jwt(sb, token, base, ["nonce"])

    def fail(description: str) -> HTTPProblem:
        return HTTPProblem(_bad(400, "invalid_request", description))

    if claims.get(LTI + "deployment_id") != tool.deployment_id:
        raise fail(f"deployment_id: must be {tool.deployment_id!r} for this client_id")
    if claims.get(LTI + "message_type") != "LtiDeepLinkingResponse":
        raise fail("message_type: must be 'LtiDeepLinkingResponse'")
    if claims.get(LTI + "version") != "1.3.0":
        raise fail("version: must be '1.3.0'")
    if not sb.nonces.add(f"dl:{tool.client_id}:{claims['nonce']}", float(claims["exp"])):
        raise fail("nonce: already used (replayed deep linking response)")
    session = sb.deep_link_sessions.get(str(claims.get(DL + "data", "")))
    if session is None or session["client_id"] != tool.client_id:
        raise fail("data: must echo the data of a deep linking request sent to this tool")
    items = claims.get(DL + "content_items", [])
    if not isinstance(items, list):
        raise fail("content_items: must be a list")
    course_id = str(session["course"])
    created: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or item.get("type") != "ltiResourceLink":
            raise fail(f"content_items[{index}].type: only 'ltiResourceLink' is accepted")
        line_item = item.get("lineItem")
        if line_item is not None:
            if not isinstance(line_item, dict):
                raise fail(f"content_items[{index}].lineItem: must be an object")
            maximum = line_item.get("scoreMaximum")
            if isinstance(maximum, bool) or not isinstance(maximum, int | float) or maximum <= 0:
                raise fail(f"content_items[{index}].lineItem.scoreMaximum: must be a number > 0")
    for item in items:
        link_id = f"rl-{sb.state.new_id()}"
        title = str(item.get("title") or "")
        sb.state.add_resource_link(
            course_id,
            ResourceLinkSeed(
                id=link_id,
                title=title,
                client_id=tool.client_id,
                url=item.get("url"),
                custom={str(k): str(v) for k, v in (item.get("custom") or {}).items()},
            ),
        )
        entry: dict[str, Any] = {"resource_link_id": link_id, "title": title}
        line_item = item.get("lineItem")
        if line_item is not None:
            created_item = sb.state.add_line_item(
                course_id,
                LineItemSeed(
                    label=str(line_item.get("label") or title or "Untitled"),
                    scoreMaximum=float(line_item["scoreMaximum"]),
                    resourceId=line_item.get("resourceId"),
                    tag=line_item.get("tag"),
                    resourceLinkId=link_id,
                    client_id=tool.client_id,
                ),
            )
            entry["line_item"] = sb.line_item_url(base, created_item)
        created.append(entry)
    return created


# ---- token endpoint ----


async def token_endpoint(request: Request) -> Response:
    sb: Sandbox = request.app.state.sandbox
    form = await request.form()
    if form.get("grant_type") != "client_credentials":
        return _bad(400, "unsupported_grant_type", "grant_type: must be 'client_credentials'")
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        return _bad(400, "invalid_request", f"client_assertion_type: must be {ASSERTION_TYPE!r}")
    assertion = str(form.get("client_assertion") or "")
    if not assertion:
        return _bad(400, "invalid_request", "client_assertion: required")
    base = sb.base(request)
    try:
        tool, claims = await _verify_tool_jwt(
            sb, assertion, [base + TOKEN_PATH, base], ["sub", "jti"]
        )
    except HTTPProblem as problem:
        return problem.response
    if claims["sub"] != tool.client_id:
        return _bad(401, "invalid_client", "sub: must equal iss (the client_id)")
    if not sb.jtis.add(f"{tool.client_id}:{claims['jti']}", float(claims["exp"])):
        return _bad(401, "invalid_client", "jti: this client assertion was already used")
    requested = str(form.get("scope") or "").split()
    if not requested:
        return _bad(400, "invalid_scope", "scope: at least one scope is required")
    granted = [s for s in requested if s in tool.scopes]
    if not granted:
        return _bad(
            400,
            "invalid_scope",
            f"scope: none of {requested} is allowed for this client; allowed: {tool.scopes}",
        )
    ttl = sb.config.token_ttl_seconds
    token = sb.lti_tokens.issue(tool.client_id, frozenset(granted), ttl)
    return json_response(
        {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": " ".join(granted),
        }
    )


# ---- discovery ----


async def jwks(request: Request) -> Response:
    sb: Sandbox = request.app.state.sandbox
    return json_response(sb.platform_key.jwks)


async def openid_configuration(request: Request) -> Response:
    sb: Sandbox = request.app.state.sandbox
    base = sb.base(request)
    return json_response(
        {
            "issuer": base,
            "authorization_endpoint": base + AUTHORIZE_PATH,
            "token_endpoint": base + TOKEN_PATH,
            "jwks_uri": base + JWKS_PATH,
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", *AGS_SCOPES, NRPS_SCOPE],
            "response_types_supported": ["id_token"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["public"],
            "registration_endpoint": base + REGISTRATION_PATH,
            "claims_supported": ["sub", "iss", "name", "given_name", "family_name", "email"],
            PLATFORM_CONFIG: platform_configuration(sb),
        }
    )


routes = [
    Route(JWKS_PATH, jwks, methods=["GET"]),
    Route("/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
    Route(LOGIN_START_PATH, launch_redirect, methods=["GET"]),
    Route(AUTHORIZE_PATH, authorize, methods=["GET", "POST"]),
    Route(DEEP_LINK_RETURN_PATH, deep_link_return, methods=["POST"]),
    Route(TOKEN_PATH, token_endpoint, methods=["POST"]),
]
