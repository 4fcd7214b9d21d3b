"""LTI 1.3 platform registrations (admin keys): register, list, show, replace; the values to
paste into the LMS; recent refused launches.

Deleting, pausing and resuming go through /api/v1/destinations (a platform is a destination).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Body, Depends, Query

from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import Destination
from gradesync.lti import registration as reg
from gradesync.runtime import Runtime
from gradesync.services.lti import platforms
from gradesync.web.api.auth import Principal, require_scope
from gradesync.web.api.deps import runtime


def platform_view(d: Destination, base_url: str) -> dict[str, Any]:
    return {
        **reg.spec_of(d),
        "paused_until": d.paused_until.isoformat() if d.paused_until else None,
        "pause_reason": d.pause_reason,
        "tool": reg.tool_urls(base_url),
    }


def build_router(auth: Callable[..., Principal] | None = None) -> APIRouter:
    """The router; `auth` is the dependency that yields the caller (admin scope by default)."""
    admin = auth or require_scope("admin")
    router = APIRouter(tags=["lti platforms"])

    @router.post("/platforms", status_code=201)
    def register_platform(
        body: dict[str, Any] = Body(..., description="The registration (see docs/lti13.md)"),
        p: Principal = Depends(admin),
        rt: Runtime = Depends(runtime),
    ) -> dict[str, Any]:
        """Register an LMS: issuer, client_id, deployment_ids, auth_login_url, auth_token_url,
        key_set_url, profile, allowed_hosts, ... Answers with the values to paste in the LMS."""
        with rt.uow() as uow:
            dest = platforms.save_platform(
                uow, reg.platform_of(p.tenant_id, body, rt.outbound), rt.clock.now()
            )
            uow.commit()
        return platform_view(dest, rt.settings.base_url)

    @router.get("/platforms")
    def list_platforms(
        p: Principal = Depends(admin), rt: Runtime = Depends(runtime)
    ) -> list[dict[str, Any]]:
        with rt.uow() as uow:
            return [
                platform_view(d, rt.settings.base_url)
                for d in platforms.list_platforms(uow, p.tenant_id)
            ]

    @router.get("/platforms/{platform_id}")
    def show_platform(
        platform_id: str, p: Principal = Depends(admin), rt: Runtime = Depends(runtime)
    ) -> dict[str, Any]:
        with rt.uow() as uow:
            return platform_view(
                platforms.get_platform(uow, p.tenant_id, platform_id), rt.settings.base_url
            )

    @router.put("/platforms/{platform_id}")
    def replace_platform(
        platform_id: str,
        body: dict[str, Any] = Body(...),
        p: Principal = Depends(admin),
        rt: Runtime = Depends(runtime),
    ) -> dict[str, Any]:
        """Replace a registration (e.g. add a deployment id). Line items and links are kept."""
        if body.get("id", platform_id) != platform_id:
            raise InvalidInput.one(
                "id", "matches_path", "id in the body must be the id in the URL."
            )
        with rt.uow() as uow:
            platforms.get_platform(uow, p.tenant_id, platform_id)
            dest = platforms.save_platform(
                uow,
                reg.platform_of(p.tenant_id, {**body, "id": platform_id}, rt.outbound),
                rt.clock.now(),
                replace_existing=True,
            )
            uow.commit()
        return platform_view(dest, rt.settings.base_url)

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
