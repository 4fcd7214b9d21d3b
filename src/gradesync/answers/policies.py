"""Grade policies as `GET .../policy` answers them and `gradesync policy show --json`
prints them: each layer as set and each setting's effective value with its source; and a
change as `PATCH .../policy` and `gradesync policy set --json` answer it."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

from gradesync.domain.policy_layers import SettingSource, settings_as_json
from gradesync.services import policies as svc


class SettingOut(BaseModel):
    name: str = Field(description="The setting.")
    value: Any = Field(description="Its effective value.")
    source: str = Field(
        description="Where the value comes from: default, tenant, course or activity."
    )
    label: str = Field(description="The setting in words.")
    value_label: str = Field(description="The value in words.")


class ActivityPolicyOut(BaseModel):
    activity_id: str
    title: str
    policy: dict[str, Any] = Field(description="What the activity itself sets.")
    effective: list[SettingOut] = Field(
        description="Each setting's value for this activity and its source."
    )


class PolicyOut(BaseModel):
    tenant: dict[str, Any] = Field(description="The tenant's defaults as set.")
    course: dict[str, Any] | None = Field(
        None, description="The course's overrides as set (course requests only)."
    )
    activity: dict[str, Any] | None = Field(
        None, description="The activity's overrides as set (activity requests only)."
    )
    effective: list[SettingOut] = Field(
        description="Each setting's value for the tenant, the course or the activity asked "
        "about, and its source."
    )
    activities: list[ActivityPolicyOut] = Field(
        default_factory=list,
        description="Each activity of the course with its own overrides (an activity "
        "request: that one).",
    )


class PolicyChangeOut(BaseModel):
    policy: dict[str, Any] = Field(description="The layer as saved.")
    changed: list[str] = Field(description="Settings whose value changed.")
    recomputed: int = Field(description="Grades marked for recompute.")
    resent: int = Field(description="Grades typed into the LMS that gradesync sends again.")


def _setting(s: SettingSource) -> SettingOut:
    value = s.value.value if isinstance(s.value, Enum) else s.value
    return SettingOut(
        name=s.name,
        value=value,
        source=s.source.value,
        label=svc.SETTING_LABELS[s.name],
        value_label=svc.value_text(s.name, s.value),
    )


def policy_out(view: svc.PolicyView) -> PolicyOut:
    """A policy view as the API (and `gradesync policy show --json`) shows it."""
    return PolicyOut(
        tenant=settings_as_json(view.tenant.policy),
        course=settings_as_json(view.course.policy) if view.course else None,
        activity=settings_as_json(view.activity.policy) if view.activity else None,
        effective=[_setting(s) for s in view.effective],
        activities=[
            ActivityPolicyOut(
                activity_id=a.activity.id,
                title=a.activity.title,
                policy=settings_as_json(a.activity.policy),
                effective=[_setting(s) for s in a.settings],
            )
            for a in view.activities
        ],
    )


def policy_change_out(c: svc.PolicyChange) -> PolicyChangeOut:
    return PolicyChangeOut(
        policy=settings_as_json(c.layer),
        changed=c.changed,
        recomputed=c.recomputed,
        resent=c.resent,
    )
