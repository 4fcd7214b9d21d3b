"""LTI 1.3 platform registrations (admin keys): register, list, show, replace; the values to
paste into the LMS; recent refused launches.

Deleting, pausing and resuming go through /api/v1/destinations (a platform is a destination).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from gradesync.adapters.destinations.ags_profiles import PROFILE_NAMES
from gradesync.answers.platforms import platform_view
from gradesync.domain.errors import InvalidInput
from gradesync.lti import registration as reg
from gradesync.lti.claims import AGS_SCOPES
from gradesync.runtime import Runtime
from gradesync.services.lti import platforms
from gradesync.web.api.auth import Principal, require_scope
from gradesync.web.api.deps import runtime
from gradesync.web.api.errors import UrlIdsRoute
from gradesync.web.api.schemas import NOT_BLANK, Whole

Profile = StrEnum("Profile", {n: n for n in PROFILE_NAMES})  # type: ignore[misc]
Scope = StrEnum("Scope", {s.rsplit("/", 1)[-1]: s for s in AGS_SCOPES})  # type: ignore[misc]
Text = Annotated[str, Field(min_length=1, max_length=2048, pattern=NOT_BLANK, strict=True)]
Url = Annotated[str, Field(min_length=1, max_length=2048, strict=True)]
_URL = (
    " An absolute https URL (plain http only to an allowed network); refused where the outbound "
    "guard refuses it (docs/security.md)."
)
_KEPT = " Left out (or null): {} for a new registration; a replace keeps what is set."


class PlatformIn(BaseModel):
    """An LTI 1.3 registration (docs/lti13.md). Checked further by
    `gradesync.lti.registration.validate_platform`, as from the console and the CLI."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[
        str,
        Field(
            pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
            strict=True,
            description="The registration's id in gradesync (a destination id).",
        ),
    ]
    name: Annotated[str, Field(max_length=255, strict=True)] | None = Field(
        None, description="A name people recognise (default: the id)."
    )
    issuer: Url = Field(description="The platform's issuer (`iss`), exactly as it sends it.")
    client_id: Text = Field(description="The client id the LMS gave gradesync.")
    deployment_ids: Annotated[list[Text], Field(min_length=1, max_length=1000)] = Field(
        description="The deployment ids this registration holds."
    )
    auth_login_url: Url = Field(description="The LMS's OIDC authorization URL." + _URL)
    auth_token_url: Url = Field(description="The LMS's OAuth 2 token URL." + _URL)
    key_set_url: Url = Field(description="The LMS's public key set (JWKS) URL." + _URL)
    audience: Text | None = Field(
        None, description="The `aud` of gradesync's client assertion (default: the token URL)."
    )
    profile: Profile | None = Field(None, description="The LMS's kind (its AGS quirks).")
    scopes: Annotated[list[Scope], Field(max_length=len(AGS_SCOPES))] | None = Field(
        None, description="The AGS scopes to ask for (default: all four)."
    )
    allowed_hosts: Annotated[list[Text], Field(max_length=100)] | None = Field(
        None,
        description="Hosts (or origins) the platform's AGS URLs may use besides its own; "
        "checked by the outbound guard.",
    )
    concurrency: Annotated[int, Field(ge=1, le=256, strict=True), Whole] | None = Field(
        None,
        description="At most this many requests at once to this platform." + _KEPT.format("`8`"),
    )
    tag: (
        Annotated[str, Field(min_length=1, max_length=64, pattern=NOT_BLANK, strict=True)] | None
    ) = Field(
        None, description="The tag on line items gradesync creates." + _KEPT.format("`grade`")
    )
    person_id_from: Literal["sub", "email", "lis_person_sourcedid"] = Field(
        "sub", description="Which launch claim is gradesync's person id."
    )
    enabled: Annotated[bool, Field(strict=True)] | None = Field(
        None,
        description="false: nothing is sent to this platform (paused until resumed)."
        + _KEPT.format("`true`")
        + " A replace that leaves it out does not lift a pause.",
    )

    def data(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, mode="json")


class PlatformReplaceIn(PlatformIn):
    id: Annotated[
        str,
        Field(
            pattern=r"^([A-Za-z0-9][A-Za-z0-9._:-]{0,127})?$",
            strict=True,
            description="The id in the URL, when given.",
        ),
    ] = ""


def build_router(auth: Callable[..., Principal] | None = None) -> APIRouter:
    """The router; `auth` is the dependency that yields the caller (admin scope by default)."""
    admin = auth or require_scope("admin")
    router = APIRouter(tags=["lti platforms"], route_class=UrlIdsRoute)

    @router.post("/platforms", status_code=201)
    def register_platform(
        body: PlatformIn,
        p: Principal = Depends(admin),
        rt: Runtime = Depends(runtime),
    ) -> dict[str, Any]:
        """Register an LMS: issuer, client_id, deployment_ids, auth_login_url, auth_token_url,
        key_set_url, profile, allowed_hosts, ... Answers with the values to paste in the LMS."""
        with rt.uow() as uow:
            dest = platforms.save_platform(
                uow, reg.platform_of(p.tenant_id, body.data(), rt.outbound), rt.clock.now()
            )
            uow.commit()
        return platform_view(dest, rt)

    @router.get("/platforms")
    def list_platforms(
        p: Principal = Depends(admin), rt: Runtime = Depends(runtime)
    ) -> list[dict[str, Any]]:
        with rt.uow() as uow:
            return [platform_view(d, rt) for d in platforms.list_platforms(uow, p.tenant_id)]

    @router.get("/platforms/{platform_id}")
    def show_platform(
        platform_id: str, p: Principal = Depends(admin), rt: Runtime = Depends(runtime)
    ) -> dict[str, Any]:
        with rt.uow() as uow:
            return platform_view(platforms.get_platform(uow, p.tenant_id, platform_id), rt)

    @router.put("/platforms/{platform_id}")
    def replace_platform(
        platform_id: str,
        body: PlatformReplaceIn,
        p: Principal = Depends(admin),
        rt: Runtime = Depends(runtime),
    ) -> dict[str, Any]:
        """Replace a registration (e.g. add a deployment id). Line items and links are kept, and
        so are `enabled` (a pause), `concurrency` and `tag` when the body leaves them out."""
        if body.id not in ("", platform_id):
            raise InvalidInput.one(
                "id", "matches_path", "id in the body must be the id in the URL."
            )
        with rt.uow() as uow:
            platforms.get_platform(uow, p.tenant_id, platform_id)
            data = {**body.data(), "id": platform_id}
            dest = platforms.save_platform(
                uow,
                reg.platform_of(p.tenant_id, data, rt.outbound),
                rt.clock.now(),
                replace_existing=True,
                # the body is the whole registration (docs/lti13.md): of what it leaves out,
                # only gradesync's own settings are kept
                keep=reg.left_out(data, reg.KEPT_ON_REPLACE),
            )
            uow.commit()
        return platform_view(dest, rt)

    @router.get("/lti/tool")
    def tool_values(
        p: Principal = Depends(admin), rt: Runtime = Depends(runtime)
    ) -> dict[str, str]:
        """gradesync's URLs for an LMS registration form."""
        return reg.tool_urls(rt.settings.base_url)

    @router.get("/lti/rejections")
    def rejections(
        limit: int = Query(100, ge=1, le=1000),
        p: Principal = Depends(admin),
        rt: Runtime = Depends(runtime),
    ) -> list[dict[str, Any]]:
        """Launches refused (and launch claims ignored), newest first, with the reason."""
        with rt.uow() as uow:
            rows = uow.launches.refusals(tenant_id=p.tenant_id, limit=limit)
        return [{**asdict(r), "at": r.at.isoformat()} for r in rows]

    return router


router = build_router()
