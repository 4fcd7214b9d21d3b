"""LTI Dynamic Registration 1.0, tool side: read a platform's OpenID configuration, register
gradesync with it, and turn the answer into a platform registration.

The platform opens gradesync's registration URL with `openid_configuration` (where its
configuration is) and, usually, a one-time `registration_token`. gradesync GETs the
configuration, checks that the issuer is a prefix of the configuration URL (the spec's rule,
so one platform cannot pose as another) and that every endpoint it needs is there, then POSTs
its client registration (OpenID Connect Dynamic Client Registration with the LTI tool
configuration) to `registration_endpoint`. The answer carries the client id and the
deployment id; `registration_of` makes the platform registration an admin would type.
The caller's HTTP client is the outbound-guarded one: these URLs come from the platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from gradesync.lti.claims import AGS_SCOPES, SCOPE_MEMBERSHIP
from gradesync.lti.registration import tool_urls
from gradesync.services.destination import RemoteFailure

PLATFORM_CONFIG = "https://purl.imsglobal.org/spec/lti-platform-configuration"
TOOL_CONFIG = "https://purl.imsglobal.org/spec/lti-tool-configuration"
TOOL_SCOPES = (*AGS_SCOPES, SCOPE_MEMBERSHIP)
CLAIMS = ("iss", "sub", "name", "given_name", "family_name", "email")
TIMEOUT = 10.0
# product_family_code -> gradesync's AGS profile of that LMS
PROFILES = {
    "canvas": "canvas",
    "moodle": "moodle",
    "desire2learn": "brightspace",
    "brightspace": "brightspace",
    "blackboardlearn": "blackboard",
    "blackboard": "blackboard",
    "schoology": "schoology",
}
_REQUIRED = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")


class RegistrationFailed(Exception):
    """Registration cannot go on; the message names the field or the platform's words."""


@dataclass(frozen=True, slots=True)
class PlatformConfiguration:
    url: str
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    registration_endpoint: str
    product_family_code: str
    scopes_supported: tuple[str, ...]
    audience: str | None

    @property
    def profile(self) -> str:
        return PROFILES.get(self.product_family_code.lower(), "generic")

    @property
    def scopes(self) -> list[str]:
        """The scopes gradesync asks for: those the platform says it supports (all of
        gradesync's when it does not say)."""
        if not self.scopes_supported:
            return list(TOOL_SCOPES)
        return [s for s in TOOL_SCOPES if s in self.scopes_supported]


def _http_url(value: Any) -> bool:
    parts = urlsplit(value) if isinstance(value, str) else None
    return parts is not None and parts.scheme in ("http", "https") and bool(parts.netloc)


def check_configuration_url(url: str) -> str:
    if not _http_url(url):
        raise RegistrationFailed("openid_configuration: must be an http(s) URL")
    return url


async def read_configuration(http: httpx.AsyncClient, url: str) -> PlatformConfiguration:
    """The platform's OpenID configuration, checked. Raises RegistrationFailed."""
    check_configuration_url(url)
    try:
        resp = await http.get(url, headers={"Accept": "application/json"}, timeout=TIMEOUT)
    except RemoteFailure as exc:  # the outbound guard refused the address
        raise RegistrationFailed(f"openid_configuration: {exc.message}") from None
    except httpx.HTTPError as exc:
        raise RegistrationFailed(f"openid_configuration: could not be read ({exc})") from None
    if resp.status_code != 200:
        raise RegistrationFailed(f"openid_configuration: the platform answered {resp.status_code}")
    try:
        data = resp.json()
    except ValueError:
        raise RegistrationFailed("openid_configuration: the answer is not JSON") from None
    if not isinstance(data, dict):
        raise RegistrationFailed("openid_configuration: the answer is not a JSON object")
    problems = [f"{k}: required, an http(s) URL" for k in _REQUIRED if not _http_url(data.get(k))]
    if not _http_url(data.get("registration_endpoint")):
        problems.append(
            "registration_endpoint: required (the platform does not offer dynamic registration)"
        )
    if problems:
        raise RegistrationFailed("openid_configuration: " + "; ".join(problems))
    issuer = str(data["issuer"])
    if not url.startswith(issuer.rstrip("/")):
        raise RegistrationFailed(
            f"issuer: {issuer!r} must be a prefix of the configuration URL {url!r}"
        )
    lti = data.get(PLATFORM_CONFIG) if isinstance(data.get(PLATFORM_CONFIG), dict) else {}
    scopes = data.get("scopes_supported")
    audience = data.get("authorization_server")
    return PlatformConfiguration(
        url=url,
        issuer=issuer,
        authorization_endpoint=str(data["authorization_endpoint"]),
        token_endpoint=str(data["token_endpoint"]),
        jwks_uri=str(data["jwks_uri"]),
        registration_endpoint=str(data["registration_endpoint"]),
        product_family_code=str((lti or {}).get("product_family_code") or ""),
        scopes_supported=tuple(str(s) for s in scopes) if isinstance(scopes, list) else (),
        audience=str(audience) if isinstance(audience, str) and audience else None,
    )


def client_registration(base_url: str, config: PlatformConfiguration) -> dict[str, Any]:
    """What gradesync registers: its URLs, keys, claims, scopes and placements."""
    urls = tool_urls(base_url)
    return {
        "application_type": "web",
        "response_types": ["id_token"],
        "grant_types": ["implicit", "client_credentials"],
        "initiate_login_uri": urls["oidc_login_url"],
        "redirect_uris": [urls["redirect_uri"]],
        "client_name": "gradesync",
        "jwks_uri": urls["jwks_url"],
        "token_endpoint_auth_method": "private_key_jwt",
        "scope": " ".join(config.scopes),
        TOOL_CONFIG: {
            "domain": urls["domain"],
            "target_link_uri": urls["target_link_uri"],
            "claims": list(CLAIMS),
            "messages": [
                {"type": "LtiResourceLinkRequest", "target_link_uri": urls["target_link_uri"]},
                {
                    "type": "LtiDeepLinkingRequest",
                    "target_link_uri": urls["deep_linking_url"],
                    "label": "gradesync",
                    "placements": ["ContentArea"],
                },
            ],
            "description": "Grades from the courseware into this gradebook",
        },
    }


async def register(
    http: httpx.AsyncClient,
    config: PlatformConfiguration,
    registration: dict[str, Any],
    token: str | None,
) -> dict[str, Any]:
    """POST the registration; the platform's answer (client id, deployment). Raises
    RegistrationFailed with the platform's words."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        resp = await http.post(
            config.registration_endpoint, json=registration, headers=headers, timeout=TIMEOUT
        )
    except RemoteFailure as exc:  # the outbound guard refused the address
        raise RegistrationFailed(f"registration_endpoint: {exc.message}") from None
    except httpx.HTTPError as exc:
        raise RegistrationFailed(f"registration_endpoint: could not be reached ({exc})") from None
    try:
        answer = resp.json()
    except ValueError:
        answer = None
    if not resp.is_success:
        words = (
            answer.get("error_description") or answer.get("error")
            if isinstance(answer, dict)
            else resp.text[:300]
        )
        raise RegistrationFailed(
            f"the platform refused the registration ({resp.status_code}): {words}"
        )
    if not isinstance(answer, dict) or not answer.get("client_id"):
        raise RegistrationFailed("the platform's answer has no client_id")
    return answer


def registration_of(
    config: PlatformConfiguration, answer: dict[str, Any], platform_id: str
) -> dict[str, Any]:
    """The platform registration to store (what `platform_of` checks)."""
    tool = answer.get(TOOL_CONFIG) if isinstance(answer.get(TOOL_CONFIG), dict) else {}
    deployment = (tool or {}).get("deployment_id")
    data: dict[str, Any] = {
        "id": platform_id,
        "issuer": config.issuer,
        "client_id": str(answer["client_id"]),
        "deployment_ids": [str(deployment)] if deployment else [],
        "auth_login_url": config.authorization_endpoint,
        "auth_token_url": config.token_endpoint,
        "key_set_url": config.jwks_uri,
        "profile": config.profile,
    }
    if config.audience:
        data["audience"] = config.audience
    return data
