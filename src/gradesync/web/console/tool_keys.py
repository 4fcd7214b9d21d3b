"""The tool's LTI signing keys: their state and times, and a rotation (as `gradesync keys
rotate-tool-key`, the same store). Only kids and times are shown, never a private key.

The keys sign for every tenant of the installation: any admin sees them, and only the admins
of a tenant named in `GRADESYNC_TOOL_KEY_TENANTS` rotate them (as through the API)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gradesync.domain.model import ConsoleUser
from gradesync.services.lti.key_admin import may_rotate, rotation_words
from gradesync.services.lti.keys import RotationRefused
from gradesync.web.console.common import (
    PageError,
    admin_user,
    check_csrf,
    confirm_page,
    flash,
    render,
    runtime_of,
)

router = APIRouter()
PAGE = "/console/tool-keys"

NOT_ALLOWED = (
    "The tool's signing keys sign for every school on this server: only the administrators of "
    "a school the operator named (GRADESYNC_TOOL_KEY_TENANTS) rotate them, or the operator "
    "with gradesync keys rotate-tool-key. Nothing was changed."
)


@router.get("/tool-keys", response_class=HTMLResponse)
def tool_keys_page(request: Request, user: ConsoleUser = Depends(admin_user)) -> HTMLResponse:
    rt = runtime_of(request)
    return render(
        request,
        "console/tool_keys.html",
        user,
        nav="destinations",
        keys=rt.tool_keys.list(),
        may_rotate=may_rotate(rt.settings.tool_key_tenants, user.tenant_id),
    )


@router.post("/tool-keys/rotate", dependencies=[Depends(check_csrf)], response_model=None)
def rotate(
    request: Request,
    now: Literal["yes"] | None = Form(None),
    confirm: Literal["yes"] | None = Form(None),
    replace: Literal["yes"] | None = Form(None),
    user: ConsoleUser = Depends(admin_user),
) -> Response:
    rt = runtime_of(request)
    if not may_rotate(rt.settings.tool_key_tenants, user.tenant_id):
        raise PageError(403, NOT_ALLOWED)
    if now == "yes" and confirm != "yes":  # it cannot be taken back, and stops trust a while
        return confirm_page(
            request,
            user,
            nav="destinations",
            title="Replace the signing key at once?",
            said=[
                "The new key signs at once, and every other key is revoked: withdrawn from the "
                "key set now, so platforms refuse it as soon as they read the set again. Use "
                "this for a key that may have leaked.",
                "Platforms that hold a copy of the key set from before refuse gradesync's grade "
                "requests until they read it again (up to 5 minutes).",
            ],
            action=f"{PAGE}/rotate",
            yes="Yes, replace it at once",
            cancel=PAGE,
            fields={"now": "yes"},
        )
    try:
        done = rt.tool_keys.rotation(
            immediately=now == "yes", limited=True, replace_waiting=replace == "yes"
        )
    except RotationRefused as exc:
        if exc.rule == "key_waiting" and exc.waiting:  # asked, as the API asks for `replace`
            return confirm_page(
                request,
                user,
                nav="destinations",
                title="Replace the key waiting to sign?",
                said=[
                    f"Key {exc.waiting} is waiting to sign, from an earlier rotation. A new "
                    "rotation replaces it: it never signs, and the new key signs about 5 "
                    "minutes from now instead.",
                    "Nothing was changed yet.",
                ],
                action=f"{PAGE}/rotate",
                yes="Yes, replace it",
                cancel=PAGE,
                fields={"replace": "yes"},
            )
        flash(request, "error", f"{exc} Nothing was changed.")
        return RedirectResponse(PAGE, status_code=303)
    words = rotation_words(done)
    flash(request, "ok", words.said)
    if words.warning:
        flash(request, "warning", f"Warning: {words.warning}.")
    return RedirectResponse(PAGE, status_code=303)
