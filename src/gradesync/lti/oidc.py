"""OIDC third-party login initiation (LTI 1.3 core, section 5.1.1).

The platform sends the browser to our login URL with iss, login_hint, target_link_uri (and
usually client_id, lti_deployment_id, lti_message_hint). We find the registration, make a
one-time nonce (stored) and an encrypted state that binds the nonce to the registration, and
send the browser to the platform's auth URL. The launch then proves it answers this login.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from gradesync.adapters.destinations.ags_urls import origin_of
from gradesync.adapters.secretbox import SecretBox, SecretBoxError
from gradesync.domain.model import Destination
from gradesync.lti.errors import LaunchRefused
from gradesync.lti.registration import find_platforms
from gradesync.services.ports import UnitOfWork

LOGIN_TTL = timedelta(minutes=10)
STATE_COOKIE = "gradesync_lti_state"
NONCE_PURPOSE = "lti_nonce"


def nonce_key(nonce: str) -> str:
    """How a login's nonce is kept in the nonce store."""
    return f"{NONCE_PURPOSE}:{nonce}"


@dataclass(frozen=True, slots=True)
class LoginRedirect:
    url: str
    state: str
    state_digest: str  # stored in a cookie to bind the launch to this browser when it can
    platform: Destination


@dataclass(frozen=True, slots=True)
class LoginState:
    tenant_id: str
    destination_id: str
    nonce: str
    target_link_uri: str
    expires: float


def state_digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()[:40]


def _param(params: Mapping[str, str], name: str, required: bool = True) -> str | None:
    value = params.get(name)
    if value is None or not str(value).strip():
        if required:
            raise LaunchRefused("missing_parameter", f"{name}: required by OIDC login initiation")
        return None
    return str(value).strip()


def start_login(
    uow: UnitOfWork,
    box: SecretBox,
    params: Mapping[str, str],
    *,
    base_url: str,
    now: datetime,
) -> LoginRedirect:
    """Validate a login initiation and build the redirect to the platform. Stores the nonce
    in `uow` (the caller commits)."""
    issuer = _param(params, "iss")
    assert issuer is not None
    login_hint = _param(params, "login_hint")
    target = _param(params, "target_link_uri")
    assert target is not None
    client_id = _param(params, "client_id", required=False)
    deployment_id = _param(params, "lti_deployment_id", required=False)
    who: dict[str, Any] = {"issuer": issuer, "client_id": client_id, "deployment_id": deployment_id}
    candidates = find_platforms(uow, issuer, client_id)
    if not candidates:
        raise LaunchRefused(
            "unknown_platform",
            f"iss/client_id: no platform is registered with issuer {issuer!r}"
            + (f" and client id {client_id!r}" if client_id else ""),
            status=400,
            **who,
        )
    if len(candidates) > 1 and deployment_id is not None:
        candidates = [
            d for d in candidates if deployment_id in (d.config.get("deployment_ids") or [])
        ] or candidates
    if len(candidates) > 1:
        raise LaunchRefused(
            "ambiguous_platform",
            f"client_id: several registrations share issuer {issuer!r}; the platform must send "
            "client_id (and lti_deployment_id) in the login initiation",
            **who,
        )
    platform = candidates[0]
    who.update(tenant_id=platform.tenant_id, destination_id=platform.id)
    if not platform.enabled:
        raise LaunchRefused(
            "platform_disabled", "this platform registration is disabled", status=403, **who
        )
    deployments = [str(d) for d in platform.config.get("deployment_ids") or []]
    if deployment_id is not None and deployment_id not in deployments:
        raise LaunchRefused(
            "unknown_deployment",
            f"lti_deployment_id: {deployment_id!r} is not a registered deployment of this "
            f"platform (registered: {', '.join(deployments)})",
            status=403,
            **who,
        )
    if origin_of(target) != origin_of(base_url):
        raise LaunchRefused(
            "foreign_target",
            f"target_link_uri: {target!r} is not a gradesync URL ({base_url})",
            **who,
        )
    nonce = secrets.token_urlsafe(32)
    expires = now + LOGIN_TTL
    uow.nonces.add(nonce_key(nonce), NONCE_PURPOSE, expires, now)
    state = box.encrypt(
        json.dumps(
            {
                "t": platform.tenant_id,
                "d": platform.id,
                "n": nonce,
                "u": target,
                "x": expires.timestamp(),
            }
        ).encode()
    )
    query: dict[str, str] = {
        "scope": "openid",
        "response_type": "id_token",
        "response_mode": "form_post",
        "prompt": "none",
        "client_id": str(platform.config["client_id"]),
        "redirect_uri": base_url.rstrip("/") + "/lti/launch",
        "login_hint": str(login_hint),
        "state": state,
        "nonce": nonce,
    }
    hint = _param(params, "lti_message_hint", required=False)
    if hint is not None:
        query["lti_message_hint"] = hint
    auth_url = str(platform.config["auth_login_url"])
    sep = "&" if "?" in auth_url else "?"
    return LoginRedirect(
        url=f"{auth_url}{sep}{urlencode(query)}",
        state=state,
        state_digest=state_digest(state),
        platform=platform,
    )


def read_state(box: SecretBox, state: str | None, now: datetime) -> LoginState:
    if not state:
        raise LaunchRefused("missing_state", "state: required (the launch must answer a login)")
    try:
        data = json.loads(box.decrypt(state))
        parsed = LoginState(
            tenant_id=str(data["t"]),
            destination_id=str(data["d"]),
            nonce=str(data["n"]),
            target_link_uri=str(data["u"]),
            expires=float(data["x"]),
        )
    except (SecretBoxError, ValueError, KeyError, TypeError, UnicodeError):
        raise LaunchRefused("bad_state", "state: not a state gradesync issued") from None
    if parsed.expires <= now.timestamp():
        raise LaunchRefused(
            "state_expired",
            "state: the login expired (more than 10 minutes between login and launch); "
            "open the link again",
            tenant_id=parsed.tenant_id,
            destination_id=parsed.destination_id,
        )
    return parsed
