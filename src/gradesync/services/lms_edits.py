"""Grades typed into the LMS, when the policy turns to "gradesync wins".

A grade an instructor typed into the LMS is kept there while `keep_lms_edits` is on: its
ledger row is delivered, with reason `overridden`. When the policy changes to "gradesync
wins", the desired result is unchanged, so a recompute alone would leave the LMS's edit in
place; these rows are made pending so gradesync's grade is sent again (with a score timestamp
after the edit: every send is dated `max(now, last + 1 ms)`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from gradesync.domain.errors import InvalidInput
from gradesync.domain.ledger import reopened
from gradesync.domain.model import Activity, DeliveryState, LedgerRow, PolicySettings
from gradesync.domain.overrides import OVERRIDDEN
from gradesync.domain.policy import resolve_settings
from gradesync.services.ports import UnitOfWork


def stops_keeping(old: Sequence[PolicySettings], new: Sequence[PolicySettings]) -> bool:
    """Whether the layers (tenant, course, activity) went from keeping LMS edits to
    "gradesync wins"."""
    try:
        return resolve_settings(*old).keep_lms_edits and not resolve_settings(*new).keep_lms_edits
    except InvalidInput:
        return False


def _gradesync_wins(
    uow: UnitOfWork, tenant_id: str, course_id: str, acts: list[Activity]
) -> list[str]:
    tenant = uow.tenants.get(tenant_id)
    course = uow.courses.get(tenant_id, course_id)
    if tenant is None or course is None:
        return []
    out = []
    for a in acts:
        try:
            policy = resolve_settings(tenant.policy, course.policy, a.policy)
        except InvalidInput:
            continue  # an invalid policy never overwrites a person's edit
        if not policy.keep_lms_edits:
            out.append(a.id)
    return out


def resend_overridden(
    uow: UnitOfWork, tenant_id: str, activities: Iterable[Activity], now: datetime
) -> int:
    """Grades typed into the LMS and kept there (reason `overridden`) become pending again
    for the activities whose policy now says "gradesync wins". Inside the caller's
    transaction; returns how many."""
    by_course: dict[str, list[Activity]] = {}
    for a in activities:
        by_course.setdefault(a.course_id, []).append(a)
    count = 0
    for course_id, acts in by_course.items():
        wins = _gradesync_wins(uow, tenant_id, course_id, acts)
        if not wins:
            continue
        for link in uow.links.destinations_for_course(tenant_id, course_id):
            rows = uow.ledger.get_many(tenant_id, link.destination_id, course_id, wins)
            # the reason stays: the row is sent again over a grade typed into the LMS
            writes: list[tuple[LedgerRow, str]] = [
                (reopened(r, now, reason_code=r.reason_code, reason_text=r.reason_text), course_id)
                for r in rows.values()
                if r.state is DeliveryState.DELIVERED and r.reason_code == OVERRIDDEN
            ]
            if writes:
                uow.ledger.save_many(writes)
                count += len(writes)
    return count
