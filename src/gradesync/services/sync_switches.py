"""A course's or an activity's grade sync turned on or off by a person in the console.

Saved through ingest, which marks the grades for recomputing, then worked out at once
(`compute.compute_now`): the page the person goes back to already says what the switch did
(a grade sent before is *Kept in LMS*, one never sent *Not sent*, or waiting to be sent),
instead of what it said before until the worker's next batch and a reload.
"""

from __future__ import annotations

from dataclasses import replace

from gradesync.domain.model import Activity, Course
from gradesync.services import ingest
from gradesync.services.clock import Clock
from gradesync.services.compute import compute_now
from gradesync.services.destination import CapabilitiesLookup
from gradesync.services.ports import UnitOfWorkFactory
from gradesync.services.wakeup import Waker


def switch_course(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    waker: Waker | None,
    capabilities: CapabilitiesLookup,
    course: Course,
    on: bool,
) -> None:
    ingest.upsert_courses(
        uow_factory, clock, waker, course.tenant_id, [replace(course, sync_enabled=on)]
    )
    with uow_factory() as uow:
        activity_ids = [a.id for a in uow.activities.for_course(course.tenant_id, course.id)]
    compute_now(
        uow_factory, clock, capabilities, tenant_id=course.tenant_id, activity_ids=activity_ids
    )


def switch_activity(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    waker: Waker | None,
    capabilities: CapabilitiesLookup,
    activity: Activity,
    on: bool,
) -> None:
    ingest.upsert_activities(
        uow_factory, clock, waker, activity.tenant_id, [replace(activity, sync_enabled=on)]
    )
    compute_now(
        uow_factory, clock, capabilities, tenant_id=activity.tenant_id, activity_ids=[activity.id]
    )
