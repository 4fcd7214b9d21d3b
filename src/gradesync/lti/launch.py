"""Launch validation (LTI 1.3 core section 5.1.3, OIDC id_token rules).

In order: the state is ours and fresh; the registration it names exists; the token is RS256
and its signature verifies with the platform's key (from its key set URL, cached); iss is the
registered issuer; aud holds our client id (and azp names us when there are several
audiences); exp/iat are sane; the nonce is the one this login issued and has not been used;
the deployment is registered; the message is a 1.3 resource link or deep linking request with
the claims it needs. Any failure refuses the launch with a code and a sentence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt

from gradesync.adapters.secretbox import SecretBox
from gradesync.domain.model import Destination, DestinationKind
from gradesync.lti import claims as c
from gradesync.lti.errors import LaunchRefused
from gradesync.lti.oidc import NONCE_PURPOSE, LoginState, nonce_key, read_state, state_digest
from gradesync.lti.platform_keys import KeySetError, PlatformKeyCache
from gradesync.services.ports import UnitOfWork

LEEWAY_SECONDS = 60
MAX_TOKEN_AGE_SECONDS = 3600  # an id_token issued more than an hour ago is not a live launch


@dataclass(frozen=True, slots=True)
class ValidLaunch:
    platform: Destination
    claims: dict[str, Any]
    state: LoginState

    @property
    def message_type(self) -> str:
        return str(self.claims.get(c.MESSAGE_TYPE))

    @property
    def deployment_id(self) -> str:
        return str(self.claims.get(c.DEPLOYMENT_ID))


async def validate_launch(
    uow: UnitOfWork,
    box: SecretBox,
    keys: PlatformKeyCache,
    form: Mapping[str, str],
    *,
    now: datetime,
    state_cookie: str | None = None,
) -> ValidLaunch:
    """Validate a launch POST (id_token + state). Consumes the nonce in `uow` (the caller
    commits). Raises LaunchRefused."""
    if form.get("error"):
        raise LaunchRefused(
            "platform_error",
            f"the platform answered the login with error {form.get('error')!r}: "
            f"{form.get('error_description') or 'no description'}",
        )
    state = read_state(box, form.get("state"), now)
    who: dict[str, Any] = {"tenant_id": state.tenant_id, "destination_id": state.destination_id}
    if state_cookie is not None and state_cookie != state_digest(str(form.get("state"))):
        raise LaunchRefused(
            "state_mismatch",
            "state: this launch answers a login started in another browser",
            **who,
        )
    platform = uow.destinations.get(state.tenant_id, state.destination_id)
    if platform is None or platform.kind is not DestinationKind.LTI13_AGS:
        raise LaunchRefused(
            "unknown_platform", "state: the platform registration no longer exists", **who
        )
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
    if not uow.nonces.consume(nonce_key(state.nonce), NONCE_PURPOSE, now):
        raise LaunchRefused(
            "nonce_replayed",
            "nonce: already used (a replayed launch) or expired",
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
    return ValidLaunch(platform=platform, claims=claims, state=state)


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
