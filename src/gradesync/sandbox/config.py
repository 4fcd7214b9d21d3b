"""Sandbox configuration and seed data (what the LMS and SIS hold when they start).

The same pydantic models validate the seed file, the CLI flags and the admin endpoints, so a
bad value gets the same message (field and rule) wherever it comes from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Mode = Literal["canvas", "moodle", "generic"]
LineItemFilters = Literal["honoured", "ignored"]

AGS_LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
AGS_LINEITEM_READONLY = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly"
AGS_RESULT_READONLY = "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly"
AGS_SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
AGS_SCOPES = (AGS_LINEITEM, AGS_LINEITEM_READONLY, AGS_RESULT_READONLY, AGS_SCORE)
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
TOOL_SCOPES = (*AGS_SCOPES, NRPS_SCOPE)

OR_SCOPE_PREFIX = "https://purl.imsglobal.org/spec/or/v1p2/scope/"
OR_READONLY = OR_SCOPE_PREFIX + "gradebook.readonly"
OR_CREATEPUT = OR_SCOPE_PREFIX + "gradebook.createput"
OR_DELETE = OR_SCOPE_PREFIX + "gradebook.delete"
OR_SCOPES = (OR_READONLY, OR_CREATEPUT, OR_DELETE)

# Ids end up in URL paths; keep them to characters that need no escaping.
ID_PATTERN = r"^[A-Za-z0-9._~:@-]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserSeed(_Strict):
    sub: str = Field(pattern=ID_PATTERN, description="LTI subject (user id in the LMS)")
    name: str = ""
    given_name: str = ""
    family_name: str = ""
    email: str = ""
    sis_id: str | None = Field(default=None, description="SIS sourcedId of the person")


class SectionSeed(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    title: str = ""
    sis_id: str | None = Field(default=None, description="SIS class sourcedId of the section")
    learners: list[str] = Field(default_factory=list)


class ResourceLinkSeed(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    title: str = ""
    client_id: str | None = None
    url: str | None = None
    custom: dict[str, str] = Field(default_factory=dict)


class LineItemSeed(_Strict):
    label: str = Field(min_length=1)
    scoreMaximum: float = Field(gt=0)
    resourceId: str | None = None
    tag: str | None = None
    resourceLinkId: str | None = None
    startDateTime: str | None = None
    endDateTime: str | None = None
    client_id: str | None = Field(default=None, description="owning tool; None = created in LMS")
    published: bool = True
    allowed_attempts: int | None = Field(default=None, ge=1)


class CourseSeed(_Strict):
    id: str = Field(pattern=ID_PATTERN, description="LTI context id, also used in URLs")
    title: str = ""
    label: str = ""
    concluded: bool = False
    sections: list[SectionSeed] = Field(default_factory=list)
    learners: list[str] = Field(default_factory=list)
    instructors: list[str] = Field(default_factory=list)
    resource_links: list[ResourceLinkSeed] = Field(default_factory=list)
    line_items: list[LineItemSeed] = Field(default_factory=list)


class ToolSeed(_Strict):
    """An LTI 1.3 tool registration (a developer key in Canvas, a tool in Moodle)."""

    client_id: str = Field(min_length=1)
    deployment_id: str = Field(default="1", min_length=1)
    jwks_url: str | None = None
    public_key: str | dict[str, Any] | None = Field(
        default=None, description="PEM public key or a single JWK"
    )
    oidc_login_url: str | None = None
    redirect_uris: list[str] = Field(default_factory=list)
    target_link_uri: str | None = None
    deep_link_url: str | None = None
    scopes: list[str] = Field(default_factory=lambda: list(AGS_SCOPES))

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in TOOL_SCOPES]
        if unknown:
            raise ValueError(f"unknown LTI scope(s) {unknown}; allowed: {list(TOOL_SCOPES)}")
        return value

    @model_validator(mode="after")
    def _has_key(self) -> ToolSeed:
        if not self.jwks_url and not self.public_key:
            raise ValueError("a tool needs jwks_url or public_key to verify its JWTs")
        return self


class Lti11ConsumerSeed(_Strict):
    key: str = Field(min_length=1)
    secret: str = Field(min_length=1)


class SisTermSeed(_Strict):
    sourcedId: str = Field(pattern=ID_PATTERN)
    title: str = ""
    start: str = Field(description="ISO date, first day of the term")
    end: str = Field(description="ISO date, last day of the term")


class SisClassSeed(_Strict):
    sourcedId: str = Field(pattern=ID_PATTERN)
    title: str = ""
    school: str = Field(pattern=ID_PATTERN)
    term: str | None = None
    students: list[str] = Field(default_factory=list)


class SisStudentSeed(_Strict):
    sourcedId: str = Field(pattern=ID_PATTERN)
    name: str = ""


class SisCategorySeed(_Strict):
    sourcedId: str = Field(pattern=ID_PATTERN)
    title: str = Field(min_length=1)
    weight: float | None = None
    classes: list[str] = Field(
        default_factory=list, description="classes that use it (listed by /classes/{id}/categories)"
    )


class SisClientSeed(_Strict):
    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    scopes: list[str] = Field(default_factory=lambda: list(OR_SCOPES))

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in OR_SCOPES]
        if unknown:
            raise ValueError(f"unknown OneRoster scope(s) {unknown}; allowed: {list(OR_SCOPES)}")
        return value


class SisProfile(_Strict):
    max_title_length: int | None = Field(default=None, ge=1)
    due_date_in_term: bool = False


class SisSeed(_Strict):
    profile: SisProfile = Field(default_factory=SisProfile)
    clients: list[SisClientSeed] = Field(default_factory=list)
    schools: list[str] = Field(default_factory=list)
    terms: list[SisTermSeed] = Field(default_factory=list)
    students: list[SisStudentSeed] = Field(default_factory=list)
    classes: list[SisClassSeed] = Field(default_factory=list)
    categories: list[SisCategorySeed] = Field(default_factory=list)


class FaultSpec(_Strict):
    """Faults for one endpoint group. Rates are shares of requests, from a seeded RNG."""

    latency_ms: float = Field(default=0, ge=0)
    latency_jitter_ms: float = Field(default=0, ge=0)
    error_rate: float = Field(default=0, ge=0, le=1)
    error_status: int = Field(default=503, ge=500, le=599)
    throttle_rate: float = Field(default=0, ge=0, le=1)
    retry_after: int = Field(default=1, ge=0)
    reset_rate: float = Field(default=0, ge=0, le=1)
    timeout_rate: float = Field(default=0, ge=0, le=1)
    timeout_seconds: float = Field(default=30, gt=0, description="how long a timeout holds")
    max_concurrency: int | None = Field(default=None, ge=1)
    over_capacity: Literal["queue", "reject"] = "queue"
    rate_limit_per_second: float | None = Field(default=None, gt=0)
    rate_limit_burst: int = Field(default=1, ge=1)
    rate_limit_response: Literal["auto", "429", "403"] = Field(
        default="auto", description="auto: 403 'Rate Limit Exceeded' in canvas mode, else 429"
    )
    script: list[Literal["ok", "error", "throttle", "reset", "timeout"]] = Field(
        default_factory=list,
        description="forced outcomes for the next requests, consumed in order before rates",
    )


FAULT_GROUPS = (
    "token",
    "lineitems",
    "scores",
    "results",
    "memberships",
    "lti11",
    "oneroster",
    "launch",
)


class SeedData(_Strict):
    users: list[UserSeed] = Field(default_factory=list)
    courses: list[CourseSeed] = Field(default_factory=list)
    tools: list[ToolSeed] = Field(default_factory=list)
    lti11_consumers: list[Lti11ConsumerSeed] = Field(default_factory=list)
    sis: SisSeed = Field(default_factory=SisSeed)


class SandboxConfig(_Strict):
    """Everything a sandbox needs to start. `base_url` is also the LTI issuer."""

    base_url: str | None = Field(
        default=None, description="public base URL and LTI issuer; defaults to the bound address"
    )
    mode: Mode = "generic"
    seed: SeedData = Field(default_factory=SeedData)
    faults: dict[str, FaultSpec] = Field(default_factory=dict)
    rng_seed: int = 0
    token_ttl_seconds: int = Field(default=3600, ge=1)
    page_size: int = Field(default=10, ge=1, description="default AGS page size")
    max_page_size: int | None = Field(
        default=None, ge=1, description="the most line items an AGS page holds, whatever limit asks"
    )
    line_item_filters: LineItemFilters = Field(
        default="honoured",
        description="ignored: the line items container answers every line item, as a "
        "platform that takes its filters as advisory does",
    )
    platform_name: str = "gradesync sandbox"

    @field_validator("faults")
    @classmethod
    def _known_groups(cls, value: dict[str, FaultSpec]) -> dict[str, FaultSpec]:
        unknown = [g for g in value if g not in FAULT_GROUPS]
        if unknown:
            raise ValueError(f"unknown fault group(s) {unknown}; allowed: {list(FAULT_GROUPS)}")
        return value

    @field_validator("base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value


def load_seed_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON seed file. It may hold a whole config or only seed data."""
    text = Path(path).read_text(encoding="utf-8")
    data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the seed file must hold a mapping at the top level")
    return data


def config_from_file(path: str | Path, **overrides: Any) -> SandboxConfig:
    """Build a config from a seed file: top-level `seed:` means a full config, else seed only."""
    data = load_seed_file(path)
    raw: dict[str, Any] = dict(data) if "seed" in data else {"seed": data}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return SandboxConfig.model_validate(raw)
