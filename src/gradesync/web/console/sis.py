"""SIS passback pages (OneRoster 1.2), the way a district's SIS admin works in Canvas: the
connection and its check; per course, the SIS class and which learners have a SIS student;
each activity group aligned to one of the SIS's own categories; "Sync to SIS" per activity;
the validation list with the rule each activity breaks; "Post grades" for a selection, with a
confirmation; and a Grade Sync page per run with its stages, counts and each result's reason.

Every page calls the use cases the API and CLI call (services.sis, the SIS reached through
the runtime). Connection-wide settings (check, class, students, alignment) are for admins;
whoever may see a course may tick its activities, validate and post them."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gradesync.domain.errors import GradesyncError, InvalidInput, NotFound
from gradesync.domain.model import ConsoleUser, DestinationKind, SyncRun
from gradesync.runtime import Runtime
from gradesync.services import console_queries as cq
from gradesync.services import queries
from gradesync.services import sis as service
from gradesync.services.destination import RemoteFailure
from gradesync.web.console.common import (
    PageError,
    admin_user,
    check_csrf,
    course_for,
    flash,
    problems_text,
    render,
    runtime_of,
)
from gradesync.web.console.runs import OUTCOME_LABELS, STAGES
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
}


def _base(destination_id: str, course_id: str) -> str:
    return f"/console/sis/{destination_id}/courses/{course_id}"


def _dest(rt: Runtime, tenant_id: str, destination_id: str) -> Any:
    with rt.uow() as uow:
        try:
            return service.sis_destination(uow, tenant_id, destination_id)
        except (NotFound, InvalidInput) as exc:
            raise PageError(404, "No such SIS connection.") from exc


def _sis_words(failure: RemoteFailure) -> str:
    return " ".join(x for x in (failure.message, failure.remedy) if x)


# --- the SIS connections --------------------------------------------------------------------


def _connections(request: Request, user: ConsoleUser, **extra: Any) -> HTMLResponse:
    rt = runtime_of(request)
    dests = service.sis_connections(rt.uow, user.tenant_id)
    with rt.uow() as uow:
        courses = sorted(uow.courses.all(user.tenant_id), key=lambda c: c.title.lower())
        classes = {
            d.id: {k.course_id: k for k in uow.links.courses_for_destination(user.tenant_id, d.id)}
            for d in dests
        }
        counts = {
            d.id: uow.ledger.counts_by_state(user.tenant_id, destination_id=d.id) for d in dests
        }
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
    dest = await run_in_threadpool(_dest, rt, user.tenant_id, destination_id)
    if dest.kind is not DestinationKind.ONEROSTER_REST:
        flash(request, "error", f"{dest.name} receives files: it has no API to check.")
        return await run_in_threadpool(_connections, request, user)
    try:
        async with rt.sis_directory(user.tenant_id, destination_id) as sis:
            steps = list(await sis.check())
    except RemoteFailure as failure:
        flash(request, "error", f"{dest.name} could not be asked: {_sis_words(failure)}")
        steps = []
    return await run_in_threadpool(
        _connections, request, user, checked=dest.name, checked_id=dest.id, steps=steps
    )


# --- one course at one SIS ------------------------------------------------------------------


async def _ask_sis(
    rt: Runtime,
    tenant_id: str,
    overview: service.CourseOverview,
    checks: list[service.ActivityCheck],
) -> tuple[list[dict[str, Any]], dict[str | None, service.CategoryAlignment], list[Any], str]:
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
        return [], {}, checks, _sis_words(failure)
    return cats, {a.group: a for a in aligned}, checks, ""


async def _checked(
    rt: Runtime, tenant_id: str, destination_id: str, activity_ids: list[str]
) -> list[service.ActivityCheck]:
    """Validation of these activities, categories included when the SIS can be asked."""
    checks = await run_in_threadpool(
        lambda: service.validate(
            rt.uow, tenant_id=tenant_id, destination_id=destination_id, activity_ids=activity_ids
        )
    )
    if not service.has_rest_api(rt.uow, tenant_id, destination_id):
        return checks
    try:
        async with rt.sis_directory(tenant_id, destination_id) as sis:
            return await service.check_activity_categories(
                rt.uow, sis, tenant_id=tenant_id, destination_id=destination_id, checks=checks
            )
    except RemoteFailure:
        return checks  # the post itself re-checks; the engine refuses a missing category


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
    cats, aligned, checks, sis_problem = await _ask_sis(rt, user.tenant_id, overview, checks)

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
            checks={c.activity_id: c for c in checks},
            categories=cats,
            aligned=aligned,
            sis_problem=sis_problem,
            runs=runs(),
            base=_base(destination_id, course_id),
            stage_labels=SIS_STAGE_LABELS,
            outcome_labels=OUTCOME_LABELS,
        )
    )


def _admin_form(
    request: Request,
    destination_id: str,
    course_id: str,
    user: ConsoleUser,
    done: str,
    fn: Any,
) -> RedirectResponse:
    """Run an admin's change; say what happened (or each problem) on the course's SIS page."""
    try:
        fn(runtime_of(request))
    except InvalidInput as exc:
        flash(request, "error", problems_text(exc))
    except GradesyncError as exc:
        flash(request, "error", str(exc))
    else:
        flash(request, "ok", done)
    return RedirectResponse(_base(destination_id, course_id), status_code=303)


@router.post("/{destination_id}/courses/{course_id}/class", dependencies=[Depends(check_csrf)])
def map_class(
    request: Request,
    destination_id: str,
    course_id: str,
    class_id: str = Form(""),
    school_id: str = Form(""),
    term_start: str = Form(""),
    term_end: str = Form(""),
    user: ConsoleUser = Depends(admin_user),
) -> RedirectResponse:
    return _admin_form(
        request,
        destination_id,
        course_id,
        user,
        f"The course now posts to SIS class {class_id.strip()}.",
        lambda rt: service.map_class(
            rt.uow,
            tenant_id=user.tenant_id,
            destination_id=destination_id,
            course_id=course_id,
            class_id=class_id.strip(),
            school_id=school_id.strip() or None,
            term_start=term_start.strip() or None,
            term_end=term_end.strip() or None,
        ),
    )


@router.post("/{destination_id}/courses/{course_id}/students", dependencies=[Depends(check_csrf)])
def map_students(
    request: Request, destination_id: str, course_id: str, user: ConsoleUser = Depends(admin_user)
) -> RedirectResponse:
    """Link every learner to their SIS student (an explicit mapping, else their SIS id)."""
    rt = runtime_of(request)
    try:
        report = service.map_course_students(
            rt.uow, tenant_id=user.tenant_id, destination_id=destination_id, course_id=course_id
        )
    except InvalidInput as exc:
        flash(request, "error", problems_text(exc))
    else:
        text = f"{len(report.mapped)} learner(s) linked to their SIS student."
        if report.unmapped:
            text += f" No SIS id for {len(report.unmapped)}: give each one below."
        flash(request, "ok", text)
    return RedirectResponse(_base(destination_id, course_id), status_code=303)


@router.post(
    "/{destination_id}/courses/{course_id}/students/{person_id}",
    dependencies=[Depends(check_csrf)],
)
def map_student(
    request: Request,
    destination_id: str,
    course_id: str,
    person_id: str,
    student_id: str = Form(""),
    user: ConsoleUser = Depends(admin_user),
) -> RedirectResponse:
    return _admin_form(
        request,
        destination_id,
        course_id,
        user,
        f"{person_id} is SIS student {student_id.strip()}.",
        lambda rt: service.map_student(
            rt.uow,
            tenant_id=user.tenant_id,
            destination_id=destination_id,
            person_id=person_id,
            student_id=student_id.strip(),
        ),
    )


@router.post("/{destination_id}/courses/{course_id}/align", dependencies=[Depends(check_csrf)])
def align(
    request: Request,
    destination_id: str,
    course_id: str,
    group: str = Form(""),
    category_id: str = Form(""),
    scope: str = Form("connection"),
    user: ConsoleUser = Depends(admin_user),
) -> RedirectResponse:
    """Align an activity group to one of the SIS's categories (empty: remove the alignment),
    for every course of the connection or this course only."""
    cat = category_id.strip() or None
    where = "this course" if scope == "course" else "every course"
    done = (
        f"Group {group!r} now goes to SIS category {cat} ({where})."
        if cat
        else f"Group {group!r} is no longer aligned ({where})."
    )
    return _admin_form(
        request,
        destination_id,
        course_id,
        user,
        done,
        lambda rt: service.align_category(
            rt.uow,
            rt.clock,
            tenant_id=user.tenant_id,
            destination_id=destination_id,
            group=group,
            category_id=cat,
            course_id=course_id if scope == "course" else None,
        ),
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
    sync: str = Form(...),
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
        service.select_activities(
            rt.uow,
            tenant_id=user.tenant_id,
            destination_id=destination_id,
            activity_ids=[activity_id],
            selected=on,
            clock=rt.clock,
            hold=True,
        )
    except InvalidInput as exc:
        words = "; ".join(f"{p.message} [{p.rule}]" for p in exc.problems)
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
        else _base(destination_id, course_id)
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
    confirm: str = Form(""),
    remaster: str = Form(""),
    user: ConsoleUser = Depends(current_user),
) -> Response:
    """Post grades of the ticked activities: first a confirmation naming what goes and what
    is left out (with the rule), then the run, followed on its Grade Sync page. `remaster`
    resends every score and line item detail (Canvas's "Remaster Grade Passback")."""
    rt = runtime_of(request)
    course = await run_in_threadpool(course_for, request, user, course_id)
    base = _base(destination_id, course_id)
    chosen = list(dict.fromkeys(activity_ids))
    if not chosen:
        flash(request, "error", "Tick at least one activity to post its grades.")
        return RedirectResponse(base, status_code=303)
    try:
        checks = await _checked(rt, user.tenant_id, destination_id, chosen)
    except (NotFound, InvalidInput) as exc:
        raise PageError(404, str(exc)) from exc
    if confirm != "yes":
        dest = await run_in_threadpool(_dest, rt, user.tenant_id, destination_id)
        return render(
            request,
            "console/sis_confirm.html",
            user,
            nav="sis" if user.role.value == "admin" else "courses",
            course=course,
            dest=dest,
            going=[c for c in checks if c.selected and c.ok],
            left_out=[c for c in checks if not (c.selected and c.ok)],
            base=base,
            remaster=remaster == "yes",
        )
    going = [c.activity_id for c in checks if c.selected and c.ok]
    left_out = [c for c in checks if not (c.selected and c.ok)]
    for c in left_out:
        why = "; ".join(f"{p.message} [{p.rule}]" for p in c.problems) or (
            "not ticked Sync to SIS [not_selected]"
        )
        flash(request, "error", f"Left out {c.title}: {why}")
    if not going:
        flash(request, "error", "Nothing to post: no activity of the selection can go.")
        return RedirectResponse(base, status_code=303)
    waker = rt.waker or rt.remote_waker()
    try:
        result = await run_in_threadpool(
            lambda: service.post_grades(
                rt.uow,
                waker,
                rt.clock,
                tenant_id=user.tenant_id,
                destination_id=destination_id,
                course_id=course_id,
                actor=user.username,
                activity_ids=going,
                remaster=remaster == "yes",
            )
        )
    except (InvalidInput, GradesyncError) as exc:
        text = problems_text(exc) if isinstance(exc, InvalidInput) else str(exc)
        flash(request, "error", f"Post grades could not start: {text}")
        return RedirectResponse(base, status_code=303)
    if result.run is None:
        flash(request, "error", "Nothing to post: no activity of the selection can go.")
        return RedirectResponse(base, status_code=303)
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


def _results(request: Request, run: SyncRun) -> list[dict[str, Any]]:
    out = []
    for r in service.posted_results(runtime_of(request).uow, run):
        status = cq.cell_status(r.row)
        out.append(
            {
                "r": r,
                "status": status,
                "label": cq.STATUS_LABELS[status],
                "score": cq.score_text(r.row),
                "why": cq.why_text(r.row),
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
        results=_results(request, detail.run),
        base=_base(destination_id, course_id),
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
        results=_results(request, detail.run),
    )
