"""The LTI 1.3 endpoints: JWKS, OIDC login, launch, deep linking response, tool config.

Browsers reach these from inside an LMS, so answers are small HTML pages; a client that asks
for JSON (Accept: application/json) gets the same facts as JSON. Refusals are recorded (table
`lti_rejections`) with the reason, and answered with the code and the sentence.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any, Protocol
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gradesync.adapters.destinations.ags_profiles import profile_for
from gradesync.adapters.destinations.ags_urls import origin_of
from gradesync.adapters.outbound_http import guarded_client
from gradesync.adapters.secretbox import SecretBox
from gradesync.config import Settings
from gradesync.domain.capabilities import Capabilities
from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import Destination
from gradesync.lti import claims as c
from gradesync.lti import client_storage, deep_linking, oidc
from gradesync.lti.claims import AGS_SCOPES
from gradesync.lti.launch import launch_of, launch_state, verify_launch
from gradesync.lti.platform_keys import PlatformKeyCache
from gradesync.lti.registration import tool_urls
from gradesync.services.clock import Clock
from gradesync.services.delivery.governor import Governor
from gradesync.services.destination import DestinationClient
from gradesync.services.lti import launch as launches
from gradesync.services.lti import login as logins
from gradesync.services.lti.deep_linking import DeepLinkRequest, connect_course, platform_columns
from gradesync.services.lti.errors import LaunchRefused, record_refusal
from gradesync.services.lti.keys import KEY_SET_MAX_AGE, ToolKeyStore
from gradesync.services.lti.launch import TEACHING_ROLES
from gradesync.services.outbound import OutboundGuard
from gradesync.services.ports import UnitOfWorkFactory
from gradesync.services.wakeup import Waker

log = logging.getLogger(__name__)


class _Secrets(Protocol):
    @property
    def box(self) -> SecretBox: ...


class Host(Protocol):
    """What the LTI endpoints use of the process's runtime (`gradesync.runtime.Runtime`)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> _Secrets: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def waker(self) -> Waker | None: ...

    @property
    def uow(self) -> UnitOfWorkFactory: ...

    @property
    def reads(self) -> UnitOfWorkFactory: ...

    async def refresh_roster(
        self, tenant_id: str, course_id: str | None = None, destination_id: str | None = None
    ) -> Any: ...

    @property
    def outbound(self) -> OutboundGuard: ...

    @property
    def tool_keys(self) -> ToolKeyStore: ...

    def destination_client(self, destination: Destination) -> DestinationClient: ...

    def request_governor(self) -> AbstractAsyncContextManager[Governor]: ...


# Opens the console for a teacher a launch has just proved (the web console's business).
SignIn = Callable[..., Any]


def capabilities_of(profile: str) -> Capabilities:
    return profile_for(profile).capabilities


class LtiTool:
    """Per-process LTI services: the tool's keys, the platforms' key cache, an HTTP pool."""

    def __init__(self, runtime: Host) -> None:
        self.runtime = runtime
        self.uow = runtime.uow
        self.reads = runtime.reads  # a login and a launch's registration: no write lock
        self.box = runtime.db.box
        self.clock = runtime.clock
        self.base_url = runtime.settings.base_url.rstrip("/")
        self.keys = runtime.tool_keys  # the store the process's AGS clients sign with
        self.http = guarded_client(runtime.outbound, timeout=10.0)
        self.platform_keys = PlatformKeyCache(self.http)
        self._background: set[asyncio.Task[Any]] = set()

    def read_roster(self, tenant_id: str, destination_id: str, course_id: str) -> None:
        """Read the course's LMS roster after the launch has been answered: in its own task,
        outside the launch's transaction, never delaying it."""
        task = asyncio.create_task(
            self.runtime.refresh_roster(tenant_id, course_id, destination_id),
            name=f"roster {tenant_id}/{course_id}",
        )
        self._background.add(task)  # a strong reference until it is done
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("reading an LMS roster failed", exc_info=task.exception())

    def reject(self, refused: LaunchRefused) -> None:
        log.warning("LTI launch refused: %s: %s", refused.code, refused.message)
        record_refusal(self.uow, refused, self.clock.now())


def tool_of(request: Request) -> LtiTool:
    state = request.app.state
    tool = getattr(state, "lti", None)
    if tool is None:
        tool = LtiTool(state.runtime)
        state.lti = tool
    return tool


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<link rel='stylesheet' href='/console/static/console.css'>"  # styled as the console
        f"<title>{html.escape(title)}</title></head><body><main><div class='card'>"
        f"<h1>{html.escape(title)}</h1>{body}</div></main></body></html>",
        status_code=status,
    )


async def _refused(request: Request, refused: LaunchRefused) -> Response:
    await run_in_threadpool(tool_of(request).reject, refused)
    if _wants_json(request):
        return JSONResponse(
            {"error": refused.code, "message": refused.message}, status_code=refused.status
        )
    return _page(
        "gradesync could not start",
        f"<p>{html.escape(what_to_do(refused.code))}</p>"
        f"<p><small>Details for support: {html.escape(refused.message)} "
        f"(code: {html.escape(refused.code)})</small></p>",
        refused.status,
    )


# Refusals a learner can get past alone: the launch was too old or opened twice (a reload,
# the back button, a link kept from before).
_OPEN_AGAIN = frozenset(
    {
        "expired",
        "not_yet_valid",
        "nonce_replayed",
        "nonce_mismatch",
        "state_expired",
        "state_mismatch",
        "missing_state",
        "bad_state",
        "session_expired",
        "missing_session",
        "bad_session",
    }
)


def what_to_do(code: str) -> str:
    """The refused launch's page in plain words, for a learner: what to do next."""
    if code in _OPEN_AGAIN:
        return (
            "This link was opened too late or more than once. Go back to your course page in "
            "the LMS and open the activity again from there."
        )
    if code == "not_instructor":
        return (
            "Only an instructor can choose gradesync activities for a course. Open the "
            "activity from your course page instead."
        )
    return (
        "The connection between your course and gradesync is not set up correctly. Your work "
        "is not lost. Tell your instructor that the gradesync link could not start, and give "
        "them the details below."
    )


async def _params(request: Request) -> dict[str, str]:
    params = {k: v for k, v in request.query_params.items()}
    if request.method == "POST":
        form = await request.form()
        params.update({k: str(v) for k, v in form.items()})
    return params


async def jwks(request: Request) -> JSONResponse:
    """On the event loop, from memory: every platform fetches it, often all at once."""
    tool = tool_of(request)
    return JSONResponse(
        await tool.keys.key_set(), headers={"Cache-Control": f"max-age={KEY_SET_MAX_AGE}"}
    )


def canvas_config(base_url: str) -> dict[str, Any]:
    """Canvas's developer key JSON ("Enter URL" / "Paste JSON" in Canvas)."""
    urls = tool_urls(base_url)
    return {
        "title": "gradesync",
        "description": "Grade sync",
        "oidc_initiation_url": urls["oidc_login_url"],
        "target_link_uri": urls["target_link_uri"],
        "public_jwk_url": urls["jwks_url"],
        "scopes": [*AGS_SCOPES, c.SCOPE_MEMBERSHIP],  # grades, and the course roster
        "extensions": [
            {
                "platform": "canvas.instructure.com",
                "privacy_level": "public",
                "settings": {
                    "placements": [
                        {
                            "placement": "assignment_selection",
                            "message_type": "LtiDeepLinkingRequest",
                            "target_link_uri": urls["deep_linking_url"],
                        },
                        {
                            "placement": "link_selection",
                            "message_type": "LtiDeepLinkingRequest",
                            "target_link_uri": urls["deep_linking_url"],
                        },
                    ]
                },
            }
        ],
        "custom_fields": {},
    }


async def tool_config(request: Request) -> JSONResponse:
    """The values an LMS admin pastes when registering gradesync (and Canvas's JSON)."""
    base = tool_of(request).base_url
    return JSONResponse({**tool_urls(base), "canvas": canvas_config(base)})


async def canvas_json(request: Request) -> JSONResponse:
    return JSONResponse(canvas_config(tool_of(request).base_url))


async def login(request: Request) -> Response:
    tool = tool_of(request)
    params = await _params(request)
    now = tool.clock.now()
    try:
        wanted = oidc.login_request(params)
        platform = await run_in_threadpool(
            logins.login_platform, tool.reads, wanted.issuer, wanted.client_id, wanted.deployment_id
        )
        oidc.check_target(wanted, platform, tool.base_url)
        nonce, expires = logins.new_nonce(now)
        redirect = oidc.login_redirect(
            wanted, platform, tool.box, nonce=nonce, expires=expires, base_url=tool.base_url
        )
    except LaunchRefused as refused:
        return await _refused(request, refused)
    response: Response = RedirectResponse(redirect.url, status_code=302)
    if wanted.storage_target is not None:
        # the platform offers its storage: keep the state there too (the cookie may be
        # blocked in its frame), then go on to the platform
        response = HTMLResponse(
            client_storage.login_page(
                auth_url=str(platform.config["auth_login_url"]),
                redirect_url=redirect.url,
                state=redirect.state,
                nonce=redirect.nonce,
                target=wanted.storage_target,
            )
        )
    secure = _https(tool.base_url)
    response.set_cookie(
        oidc.STATE_COOKIE,
        redirect.state_digest,
        max_age=int(logins.LOGIN_TTL.total_seconds()),
        path="/lti",
        httponly=True,
        secure=secure,
        samesite="none" if secure else "lax",
    )
    if secure:
        # kept in the LMS's frame even where third-party cookies are blocked (CHIPS);
        # Starlette's set_cookie(partitioned=True) needs Python 3.14, so it is appended
        name, value = response.raw_headers[-1]
        assert name == b"set-cookie"
        response.raw_headers[-1] = (name, value + b"; Partitioned")
    return response


def _https(base_url: str) -> bool:
    return (origin_of(base_url) or ("",))[0] == "https"


async def launch(request: Request, sign_in: SignIn) -> Response:
    tool = tool_of(request)
    form = await _params(request)
    now = tool.clock.now()
    cookie = request.cookies.get(oidc.STATE_COOKIE)
    try:
        state = launch_state(tool.box, form, now, cookie)
        # how this browser proved it started the login: its state cookie, else the
        # platform's client-side storage; None: nothing proves it (no console session)
        proof: str | None = "cookie" if cookie is not None else None
        storage_offered = cookie is None and state.storage_target is not None
        if (
            storage_offered
            and client_storage.is_proof(form)
            and client_storage.check_proof(
                form, request.headers.get("origin"), tool.base_url, state
            )
        ):
            proof = "storage"
        platform = await run_in_threadpool(
            launches.launch_platform, tool.reads, state.tenant_id, state.destination_id
        )
        if storage_offered and not client_storage.is_proof(form) and not _wants_json(request):
            # read the login's state back from the platform's frame first; nothing is
            # verified or used up until the page posts the launch again with it
            return HTMLResponse(
                client_storage.launch_page(
                    action=tool.base_url + "/lti/launch",
                    auth_url=str(platform.config["auth_login_url"]),
                    form=form,
                    state=state,
                )
            )
        # the platform's keys are fetched (when not cached) before any transaction opens
        claims = await verify_launch(platform, state, tool.platform_keys, form, now=now)
        valid = launch_of(platform, state, claims, tool.runtime.outbound)
        valid = replace(valid, claims={**valid.claims, "gradesync:login_proof": proof or "none"})
        bound = await run_in_threadpool(
            launches.record_launch,
            tool.uow,
            tool.runtime.waker,
            valid,
            now,
            capabilities_of=capabilities_of,
        )
        session_token: str | None = None
        if valid.deep_linking:
            session = deep_linking.new_session(valid, bound.person_id, bound.course_id, now)
            session_token = deep_linking.seal(session, tool.box)
    except LaunchRefused as refused:
        return await _refused(request, refused)
    if bound.roster and bound.course_id is not None:
        tool.read_roster(platform.tenant_id, platform.id, bound.course_id)
    if bound.ignored_endpoint:
        await run_in_threadpool(
            tool.reject,
            LaunchRefused(
                "ags_endpoint_ignored",
                bound.ignored_endpoint,
                tenant_id=platform.tenant_id,
                destination_id=platform.id,
                issuer=str(platform.config.get("issuer")),
                client_id=str(platform.config.get("client_id")),
                deployment_id=valid.deployment_id,
            ),
        )
    facts: dict[str, Any] = {
        "message_type": str(claims.get(c.MESSAGE_TYPE)),
        "platform": platform.id,
        "person_id": bound.person_id,
        "role": bound.role.value,
        "course_id": bound.course_id,
        "activity_id": bound.activity_id,
        "notes": bound.notes,
        "login_proof": proof or "none",
    }
    if session_token is not None:
        facts.update(
            session=session_token,
            courses=bound.choices,
            respond_url=tool.base_url + "/lti/deep_link/respond",
        )
        if _wants_json(request):
            return JSONResponse(facts)
        return _picker(session_token, bound.choices, tool.base_url)
    if bound.migration is not None:
        facts["migration"] = bound.migration
    if _wants_json(request):
        return JSONResponse(facts)
    if bound.role in TEACHING_ROLES and bound.course_id is not None:
        framed = proof == "storage"
        if framed and not _https(tool.base_url):
            # Proved through the platform's storage, but a session cookie in this
            # cross-site frame needs SameSite=None; Secure; Partitioned: https only.
            return _page(
                "Open gradesync in a new window",
                "<p>This launch is recorded and grades keep syncing. gradesync runs on plain "
                "http here, so it cannot keep you signed in inside the LMS's frame.</p>"
                "<p>Open the link again with the LMS's <em>Open in new window</em>.</p>",
            )
        if proof is None:
            # No proof that this browser started the login (its cookie from the login step
            # is missing, as in an LMS frame that blocks cookies): a console session opened
            # now could be an attacker's launch signing the victim in (login CSRF).
            return _page(
                "Open gradesync in a new window",
                "<p>This launch is recorded and grades keep syncing. Your browser did not "
                "keep gradesync's cookie from the start of the launch (the LMS shows "
                "gradesync in a frame that blocks it), so the course page is not opened "
                "here.</p><p>Open the link again with the LMS's <em>Open in new window</em>, "
                f"or allow cookies for {html.escape(tool.base_url)}.</p>",
            )
        # A teacher opening a gradesync link lands in that course's console page, signed in
        # by the launch (and allowed that course only, unless already an admin).
        name = claims.get("name")
        await run_in_threadpool(
            lambda: sign_in(
                request,
                tool.uow,
                now,
                tenant_id=platform.tenant_id,
                person_id=bound.person_id,
                display_name=name.strip() if isinstance(name, str) and name.strip() else valid.sub,
                course_id=bound.course_id,
                framed=framed,
            )
        )
        return RedirectResponse(
            f"{tool.base_url}/console/courses/{quote(bound.course_id, safe='')}", status_code=303
        )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in bound.notes)
    body = (
        f"<p>Welcome. Course: {html.escape(bound.course_id or 'not connected')}; activity: "
        f"{html.escape(bound.activity_id or '-')}.</p>"
        + (f"<p>Grades cannot be sent yet:</p><ul>{notes}</ul>" if notes else "")
    )
    return _page("gradesync", body)


def _picker(session: str, courses: list[dict[str, Any]], base_url: str) -> HTMLResponse:
    parts = []
    for course in courses:
        rows = "".join(
            "<li><label><input type='checkbox' name='activity_ids' "
            f"value='{html.escape(a['id'])}'> "
            f"{html.escape(a['title'])} ({a['points']:g} points)</label></li>"
            for a in course["activities"]
        )
        parts.append(
            f"<fieldset><legend><label><input type='radio' name='course_id' "
            f"value='{html.escape(course['id'])}' {'checked' if len(courses) == 1 else ''}> "
            f"{html.escape(course['title'])}</label></legend><ul>{rows}</ul></fieldset>"
        )
    body = (
        f"<form method='post' action='{html.escape(base_url)}/lti/deep_link/respond'>"
        f"<input type='hidden' name='session' value='{html.escape(session)}'>"
        + "".join(parts)
        + "<button type='submit'>Add to the course</button></form>"
    )
    return _page("Choose gradesync activities", body)


async def deep_link_respond(request: Request) -> Response:
    tool = tool_of(request)
    form = await request.form()
    now = tool.clock.now()
    activity_ids = [str(v) for v in form.getlist("activity_ids")]
    course_id = str(form.get("course_id") or "") or None
    try:
        session = deep_linking.open_session(tool.box, str(form.get("session") or ""), now)
        key = await run_in_threadpool(tool.keys.current)
        chosen = DeepLinkRequest(
            tenant_id=session.tenant_id,
            destination_id=session.destination_id,
            course_id=course_id,
            activity_ids=activity_ids,
            bound_course_id=session.course_id,
            context=session.context,
            endpoint=session.endpoint,
            deployment_id=session.deployment_id,
        )
        try:
            platform, choices = await run_in_threadpool(
                lambda: connect_course(tool.uow, chosen, now, capabilities_of=capabilities_of)
            )
        except InvalidInput as exc:
            problems = [
                {"field": p.field, "rule": p.rule, "message": p.message} for p in exc.problems
            ]
            if _wants_json(request):
                return JSONResponse(
                    {"error": "invalid_input", "problems": problems}, status_code=422
                )
            return _page(
                "Check your choice",
                "".join(f"<p>{html.escape(p['message'])}</p>" for p in problems),
                422,
            )
        # outside the transaction: the LMS's own column for an activity gradesync has no
        # record of here (a connection added again) is reused, never doubled
        async with tool.runtime.request_governor() as governor:
            choices = await platform_columns(
                tool.runtime.destination_client(platform),
                platform,
                session.endpoint,
                choices,
                now=now,
                within=tool.runtime.settings.deep_link_lookup_seconds,
                governor=governor,
            )
        items = deep_linking.content_items(
            choices, tool.base_url + "/lti/launch", str(platform.config.get("tag") or "grade")
        )
        token = deep_linking.response_jwt(
            key,
            client_id=str(platform.config["client_id"]),
            issuer=str(platform.config["issuer"]),
            session=session,
            items=items,
            now=now,
            message=f"Added {len(items)} gradesync activit{'y' if len(items) == 1 else 'ies'}.",
        )
    except LaunchRefused as refused:
        return await _refused(request, refused)
    if _wants_json(request):
        return JSONResponse(
            {"return_url": session.return_url, "jwt": token, "content_items": items}
        )
    page = (
        "<!doctype html><html><head><title>Returning to the LMS</title></head>"
        "<body onload='document.forms[0].submit()'>"
        f"<form method='post' action='{html.escape(session.return_url)}'>"
        f"<input type='hidden' name='JWT' value='{html.escape(token)}'>"
        "<noscript><button type='submit'>Continue</button></noscript></form></body></html>"
    )
    return HTMLResponse(page)


def build_router(sign_in: SignIn) -> APIRouter:
    """The LTI 1.3 endpoints. `sign_in` opens the console for a teacher a launch proved
    (`gradesync.web.console.session.sign_in_from_launch`)."""

    async def launch_route(request: Request) -> Response:
        return await launch(request, sign_in)

    router = APIRouter(tags=["lti"])
    router.add_api_route("/lti/jwks.json", jwks, methods=["GET"], include_in_schema=True)
    router.add_api_route("/lti/config", tool_config, methods=["GET"])
    router.add_api_route("/lti/canvas.json", canvas_json, methods=["GET"])
    # GET or POST: platforms use either for login initiation
    router.add_api_route("/lti/login", login, methods=["GET"], operation_id="lti_login_get")
    router.add_api_route("/lti/login", login, methods=["POST"], operation_id="lti_login_post")
    router.add_api_route("/lti/launch", launch_route, methods=["POST"], name="launch")
    router.add_api_route("/lti/deep_link/respond", deep_link_respond, methods=["POST"])
    return router
