"""The tool's LTI signing keys (admin keys): list them, rotate them, as `gradesync keys
list-tool-keys` and `rotate-tool-key` do (the same store).

The keys sign for every tenant of the installation: any admin may list them (only kids,
states and times: the public halves are in `/lti/jwks.json` anyway), and only the admins of a
tenant named in `GRADESYNC_TOOL_KEY_TENANTS` may rotate them. Private keys are never shown.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from pydantic import Field

from gradesync.answers.tool_keys import RotationOut, ToolKeyOut, rotation_out, tool_key_out
from gradesync.runtime import Runtime
from gradesync.services.lti.key_admin import may_rotate
from gradesync.services.lti.keys import RotationRefused
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


class RotateIn(InputModel):
    now: Annotated[bool, Field(strict=True)] = Field(
        False,
        description="true (a key that may have leaked): the new key signs at once and every "
        "key it replaces is revoked, withdrawn from the key set at once; platforms that cached "
        "the key set refuse gradesync's signatures until they read it again (up to 5 minutes). "
        "false: the new key is published now and signs about 5 minutes later.",
    )
    replace: Annotated[bool, Field(strict=True)] = Field(
        False,
        description="true: replace a key still waiting to sign from an earlier rotation (it "
        "then never signs). Without it such a rotation is refused `409`.",
    )


def may_rotate_tool_keys(
    p: Principal = Depends(admin), rt: Runtime = Depends(runtime)
) -> Principal:
    """An admin of a tenant in `GRADESYNC_TOOL_KEY_TENANTS`; refused before the body is
    validated, as a missing scope is."""
    if not may_rotate(rt.settings.tool_key_tenants, p.tenant_id):
        raise HTTPException(status_code=403, detail=NOT_ALLOWED)
    return p


@router.get("/lti/tool-keys", response_model=list[ToolKeyOut])
def list_tool_keys(
    p: Principal = Depends(admin), rt: Runtime = Depends(runtime)
) -> list[ToolKeyOut]:
    """The tool's signing keys, newest first, with their state and times (never the private
    halves)."""
    return [tool_key_out(k) for k in rt.tool_keys.list()]


@router.post("/lti/tool-keys", response_model=RotationOut, status_code=201)
def rotate_tool_key(
    p: Principal = Depends(may_rotate_tool_keys),
    body: RotateIn | None = None,
    rt: Runtime = Depends(runtime),
) -> RotationOut:
    """Make a new signing key (a rotation): published at once, it signs about 5 minutes later
    (with `now`: at once, and the keys it replaces are revoked). While a key waits to sign
    from an earlier rotation, `409` unless `replace` is true (the waiting key then never
    signs); `429` for a replacement within a minute of the waiting key, or a `now` within
    about 5 minutes of the previous one. Only for admins of a tenant in
    `GRADESYNC_TOOL_KEY_TENANTS`."""
    try:
        done = rt.tool_keys.rotation(
            immediately=bool(body and body.now),
            limited=True,
            replace_waiting=bool(body and body.replace),
        )
    except RotationRefused as exc:
        if exc.rule == "too_soon":
            headers = {"Retry-After": str(exc.retry_after)}
            raise HTTPException(status_code=429, detail=str(exc), headers=headers) from exc
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    return rotation_out(done)
