"""Launch validation (LTI 1.3 core section 5.1.3, OIDC id_token rules).

In order: the state is ours and fresh; the registration it names exists; the token is RS256
and its signature verifies with the platform's key (from its key set URL, cached); iss is the
registered issuer; aud holds our client id (and azp names us when there are several
audiences); exp/iat are sane; the nonce is the one this login issued; the deployment is
registered; the message is a 1.3 resource link or deep linking request with the claims it
needs, and the ids gradesync keeps of it (sub, resource link, context, custom course and
activity) are ids it can store: at most 255 characters, no NUL. Any failure refuses the
launch with a code and a sentence. That the nonce has not been used is checked when the
launch is recorded (`gradesync.services.lti.launch`), which uses it.

`launch_of` then reads what a verified launch says in gradesync's terms: the person (by the
registration's `person_id_from`), their role, the context, the link's custom course and
activity, and the AGS endpoint when all its URLs are on the platform's origins.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import jwt

from gradesync.adapters.destinations.ags_urls import (
    ForeignUrl,
    allowed_origins,
    check_url,
    origin_of,
)
from gradesync.adapters.secretbox import SecretBox
from gradesync.domain.identifiers import id_problems
from gradesync.domain.model import Destination, Role
from gradesync.lti import claims as c
from gradesync.lti.oidc import LoginState, read_state, state_digest
from gradesync.lti.platform_keys import KeySetError, PlatformKeyCache
from gradesync.services.lti.errors import LaunchRefused
from gradesync.services.lti.launch import Lti13Launch
from gradesync.services.outbound import OutboundGuard

LEEWAY_SECONDS = 60
MAX_TOKEN_AGE_SECONDS = 3600  # an id_token issued more than an hour ago is not a live launch


def launch_state(
    box: SecretBox, form: Mapping[str, str], now: datetime, state_cookie: str | None = None
) -> LoginState:
    """The login a launch POST answers (its encrypted state). Raises LaunchRefused."""
    if form.get("error"):
        raise LaunchRefused(
            "platform_error",
            f"the platform answered the login with error {form.get('error')!r}: "
            f"{form.get('error_description') or 'no description'}",
        )
    state = read_state(box, form.get("state"), now)
    if state_cookie is not None and state_cookie != state_digest(str(form.get("state"))):
        raise LaunchRefused(
            "state_mismatch",
            "state: this launch answers a login started in another browser",
            tenant_id=state.tenant_id,
            destination_id=state.destination_id,
        )
    return state


async def verify_launch(
    platform: Destination,
    state: LoginState,
    keys: PlatformKeyCache,
    form: Mapping[str, str],
    *,
    now: datetime,
) -> dict[str, Any]:
    """Verify a launch's id_token against the registration its state names; return its
    claims. Fetches the platform's keys when needed (no database is touched). The nonce is
    checked to be this login's; using it up is the caller's (once, when recording the
    launch). Raises LaunchRefused."""
    who: dict[str, Any] = {"tenant_id": state.tenant_id, "destination_id": state.destination_id}
    config = platform.config
    issuer, client_id = str(config["issuer"]), str(config["client_id"])
    who.update(issuer=issuer, client_id=client_id)
    token = form.get("id_token")
    if not token:
        raise LaunchRefused("missing_id_token", "id_token: required", **who)
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise LaunchRefused("malformed_token", f"id_token: not a JWT ({exc})", **who) from None
    who["deployment_id"] = str(unverified.get(c.DEPLOYMENT_ID) or "") or None
    if header.get("alg") != "RS256":
        raise LaunchRefused(
            "bad_algorithm",
            f"id_token: alg must be RS256, got {header.get('alg')!r}",
            status=401,
            **who,
        )
    try:
        key = await keys.key(str(config["key_set_url"]), header.get("kid"))
    except KeySetError as exc:
        raise LaunchRefused(
            "bad_signature" if exc.code == "unknown_kid" else exc.code,
            exc.message,
            # a platform slow to serve its keys is not a forged launch: 503, "try again"
            status=503 if exc.temporary else 401,
            **who,
        ) from None
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=client_id,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["iss", "aud", "exp", "iat", "nonce"], "verify_iat": True},
        )
    except jwt.InvalidSignatureError:
        raise LaunchRefused(
            "bad_signature",
            "id_token: the signature does not verify with the platform's key",
            status=401,
            **who,
        ) from None
    except jwt.ExpiredSignatureError:
        raise LaunchRefused("expired", "exp: the id_token has expired", status=401, **who) from None
    except jwt.ImmatureSignatureError:
        raise LaunchRefused(
            "not_yet_valid", "iat: the id_token is issued in the future", status=401, **who
        ) from None
    except jwt.InvalidAudienceError:
        raise LaunchRefused(
            "wrong_audience",
            f"aud: must contain gradesync's client id {client_id!r}, got {unverified.get('aud')!r}",
            status=401,
            **who,
        ) from None
    except jwt.InvalidIssuerError:
        raise LaunchRefused(
            "wrong_issuer",
            f"iss: must be {issuer!r}, got {unverified.get('iss')!r}",
            status=401,
            **who,
        ) from None
    except jwt.MissingRequiredClaimError as exc:
        raise LaunchRefused(
            "missing_claim", f"{exc.claim}: required claim missing", status=401, **who
        ) from None
    except jwt.PyJWTError as exc:
        raise LaunchRefused("invalid_token", f"id_token: {exc}", status=401, **who) from None
    aud = claims["aud"]
    azp = claims.get("azp")
    if isinstance(aud, list) and len(aud) > 1 and azp is None:
        raise LaunchRefused(
            "wrong_audience", "azp: required when aud holds several audiences", status=401, **who
        )
    if azp is not None and azp != client_id:
        raise LaunchRefused(
            "wrong_audience",
            f"azp: must be gradesync's client id {client_id!r}, got {azp!r}",
            status=401,
            **who,
        )
    if now.timestamp() - float(claims["iat"]) > MAX_TOKEN_AGE_SECONDS:
        raise LaunchRefused(
            "expired", "iat: the id_token was issued more than an hour ago", status=401, **who
        )
    if claims["nonce"] != state.nonce:
        raise LaunchRefused(
            "nonce_mismatch", "nonce: not the nonce of this login", status=401, **who
        )
    target = claims.get(c.TARGET_LINK_URI)
    if not isinstance(target, str) or origin_of(target) != origin_of(state.target_link_uri):
        # the login was checked to point at gradesync; so must the launch it started
        raise LaunchRefused(
            "wrong_target",
            f"target_link_uri: must be a gradesync URL like the login's "
            f"({state.target_link_uri!r}), got {target!r}",
            status=401,
            **who,
        )
    deployment = claims.get(c.DEPLOYMENT_ID)
    registered = [str(d) for d in config.get("deployment_ids") or []]
    if not isinstance(deployment, str) or deployment not in registered:
        raise LaunchRefused(
            "unknown_deployment",
            f"deployment_id: {deployment!r} is not a registered deployment of this platform "
            f"(registered: {', '.join(registered)})",
            status=403,
            **who,
        )
    _check_message(claims, who)
    return claims


def _check_message(claims: dict[str, Any], who: dict[str, Any]) -> None:
    def refuse(code: str, message: str) -> LaunchRefused:
        return LaunchRefused(code, message, **who)

    if claims.get(c.VERSION) != "1.3.0":
        raise refuse("bad_version", f"version: must be '1.3.0', got {claims.get(c.VERSION)!r}")
    kind = claims.get(c.MESSAGE_TYPE)
    if kind not in (c.RESOURCE_LINK_REQUEST, c.DEEP_LINKING_REQUEST):
        raise refuse(
            "unsupported_message",
            f"message_type: {kind!r} is not supported "
            "(LtiResourceLinkRequest, LtiDeepLinkingRequest)",
        )
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise refuse("missing_claim", "sub: required (anonymous launches cannot carry grades)")
    roles = claims.get(c.ROLES)
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise refuse("missing_claim", "roles: required, a list of role URIs")
    context = claims.get(c.CONTEXT)
    if context is not None and (not isinstance(context, dict) or not context.get("id")):
        raise refuse("bad_claim", "context: must be an object with an id")
    if kind == c.RESOURCE_LINK_REQUEST:
        link = claims.get(c.RESOURCE_LINK)
        if not isinstance(link, dict) or not link.get("id"):
            raise refuse("missing_claim", "resource_link.id: required for a resource link launch")
    else:
        settings = claims.get(c.DL_SETTINGS)
        if not isinstance(settings, dict) or not settings.get("deep_link_return_url"):
            raise refuse(
                "missing_claim",
                "deep_linking_settings.deep_link_return_url: required for deep linking",
            )
    for name, value in _stored_ids(claims):
        problems = id_problems(name, value, name)
        if problems:
            raise refuse("bad_claim", problems[0].message)


def _stored_ids(claims: dict[str, Any]) -> list[tuple[str, str]]:
    """The launch's ids gradesync stores or looks its records up by (as `launch_of` reads
    them), named as claims, for the rule of ids (LTI 1.3 caps them at 255 characters too),
    checked before anything is written: unchecked, PostgreSQL failed on an over-long
    resource link id or a NUL character (HTTP 500, the launch lost) where SQLite kept them."""
    custom = _object(claims, c.CUSTOM)
    said: list[tuple[str, Any]] = [
        ("sub", claims.get("sub")),
        ("resource_link.id", _object(claims, c.RESOURCE_LINK).get("id")),
        ("context.id", _object(claims, c.CONTEXT).get("id")),
    ]
    # a custom id that is not a string is left out by `launch_of`, not refused
    said += [
        (f"custom.{name}", custom.get(name))
        for name in (c.CUSTOM_COURSE, c.CUSTOM_ACTIVITY)
        if isinstance(custom.get(name), str) and custom[name]
    ]
    # absent or blank: left to the checks above and to `launch_of`
    return [(name, str(value)) for name, value in said if value is not None and str(value).strip()]


_ROLE_ORDER: tuple[tuple[str, Role], ...] = (
    ("#Administrator", Role.ADMINISTRATOR),
    ("#Instructor", Role.INSTRUCTOR),
    ("#ContentDeveloper", Role.INSTRUCTOR),
    ("#TeachingAssistant", Role.TEACHING_ASSISTANT),
    ("#Learner", Role.LEARNER),
    ("#Mentor", Role.OBSERVER),
)
_CONTEXT_ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership"


def role_from(roles: list[str]) -> Role:
    """The gradesync role of LTI role URIs. Context (membership) roles decide; institution
    or system roles only when there is none. Instructor beats learner (a teacher viewing as
    a student is still a teacher); TeachingAssistant sub-roles count as teaching assistant."""
    context = [r for r in roles if r.startswith(_CONTEXT_ROLE)]
    pool = context or roles
    # membership/Instructor#TeachingAssistant is a TA, not an instructor
    if any("#TeachingAssistant" in r for r in pool) and not any(
        r.endswith("membership#Instructor") or r.endswith("#Administrator") for r in pool
    ):
        return Role.TEACHING_ASSISTANT
    for suffix, role in _ROLE_ORDER:
        if any(r.endswith(suffix) or (suffix + "#") in r for r in pool):
            return role
    # Short forms from LTI 1.1 style ("Learner", "Instructor")
    for name, role in (("Instructor", Role.INSTRUCTOR), ("Learner", Role.LEARNER)):
        if name in pool:
            return role
    return Role.OBSERVER


def person_id_for(claims: Mapping[str, Any], source: str) -> str:
    if source == "email" and isinstance(claims.get("email"), str) and claims["email"]:
        return str(claims["email"]).strip().lower()
    if source == "lis_person_sourcedid":
        lis = claims.get(c.LIS) or {}
        if isinstance(lis, dict) and lis.get("person_sourcedid"):
            return str(lis["person_sourcedid"])
    return str(claims["sub"])


def checked_endpoint(
    platform: Destination, claims: Mapping[str, Any], guard: OutboundGuard | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """The AGS endpoint claim if every URL in it is on the platform's origins and, with the
    outbound `guard`, leads where gradesync may send requests; else (None, why)."""
    endpoint = claims.get(c.AGS_ENDPOINT)
    if endpoint is None:
        return None, None
    if not isinstance(endpoint, dict):
        return None, "the AGS endpoint claim is not an object"
    origins = allowed_origins(platform.config)
    try:
        for key in ("lineitems", "lineitem"):
            if endpoint.get(key) is not None:
                check_url(str(endpoint[key]), origins, f"endpoint.{key}")
                why = guard.static_problem(str(endpoint[key])) if guard else None
                if why is not None:
                    return None, f"endpoint.{key}: {endpoint[key]!r} is refused: {why}"
    except ForeignUrl as exc:
        return None, str(exc)
    return endpoint, None


def _claimed(claims: Mapping[str, Any], name: str) -> str | None:
    """A string claim the launch actually carries: absent, null and "" are all "not said"
    (platforms with privacy settings send either)."""
    value = claims.get(name)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _object(claims: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = claims.get(name)
    return dict(value) if isinstance(value, dict) else {}


def launch_of(
    platform: Destination,
    state: LoginState,
    claims: dict[str, Any],
    guard: OutboundGuard | None = None,
) -> Lti13Launch:
    """What a verified launch says, in gradesync's terms (its AGS endpoint kept only where
    the outbound `guard` allows requests)."""
    roles = [str(r) for r in claims.get(c.ROLES) or []]
    custom = _object(claims, c.CUSTOM)
    lis = _object(claims, c.LIS)
    link = claims.get(c.RESOURCE_LINK)
    link_id = link.get("id") if isinstance(link, dict) else None
    endpoint, ignored = checked_endpoint(platform, claims, guard)
    tool_platform = claims.get(c.TOOL_PLATFORM)
    name = _claimed(claims, "name") or " ".join(
        n for n in (_claimed(claims, "given_name"), _claimed(claims, "family_name")) if n
    )
    course = custom.get(c.CUSTOM_COURSE)
    activity = custom.get(c.CUSTOM_ACTIVITY)
    return Lti13Launch(
        platform=platform,
        claims=claims,
        nonce=state.nonce,
        nonce_expires=datetime.fromtimestamp(state.expires, UTC),
        deep_linking=claims.get(c.MESSAGE_TYPE) == c.DEEP_LINKING_REQUEST,
        deployment_id=str(claims.get(c.DEPLOYMENT_ID)),
        sub=str(claims["sub"]),
        person_id=person_id_for(claims, str(platform.config.get("person_id_from") or "sub")),
        roles=roles,
        role=role_from(roles),
        name=name or None,
        email=_claimed(claims, "email"),
        sis_id=_claimed(lis, "person_sourcedid"),
        context=_object(claims, c.CONTEXT),
        custom_course_id=course if isinstance(course, str) and course else None,
        custom_activity_id=activity if isinstance(activity, str) and activity else None,
        resource_link_id=str(link_id) if link_id else None,
        endpoint=endpoint,
        ignored_endpoint=ignored,
        tool_platform=dict(tool_platform) if isinstance(tool_platform, dict) else None,
    )
