"""OIDC third-party login initiation (LTI 1.3 core, section 5.1.1).

The platform sends the browser to our login URL with iss, login_hint, target_link_uri (and
usually client_id, lti_deployment_id, lti_message_hint). We find the registration, make a
one-time nonce and an encrypted state that binds the nonce to the registration (nothing is
stored: `gradesync.services.lti.login`), and send the browser to the platform's auth URL.
The launch then proves it answers this login, and uses the nonce up.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from gradesync.adapters.destinations.ags_urls import origin_of
from gradesync.adapters.secretbox import SecretBox, SecretBoxError
from gradesync.domain.model import Destination
from gradesync.services.lti.errors import LaunchRefused

STATE_COOKIE = "gradesync_lti_state"


@dataclass(frozen=True, slots=True)
class LoginRedirect:
    url: str
    state: str
    state_digest: str  # stored in a cookie to bind the launch to this browser when it can
    platform: Destination
    nonce: str


@dataclass(frozen=True, slots=True)
class LoginState:
    tenant_id: str
    destination_id: str
    nonce: str
    target_link_uri: str
    expires: float
    # the platform's client-side storage frame the login offered (`lti_storage_target`)
    storage_target: str | None = None


def state_digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()[:40]


def _param(params: Mapping[str, str], name: str, required: bool = True) -> str | None:
    value = params.get(name)
    if value is None or not str(value).strip():
        if required:
            raise LaunchRefused("missing_parameter", f"{name}: required by OIDC login initiation")
        return None
    return str(value).strip()


@dataclass(frozen=True, slots=True)
class LoginRequest:
    """What a platform's login initiation says."""

    issuer: str
    login_hint: str
    target_link_uri: str
    client_id: str | None
    deployment_id: str | None
    message_hint: str | None
    storage_target: str | None = None  # `lti_storage_target`: the platform's storage frame

    @property
    def who(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "client_id": self.client_id,
            "deployment_id": self.deployment_id,
        }


def login_request(params: Mapping[str, str]) -> LoginRequest:
    """Read a login initiation (iss, login_hint, target_link_uri required)."""
    issuer = _param(params, "iss")
    login_hint = _param(params, "login_hint")
    target = _param(params, "target_link_uri")
    assert issuer is not None and login_hint is not None and target is not None
    return LoginRequest(
        issuer=issuer,
        login_hint=login_hint,
        target_link_uri=target,
        client_id=_param(params, "client_id", required=False),
        deployment_id=_param(params, "lti_deployment_id", required=False),
        message_hint=_param(params, "lti_message_hint", required=False),
        storage_target=_storage_target(params),
    )


_FRAME_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


def _storage_target(params: Mapping[str, str]) -> str | None:
    """The frame name the platform's storage answers in ("_parent": the LMS window itself).
    It is written into the tool's page script, so only a plain frame name is taken."""
    target = _param(params, "lti_storage_target", required=False)
    if target is not None and not _FRAME_NAME.fullmatch(target):
        raise LaunchRefused(
            "bad_parameter",
            "lti_storage_target: must be a frame name (letters, digits, '_.:-', at most 100)",
        )
    return target


def check_target(request: LoginRequest, platform: Destination, base_url: str) -> None:
    """The launch must come back to gradesync, not to a URL the login names elsewhere."""
    if origin_of(request.target_link_uri) != origin_of(base_url):
        raise LaunchRefused(
            "foreign_target",
            f"target_link_uri: {request.target_link_uri!r} is not a gradesync URL ({base_url})",
            tenant_id=platform.tenant_id,
            destination_id=platform.id,
            **request.who,
        )


def login_redirect(
    request: LoginRequest,
    platform: Destination,
    box: SecretBox,
    *,
    nonce: str,
    expires: datetime,
    base_url: str,
) -> LoginRedirect:
    """The redirect to the platform's auth URL, with an encrypted state that binds the
    nonce to the registration (the launch uses the nonce up when it is recorded)."""
    state = box.encrypt(
        json.dumps(
            {
                "t": platform.tenant_id,
                "d": platform.id,
                "n": nonce,
                "u": request.target_link_uri,
                "x": expires.timestamp(),
                **({"s": request.storage_target} if request.storage_target else {}),
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
        "login_hint": request.login_hint,
        "state": state,
        "nonce": nonce,
    }
    if request.message_hint is not None:
        query["lti_message_hint"] = request.message_hint
    auth_url = str(platform.config["auth_login_url"])
    sep = "&" if "?" in auth_url else "?"
    return LoginRedirect(
        url=f"{auth_url}{sep}{urlencode(query)}",
        state=state,
        state_digest=state_digest(state),
        platform=platform,
        nonce=nonce,
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
            storage_target=str(data["s"]) if data.get("s") else None,
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
