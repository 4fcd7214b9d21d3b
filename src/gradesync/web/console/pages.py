"""Console pages for signing in and the course list; the other pages live beside this module
and are gathered into `router` here (mounted by `web.app`)."""

from __future__ import annotations

from urllib.parse import urlparse

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from gradesync.domain.model import ConsoleUser, UserRole
from gradesync.services.accounts import authenticate, schools_tried
from gradesync.services.login_throttle import LoginThrottle
from gradesync.web.api.errors import http_refused, validation_refused
from gradesync.web.console import (
    course,
    dashboard,
    destinations,
    diagnosis,
    policy,
    registration,
    runs,
    schedules,
    session,
    sis,
    sis_mapping,
    sis_posting,
    sis_settings,
    tool_keys,
)
from gradesync.web.console.common import (
    PageError,
    check_csrf,
    flash,
    form_refused,
    page_error_handler,
    render,
    static,
    templates,
)
from gradesync.web.console.session import current_user, sign_in, sign_out, signed_in

__all__ = ["flash", "install", "render", "router", "static", "templates"]

router = APIRouter(prefix="/console", include_in_schema=False)


def install(app: FastAPI, secret_key: str, *, https_only: bool = False) -> None:
    """The console on `app`: its signed session, its error pages, static files and pages."""
    session.install(app, secret_key, https_only=https_only)
    app.add_exception_handler(PageError, page_error_handler)

    # a console form's refusal is a page; everything else keeps the API's JSON refusal
    async def not_here(request: Request, exc: Exception) -> Response:
        """A console address no page answers (404, 405) is a page too; the rest (the
        sign-in redirect, the API's errors) as FastAPI answers them."""
        assert isinstance(exc, StarletteHTTPException)
        if request.url.path.startswith("/console/") and exc.status_code in (404, 405):
            return await page_error_handler(request, exc)
        return await http_refused(request, exc)

    app.add_exception_handler(StarletteHTTPException, not_here)

    async def refused(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/console/") and isinstance(exc, RequestValidationError):
            return form_refused(request, exc, await run_in_threadpool(signed_in, request))
        return await validation_refused(request, exc)

    app.add_exception_handler(RequestValidationError, refused)
    app.mount("/console/static", static, name="console-static")
    app.include_router(router)


SCHOOL_HINT = (
    "If your username is an account in several schools on this server, enter your school id below."
)


def _safe_next(url: str | None) -> str:
    """Only same-site paths: a sign-in link must not bounce people to another site."""
    if not url or urlparse(url).netloc or not url.startswith("/console"):
        return "/console/"
    return url


def _throttle(request: Request) -> LoginThrottle:
    """The process's sign-in throttle (one per app)."""
    state = request.app.state
    throttle: LoginThrottle | None = getattr(state, "login_throttle", None)
    if throttle is None:
        throttle = state.login_throttle = LoginThrottle(state.runtime.clock)
    return throttle


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/console/") -> HTMLResponse:
    return render(request, "console/login.html", None, next_url=_safe_next(next))


# the token proves the form was this site's: no other site can sign a browser in (login CSRF)
@router.post("/login", response_model=None, dependencies=[Depends(check_csrf)])
def login(
    request: Request,
    username: str = Form(...),
    password: str = Form(...),
    tenant: str = Form(""),
    next: str = Form("/console/"),
) -> Response:
    runtime = request.app.state.runtime
    throttle = _throttle(request)
    address = request.client.host if request.client else None
    tenant_id = tenant.strip() or None
    # the account the password is checked against counts the failure, whatever the school
    # field held; a try that checks none (an unknown name, or one held in several schools
    # with no school named) counts under the name alone, as a known one would
    tried = schools_tried(runtime.uow, username, tenant_id) or [""]
    keys = throttle.keys(username, tried, address)
    # heard or not, decided with the tries still being checked (sent at once) counted in
    wait = throttle.begin(keys)
    if wait:
        resp = render(
            request,
            "console/login.html",
            None,
            status=429,
            next_url=_safe_next(next),
            username=username,
            tenant=tenant,
            error=f"Too many failed sign-ins: try again in {wait} "
            f"second{'' if wait == 1 else 's'}."
            + ("" if tenant_id else " Or enter your school id: only its account is then tried."),
        )
        resp.headers["Retry-After"] = str(wait)
        return resp
    try:
        user = authenticate(runtime.uow, username, password, tenant_id)
    except BaseException:
        throttle.ended(keys)  # no answer: the try counts neither way
        raise
    if user is None:
        throttle.failed(keys)
        # without a school, a name held in several schools is tried in none: every failure
        # asks for the school in the same words, so none says whether the name exists
        return render(
            request,
            "console/login.html",
            None,
            status=401,
            next_url=_safe_next(next),
            username=username,
            tenant=tenant,
            school_asked=not tenant_id,
            error="That username and password do not match."
            + ("" if tenant_id else f" {SCHOOL_HINT}"),
        )
    # only the account opened (the one tried) is cleared: a namesake's failures in another
    # school stand
    throttle.succeeded(keys)
    sign_in(request, user)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout", dependencies=[Depends(check_csrf)])
def logout(request: Request) -> RedirectResponse:
    sign_out(request)
    return RedirectResponse("/console/login", status_code=303)


@router.get("/", response_class=HTMLResponse)
def courses(request: Request, user: ConsoleUser = Depends(current_user)) -> HTMLResponse:
    runtime = request.app.state.runtime
    rows = []
    with runtime.uow() as uow:
        for course in uow.courses.all(user.tenant_id):
            if user.can_see_course(course.id):
                counts = uow.ledger.counts_by_state(user.tenant_id, course_id=course.id)
                rows.append({"course": course, "counts": counts})
    if user.role is UserRole.INSTRUCTOR and len(rows) == 1:
        return RedirectResponse(f"/console/courses/{rows[0]['course'].id}", status_code=303)  # type: ignore[return-value]
    return render(request, "console/courses.html", user, courses=rows, nav="courses")


for _module in (
    course,
    policy,
    runs,
    schedules,
    diagnosis,
    destinations,
    dashboard,
    registration,
    sis,
    sis_mapping,
    sis_posting,
    sis_settings,
    tool_keys,
):
    router.include_router(_module.router)
