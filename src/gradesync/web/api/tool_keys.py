"""The tool's LTI signing keys (admin keys): list them, rotate them, as `gradesync keys
list-tool-keys` and `rotate-tool-key` do (the same store).

The keys sign for every tenant of the installation: any admin may list them (only kids,
states and times: the public halves are in `/lti/jwks.json` anyway), and only the admins of a
tenant named in `GRADESYNC_TOOL_KEY_TENANTS` may rotate them. Private keys are never shown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from gradesync.domain.tool_keys import KeyState
from gradesync.runtime import Runtime
from gradesync.services.lti.keys import Rotation, ToolKeyInfo
from gradesync.web.api.auth import Principal, require_scope
from gradesync.web.api.deps import runtime
from gradesync.web.api.errors import UrlIdsRoute
from gradesync.web.api.schemas import InputModel

router = APIRouter(tags=["lti tool keys"], route_class=UrlIdsRoute)
admin = require_scope("admin")

NOT_ALLOWED = (
    "forbidden: the tool keys sign for every tenant of this installation; only the admins of "
    "a tenant named in GRADESYNC_TOOL_KEY_TENANTS rotate them (or the operator, with "
    "`gradesync keys rotate-tool-key`)"
)


class ToolKeyOut(BaseModel):
    kid: str = Field(description="The key's id (`kid` in the JWKS and in JWT headers).")
    state: KeyState = Field(
        description="`next`: published, signs from `signs_from`; `current`: signs now; "
        "`retiring`: signs no more, published until `published_until`; `expired`: no longer "
        "published (to prune); `revoked`: withdrawn from the key set by a rotation with `now`."
    )
    created_at: datetime = Field(description="When the key was made (and published).")
    signs_from: datetime | None = Field(
        description="When the key starts (or started) signing; null for a key that never "
        "signs (a newer rotation replaced it, or revoked it, before its time came)."
    )
    retired_at: datetime | None = Field(
        description="When the key stops (or stopped) signing; null while no newer key is due."
    )
    revoked_at: datetime | None = Field(
        description="When a rotation with `now` withdrew the key from the key set."
    )
    published: bool = Field(description="Whether the key is in `/lti/jwks.json` now.")
    published_until: datetime | None = Field(
        description="When the key leaves (or left) the key set: the end of its overlap, or "
        "when it was revoked; null while it signs or is due to."
    )


class RotateIn(InputModel):
    now: Annotated[bool, Field(strict=True)] = Field(
        False,
        description="true (a key that may have leaked): the new key signs at once and every "
        "key it replaces is revoked, withdrawn from the key set at once; platforms that cached "
        "the key set refuse gradesync's signatures until they read it again (up to 5 minutes). "
        "false: the new key is published now and signs about 5 minutes later.",
    )


class RotationOut(BaseModel):
    kid: str = Field(description="The new key's id.")
    signs_from: datetime = Field(description="When the new key starts signing.")
    retired_kid: str | None = Field(
        description="The key that signed when the rotation was made: it signs until "
        "`signs_from` (with `now`: revoked)."
    )
    replaced_kids: list[str] = Field(
        description="Keys that were waiting to sign: the new key replaces them, they never sign."
    )
    revoked_kids: list[str] = Field(
        description="Keys withdrawn from the key set by this rotation (`now` only)."
    )
    message: str = Field(description="What the rotation did, in words.")


def tool_key_out(k: ToolKeyInfo) -> ToolKeyOut:
    return ToolKeyOut(
        kid=k.kid,
        state=k.state,
        created_at=k.created_at,
        signs_from=k.signs_from,
        retired_at=k.retired_at,
        revoked_at=k.revoked_at,
        published=k.published,
        published_until=k.published_until,
    )


def rotation_text(r: Rotation) -> str:
    """What a rotation did, as the CLI and the console say it."""
    new = r.key
    if r.revoked:
        return (
            f"new tool key {new.kid} signs now; {', '.join(r.revoked)} revoked: no longer "
            "published, platforms refuse them as soon as they read the key set again.\n"
            "warning: platforms that cached the key set before now refuse gradesync's "
            "signatures until they read it again (up to 5 minutes)"
        )
    starts = f"{new.signs_from:%Y-%m-%d %H:%M:%S} UTC" if new.signs_from else "now"
    text = f"new tool key {new.kid} published now, signs from {starts}"
    if r.signing_until and r.signing_until != new.kid:
        text += f"; {r.signing_until} signs until then and stays published for the overlap after"
    if r.replaced:
        text += f"; {', '.join(r.replaced)} (waiting to sign) replaced: it never signs"
    return text


def rotation_out(r: Rotation) -> RotationOut:
    assert r.key.signs_from is not None  # a rotation sets it
    return RotationOut(
        kid=r.key.kid,
        signs_from=r.key.signs_from,
        retired_kid=r.signing_until,
        replaced_kids=list(r.replaced),
        revoked_kids=list(r.revoked),
        message=rotation_text(r),
    )


def may_rotate(rt: Runtime, tenant_id: str) -> bool:
    return tenant_id in rt.settings.tool_key_tenants


@router.get("/lti/tool-keys", response_model=list[ToolKeyOut])
def list_tool_keys(
    p: Principal = Depends(admin), rt: Runtime = Depends(runtime)
) -> list[ToolKeyOut]:
    """The tool's signing keys, newest first, with their state and times (never the private
    halves)."""
    return [tool_key_out(k) for k in rt.tool_keys.list()]


@router.post("/lti/tool-keys", response_model=RotationOut, status_code=201)
def rotate_tool_key(
    body: RotateIn | None = None,
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> RotationOut:
    """Make a new signing key (a rotation): published at once, it signs about 5 minutes later
    (with `now`: at once, and the keys it replaces are revoked). A key still waiting to sign
    is replaced: it never signs. Only for admins of a tenant in `GRADESYNC_TOOL_KEY_TENANTS`."""
    if not may_rotate(rt, p.tenant_id):
        raise HTTPException(status_code=403, detail=NOT_ALLOWED)
    return rotation_out(rt.tool_keys.rotation(immediately=bool(body and body.now)))
