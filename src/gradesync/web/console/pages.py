"""Console pages for signing in and the course list. Other pages live beside this module."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from gradesync.domain.model import ConsoleUser, UserRole
from gradesync.services.accounts import authenticate
from gradesync.web.console.session import current_user, sign_in, sign_out

WEB = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=str(WEB / "templates"))
static = StaticFiles(directory=str(WEB / "static"))

router = APIRouter(prefix="/console", include_in_schema=False)


def render(request: Request, name: str, user: ConsoleUser | None, **ctx: Any) -> HTMLResponse:
    flashes = request.session.pop("flashes", []) if "session" in request.scope else []
    return templates.TemplateResponse(request, name, {"user": user, "flashes": flashes, **ctx})


def flash(request: Request, level: str, text: str) -> None:
    request.session.setdefault("flashes", []).append((level, text))


def _safe_next(url: str | None) -> str:
    """Only same-site paths: a sign-in link must not bounce people to another site."""
    if not url or urlparse(url).netloc or not url.startswith("/console"):
        return "/console/"
    return url


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/console/") -> HTMLResponse:
    return render(request, "console/login.html", None, next_url=_safe_next(next))


@router.post("/login", response_model=None)
def login(
    request: Request,
    username: str = Form(...),
    password: str = Form(...),
    tenant: str = Form(""),
    next: str = Form("/console/"),
) -> Response:
    runtime = request.app.state.runtime
    user = authenticate(runtime.db.uow, username, password, tenant.strip() or None)
    if user is None:
        resp = render(
            request,
            "console/login.html",
            None,
            next_url=_safe_next(next),
            username=username,
            tenant=tenant,
            error="That username and password do not match.",
        )
        resp.status_code = 401
        return resp
    sign_in(request, user)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request) -> RedirectResponse:
    sign_out(request)
    return RedirectResponse("/console/login", status_code=303)


@router.get("/", response_class=HTMLResponse)
def courses(request: Request, user: ConsoleUser = Depends(current_user)) -> HTMLResponse:
    runtime = request.app.state.runtime
    rows = []
    with runtime.db.uow() as uow:
        for course in uow.courses.all(user.tenant_id):
            if user.can_see_course(course.id):
                counts = uow.ledger.counts_by_state(user.tenant_id, course_id=course.id)
                rows.append({"course": course, "counts": counts})
    if user.role is UserRole.INSTRUCTOR and len(rows) == 1:
        return RedirectResponse(f"/console/courses/{rows[0]['course'].id}", status_code=303)  # type: ignore[return-value]
    return render(request, "console/courses.html", user, courses=rows, nav="courses")
