"""Grade policies as people set them: tenant-wide defaults, course and activity overrides.

Every change goes through one place per layer, and each marks for recompute exactly the keys
whose effective policy changed, so the new policy reaches the gradebook without a run (the
engine is desired-state). A course or activity change is stored through ingest, which marks
the course's or activity's keys; a tenant change is stored here, marking the keys of every
activity whose effective settings differ. When "keep LMS edits" turns into "gradesync wins",
the grades people typed into the LMS are sent over again (their desired result did not
change, so a recompute alone would leave them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import TypeVar

from gradesync.domain.errors import InvalidInput, NotFound
from gradesync.domain.model import (
    Activity,
    Course,
    PolicySettings,
    RosterMatch,
    Tenant,
)
from gradesync.domain.policy import ResolvedPolicy, resolve_settings, settings_problems
from gradesync.domain.policy_layers import (
    SettingSource,
    explain_settings,
    with_changes,
)
from gradesync.services import ingest
from gradesync.services.clock import Clock
from gradesync.services.lms_edits import resend_overridden
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory
from gradesync.services.wakeup import Waker

# How pages and the CLI name each setting and value.
SETTING_LABELS = {
    "attempt_selection": "Attempt that counts",
    "extra_credit": "Scores above the maximum",
    "past_due_zeros": "Zeros for past-due work",
    "grace_period_minutes": "Grace period (minutes)",
    "minimum_points": "Minimum points to sync",
    "name_rule": "Names the gradebook refuses",
    "keep_lms_edits": "Grades changed in the LMS",
}
VALUE_LABELS: dict[str, dict[str, str]] = {
    "attempt_selection": {
        "highest": "Highest score",
        "latest": "Most recent attempt",
        "first": "First attempt",
        "average": "Average of attempts",
    },
    "extra_credit": {
        "cap": "Capped at the maximum",
        "pass_through": "Sent as earned, where the gradebook accepts it",
    },
    "past_due_zeros": {
        "off": "Off",
        "on": "On",
        "assigned_only": "Only for assigned work",
    },
    "name_rule": {"shorten": "Shorten and clean the name", "refuse": "Do not sync the activity"},
    "keep_lms_edits": {"true": "Keep the LMS edit", "false": "gradesync wins"},
}
# what holds a policy layer that people change: a course or an activity
Holder = TypeVar("Holder", Course, Activity)

SOURCE_LABELS = {
    "default": "built-in default",
    "tenant": "institution default",
    "course": "this course",
    "activity": "this activity",
}


def value_text(name: str, value: object) -> str:
    """A setting's value in words ('Highest score', '60', 'gradesync wins')."""
    if isinstance(value, bool):
        key = "true" if value else "false"
    elif isinstance(value, float):
        key = f"{value:g}"
    else:
        key = str(getattr(value, "value", value))
    return VALUE_LABELS.get(name, {}).get(key, key)


@dataclass(frozen=True, slots=True)
class ActivityPolicy:
    activity: Activity
    settings: list[SettingSource]

    @property
    def own(self) -> list[SettingSource]:
        """The settings this activity overrides."""
        return [s for s in self.settings if s.source.value == "activity"]


@dataclass(frozen=True, slots=True)
class PolicyView:
    tenant: Tenant
    course: Course | None
    # the tenant's; the course's when a course is named; the activity's when one is
    effective: list[SettingSource]
    activities: list[ActivityPolicy]  # the course's activities (empty without a course)
    activity: Activity | None = None  # when the view is of one activity (its only one)


class Keep(Enum):
    """A tenant setting a change leaves as stored (None would clear it)."""

    KEEP = "keep"


@dataclass(frozen=True, slots=True)
class PolicyChange:
    layer: PolicySettings  # the layer as saved
    changed: list[str]  # settings whose stored value changed at this layer
    recomputed: int  # keys marked for recompute
    resent: int  # grades typed into the LMS that gradesync now sends again


def _tenant(uow: UnitOfWork, tenant_id: str, *, for_update: bool = False) -> Tenant:
    tenant = uow.tenants.get(tenant_id, for_update=for_update)
    if tenant is None:
        raise NotFound("tenant", tenant_id)
    return tenant


def activity_policy_view(
    uow_factory: UnitOfWorkFactory, tenant_id: str, activity_id: str
) -> PolicyView:
    """One activity's effective policy, each setting with its source, under its course."""
    with uow_factory() as uow:
        tenant = _tenant(uow, tenant_id)
        activity = uow.activities.get(tenant_id, activity_id)
        if activity is None:
            raise NotFound("activity", activity_id)
        course = uow.courses.get(tenant_id, activity.course_id)
    assert course is not None  # an activity's course is never removed
    effective = explain_settings(tenant.policy, course.policy, activity.policy)
    return PolicyView(
        tenant, course, effective, [ActivityPolicy(activity, effective)], activity=activity
    )


def policy_view(
    uow_factory: UnitOfWorkFactory, tenant_id: str, course_id: str | None = None
) -> PolicyView:
    """The tenant's defaults, or a course's effective policy with the source of each setting
    and each activity's own overrides."""
    with uow_factory() as uow:
        tenant = _tenant(uow, tenant_id)
        if course_id is None:
            return PolicyView(tenant, None, explain_settings(tenant.policy), [])
        course = uow.courses.get(tenant_id, course_id)
        if course is None:
            raise NotFound("course", course_id)
        activities = sorted(
            uow.activities.for_course(tenant_id, course_id), key=lambda a: (a.title.lower(), a.id)
        )
    return PolicyView(
        tenant,
        course,
        explain_settings(tenant.policy, course.policy),
        [
            ActivityPolicy(a, explain_settings(tenant.policy, course.policy, a.policy))
            for a in activities
        ],
    )


def _resolved(*layers: PolicySettings) -> ResolvedPolicy | None:
    try:
        return resolve_settings(*layers)
    except InvalidInput:
        return None  # a stored invalid layer: the engine skips with `invalid_policy`


def _keys_of(
    uow: UnitOfWork, tenant_id: str, activities: Iterable[Activity]
) -> list[tuple[str, str, str, str]]:
    """Dirty keys (tenant, course, activity, person): each activity's learners and everyone
    who attempted it."""
    acts = list(activities)
    attempted = uow.attempts.for_activities(tenant_id, [a.id for a in acts]) if acts else {}
    enrolled: dict[str, list[str]] = {}
    keys: list[tuple[str, str, str, str]] = []
    for a in acts:
        if a.course_id not in enrolled:
            enrolled[a.course_id] = [
                e.person_id for e in uow.enrollments.for_course(tenant_id, a.course_id)
            ]
        people = set(enrolled[a.course_id]) | {p for (aid, p) in attempted if aid == a.id}
        keys += [(tenant_id, a.course_id, a.id, p) for p in sorted(people)]
    return keys


def set_tenant_policy(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    waker: Waker | None,
    tenant_id: str,
    changes: Mapping[str, object],
    *,
    roster_match: RosterMatch | Keep | None = Keep.KEEP,
) -> PolicyChange:
    """Change the tenant-wide defaults: a value sets a setting, None or "inherit" clears it
    (back to the built-in default); settings not named keep their value. Marks for recompute
    the keys of every activity whose effective settings changed (an activity or course that
    sets the value itself is not affected). Invalid values change nothing. `roster_match`
    (no grade setting, the tenant's alone) is changed in the same transaction when given.

    The tenant's row is held from its read to the commit: its policy is written whole, so a
    change made meanwhile (roster matching on the console) is read first, not lost."""
    now = clock.now()
    with uow_factory() as uow:
        tenant = _tenant(uow, tenant_id, for_update=True)
        new_layer = with_changes(tenant.policy, changes)
        problems = settings_problems(new_layer)
        if problems:
            raise InvalidInput(problems)
        # what this layer stores, as for a course or an activity: a value set to the one it
        # inherited is a change here (the source changes), though no grade does
        changed = [n for n in changes if getattr(tenant.policy, n) != getattr(new_layer, n)]
        if not isinstance(roster_match, Keep):
            new_layer = replace(new_layer, roster_match=roster_match)
            if roster_match != tenant.policy.roster_match:
                changed.append("roster_match")
        if new_layer == tenant.policy:
            return PolicyChange(new_layer, [], 0, 0)
        affected: list[Activity] = []
        wins: list[Activity] = []
        for course in uow.courses.all(tenant_id):
            for a in uow.activities.for_course(tenant_id, course.id):
                old = _resolved(tenant.policy, course.policy, a.policy)
                new = _resolved(new_layer, course.policy, a.policy)
                if old != new:
                    affected.append(a)
                    if (
                        old is not None
                        and new is not None
                        and old.keep_lms_edits
                        and not (new.keep_lms_edits)
                    ):
                        wins.append(a)
        uow.tenants.upsert(replace(tenant, policy=new_layer), now)
        keys = _keys_of(uow, tenant_id, affected)
        if keys:
            uow.dirty.mark_many(keys, now)
        resent = resend_overridden(uow, tenant_id, wins, now) if wins else 0
        uow.commit()
    if (keys or resent) and waker is not None:
        waker.wake_keys()
        if resent:
            waker.wake_delivery()
    return PolicyChange(new_layer, changed, len(keys), resent)


def set_course_policy(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    waker: Waker | None,
    tenant_id: str,
    course_id: str,
    changes: Mapping[str, object],
) -> PolicyChange:
    """Change a course's overrides (None or "inherit" clears one). Stored through ingest,
    which marks every key of the course for recompute."""

    def load(uow: UnitOfWork) -> Course:
        course = uow.courses.get(tenant_id, course_id, for_update=True)
        if course is None:
            raise NotFound("course", course_id)
        return course

    return _change_layer(
        uow_factory,
        clock,
        waker,
        tenant_id,
        load,
        lambda course: ingest.IngestBatch(courses=[course]),
        changes,
    )


def set_activity_policy(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    waker: Waker | None,
    tenant_id: str,
    activity_id: str,
    changes: Mapping[str, object],
) -> PolicyChange:
    """Change an activity's overrides (None or "inherit" clears one), through ingest."""

    def load(uow: UnitOfWork) -> Activity:
        activity = uow.activities.get(tenant_id, activity_id, for_update=True)
        if activity is None:
            raise NotFound("activity", activity_id)
        return activity

    return _change_layer(
        uow_factory,
        clock,
        waker,
        tenant_id,
        load,
        lambda activity: ingest.IngestBatch(activities=[activity]),
        changes,
    )


def _change_layer(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    waker: Waker | None,
    tenant_id: str,
    load: Callable[[UnitOfWork], Holder],
    batch_of: Callable[[Holder], ingest.IngestBatch],
    changes: Mapping[str, object],
) -> PolicyChange:
    """Read the course or activity (its row locked), change its layer and store it through
    ingest, in one transaction: two people changing two settings at once both keep theirs,
    and an ingest of the course's other fields in between is not undone."""
    with uow_factory() as uow:
        holder = load(uow)
        new_layer = with_changes(holder.policy, changes)
        changed = [n for n in changes if getattr(holder.policy, n) != getattr(new_layer, n)]
        if new_layer == holder.policy:
            return PolicyChange(new_layer, [], 0, 0)
        result = ingest.record_facts(
            uow, tenant_id, batch_of(replace(holder, policy=new_layer)), clock.now()
        )
        uow.commit()
    ingest.wake_after(waker, result)
    return PolicyChange(new_layer, changed, result.dirty_keys, result.resent)
