"""Grade policies: the tenant's defaults, a course's effective policy with where each setting
comes from, and changes to each layer (tenant, course, activity).

A PATCH names only the settings it changes: a value sets one, `null` clears it (it inherits
again); settings left out keep their value. A change recomputes the grades it affects and
sends those that differ, without a run.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import Field

from gradesync.answers.policies import PolicyChangeOut, PolicyOut, policy_change_out, policy_out
from gradesync.domain.model import (
    AttemptSelection,
    ExtraCredit,
    NameRule,
    PastDueZeros,
    RosterMatch,
)
from gradesync.runtime import Runtime
from gradesync.services import policies as svc
from gradesync.web.api.auth import Principal, require_scope
from gradesync.web.api.deps import runtime
from gradesync.web.api.errors import UrlIdsRoute
from gradesync.web.api.schemas import (
    Bool,
    GraceMinutes,
    Number,
    TenantOnly,
    _PolicyKeys,
)

router = APIRouter(tags=["policies"], route_class=UrlIdsRoute)
reader = require_scope("ingest", "sync")


class PolicyPatch(_PolicyKeys):
    """The settings to change; `null` clears a setting so it inherits again."""

    attempt_selection: AttemptSelection | None = Field(
        None, description="Which attempt counts: highest, latest, first or average."
    )
    extra_credit: ExtraCredit | None = Field(
        None, description="A score above the maximum: cap (sent as the maximum) or pass_through."
    )
    past_due_zeros: PastDueZeros | None = Field(
        None, description="Zeros for work not done once due date plus grace passed."
    )
    grace_period_minutes: GraceMinutes | None = Field(
        None, description="Minutes after the due date before a past-due zero is sent."
    )
    minimum_points: Annotated[Number, Field(ge=0)] | None = Field(
        None, description="Activities worth less than this are not sent."
    )
    name_rule: NameRule | None = Field(
        None, description="A name the gradebook refuses: shorten (clean it) or refuse."
    )
    keep_lms_edits: Bool | None = Field(
        None, description="true: a grade typed into the LMS is kept; false: gradesync wins."
    )

    def changes(self) -> dict[str, object]:
        # `roster_match` is no grade setting: the tenant's handler passes it apart; a course's
        # or activity's gets here only as `null` (any other value is refused), nothing to clear
        return {n: getattr(self, n) for n in self.model_fields_set if n != "roster_match"}


class LayerPolicyPatch(PolicyPatch):
    """A course's or activity's settings to change. `roster_match`, which only the tenant
    holds, is refused as `tenant_only`, as in `PUT /courses/{id}`'s policy."""

    roster_match: TenantOnly = None


class TenantPolicyPatch(PolicyPatch):
    """The tenant's defaults to change, and `roster_match` (no grade setting, but the
    tenant's alone: set here as `gradesync tenants roster-match` sets it)."""

    roster_match: RosterMatch | None = Field(
        None,
        description="How an LMS roster member (NRPS) is matched to a learner who never "
        "launched: `sis_id` (the default), `email` or `lms_user_id`; `null`: the default.",
    )


@router.get("/tenant/policy", response_model=PolicyOut)
def get_tenant_policy(p: Principal = Depends(reader), rt: Runtime = Depends(runtime)) -> PolicyOut:
    """The tenant-wide defaults and each setting's value with its source (tenant or the
    built-in default)."""
    return policy_out(svc.policy_view(rt.uow, p.tenant_id))


@router.patch("/tenant/policy", response_model=PolicyChangeOut)
def patch_tenant_policy(
    body: TenantPolicyPatch,
    p: Principal = Depends(require_scope("admin")),
    rt: Runtime = Depends(runtime),
) -> PolicyChangeOut:
    """Change the tenant-wide defaults (admin keys). Courses and activities that set a value
    themselves keep it; the grades of the others are recomputed and sent. `roster_match` is
    set as `gradesync tenants roster-match` sets it (the next roster read uses it)."""
    roster = body.roster_match if "roster_match" in body.model_fields_set else svc.Keep.KEEP
    # one transaction: a refused grade setting leaves roster_match unchanged too
    change = svc.set_tenant_policy(
        rt.uow, rt.clock, rt.waker, p.tenant_id, body.changes(), roster_match=roster
    )
    return policy_change_out(change)


@router.get("/courses/{course_id}/policy", response_model=PolicyOut)
def get_course_policy(
    course_id: str, p: Principal = Depends(reader), rt: Runtime = Depends(runtime)
) -> PolicyOut:
    """A course's effective policy: each setting's value and where it comes from (default,
    tenant, course), and each activity's own overrides."""
    return policy_out(svc.policy_view(rt.uow, p.tenant_id, course_id))


@router.patch("/courses/{course_id}/policy", response_model=PolicyChangeOut)
def patch_course_policy(
    course_id: str,
    body: LayerPolicyPatch,
    p: Principal = Depends(require_scope("ingest")),
    rt: Runtime = Depends(runtime),
) -> PolicyChangeOut:
    """Change a course's overrides; its grades are recomputed and those that differ sent."""
    return policy_change_out(
        svc.set_course_policy(rt.uow, rt.clock, rt.waker, p.tenant_id, course_id, body.changes())
    )


@router.get("/activities/{activity_id}/policy", response_model=PolicyOut)
def get_activity_policy(
    activity_id: str, p: Principal = Depends(reader), rt: Runtime = Depends(runtime)
) -> PolicyOut:
    """An activity's effective policy: each setting's value and where it comes from
    (default, tenant, course, activity)."""
    return policy_out(svc.activity_policy_view(rt.uow, p.tenant_id, activity_id))


@router.patch("/activities/{activity_id}/policy", response_model=PolicyChangeOut)
def patch_activity_policy(
    activity_id: str,
    body: LayerPolicyPatch,
    p: Principal = Depends(require_scope("ingest")),
    rt: Runtime = Depends(runtime),
) -> PolicyChangeOut:
    """Change an activity's overrides; its grades are recomputed and those that differ sent."""
    return policy_change_out(
        svc.set_activity_policy(
            rt.uow, rt.clock, rt.waker, p.tenant_id, activity_id, body.changes()
        )
    )
