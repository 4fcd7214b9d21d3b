"""Sync history: every run with its stages, counts, who started it and how it ended; one
run's page; and the small JSON the pages poll to show a run's progress live."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse

from gradesync.domain import run_counts
from gradesync.domain.errors import NotFound
from gradesync.domain.model import ConsoleUser, RunScope, RunStage, SyncRun, Trigger, UserRole
from gradesync.domain.run_counts import in_reading_order
from gradesync.runtime import Runtime
from gradesync.services import console_queries as cq
from gradesync.services import queries
from gradesync.services.rate_limit_holds import RateLimitHold, rate_limit_holds
from gradesync.services.sis import SIS_KINDS
from gradesync.web.console.common import (
    PageError,
    admin_user,
    flash,
    render,
    runtime_of,
    templates,
)
from gradesync.web.console.session import current_user

router = APIRouter()

STAGES = [s.value for s in RunStage]
STAGE_LABELS = {
    "queued": "Waiting to start",
    "computing": "Working out grades",
    "provisioning": "Preparing gradebook columns",
    "sending": "Sending grades",
    "verifying": "Checking what arrived",
    "finished": "Finished",
    # not a stage a run is in: a stopped run taken up again (domain.run_history)
    "resumed": "Resumed",
}
OUTCOME_LABELS = {
    "succeeded": "Succeeded",
    "partly_failed": "Partly failed",
    "failed": "Failed",
}


# the counts whose key is not a word a person uses
COUNT_WORDS = {
    "keys": "grades in scope",
    "skipped": "not sent",
    "verified": "read back as sent",
    "differs": "read back different",
    "unverifiable": "could not be read back",
    "overridden": "changed by hand in the gradebook",
    "rescaled": "sent again: their column's points were changed in the gradebook",
    "points_kept": "left as the gradebook holds them: it keeps its own points for their column",
    "uncounted": "stored but not counted by the LMS",
}


def count_items(
    counts: dict[str, Any], brief: bool = False, deleted: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """A run's counts as (label, value) pairs for people, in the order they read them
    (`run_counts`): nested counts by reason become "rejected: 2 (unknown user 2)". `brief`
    keeps the outcomes a person looks for in a list of runs. The destinations deleted under
    the run are counted as destinations, each by the name `deleted` gives it
    (`RunNames.deleted`)."""
    out = []
    for key, value in in_reading_order(counts):
        if brief and key not in run_counts.LISTED:
            continue
        label = COUNT_WORDS.get(key, key.replace("_", " "))
        if key == run_counts.DELETED:
            if value:
                out.append((label, run_counts.deleted_words(value, deleted)))
            continue
        if isinstance(value, dict):
            total = sum(v for v in value.values() if isinstance(v, int | float))
            if not value:
                continue
            detail = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in in_reading_order(value))
            out.append((label, f"{total:g} ({detail})"))
        else:
            out.append((label, str(value)))
    return out


templates.env.globals["count_items"] = count_items


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def progress(
    run: SyncRun,
    stages: list[dict[str, Any]],
    held: Sequence[RateLimitHold] = (),
    deleted: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What the live progress panel needs, as JSON (`held`: what `holds` finds; `deleted`:
    the names of the destinations deleted under the run)."""
    return {
        "id": run.id,
        "stage": run.stage.value,
        "stage_label": STAGE_LABELS.get(run.stage.value, run.stage.value),
        "stage_index": STAGES.index(run.stage.value),
        "stages": STAGES,
        "stage_labels": STAGE_LABELS,
        "history": stages,
        "finished": run.stage is RunStage.FINISHED,
        "outcome": run.outcome.value if run.outcome else None,
        "outcome_label": OUTCOME_LABELS.get(run.outcome.value, run.outcome.value)
        if run.outcome
        else None,
        "counts": dict(run.counts),
        "count_items": count_items(dict(run.counts), brief=True, deleted=deleted),
        "message": run.message,
        "trigger": run.trigger.value,
        "actor": run.actor,
        "created_at": _iso(run.created_at),
        "finished_at": _iso(run.finished_at),
        "held": [h.as_json() for h in held],
    }


def holds(request: Request, user: ConsoleUser, scope: RunScope) -> list[RateLimitHold]:
    """The run's destinations whose rate limit holds their grades now, in the viewer's
    words (the panel says them as the Dashboard does)."""
    rt = runtime_of(request)
    instructor = user.role is not UserRole.ADMIN
    return rate_limit_holds(rt.uow, scope, rt.clock.now(), instructor=instructor)


def _visible_run(request: Request, user: ConsoleUser, run_id: str) -> queries.RunDetail:
    try:
        detail = queries.run_detail(runtime_of(request).uow, user.tenant_id, run_id)
    except NotFound as exc:
        raise PageError(404, "No such run.") from exc
    if user.role.value == "admin":
        return detail
    # an instructor's course page lists a run of every course that included theirs (its
    # Last sync, followed live): its page and progress open for them too
    if not cq.run_includes_a_course(
        runtime_of(request).uow, user.tenant_id, detail.run, user.course_ids
    ):
        raise PageError(404, "No such run.")
    return detail


@router.get("/runs", response_class=HTMLResponse)
def run_history(
    request: Request,
    course: str = "",
    trigger: str = "",
    user: ConsoleUser = Depends(admin_user),
) -> HTMLResponse:
    rt = runtime_of(request)
    valid_trigger = trigger if trigger in {t.value for t in Trigger} else None
    if trigger and valid_trigger is None:
        # a hand-edited address: said, or the page passes every run off as the filtered ones
        flash(request, "error", f"No sync type {trigger!r}: showing every type.")
    with rt.uow() as uow:
        courses = {c.id: c for c in uow.courses.all(user.tenant_id)}
    if course and course not in courses:
        # a hand-edited address: said, as a sync type is (the history refuses the filter)
        flash(request, "error", f"No course {course!r}: showing every course.")
        course = ""
    details = queries.runs_with_stages(
        rt.uow, user.tenant_id, course_id=course or None, trigger=valid_trigger, limit=200
    )
    runs = [d.run for d in details]
    stages = {d.run.id: d.stages for d in details}
    names = queries.run_names(rt.uow, user.tenant_id, runs)
    return render(
        request,
        "console/runs.html",
        user,
        nav="runs",
        runs=runs,
        stages=stages,
        courses=courses,
        names=names,
        course_filter=course,
        trigger_filter=valid_trigger or "",
        triggers=[t.value for t in Trigger],
        stage_labels=STAGE_LABELS,
        outcome_labels=OUTCOME_LABELS,
    )


def _grade_sync_url(rt: Runtime, tenant_id: str, run: SyncRun) -> str | None:
    """A run posting one course to a SIS also has its Grade Sync page, in the SIS's words."""
    scope = run.scope
    if not (scope.destination_id and scope.course_id):
        return None
    with rt.uow() as uow:
        dest = uow.destinations.get(tenant_id, scope.destination_id)
    if dest is None or dest.kind not in SIS_KINDS:
        return None
    return f"/console/sis/{dest.id}/courses/{scope.course_id}/runs/{run.id}"


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(
    request: Request, run_id: str, user: ConsoleUser = Depends(current_user)
) -> HTMLResponse:
    detail = _visible_run(request, user, run_id)
    rt = runtime_of(request)
    names = queries.run_names(rt.uow, user.tenant_id, [detail.run])
    return render(
        request,
        "console/run.html",
        user,
        nav="runs",
        names=names,
        grade_sync=_grade_sync_url(rt, user.tenant_id, detail.run),
        run=detail.run,
        stages=detail.stages,
        held=holds(request, user, detail.run.scope),
        stage_labels=STAGE_LABELS,
        outcome_labels=OUTCOME_LABELS,
        all_stages=STAGES,
    )


@router.get("/runs/{run_id}/progress")
def run_progress(
    request: Request, run_id: str, user: ConsoleUser = Depends(current_user)
) -> JSONResponse:
    detail = _visible_run(request, user, run_id)
    held = holds(request, user, detail.run.scope)
    rt = runtime_of(request)
    deleted = queries.deleted_names(rt.uow, user.tenant_id, [detail.run]).get(detail.run.id)
    return JSONResponse(
        progress(detail.run, detail.stages, held, deleted), headers={"Cache-Control": "no-store"}
    )
