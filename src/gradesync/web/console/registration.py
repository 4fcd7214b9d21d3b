"""LTI Dynamic Registration in the console: the registration URL an LMS admin pastes into the
LMS (`/console/lti/register`). The LMS opens it with its OpenID configuration URL and a
registration token; a signed-in gradesync admin sees what will be registered and confirms;
gradesync registers itself with the LMS, stores the platform with the client id and
deployment the LMS gave, and answers with the page that tells the LMS to close the window."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from gradesync.adapters.outbound_http import guarded_client
from gradesync.domain.errors import Conflict, InvalidInput
from gradesync.domain.model import ConsoleUser, Destination, UserRole
from gradesync.lti import dynamic_registration as dr
from gradesync.lti.registration import platform_of
from gradesync.runtime import Runtime
from gradesync.services.lti import platforms
from gradesync.web.console.common import PageError, check_csrf, problems_text, render, runtime_of
from gradesync.web.console.session import LoginRequired, current_user

router = APIRouter()
PATH = "/console/lti/register"

# Tells the LMS the registration is over: it closes the window (LTI Dynamic Registration).
_CLOSE = (
    "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>gradesync registered"
    "</title></head><body><main><h1>gradesync is registered</h1><p>{detail}</p></main>"
    "<script>(window.opener || window.parent).postMessage("
    "{{subject: 'org.imsglobal.lti.close'}}, '*');</script></body></html>"
)


def _admin(request: Request) -> ConsoleUser:
    """The signed-in admin; a sign-in that comes back to this very URL (query included)."""
    try:
        user = current_user(request)
    except LoginRequired:
        back = request.url.path + ("?" + request.url.query if request.url.query else "")
        raise LoginRequired(quote(back, safe="")) from None
    if user.role is not UserRole.ADMIN:
        raise PageError(403, "Only an administrator can register gradesync in an LMS.")
    return user


def _platform_id(config: dr.PlatformConfiguration) -> str:
    host = urlsplit(config.issuer).netloc or "lms"
    return re.sub(r"[^A-Za-z0-9._:-]", "-", host)[:100] or "lms"


async def _configuration(rt: Runtime, url: str) -> dr.PlatformConfiguration:
    async with guarded_client(rt.outbound, timeout=dr.TIMEOUT) as http:
        try:
            return await dr.read_configuration(http, url)
        except dr.RegistrationFailed as exc:
            raise PageError(400, str(exc)) from None


@router.get("/lti/register", response_class=HTMLResponse)
async def confirm(
    request: Request, openid_configuration: str = "", registration_token: str = ""
) -> HTMLResponse:
    user = await run_in_threadpool(_admin, request)
    if not openid_configuration:
        raise PageError(
            400,
            "openid_configuration: required. Paste this page's address into the LMS's "
            "'register a tool by URL' field: the LMS opens it with its configuration.",
        )
    rt = runtime_of(request)
    config = await _configuration(rt, openid_configuration)
    return render(
        request,
        "console/register_platform.html",
        user,
        platform=config,
        registration=dr.client_registration(rt.settings.base_url, config),
        registration_token=registration_token,
        platform_id=_platform_id(config),
        nav="destinations",
    )


@router.post("/lti/register", dependencies=[Depends(check_csrf)], response_model=None)
async def register(
    request: Request,
    openid_configuration: str = Form(...),
    registration_token: str = Form(""),
    platform_id: str = Form(...),
) -> Response:
    user = await run_in_threadpool(_admin, request)
    rt = runtime_of(request)
    config = await _configuration(rt, openid_configuration)  # read again: never from the form
    registration = dr.client_registration(rt.settings.base_url, config)
    # the LMS's URLs and the id checked before registering: a refusal after it would leave
    # a tool in the LMS and its one-time token spent (the ids it gives are not known yet)
    pending = {"client_id": "pending", dr.TOOL_CONFIG: {"deployment_id": "pending"}}
    try:
        await run_in_threadpool(
            platform_of,
            user.tenant_id,
            dr.registration_of(config, pending, platform_id.strip()),
            rt.outbound,
        )
    except InvalidInput as exc:
        raise PageError(400, problems_text(exc)) from None
    async with guarded_client(rt.outbound, timeout=dr.TIMEOUT) as http:
        try:
            answer = await dr.register(http, config, registration, registration_token or None)
        except dr.RegistrationFailed as exc:
            raise PageError(400, str(exc)) from None

    data = dr.registration_of(config, answer, platform_id.strip())
    if not data["deployment_ids"]:
        # Some LMSs (Brightspace) create deployments after registration: the client id is
        # all there is to keep, and the admin finishes by hand.
        raise PageError(
            400,
            f"The LMS registered gradesync as client id {data['client_id']} but named no "
            "deployment. Create a deployment in the LMS, then add this LMS on the "
            "Destinations page with that client id and the deployment id.",
        )

    def store() -> Destination:
        with rt.uow() as uow:
            dest = platforms.save_platform(
                uow, platform_of(user.tenant_id, data, rt.outbound), rt.clock.now()
            )
            uow.commit()
        return dest

    try:
        dest = await run_in_threadpool(store)
    except InvalidInput as exc:
        raise PageError(400, problems_text(exc)) from None
    except Conflict as exc:
        raise PageError(409, str(exc)) from None
    if "application/json" in request.headers.get("accept", ""):
        return Response(
            json.dumps({"platform": dest.id, "client_id": dest.config["client_id"]}),
            media_type="application/json",
        )
    deployments = ", ".join(dest.config.get("deployment_ids") or []) or "none yet"
    detail = (
        f"Stored as {dest.id!r} (client id {dest.config['client_id']}, deployment "
        f"{deployments}). Your LMS may ask you to enable the tool before courses can add it."
    )
    return HTMLResponse(_CLOSE.format(detail=html.escape(detail)))


def registration_url(base_url: str) -> str:
    """The one URL an LMS admin pastes into the LMS."""
    return base_url.rstrip("/") + PATH
