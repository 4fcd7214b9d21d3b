"""SIS passback of a course, the part an instructor may do too: tick "Sync to SIS" (which only
records the choice), Post grades for a selection after a confirmation (optionally a
remaster), and the Grade Sync page of each post with its stages, counts and each result's
reason."""

from __future__ import annotations

import functools
from typing import Any, Literal

from anyio import from_thread
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gradesync.domain import remedies
from gradesync.domain.errors import GradesyncError, InvalidInput, NotFound
from gradesync.domain.model import ConsoleUser, SyncRun, UserRole
from gradesync.runtime import Runtime
from gradesync.services import console_queries as cq
from gradesync.services import queries
from gradesync.services import sis as service
from gradesync.web.console.common import (
    PageError,
    Switch,
    check_csrf,
    course_for,
    flash,
    problems_text,
    render,
    rule_words,
    runtime_of,
)
from gradesync.web.console.runs import OUTCOME_LABELS, STAGES
from gradesync.web.console.session import current_user
from gradesync.web.console.sis import (
    SIS_STAGE_LABELS,
    checks_for,
    page_url,
    problems_for,
    sis_of,
)

router = APIRouter(prefix="/sis")


async def _checked(
    rt: Runtime, tenant_id: str, destination_id: str, course_id: str, activity_ids: list[str]
) -> list[service.ActivityCheck]:
    """Validation of these activities of the course, categories included when the SIS can
    be asked."""
    return await rt.sis_checks(
        tenant_id, destination_id, course_id=course_id, activity_ids=activity_ids
    )


@router.post(
    "/{destination_id}/courses/{course_id}/activities/{activity_id}/switch",
    dependencies=[Depends(check_csrf)],
)
def sync_to_sis(
    request: Request,
    destination_id: str,
    course_id: str,
    activity_id: str,
    sync: Switch = Form(...),
    back: str = "",
    user: ConsoleUser = Depends(current_user),
) -> RedirectResponse:
    """Tick or clear "Sync to SIS". Ticking validates first and refuses with each problem;
    it only records the choice: the activity's grades go when someone posts them."""
    course_for(request, user, course_id)
    rt = runtime_of(request)
    on = sync == "on"
    with rt.uow() as uow:
        activity = uow.activities.get(user.tenant_id, activity_id)
    if activity is None or activity.course_id != course_id:
        raise PageError(404, "No such activity in this course.")
    try:
        from_thread.run(
            functools.partial(
                rt.tick_sis_activities,
                user.tenant_id,
                destination_id,
                [activity_id],
                selected=on,
                hold=True,
            )
        )
    except InvalidInput as exc:
        words = "; ".join(
            f"{rule_words(p.rule)}: {p.message}"
            for p in problems_for(user, exc.problems, destination_id, course_id)
        )
        flash(request, "error", f"{activity.title} cannot sync to the SIS: {words}")
    except NotFound as exc:
        raise PageError(404, str(exc)) from exc
    else:
        flash(
            request,
            "ok",
            f"{activity.title} syncs to the SIS: post its grades when you are ready."
            if on
            else f"{activity.title} no longer syncs to the SIS.",
        )
    to = (
        f"/console/courses/{course_id}?destination={destination_id}"
        if back == "course"
        else page_url(destination_id, course_id)
    )
    return RedirectResponse(to, status_code=303)


@router.post(
    "/{destination_id}/courses/{course_id}/post",
    dependencies=[Depends(check_csrf)],
    response_model=None,
)
async def post_grades(
    request: Request,
    destination_id: str,
    course_id: str,
    activity_ids: list[str] = Form(default=[]),
    confirm: Literal["yes"] | None = Form(None),
    remaster: Literal["yes"] | None = Form(None),
    user: ConsoleUser = Depends(current_user),
) -> Response:
    """Post grades of the ticked activities: first a confirmation naming what goes and what
    is left out (with the rule), then the run, followed on its Grade Sync page. `remaster`
    resends every score and line item detail (Canvas's "Remaster Grade Passback")."""
    rt = runtime_of(request)
    course = await run_in_threadpool(course_for, request, user, course_id)
    base = page_url(destination_id, course_id)
    chosen = list(dict.fromkeys(activity_ids))
    if not chosen:
        flash(request, "error", "Tick at least one activity to post its grades.")
        return RedirectResponse(base, status_code=303)
    try:
        checks = await _checked(rt, user.tenant_id, destination_id, course_id, chosen)
    except (NotFound, InvalidInput) as exc:
        raise PageError(404, str(exc)) from exc
    if confirm != "yes":
        dest = await run_in_threadpool(sis_of, rt, user.tenant_id, destination_id)
        return render(
            request,
            "console/sis_confirm.html",
            user,
            nav="sis" if user.role.value == "admin" else "courses",
            course=course,
            dest=dest,
            going=[c for c in checks if c.selected and c.ok],
            left_out=checks_for(user, service.left_out(checks, destination_id), destination_id),
            base=base,
            remaster=remaster == "yes",
        )
    going = [c.activity_id for c in checks if c.selected and c.ok]
    for c in service.left_out(checks, destination_id):
        why = "; ".join(
            f"{rule_words(p.rule)}: {p.message}"
            for p in problems_for(user, c.problems, destination_id, course_id)
        )
        flash(request, "error", f"Left out {c.title}: {why}")
    if not going:
        flash(request, "error", "Nothing to post: no activity of the selection can go.")
        return RedirectResponse(base, status_code=303)
    try:
        result = await rt.post_sis_grades(
            user.tenant_id,
            destination_id,
            course_id,
            actor=user.username,
            activity_ids=going,
            remaster=remaster == "yes",
        )
    except (InvalidInput, GradesyncError) as exc:
        if isinstance(exc, InvalidInput):
            text = problems_text(
                InvalidInput(problems_for(user, exc.problems, destination_id, course_id))
            )
        else:
            text = str(exc)
        flash(request, "error", f"Post grades could not start: {text}")
        return RedirectResponse(base, status_code=303)
    if result.run is None:
        flash(request, "error", "Nothing to post: no activity of the selection can go.")
        return RedirectResponse(base, status_code=303)
    if result.held:
        with rt.uow() as uow:
            acts = uow.activities.get_many(user.tenant_id, result.held)
        names = ", ".join(acts[a].title if a in acts else a for a in result.held)
        flash(request, "ok", f"Ticked but not posted, still waiting for Post grades: {names}.")
    n = len(result.posted)
    flash(
        request,
        "ok",
        f"Scheduled: grades of {n} activit{'y' if n == 1 else 'ies'} are on their way."
        + (" (A post of this course was already going; following it.)" if result.joined else ""),
    )
    return RedirectResponse(f"{base}/runs/{result.run.id}", status_code=303)


# --- Grade Sync: one Post grades run ----------------------------------------------------------


def _sis_run(
    request: Request, user: ConsoleUser, destination_id: str, course_id: str, run_id: str
) -> queries.RunDetail:
    course_for(request, user, course_id)
    try:
        detail = queries.run_detail(runtime_of(request).uow, user.tenant_id, run_id)
    except NotFound as exc:
        raise PageError(404, "No such run.") from exc
    scope = detail.run.scope
    if scope.course_id != course_id or scope.destination_id != destination_id:
        raise PageError(404, "No such run of this course at this SIS.")
    return detail


def _results(request: Request, user: ConsoleUser, run: SyncRun) -> list[dict[str, Any]]:
    """The run's results with their reasons, an instructor's in words they can act on."""
    instructor = user.role is not UserRole.ADMIN
    rt = runtime_of(request)
    sis = sis_of(rt, user.tenant_id, run.scope.destination_id or "")
    config, labels = sis.config, cq.status_labels(sis.kind)
    out = []
    for r in service.posted_results(rt.uow, run):
        status = cq.cell_status(r.row)
        out.append(
            {
                "r": r,
                "status": status,
                "label": labels[status],
                "score": cq.score_text(r.row, sis.kind),
                "why": cq.why_text(
                    r.row,
                    instructor=instructor,
                    course_id=run.scope.course_id,
                    group=remedies.reason_group(r.row.reason_code, r.activity.category, config),
                ),
            }
        )
    return out


@router.get("/{destination_id}/courses/{course_id}/runs/{run_id}", response_class=HTMLResponse)
def grade_sync_page(
    request: Request,
    destination_id: str,
    course_id: str,
    run_id: str,
    user: ConsoleUser = Depends(current_user),
) -> HTMLResponse:
    detail = _sis_run(request, user, destination_id, course_id, run_id)
    rt = runtime_of(request)
    overview = service.course_overview(
        rt.uow, tenant_id=user.tenant_id, destination_id=destination_id, course_id=course_id
    )
    titles = {s.activity.id: s.activity.title for s in overview.activities}
    return render(
        request,
        "console/sis_run.html",
        user,
        nav="sis" if user.role.value == "admin" else "courses",
        o=overview,
        run=detail.run,
        stages=detail.stages,
        titles=titles,
        results=_results(request, user, detail.run),
        base=page_url(destination_id, course_id),
        stage_labels=SIS_STAGE_LABELS,
        outcome_labels=OUTCOME_LABELS,
        all_stages=STAGES,
    )


@router.get(
    "/{destination_id}/courses/{course_id}/runs/{run_id}/results", response_class=HTMLResponse
)
def grade_sync_results(
    request: Request,
    destination_id: str,
    course_id: str,
    run_id: str,
    user: ConsoleUser = Depends(current_user),
) -> HTMLResponse:
    """The run's results, times and stage history alone, for the page's script to refresh
    when the run finishes."""
    detail = _sis_run(request, user, destination_id, course_id, run_id)
    return render(
        request,
        "console/_sis_results.html",
        user,
        run=detail.run,
        stages=detail.stages,
        stage_labels=SIS_STAGE_LABELS,
        results=_results(request, user, detail.run),
    )
