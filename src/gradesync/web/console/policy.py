"""Grade policy pages: the institution's defaults (admins) and a course's overrides
(instructors, on the course page). Each setting shows its value and where it comes from.
The institution's page also sets how LMS rosters match learners (`roster_match`: the
tenant's alone, and no grade setting)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse

from gradesync.domain.diagnosis.checks import plural
from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import ConsoleUser, PolicySettings, RosterMatch
from gradesync.domain.policy import MAX_GRACE_MINUTES
from gradesync.domain.policy_layers import GRADE_SETTINGS, SettingSource, default_value
from gradesync.services import policies as svc
from gradesync.services import tenants
from gradesync.web.console.common import (
    admin_user,
    check_csrf,
    course_for,
    flash,
    problems_text,
    render,
    runtime_of,
)
from gradesync.web.console.session import current_user

router = APIRouter()

NUMBERS = {"grace_period_minutes": "1", "minimum_points": "any"}  # setting -> input step
# how an LMS roster member is matched to a learner who never launched, in words
ROSTER_MATCHES = {
    RosterMatch.SIS_ID.value: "SIS id (the member's lis_person_sourcedid)",
    RosterMatch.EMAIL.value: "Email",
    RosterMatch.LMS_USER_ID.value: "LMS user id (the learner's id in gradesync)",
}
ROSTER_LABEL = {"roster_match": "Roster matching"}
MAXIMA = {"grace_period_minutes": MAX_GRACE_MINUTES}  # setting -> a number input's max


def _raw(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class PolicyRow:
    """One setting as a page shows and edits it."""

    name: str
    label: str
    value: str  # the effective value in words
    source: str  # default | tenant | course | activity
    source_label: str
    own: str  # the value this layer sets ('' inherits)
    inherited: str  # what inheriting gives, in words
    choices: list[tuple[str, str]]  # (value, words); empty for a number
    step: str | None  # a number input's step
    maximum: int | None = None  # and its largest value


def policy_rows(
    effective: list[SettingSource], layer: PolicySettings, inherited: list[SettingSource] | None
) -> list[PolicyRow]:
    """Rows for a layer's form: `inherited` is what the layer above gives (None: the built-in
    defaults)."""
    above = {s.name: s.value for s in inherited} if inherited is not None else {}
    rows = []
    for s in effective:
        parent = above.get(s.name, default_value(s.name))
        rows.append(
            PolicyRow(
                name=s.name,
                label=svc.SETTING_LABELS[s.name],
                value=svc.value_text(s.name, s.value),
                source=s.source.value,
                source_label=svc.SOURCE_LABELS[s.source.value],
                own=_raw(getattr(layer, s.name)),
                inherited=svc.value_text(s.name, parent),
                choices=list(svc.VALUE_LABELS.get(s.name, {}).items())
                if s.name not in NUMBERS
                else [],
                step=NUMBERS.get(s.name),
                maximum=MAXIMA.get(s.name),
            )
        )
    return rows


async def _changes(request: Request) -> dict[str, object]:
    form = await request.form()
    return {n: str(form.get(n, "")) for n in GRADE_SETTINGS if n in form}


def _saved(change: svc.PolicyChange) -> str:
    if not change.changed:
        return "Nothing changed."
    names = ", ".join(svc.SETTING_LABELS.get(n, n) for n in change.changed)
    n = change.recomputed
    text = f"Saved: {names}. {plural(n, 'grade')} {'is' if n == 1 else 'are'} being recomputed"
    if change.resent:
        text += f"; {plural(change.resent, 'grade')} changed in the LMS will be overwritten"
    return text + "; the ones that change are sent without a sync."


@router.get("/policy", response_class=HTMLResponse)
def tenant_policy_page(request: Request, user: ConsoleUser = Depends(admin_user)) -> HTMLResponse:
    view = svc.policy_view(runtime_of(request).uow, user.tenant_id)
    roster = view.tenant.policy.roster_match
    return render(
        request,
        "console/policy.html",
        user,
        nav="policy",
        rows=policy_rows(view.effective, view.tenant.policy, None),
        roster_match=roster.value if roster is not None else "",
        roster_matches=ROSTER_MATCHES,
    )


@router.post("/policy/roster-match", dependencies=[Depends(check_csrf)])
async def save_roster_match(
    request: Request, user: ConsoleUser = Depends(admin_user)
) -> RedirectResponse:
    """How the tenant's LMS rosters match learners who never launched, as `gradesync tenants
    roster-match` sets it ('' clears it: the default, SIS id)."""
    rt = runtime_of(request)
    given = (await request.form()).get("roster_match")
    if given is None:  # the page always sends it ('' for the default): a script's post
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body", "roster_match"), "msg": "Field required"}]
        )
    key = str(given)
    try:
        tenants.set_roster_match(rt.uow, rt.clock, user.tenant_id, key or None)
        said = ROSTER_MATCHES[key] if key else ROSTER_MATCHES[RosterMatch.SIS_ID.value]
        flash(request, "ok", f"Saved: LMS roster members are matched by {said}.")
    except InvalidInput as exc:
        flash(request, "error", f"Nothing was saved: {problems_text(exc, ROSTER_LABEL)}")
    return RedirectResponse("/console/policy#roster-h", status_code=303)


@router.post("/policy", dependencies=[Depends(check_csrf)])
async def save_tenant_policy(
    request: Request, user: ConsoleUser = Depends(admin_user)
) -> RedirectResponse:
    rt = runtime_of(request)
    try:
        change = svc.set_tenant_policy(
            rt.uow, rt.clock, rt.waker, user.tenant_id, await _changes(request)
        )
        flash(request, "ok", _saved(change))
    except InvalidInput as exc:
        flash(request, "error", f"Nothing was saved: {problems_text(exc, svc.SETTING_LABELS)}")
    return RedirectResponse("/console/policy", status_code=303)


def course_policy(request: Request, user: ConsoleUser, course_id: str) -> dict[str, object]:
    """What the course page's policy section needs."""
    view = svc.policy_view(runtime_of(request).uow, user.tenant_id, course_id)
    tenant = svc.policy_view(runtime_of(request).uow, user.tenant_id).effective
    assert view.course is not None
    return {
        "rows": policy_rows(view.effective, view.course.policy, tenant),
        "activities": [a for a in view.activities if a.own],
        "labels": svc.SETTING_LABELS,
        "value_text": svc.value_text,
    }


@router.post("/courses/{course_id}/policy", dependencies=[Depends(check_csrf)])
async def save_course_policy(
    request: Request, course_id: str, user: ConsoleUser = Depends(current_user)
) -> RedirectResponse:
    """An instructor's course overrides ('' inherits the institution's default)."""
    course_for(request, user, course_id)
    rt = runtime_of(request)
    form = await request.form()
    destination = str(form.get("destination", ""))
    try:
        change = svc.set_course_policy(
            rt.uow, rt.clock, rt.waker, user.tenant_id, course_id, await _changes(request)
        )
        flash(request, "ok", _saved(change))
    except InvalidInput as exc:
        flash(request, "error", f"Nothing was saved: {problems_text(exc, svc.SETTING_LABELS)}")
    tail = f"?destination={destination}" if destination else ""
    return RedirectResponse(f"/console/courses/{course_id}{tail}#policy-h", status_code=303)
