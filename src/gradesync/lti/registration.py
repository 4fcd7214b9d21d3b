"""Platform registrations: an LMS (issuer + client id) that gradesync is installed in.

A registration is a `Destination` of kind lti13_ags in the tenant that owns the courses. Its
config holds what the LMS admin copies from the LMS (issuer, client id, deployment ids, OIDC
auth URL, token URL, key set URL) plus gradesync settings (profile, scopes, allowed hosts).
(issuer, client_id) identifies a registration across all tenants: that is how a login from
an LMS finds its tenant. This module checks what an admin gives; storing and finding
registrations is `gradesync.services.lti.platforms`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from gradesync.adapters.destinations.ags_profiles import PROFILE_NAMES
from gradesync.adapters.destinations.ags_urls import is_loopback, origin_of, parse_allowed_host
from gradesync.domain.errors import FieldProblem, InvalidInput
from gradesync.domain.model import (
    DESTINATION_ID_RE,
    DESTINATION_ID_RULE,
    DESTINATION_NAME_MAX,
    Destination,
    DestinationKind,
)
from gradesync.lti.claims import AGS_SCOPES
from gradesync.services.outbound import OutboundGuard, remedy_for, url_field_problem

PERSON_ID_SOURCES = ("sub", "email", "lis_person_sourcedid")
_URL_FIELDS = ("issuer", "auth_login_url", "auth_token_url", "key_set_url")
_KNOWN = {
    "id",
    "name",
    "issuer",
    "client_id",
    "deployment_ids",
    "auth_login_url",
    "auth_token_url",
    "key_set_url",
    "audience",
    "profile",
    "scopes",
    "allowed_hosts",
    "concurrency",
    "tag",
    "person_id_from",
    "enabled",
}
# gradesync's own settings for a platform, not the LMS's: all that a PUT, which gives the
# LMS's side of the registration whole (docs/lti13.md), keeps when it leaves them out
KEPT_ON_REPLACE = ("enabled", "concurrency", "tag")
# what a registration may leave out (absent or null): a new one gets the default, an update
# keeps the stored value (`save_platform`)
OPTIONAL = (
    *KEPT_ON_REPLACE,
    "name",
    "profile",
    "audience",
    "scopes",
    "allowed_hosts",
    "person_id_from",
)


@dataclass(frozen=True, slots=True)
class PlatformSpec:
    """A validated registration."""

    id: str
    name: str
    issuer: str
    client_id: str
    deployment_ids: tuple[str, ...]
    auth_login_url: str
    auth_token_url: str
    key_set_url: str
    audience: str | None = None
    profile: str = "generic"
    scopes: tuple[str, ...] = AGS_SCOPES
    allowed_hosts: tuple[str, ...] = ()
    concurrency: int = 8
    tag: str = "grade"
    person_id_from: str = "sub"
    enabled: bool = True

    def config(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "client_id": self.client_id,
            "deployment_ids": list(self.deployment_ids),
            "auth_login_url": self.auth_login_url,
            "auth_token_url": self.auth_token_url,
            "key_set_url": self.key_set_url,
            "audience": self.audience,
            "scopes": list(self.scopes),
            "allowed_hosts": list(self.allowed_hosts),
            "concurrency": self.concurrency,
            "tag": self.tag,
            "person_id_from": self.person_id_from,
        }

    def destination(self, tenant_id: str) -> Destination:
        return Destination(
            tenant_id=tenant_id,
            id=self.id,
            kind=DestinationKind.LTI13_AGS,
            name=self.name,
            profile=self.profile,
            config=self.config(),
            enabled=self.enabled,
        )


def _url_problem(field: str, value: Any, guard: OutboundGuard | None) -> FieldProblem | None:
    if not isinstance(value, str) or not value.strip():
        return FieldProblem(field, "required", f"{field} is required: an absolute https URL.")
    # the shape (and NUL, credentials) as every destination URL is checked
    shape = url_field_problem(field, value.strip(), None)
    if shape is not None:
        return shape
    return _address_problem(field, value.strip(), guard)


def _address_problem(field: str, url: str, guard: OutboundGuard | None) -> FieldProblem | None:
    """Where the URL leads must be a place gradesync may send requests to."""
    if guard is None:  # no outbound policy at hand: https, or plain http on this machine
        plain = origin_of(url) is not None and not url.lower().startswith("https:")
        if plain and not is_loopback(url):
            return FieldProblem(field, "https", f"{field} must use https.")
        return None
    why = guard.url_problem(url)
    if why is None:
        return None
    # the field is named beside the message wherever it is shown (field: message)
    return FieldProblem(field, "address", f"{url!r} is refused: {why}. {remedy_for(why)}")


def _strings(data: Mapping[str, Any], field: str, problems: list[FieldProblem]) -> list[str]:
    value = data.get(field)
    if value is None:
        return []
    if isinstance(value, str):  # "1,2" from a CLI or form
        value = [v for v in re.split(r"[,\s]+", value) if v]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        problems.append(FieldProblem(field, "string_list", f"{field} must be a list of strings."))
        return []
    return [str(v).strip() for v in value]


def _or_default(data: Mapping[str, Any], field: str, default: Any) -> Any:
    value = data.get(field)
    return default if value is None else value


def left_out(data: Mapping[str, Any], among: Collection[str] = OPTIONAL) -> frozenset[str]:
    """The fields of `among` that `data` does not give (absent or null): what `save_platform`
    keeps from the stored registration when it updates one."""
    return frozenset(k for k in among if data.get(k) is None)


def validate_platform(data: Mapping[str, Any], guard: OutboundGuard | None = None) -> PlatformSpec:
    """Check a registration; raise InvalidInput naming every bad field and its rule. With
    `guard`, every URL (and allowed host) must lead where gradesync may send requests.
    Fields left out (absent or null) get their defaults; for an update, the caller passes
    `left_out(data)` to `save_platform`, which keeps the stored ones instead."""
    problems: list[FieldProblem] = []
    for extra in sorted(set(data) - _KNOWN):
        problems.append(
            FieldProblem(extra, "unknown_field", f"{extra} is not a registration field.")
        )
    ident = data.get("id")
    if not isinstance(ident, str) or not DESTINATION_ID_RE.match(ident):
        problems.append(
            FieldProblem(
                "id",
                "pattern",
                DESTINATION_ID_RULE,
            )
        )
    client_id = data.get("client_id")
    if not isinstance(client_id, str) or not client_id.strip():
        problems.append(FieldProblem("client_id", "required", "client_id is required."))
    for field in _URL_FIELDS:
        if (p := _url_problem(field, data.get(field), guard)) is not None:
            problems.append(p)
    audience = data.get("audience")
    if audience is not None and (not isinstance(audience, str) or not audience.strip()):
        problems.append(
            FieldProblem("audience", "string", "audience, when given, is a non-empty string.")
        )
    deployments = _strings(data, "deployment_ids", problems)
    if not deployments and not any(p.field == "deployment_ids" for p in problems):
        problems.append(
            FieldProblem(
                "deployment_ids",
                "required",
                "deployment_ids needs at least one deployment id (shown by the LMS when the "
                "tool is deployed).",
            )
        )
    profile = data.get("profile") or "generic"
    if profile not in PROFILE_NAMES:
        problems.append(
            FieldProblem("profile", "one_of", f"profile must be one of {', '.join(PROFILE_NAMES)}.")
        )
    scopes = _strings(data, "scopes", problems) or list(AGS_SCOPES)
    unknown = [s for s in scopes if s not in AGS_SCOPES]
    if unknown:
        problems.append(
            FieldProblem("scopes", "one_of", f"unknown AGS scope(s): {', '.join(unknown)}.")
        )
    hosts = _strings(data, "allowed_hosts", problems)
    bad_hosts = [h for h in hosts if parse_allowed_host(h) is None]
    # an entry with `user:password@` is not repeated: the refusal is shown and logged
    shown = [h if "@" not in h else "(an entry with credentials)" for h in bad_hosts]
    if bad_hosts:
        problems.append(
            FieldProblem(
                "allowed_hosts",
                "host",
                "allowed_hosts entries are host names (school.instructure.com) or origins "
                f"(https://host:port), without credentials; not: {', '.join(shown)}.",
            )
        )
    for host in hosts if not bad_hosts else ():
        url = host if "://" in host else f"https://{host}"
        if (p := _address_problem("allowed_hosts", url, guard)) is not None:
            problems.append(p)
            break
    concurrency = _or_default(data, "concurrency", 8)
    if isinstance(concurrency, str) and concurrency.isdigit():
        concurrency = int(concurrency)
    if (
        isinstance(concurrency, bool)
        or not isinstance(concurrency, int)
        or not 1 <= concurrency <= 256
    ):
        problems.append(
            FieldProblem(
                "concurrency", "range", "concurrency must be a whole number from 1 to 256."
            )
        )
    tag = _or_default(data, "tag", "grade")
    if not isinstance(tag, str) or not tag.strip() or len(tag) > 64:
        problems.append(
            FieldProblem("tag", "string", "tag must be a non-empty string of up to 64 characters.")
        )
    person_from = _or_default(data, "person_id_from", "sub")
    if person_from not in PERSON_ID_SOURCES:
        problems.append(
            FieldProblem(
                "person_id_from",
                "one_of",
                f"person_id_from must be one of {', '.join(PERSON_ID_SOURCES)}.",
            )
        )
    name = data.get("name") or ident
    if not isinstance(name, str) or len(name) > DESTINATION_NAME_MAX:
        problems.append(
            FieldProblem(
                "name", "string", f"name must be a text of up to {DESTINATION_NAME_MAX} characters."
            )
        )
    enabled = _or_default(data, "enabled", True)
    if not isinstance(enabled, bool):
        problems.append(FieldProblem("enabled", "boolean", "enabled must be true or false."))
    if problems:
        raise InvalidInput(problems)
    return PlatformSpec(
        id=str(ident),
        name=str(name),
        # compared character for character with the `iss` claim: kept exactly as given
        issuer=str(data["issuer"]).strip(),
        client_id=str(client_id).strip(),
        deployment_ids=tuple(dict.fromkeys(deployments)),
        auth_login_url=str(data["auth_login_url"]).strip(),
        auth_token_url=str(data["auth_token_url"]).strip(),
        key_set_url=str(data["key_set_url"]).strip(),
        audience=audience.strip() if isinstance(audience, str) else None,
        profile=str(profile),
        scopes=tuple(dict.fromkeys(scopes)),
        allowed_hosts=tuple(hosts),
        concurrency=int(concurrency),
        tag=str(tag).strip(),
        person_id_from=str(person_from),
        enabled=bool(enabled),
    )


def spec_of(dest: Destination) -> dict[str, Any]:
    """A registration as shown to an admin (no secrets: LTI 1.3 platforms have none)."""
    return {
        "id": dest.id,
        "name": dest.name,
        "profile": dest.profile,
        "enabled": dest.enabled,
        **dest.config,
    }


def platform_of(
    tenant_id: str, data: Mapping[str, Any], guard: OutboundGuard | None = None
) -> Destination:
    """A registration checked and made into the destination it is stored as
    (`gradesync.services.lti.platforms.save_platform` stores it). Raises InvalidInput naming
    every bad field and its rule. Every entrypoint passes the runtime's outbound `guard`."""
    return validate_platform(data, guard).destination(tenant_id)


def tool_urls(base_url: str) -> dict[str, str]:
    """What an LMS admin pastes into the LMS when registering gradesync."""
    base = base_url.rstrip("/")
    return {
        "oidc_login_url": f"{base}/lti/login",
        "target_link_uri": f"{base}/lti/launch",
        "redirect_uri": f"{base}/lti/launch",
        "deep_linking_url": f"{base}/lti/launch",
        "jwks_url": f"{base}/lti/jwks.json",
        "domain": base.split("://", 1)[-1].split("/", 1)[0],
    }
