"""Schedules page, in the shape admins know from SIS grade sync screens: type, interval, first
run, next run, time zone, posted by; run now, pause, pause all, resume, edit, delete; and the
log of who did what."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gradesync.domain.errors import InvalidInput, NotFound
from gradesync.domain.local_time import on_clock, strftime
from gradesync.domain.model import ConsoleUser, RunScope, ScheduleKind
from gradesync.runtime import Runtime
from gradesync.services.schedules import ScheduleInfo, ScheduleService
from gradesync.web.console.common import (
    PageError,
    admin_user,
    check_csrf,
    flash,
    page_labels,
    problems_text,
    render,
    runtime_of,
)

router = APIRouter()

KIND_HINTS = {
    "interval": "every so often, e.g. 15m, 2h, 1h30m",
    "daily": "a local time, e.g. 01:30",
    "weekly": "days and a local time, e.g. mon-fri 07:00 or sat 22:00",
    "cron": "five cron fields, e.g. 0 7 * * 1-5",
}
# the form's labels, for its refusals (the services name the fields as the API does)
FORM_LABELS = {
    "kind": "Repeats",
    "spec": "When",
    "time_zone": "Time zone",
    "first_run_at": "First run",
    "course_id": "Course",
    "destination_id": "Destination",
    "trigger": "Type",
}
page_labels(__name__, FORM_LABELS)  # for `form_refused` too
TYPE_LABELS = {"schedule": "Grade sync", "remaster": "Remaster (resend everything)"}


def service(rt: Runtime) -> ScheduleService:
    """The schedule service bound to the engine; changes wake this process's scheduler."""
    return rt.schedules()


def _choices(rt: Runtime, tenant_id: str) -> dict[str, Any]:
    with rt.uow() as uow:
        courses = sorted(uow.courses.all(tenant_id), key=lambda c: c.title.lower())
        dests = sorted(uow.destinations.all(tenant_id), key=lambda d: d.name.lower())
    return {"courses": courses, "destinations": dests}


def _local_input(info: ScheduleInfo) -> str:
    """The first run as a datetime-local value in the schedule's zone; empty (the first run
    stays as it is) when that zone's clock cannot show it, as the field is read in the zone."""
    at = info.schedule.first_run_at
    if at is None:
        return ""
    local = on_clock(at, info.schedule.time_zone)
    return "" if local is None else strftime(local, "%Y-%m-%dT%H:%M")


def _page(request: Request, user: ConsoleUser, *, status: int = 200, **extra: Any) -> HTMLResponse:
    rt = runtime_of(request)
    svc = service(rt)
    schedules = svc.all(user.tenant_id)
    log = svc.history(user.tenant_id, limit=30)
    ctx = _choices(rt, user.tenant_id)
    names = {c.id: c.title for c in ctx["courses"]}
    return render(
        request,
        "console/schedules.html",
        user,
        status=status,
        nav="schedules",
        schedules=schedules,
        log=log,
        described={i.schedule.id: _described(i, names) for i in schedules},
        kinds=[k.value for k in ScheduleKind],
        kind_hints=KIND_HINTS,
        type_labels=TYPE_LABELS,
        course_names=names,
        destination_names={d.id: d.name for d in ctx["destinations"]},
        # the log reads in each schedule's zone, as the table above it does
        zones={i.schedule.id: i.schedule.time_zone for i in schedules},
        form=extra.pop("form", {}),
        **ctx,
        **extra,
    )


def _described(info: ScheduleInfo, course_names: dict[str, str]) -> str:
    """How the log names a schedule: "Grade sync daily at 01:30, all courses"."""
    scope = info.schedule.scope
    where = course_names.get(scope.course_id, scope.course_id) if scope.course_id else "all courses"
    kind = TYPE_LABELS.get(info.schedule.trigger.value, info.schedule.trigger.value)
    return f"{kind} {info.description}, {where}"


@router.get("/schedules", response_class=HTMLResponse)
def schedules_page(request: Request, user: ConsoleUser = Depends(admin_user)) -> HTMLResponse:
    return _page(request, user)


@router.post("/schedules", dependencies=[Depends(check_csrf)], response_model=None)
def create_schedule(
    request: Request,
    kind: str = Form(...),
    spec: str = Form(...),
    time_zone: str = Form(""),
    course_id: str = Form(""),
    destination_id: str = Form(""),
    trigger: str = Form("schedule"),
    first_run_at: str = Form(""),
    user: ConsoleUser = Depends(admin_user),
) -> Response:
    form = {
        "kind": kind,
        "spec": spec,
        "time_zone": time_zone,
        "course_id": course_id,
        "destination_id": destination_id,
        "trigger": trigger,
        "first_run_at": first_run_at,
    }
    try:
        info = service(runtime_of(request)).create(
            user.tenant_id,
            user.username,
            kind=kind,
            spec=spec,
            time_zone=time_zone.strip() or None,
            course_id=course_id or None,
            destination_id=destination_id or None,
            trigger=trigger,
            first_run_at=first_run_at,  # read by the service, its problem named with the rest
        )
    except InvalidInput as exc:
        return _page(request, user, status=422, form=form, error=problems_text(exc, FORM_LABELS))
    flash(request, "ok", f"Schedule added: {info.description}.")
    return RedirectResponse("/console/schedules", status_code=303)


def _act(request: Request, user: ConsoleUser, schedule_id: str, what: str) -> RedirectResponse:
    svc = service(runtime_of(request))
    try:
        if what == "pause":
            info = svc.pause(user.tenant_id, schedule_id, user.username)
            flash(request, "ok", f"Paused: {info.description}.")
        elif what == "resume":
            info = svc.resume(user.tenant_id, schedule_id, user.username)
            flash(request, "ok", f"Resumed: {info.description}.")
        elif what == "delete":
            svc.delete(user.tenant_id, schedule_id, user.username)
            flash(request, "ok", "Schedule deleted; its history stays in the log.")
        elif what == "run":
            run, joined = svc.run_now(user.tenant_id, schedule_id, user.username)
            if joined:
                flash(
                    request, "ok", f"A sync of that scope was already going: joined run {run.id}."
                )
            else:
                flash(request, "ok", f"Run {run.id} started.")
    except NotFound as exc:
        raise PageError(404, "No such schedule.") from exc
    except InvalidInput as exc:
        flash(request, "error", problems_text(exc, FORM_LABELS))
    return RedirectResponse("/console/schedules", status_code=303)


@router.post("/schedules/pause-all", dependencies=[Depends(check_csrf)])
def pause_all(request: Request, user: ConsoleUser = Depends(admin_user)) -> RedirectResponse:
    paused = service(runtime_of(request)).pause_all(user.tenant_id, user.username)
    flash(request, "ok", f"Paused {len(paused)} schedule(s).")
    return RedirectResponse("/console/schedules", status_code=303)


@router.get("/schedules/{schedule_id}/edit", response_class=HTMLResponse)
def edit_form(
    request: Request, schedule_id: str, user: ConsoleUser = Depends(admin_user)
) -> HTMLResponse:
    try:
        info = service(runtime_of(request)).get(user.tenant_id, schedule_id)
    except NotFound as exc:
        raise PageError(404, "No such schedule.") from exc
    s = info.schedule
    form = {
        "kind": s.kind.value,
        "spec": s.spec,
        "time_zone": s.time_zone,
        "course_id": s.scope.course_id or "",
        "destination_id": s.scope.destination_id or "",
        "trigger": s.trigger.value,
        "first_run_at": _local_input(info),
    }
    return render(
        request,
        "console/schedule_edit.html",
        user,
        nav="schedules",
        info=info,
        form=form,
        kinds=[k.value for k in ScheduleKind],
        kind_hints=KIND_HINTS,
        type_labels=TYPE_LABELS,
        **_choices(runtime_of(request), user.tenant_id),
    )


@router.post(
    "/schedules/{schedule_id}/edit", dependencies=[Depends(check_csrf)], response_model=None
)
def edit_schedule(
    request: Request,
    schedule_id: str,
    kind: str = Form(...),
    spec: str = Form(...),
    time_zone: str = Form(""),
    course_id: str = Form(""),
    destination_id: str = Form(""),
    trigger: str = Form("schedule"),
    first_run_at: str = Form(""),
    user: ConsoleUser = Depends(admin_user),
) -> Response:
    svc = service(runtime_of(request))
    try:
        stored = svc.get(user.tenant_id, schedule_id)
        before = stored.schedule.scope
        same_course = (course_id or None) == before.course_id
        # the form shows the stored first run: sent back as it was, it is not a choice, and
        # a new rule may move a first run that has not come yet (the service's own rule)
        first = "" if first_run_at.strip() == _local_input(stored) else first_run_at
        info = svc.edit(
            user.tenant_id,
            schedule_id,
            user.username,
            kind=kind,
            spec=spec,
            time_zone=time_zone,
            first_run_at=first,  # read by the service, its problem named with the rest
            scope=RunScope(
                user.tenant_id,
                destination_id or None,
                course_id or None,
                before.activity_ids if same_course else (),
            ),
            trigger=trigger,
        )
    except NotFound as exc:
        raise PageError(404, "No such schedule.") from exc
    except InvalidInput as exc:
        current = svc.get(user.tenant_id, schedule_id)
        form = {
            "kind": kind,
            "spec": spec,
            "time_zone": time_zone,
            "course_id": course_id,
            "destination_id": destination_id,
            "trigger": trigger,
            "first_run_at": first_run_at,
        }
        return render(
            request,
            "console/schedule_edit.html",
            user,
            status=422,
            nav="schedules",
            info=current,
            form=form,
            error=problems_text(exc, FORM_LABELS),
            kinds=[k.value for k in ScheduleKind],
            kind_hints=KIND_HINTS,
            type_labels=TYPE_LABELS,
            **_choices(runtime_of(request), user.tenant_id),
        )
    flash(request, "ok", f"Schedule saved: {info.description}.")
    return RedirectResponse("/console/schedules", status_code=303)


# Declared after `/schedules/{schedule_id}/edit`: routes match in order, and this one would
# take the edit form's POST for an action named "edit".
@router.post("/schedules/{schedule_id}/{what}", dependencies=[Depends(check_csrf)])
def schedule_action(
    request: Request, schedule_id: str, what: str, user: ConsoleUser = Depends(admin_user)
) -> RedirectResponse:
    if what not in ("pause", "resume", "delete", "run"):
        raise PageError(404, "Unknown schedule action.")
    return _act(request, user, schedule_id, what)
