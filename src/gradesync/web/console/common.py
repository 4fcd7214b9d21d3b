"""What every console page shares: templates, rendering, flash messages, the CSRF check and
small helpers to reach the runtime and check access.

Forms that change something carry a per-session CSRF token (a hidden `csrf` field); the
session cookie is also SameSite=Lax, so a cross-site form cannot post with it either way.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, Form, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from gradesync.domain.errors import InvalidInput
from gradesync.domain.local_time import in_zone, on_clock, strftime
from gradesync.domain.model import ConsoleUser, Course, UserRole
from gradesync.domain.passback import PassbackRule
from gradesync.domain.reasons import as_clause
from gradesync.runtime import Runtime
from gradesync.web.console.session import SESSION_COOKIE, current_user, signed_in

WEB = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=str(WEB / "templates"))
static = StaticFiles(directory=str(WEB / "static"))


def _when(
    value: datetime | None,
    zone: str | None = None,
    fmt: str = "%Y-%m-%d %H:%M",
    *,
    named: bool = True,
) -> str:
    """A time for people: in the given zone (the course's), else UTC, with the zone named.
    Under a heading that names the zone (`named` False) it is not named again, unless the
    time is shown in UTC instead (`in_zone`)."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    local = in_zone(value, zone)  # in UTC when the zone's clock cannot show it
    if not named and (not zone or on_clock(value, zone) is not None):
        return strftime(local, fmt)
    return f"{strftime(local, fmt)} {local.tzname() or ''}".strip()


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    secs = max(0.0, (end - start).total_seconds())
    if secs < 1:
        return f"{secs * 1000:.0f} ms"
    if secs < 120:
        return f"{secs:.1f} s"
    if secs < 7200:
        return f"{secs / 60:.1f} min"
    return f"{secs / 3600:.1f} h"


def _local_time(value: datetime | None, seconds: bool = False) -> Markup:
    """A time the viewer's browser shows in its own zone (UTC without JavaScript)."""
    if value is None:
        return Markup("—")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return Markup('<time datetime="{}" data-local="{}">{}</time>').format(
        value.isoformat(timespec="seconds"), "seconds" if seconds else "", _when(value, fmt=fmt)
    )


# the SIS checks' rule codes (docs/oneroster.md) as a badge says them; the code stays in its
# tooltip, to look up
RULE_WORDS: dict[str, str] = {
    PassbackRule.NOT_SELECTED: "Not ticked",
    PassbackRule.NOT_POSTED: "Waiting for Post grades",
    PassbackRule.DUE_DATE_REQUIRED: "No due date",
    PassbackRule.DUE_DATE_OUTSIDE_TERM: "Due outside the term",
    PassbackRule.TERM_UNKNOWN: "Term unknown",
    PassbackRule.NAME_TOO_LONG: "Name too long",
    PassbackRule.NAME_EMPTY: "No name",
    PassbackRule.LEARNER_DUE_DATES: "Learners' own due dates",
    PassbackRule.CATEGORY_MISSING: "No SIS category",
    PassbackRule.CLASS_NOT_MAPPED: "Class not mapped",
    PassbackRule.OTHER_INSTALLATION: "Another installation's line item",
}


def rule_words(rule: str) -> str:
    return RULE_WORDS.get(rule) or rule.replace("_", " ").capitalize()


# what started a run, as the console's buttons and pages name it
TRIGGER_WORDS = {
    "auto": "Automatic",
    "manual": "Sync now",
    "resync": "Resync",
    "remaster": "Remaster",
    "schedule": "Schedule",
    "repair": "Repair",
}

templates.env.filters["when"] = _when
templates.env.filters["clause"] = as_clause  # a sentence of its own set inside ours
templates.env.filters["trigger_words"] = lambda t: TRIGGER_WORDS.get(str(t), str(t))
templates.env.filters["rule_words"] = rule_words
templates.env.filters["local"] = _local_time
templates.env.filters["local_iso"] = lambda at: _local_time(
    datetime.fromisoformat(at) if isinstance(at, str) and at else None, seconds=True
)
templates.env.globals["duration"] = _duration


def runtime_of(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token and request.method != "GET" and SESSION_COOKIE not in request.cookies:
        # A form posted from another site arrives without the session cookie (SameSite=Lax).
        # Minting a token here would answer with a new session cookie, replacing the browser's
        # own: a page elsewhere could sign the browser out. Its refusal page has no form.
        return ""
    if not token:
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return str(token)


def check_csrf(request: Request, csrf: str = Form("")) -> None:
    """FastAPI dependency for POST routes: the form's token must match the session's."""
    expected = request.session.get("csrf")
    if not expected or not hmac.compare_digest(str(expected), csrf):
        raise PageError(
            403,
            "This form has expired or did not come from this site; reload the page and try again.",
        )


def render(
    request: Request, name: str, user: ConsoleUser | None, *, status: int = 200, **ctx: Any
) -> HTMLResponse:
    flashes = request.session.pop("flashes", []) if "session" in request.scope else []
    resp = templates.TemplateResponse(
        request,
        name,
        {"user": user, "flashes": flashes, "csrf": csrf_token(request), **ctx},
    )
    resp.status_code = status
    return resp


def confirm_page(
    request: Request,
    user: ConsoleUser,
    *,
    nav: str,
    title: str,
    said: list[str],
    action: str,
    yes: str,
    cancel: str,
    fields: dict[str, str] | None = None,
) -> HTMLResponse:
    """The page that asks before a change that cannot be taken back with one click: it posts
    the same form again with `confirm=yes` (and `fields`), or goes back to `cancel`."""
    return render(
        request,
        "console/confirm_action.html",
        user,
        nav=nav,
        title=title,
        said=said,
        action=action,
        yes=yes,
        cancel=cancel,
        fields=fields or {},
    )


def flash(request: Request, level: str, text: str) -> None:
    """A one-time message shown on the next page ("ok", "warning" or "error")."""
    request.session.setdefault("flashes", []).append((level, text))


def problems_text(exc: InvalidInput, labels: dict[str, str] | None = None) -> str:
    """The problems as the form names its fields: by their labels where the page gives them,
    else the field's name in words ("first run at", not "first_run_at")."""
    return " ".join(f"{field_words(p.field, labels)}: {p.message}" for p in exc.problems)


def field_words(field: str, labels: dict[str, str] | None = None) -> str:
    if labels and field in labels:
        return labels[field]
    # an entry of a list typed into one box (`allowed_hosts[2]`): the box's label, as the
    # form shows no index (the problem quotes the entry)
    if labels and (base := field.split("[", 1)[0]) in labels:
        return labels[base]
    return field.removeprefix("config.").replace("_", " ").replace(".", " ")


# What a switch form sends (the state it turns to). Another value, a script's "maybe", is
# refused as the form's other checks are (`form_refused`), not read as off.
Switch = Literal["on", "off"]


class PageError(HTTPException):
    """A console error shown as a page (the API's errors stay JSON)."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(status_code=status_code, detail=detail)


async def page_error_handler(request: Request, exc: Exception) -> HTMLResponse:
    """A console error as a page, with the signed-in user's menu and Sign out."""
    assert isinstance(exc, StarletteHTTPException)
    titles = {403: "Not allowed", 404: "Not found", 405: "Not found", 409: "Not possible now"}
    detail = exc.detail if isinstance(exc, PageError) else _HTTP_WORDS.get(exc.status_code)
    return render(
        request,
        "console/error.html",
        await run_in_threadpool(signed_in, request),
        status=exc.status_code,
        title=titles.get(exc.status_code, "Something went wrong"),
        detail=detail or "This request cannot be answered.",
    )


# a console URL no page answers: typed, an old bookmark, or a form's address reloaded
_HTTP_WORDS = {
    404: "There is no such page in the console.",
    405: "This address is where a form is sent; it is not a page to open. Go back and use "
    "the page's button.",
}


# each page's labels of its form fields, by the module of its routes (`page_labels`): a
# form refused before the page's own code runs (`form_refused`) names them as the page does
_PAGE_LABELS: dict[str, dict[str, str]] = {}


def page_labels(module: str, labels: dict[str, str]) -> dict[str, str]:
    """Register `labels` as the form labels of the pages of `module` (its `__name__`)."""
    _PAGE_LABELS[module] = labels
    return labels


def form_refused(
    request: Request, exc: RequestValidationError, user: ConsoleUser | None
) -> HTMLResponse:
    """A form the browser's own checks would have stopped (a script, a browser without them):
    a page that says which field and why, by the page's label of it, as every other console
    refusal does, not the API's JSON."""
    endpoint = request.scope.get("endpoint")
    labels = _PAGE_LABELS.get(getattr(endpoint, "__module__", ""), {})
    said = [
        f"{field_words(str(e['loc'][-1]), labels) if e.get('loc') else 'the form'}: "
        + ("required" if e.get("type") == "missing" else str(e.get("msg", "invalid")))
        + "."
        for e in exc.errors()
    ]
    return render(
        request,
        "console/error.html",
        user,
        status=422,
        title="The form was not accepted",
        detail=" ".join(said) + " Nothing was changed; go back and correct it.",
    )


def admin_user(user: ConsoleUser = Depends(current_user)) -> ConsoleUser:
    """Dependency: the signed-in user, who must be an admin."""
    if user.role is not UserRole.ADMIN:
        raise PageError(403, "Only an administrator can open this page.")
    return user


def course_for(request: Request, user: ConsoleUser, course_id: str) -> Course:
    """The course if the user may see it; 404 otherwise (no hint that it exists)."""
    if not user.can_see_course(course_id):
        raise PageError(404, "No such course.")
    with runtime_of(request).uow() as uow:
        course = uow.courses.get(user.tenant_id, course_id)
    if course is None:
        raise PageError(404, "No such course.")
    return course
