"""The course page: activities with their sync switch, Sync now / Resync / Remaster, live
progress of the course's run and the per-learner grade grid."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gradesync.domain.errors import Conflict, InvalidInput, NotFound
from gradesync.domain.model import ConsoleUser, Destination, RunScope, Trigger, UserRole
from gradesync.runtime import Runtime
from gradesync.services import console_queries as cq
from gradesync.services import queries, sync_switches
from gradesync.web.console.common import (
    PageError,
    Switch,
    check_csrf,
    course_for,
    flash,
    problems_text,
    render,
    runtime_of,
)
from gradesync.web.console.policy import course_policy
from gradesync.web.console.runs import OUTCOME_LABELS, STAGE_LABELS, STAGES, holds
from gradesync.web.console.session import current_user

router = APIRouter()

ACTIONS: dict[str, tuple[Trigger, str, str]] = {
    # action -> (trigger, button label, what it does, in words for the confirmation)
    "sync": (Trigger.MANUAL, "Sync now", "sends every grade that changed since the last sync"),
    "resync": (
        Trigger.RESYNC,
        "Resync",
        "recomputes every grade from the learners' attempts and sends the ones that differ "
        "from what the gradebook was last sent",
    ),
    "remaster": (
        Trigger.REMASTER,
        "Remaster",
        "sends every grade and every column's details (name, points, due date, category) "
        "again, even the ones already there. Use it after the gradebook was reset or "
        "columns were deleted. It overwrites grades typed into the gradebook",
    ),
}


def _page(request: Request, user: ConsoleUser, course_id: str, destination: str | None) -> Any:
    course_for(request, user, course_id)
    try:
        rt = runtime_of(request)
        return cq.course_page(
            rt.uow,
            user.tenant_id,
            course_id,
            capabilities=rt.capabilities,
            destination_id=destination,
            instructor=user.role is not UserRole.ADMIN,  # the remedies they can act on
        )
    except NotFound as exc:
        raise PageError(404, str(exc)) from exc


def _held(request: Request, page: Any) -> Any:
    """The destination shown, when it is paused now (by an admin, a Retry-After, the
    breaker): its grades wait, and the grid says why. None when it sends."""
    if page.destination is None:
        return None
    now = runtime_of(request).clock.now()
    return page.destination.as_of(now) if page.destination.paused_at(now) else None


@router.get("/courses/{course_id}", response_class=HTMLResponse)
def course_page(
    request: Request,
    course_id: str,
    destination: str | None = None,
    user: ConsoleUser = Depends(current_user),
) -> HTMLResponse:
    page = _page(request, user, course_id, destination)
    run = page.active_run or page.latest_run
    scope = run.scope if run else RunScope(user.tenant_id, None, course_id)
    shown = [*page.recent_runs, *([run] if run else [])]
    return render(
        request,
        "console/course.html",
        user,
        nav="courses",
        page=page,
        held=_held(request, page),
        held_back=holds(request, user, scope),
        runs=page.recent_runs,
        deleted=queries.deleted_names(runtime_of(request).uow, user.tenant_id, shown),
        statuses=cq.STATUSES,
        labels=cq.status_labels(page.destination.kind if page.destination else None),
        stage_labels=STAGE_LABELS,
        outcome_labels=OUTCOME_LABELS,
        all_stages=STAGES,
        policy=course_policy(request, user, course_id),
    )


@router.get("/courses/{course_id}/grid", response_class=HTMLResponse)
def grid_fragment(
    request: Request,
    course_id: str,
    destination: str | None = None,
    user: ConsoleUser = Depends(current_user),
) -> HTMLResponse:
    """The grade grid and activity table alone, for the page's script to refresh in place."""
    page = _page(request, user, course_id, destination)
    return render(
        request,
        "console/_course_tables.html",
        user,
        page=page,
        held=_held(request, page),
        statuses=cq.STATUSES,
        labels=cq.status_labels(page.destination.kind if page.destination else None),
    )


@router.get("/courses/{course_id}/history", response_class=HTMLResponse)
def history_fragment(
    request: Request,
    course_id: str,
    user: ConsoleUser = Depends(current_user),
) -> HTMLResponse:
    """The Recent syncs table alone, for the page's script to refresh when a run finishes."""
    course = course_for(request, user, course_id)
    rt = runtime_of(request)
    runs = cq.recent_runs(rt.uow, user.tenant_id, course_id)
    return render(
        request,
        "console/_course_history.html",
        user,
        course=course,
        runs=runs,
        deleted=queries.deleted_names(rt.uow, user.tenant_id, runs),
        stage_labels=STAGE_LABELS,
        outcome_labels=OUTCOME_LABELS,
    )


def _back(course_id: str, destination: str) -> str:
    tail = f"?destination={destination}" if destination else ""
    return f"/console/courses/{course_id}{tail}"


@router.post("/courses/{course_id}/switch", dependencies=[Depends(check_csrf)])
def course_switch(
    request: Request,
    course_id: str,
    sync: Switch = Form(...),
    destination: str = Form(""),
    user: ConsoleUser = Depends(current_user),
) -> RedirectResponse:
    """Grade sync on or off for the whole course."""
    course = course_for(request, user, course_id)
    on = sync == "on"
    rt = runtime_of(request)
    sync_switches.switch_course(rt.uow, rt.clock, rt.waker, rt.capabilities, course, on)
    flash(request, "ok", f"Grade sync is {'on' if on else 'off'} for {course.title}.")
    return RedirectResponse(_back(course_id, destination), status_code=303)


@router.post(
    "/courses/{course_id}/activities/{activity_id}/switch", dependencies=[Depends(check_csrf)]
)
def activity_switch(
    request: Request,
    course_id: str,
    activity_id: str,
    sync: Switch = Form(...),
    destination: str = Form(""),
    user: ConsoleUser = Depends(current_user),
) -> RedirectResponse:
    """An activity's sync switch. Its learners' grades are worked out again at once (the page
    shows the switch's effect) and reach the gradebook without anyone pressing Sync now."""
    course_for(request, user, course_id)
    rt = runtime_of(request)
    with rt.uow() as uow:
        activity = uow.activities.get(user.tenant_id, activity_id)
    if activity is None or activity.course_id != course_id:
        raise PageError(404, "No such activity in this course.")
    on = sync == "on"
    sync_switches.switch_activity(rt.uow, rt.clock, rt.waker, rt.capabilities, activity, on)
    flash(request, "ok", f"Sync is {'on' if on else 'off'} for {activity.title}.")
    return RedirectResponse(_back(course_id, destination), status_code=303)


@router.post("/courses/{course_id}/sync", dependencies=[Depends(check_csrf)], response_model=None)
def start_run(
    request: Request,
    course_id: str,
    action: str = Form("sync"),
    confirm: Literal["yes"] | None = Form(None),
    destination: str = Form(""),
    activity_ids: list[str] = Form(default=[]),
    user: ConsoleUser = Depends(current_user),
) -> Response:
    """Sync now, Resync or Remaster the course (or the ticked activities), each for the
    gradebook shown on the page, or every gradebook of the course when none is. Resync and
    Remaster ask for a confirmation first, naming the gradebooks they overwrite; Sync now
    names its gradebook once started, when the course has others."""
    course = course_for(request, user, course_id)
    if action not in ACTIONS:
        raise PageError(404, f"Unknown action {action!r}.")
    trigger, label, what = ACTIONS[action]
    rt = runtime_of(request)
    with rt.reads() as uow:
        every = cq.course_destinations(uow, user.tenant_id, course_id)
    only = destination
    gradebooks = [d for d in every if d.id == only] if only else every
    if only and not gradebooks:
        raise PageError(404, f"No gradebook {only!r} for this course.")
    if action != "sync" and confirm != "yes":
        return render(
            request,
            "console/confirm_run.html",
            user,
            nav="courses",
            course=course,
            action=action,
            label=label,
            what=what,
            destination=destination,
            gradebooks=[d.name for d in gradebooks],
            others=len(every) - len(gradebooks),
            activity_ids=activity_ids,
        )
    scope = RunScope(user.tenant_id, only or None, course_id, tuple(sorted(set(activity_ids))))
    try:
        run, joined = rt.ask_for_run(scope, trigger, user.username)
    except (InvalidInput, Conflict) as exc:
        text = problems_text(exc) if isinstance(exc, InvalidInput) else str(exc)
        flash(request, "error", f"{label} could not start: {text}")
        return RedirectResponse(_back(course_id, destination), status_code=303)
    if joined:
        flash(request, "ok", f"A sync of this course was already going; following run {run.id}.")
    else:
        alone = f" for {gradebooks[0].name} only" if only and len(every) > 1 else ""
        flash(request, "ok", f"{label} started (run {run.id}){alone}.")
    for held in _paused_gradebooks(rt, user.tenant_id, course_id, only):
        # said now, not after the run has waited for it and ended "partly failed"
        flash(
            request,
            "error",
            f"{held.name} is paused ({held.pause_reason or 'no reason given'}): this course's "
            f"grades for it wait as Pending until it "
            f"{'is resumed' if not held.enabled else 'sends again'}.",
        )
    return RedirectResponse(_back(course_id, destination), status_code=303)


def _paused_gradebooks(rt: Runtime, tenant_id: str, course_id: str, only: str) -> list[Destination]:
    """The course's gradebooks (or the one `only`) that send nothing now (an admin's
    pause, or a timed one)."""
    now = rt.clock.now()
    with rt.reads() as uow:
        links = uow.links.destinations_for_courses(tenant_id, [course_id])
        found = [
            uow.destinations.get(tenant_id, link.destination_id)
            for link in links
            if link.destination_id == only or not only
        ]
    return [d for d in found if d is not None and d.paused_at(now)]
