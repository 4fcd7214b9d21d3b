"""SIS passback pages (OneRoster 1.2), the way a district's SIS admin works in Canvas: the SIS
connections and their check, and one course's page at one SIS (class and students, category
alignment, "Sync to SIS" with the validation list, Post grades, its Grade Sync history). The
forms that map and align are in `sis_mapping`; ticking, posting and the Grade Sync page of a
run in `sis_posting`; a connection's settings in `sis_settings`.

Every page calls the use cases the API and CLI call (services.sis, the SIS reached through
the runtime). Connection-wide settings (check, class, students, alignment) are for admins;
whoever may see a course may tick its activities, validate and post them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from gradesync.domain import remedies
from gradesync.domain.errors import FieldProblem, InvalidInput, NotFound
from gradesync.domain.model import ConsoleUser, Destination, DestinationKind, SyncRun, UserRole
from gradesync.runtime import Runtime
from gradesync.services import console_queries as cq
from gradesync.services import sis as service
from gradesync.services.destination import RemoteFailure
from gradesync.web.console.common import (
    PageError,
    admin_user,
    check_csrf,
    confirm_page,
    course_for,
    flash,
    problems_text,
    render,
    runtime_of,
)
from gradesync.web.console.runs import OUTCOME_LABELS
from gradesync.web.console.session import current_user

log = logging.getLogger(__name__)
router = APIRouter(prefix="/sis")

# A Post grades run in the words of a SIS gradebook (the engine's stages, renamed).
SIS_STAGE_LABELS = {
    "queued": "Scheduled",
    "computing": "Working out scores",
    "provisioning": "Creating SIS line items",
    "sending": "Sending scores",
    "verifying": "Checking what the SIS holds",
    "finished": "Done",
    # not a stage a run is in: a stopped run taken up again (domain.run_history)
    "resumed": "Resumed",
}


def problems_for(
    user: ConsoleUser,
    problems: Sequence[FieldProblem],
    destination_id: str,
    course_id: str | None = None,
) -> list[FieldProblem]:
    """A check's problems as the viewer can act on them (`domain.remedies.in_console`): an
    instructor reads who can do what a command in the message would, an admin the
    console's page or form that does it."""
    instructor = user.role is not UserRole.ADMIN
    return [_for_viewer(p, instructor, destination_id, course_id) for p in problems]


def _for_viewer(
    p: FieldProblem, instructor: bool, destination_id: str, course_id: str | None
) -> FieldProblem:
    if isinstance(p, remedies.RemedyProblem):  # its remedy held as a code: worded from it
        return p.for_instructor() if instructor else p.read_over(remedies.Reader.CONSOLE)
    said = remedies.in_console(
        p.rule, p.message, instructor=instructor, destination_id=destination_id, course_id=course_id
    )
    return replace(p, message=said)


def checks_for(
    user: ConsoleUser, checks: Sequence[service.ActivityCheck], destination_id: str
) -> list[service.ActivityCheck]:
    """Activity checks with their problems as the viewer can act on them (`problems_for`)."""
    return [
        replace(c, problems=problems_for(user, c.problems, destination_id, c.course_id))
        for c in checks
    ]


def page_url(destination_id: str, course_id: str) -> str:
    return f"/console/sis/{destination_id}/courses/{course_id}"


def sis_of(rt: Runtime, tenant_id: str, destination_id: str) -> Destination:
    with rt.uow() as uow:
        try:
            return service.sis_destination(uow, tenant_id, destination_id)
        except (NotFound, InvalidInput) as exc:
            raise PageError(404, "No such SIS connection.") from exc


def sis_words(failure: RemoteFailure, destination_id: str, *, instructor: bool = False) -> str:
    """The SIS's refusal as a console user acts on it: an `instructor` reads who can do it,
    an administrator the console's page or button; the remedy made from its code where the
    adapter holds one, else reworded where it names a command (`remedies.in_console`)."""
    if failure.fix is not None:
        fix = failure.fix
        if fix.destination is None:
            fix = replace(fix, destination=destination_id)
        remedy = fix.for_instructor() if instructor else fix.words(remedies.Reader.CONSOLE)
    elif failure.remedy:
        remedy = remedies.in_console(
            failure.code, failure.remedy, instructor=instructor, destination_id=destination_id
        )
    else:
        remedy = ""
    return " ".join(x for x in (failure.message, remedy) if x)


# --- the SIS connections --------------------------------------------------------------------


def _connections(request: Request, user: ConsoleUser, **extra: Any) -> HTMLResponse:
    rt = runtime_of(request)
    now = rt.clock.now()
    dests = [d.as_of(now) for d in service.sis_connections(rt.uow, user.tenant_id)]
    with rt.uow() as uow:
        courses = sorted(uow.courses.all(user.tenant_id), key=lambda c: c.title.lower())
        classes = {
            d.id: {k.course_id: k for k in uow.links.courses_for_destination(user.tenant_id, d.id)}
            for d in dests
        }
        counts = {d.id: cq.status_counts(uow, user.tenant_id, d) for d in dests}
    return render(
        request,
        "console/sis.html",
        user,
        nav="sis",
        dests=dests,
        courses=courses,
        classes=classes,
        counts=counts,
        **extra,
    )


@router.get("", response_class=HTMLResponse)
def connections_page(request: Request, user: ConsoleUser = Depends(admin_user)) -> HTMLResponse:
    return _connections(request, user)


@router.post("/{destination_id}/check", dependencies=[Depends(check_csrf)])
async def check_connection(
    request: Request, destination_id: str, user: ConsoleUser = Depends(admin_user)
) -> HTMLResponse:
    """The SIS's own check (token, scopes, categories), each step with its evidence."""
    rt = runtime_of(request)
    dest = await run_in_threadpool(sis_of, rt, user.tenant_id, destination_id)
    if dest.kind is not DestinationKind.ONEROSTER_REST:
        flash(request, "error", f"{dest.name} receives files: it has no API to check.")
        return await run_in_threadpool(_connections, request, user)
    try:
        async with rt.sis_directory(user.tenant_id, destination_id) as sis:
            steps = [s.read_over(remedies.Reader.CONSOLE) for s in await sis.check()]
    except RemoteFailure as failure:
        flash(request, "error", f"{dest.name} could not be asked: {sis_words(failure, dest.id)}")
        steps = []
    return await run_in_threadpool(
        _connections, request, user, checked=dest.name, checked_id=dest.id, steps=steps
    )


@router.post(
    "/{destination_id}/token-url/default",
    dependencies=[Depends(check_csrf)],
    response_model=None,
)
def default_token_url(
    request: Request,
    destination_id: str,
    confirm: Literal["yes"] | None = Form(None),
    user: ConsoleUser = Depends(admin_user),
) -> Response:
    """Set a connection's token URL back to its default next to the API (as `gradesync sis
    add --default-token-url`): asked first, since the URL it had is not kept."""
    rt = runtime_of(request)
    dest = sis_of(rt, user.tenant_id, destination_id)
    custom = dest.config.get("token_url")
    if not custom:
        flash(request, "ok", f"{dest.name} already gets its tokens at the default token URL.")
        return RedirectResponse("/console/sis", status_code=303)
    default = service.token_origin({"base_url": dest.config.get("base_url")})
    if (
        dest.secret.get("client_secret")
        and default is not None
        and default != service.token_origin(dest.config)
    ):
        # the use case would refuse it after the question: the secret would go elsewhere
        flash(
            request,
            "error",
            f"{dest.name} was not changed: its default token URL is on another server than "
            f"{custom}, and the stored client secret goes only to the server it was given "
            "for. Give the client secret again in its settings, with the token URL left empty.",
        )
        return RedirectResponse("/console/sis", status_code=303)
    if confirm != "yes":
        return confirm_page(
            request,
            user,
            nav="sis",
            title=f"Use the default token URL for {dest.name}?",
            said=[
                f"{dest.name} then gets its OAuth 2 tokens at /ims/oneroster/oauth2/token on "
                f"the server of its base URL, instead of {custom}.",
                Markup(
                    "The token URL it has now is not kept: to go back to it, give it again "
                    'in <a href="{}">the settings of {}</a>.'
                ).format(f"/console/sis/{quote(destination_id, safe='')}/edit", dest.name),
            ],
            action=f"/console/sis/{destination_id}/token-url/default",
            yes="Yes, use the default token URL",
            cancel="/console/sis",
        )
    try:
        service.add_connection(
            rt.uow,
            rt.clock,
            tenant_id=user.tenant_id,
            destination_id=destination_id,
            name=None,
            base_url=None,
            token_url="",  # the use case's word for the default
            guard=rt.outbound,
        )
    except InvalidInput as exc:
        flash(request, "error", f"{dest.name} was not changed: {problems_text(exc)}")
    else:
        flash(request, "ok", f"{dest.name} now gets its tokens at the default token URL.")
    return RedirectResponse("/console/sis", status_code=303)


# --- one course at one SIS ------------------------------------------------------------------


async def _ask_sis(
    rt: Runtime,
    tenant_id: str,
    overview: service.CourseOverview,
    checks: list[service.ActivityCheck],
    *,
    instructor: bool,
) -> tuple[
    list[dict[str, Any]],
    dict[str | None, service.CategoryAlignment],
    list[service.ActivityCheck],
    str,
]:
    """The SIS's categories, how each group resolves and the category check of each activity
    (the same as `sis validate`); the SIS's own words when it cannot be asked."""
    dest = overview.destination
    if dest.kind is not DestinationKind.ONEROSTER_REST:
        return [], {}, checks, ""
    try:
        async with rt.sis_directory(tenant_id, dest.id) as sis:
            cats = await sis.categories(refresh=True)
            if overview.class_link is None:
                return cats, {}, checks, ""
            aligned = await service.check_categories(
                rt.uow,
                sis,
                tenant_id=tenant_id,
                destination_id=dest.id,
                course_id=overview.course.id,
                every_group=True,
            )
            checks = await service.check_activity_categories(
                rt.uow, sis, tenant_id=tenant_id, destination_id=dest.id, checks=checks
            )
    except RemoteFailure as failure:
        return [], {}, checks, sis_words(failure, dest.id, instructor=instructor)
    return cats, {a.group: a for a in aligned}, checks, ""


@router.get("/{destination_id}/courses/{course_id}", response_class=HTMLResponse)
async def course_page(
    request: Request,
    destination_id: str,
    course_id: str,
    user: ConsoleUser = Depends(current_user),
) -> HTMLResponse:
    rt = runtime_of(request)
    await run_in_threadpool(course_for, request, user, course_id)
    try:
        overview = await run_in_threadpool(
            lambda: service.course_overview(
                rt.uow, tenant_id=user.tenant_id, destination_id=destination_id, course_id=course_id
            )
        )
        checks = await run_in_threadpool(
            lambda: service.validate(
                rt.uow, tenant_id=user.tenant_id, destination_id=destination_id, course_id=course_id
            )
        )
    except (NotFound, InvalidInput) as exc:
        raise PageError(404, str(exc)) from exc
    cats, aligned, checks, sis_problem = await _ask_sis(
        rt, user.tenant_id, overview, checks, instructor=user.role is not UserRole.ADMIN
    )

    def runs() -> list[SyncRun]:
        with rt.uow() as uow:
            return uow.runs.history(
                user.tenant_id, course_id=course_id, destination_id=destination_id, limit=10
            )

    return await run_in_threadpool(
        lambda: render(
            request,
            "console/sis_course.html",
            user,
            nav="sis" if user.role.value == "admin" else "courses",
            o=overview,
            checks={c.activity_id: c for c in checks_for(user, checks, destination_id)},
            categories=cats,
            aligned=aligned,
            sis_problem=sis_problem,
            runs=runs(),
            base=page_url(destination_id, course_id),
            stage_labels=SIS_STAGE_LABELS,
            outcome_labels=OUTCOME_LABELS,
        )
    )
