"""Post grades: the SIS passback run for a selection, the way an admin asks for it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from gradesync.domain.errors import FieldProblem, InvalidInput, NotFound
from gradesync.domain.model import (
    RunScope,
    SyncRun,
    Trigger,
)
from gradesync.services.clock import Clock
from gradesync.services.ports import UnitOfWorkFactory
from gradesync.services.runs import request_run
from gradesync.services.sis.common import SisDirectory, sis_destination
from gradesync.services.sis.selection import (
    ActivityCheck,
    activities_of,
    left_out,
    release_held,
    reopen_rejected,
    validate_asking,
)
from gradesync.services.wakeup import Waker


@dataclass(frozen=True, slots=True)
class PostResult:
    run: SyncRun | None  # None when nothing in the selection could be sent
    joined: bool
    posted: list[str]  # activity ids in the run
    refused: list[ActivityCheck]  # left out, each with every reason (`left_out`)
    held: list[str] = field(default_factory=list)  # ticked with a hold, not posted: wait


def nothing_to_post(result: PostResult, remedy: str) -> InvalidInput:
    """The refusal of a post that queued no run (every caller's, `remedy` in its words):
    `nothing_to_post`, then each refused activity's reasons (`left_out`: not ticked, and
    what validation found)."""
    return InvalidInput(
        [
            FieldProblem(
                "activity_ids", "nothing_to_post", f"No selected activity can be posted: {remedy}"
            ),
            *(
                FieldProblem(f"activities[{c.activity_id}].{p.field}", p.rule, p.message)
                for c in result.refused
                for p in c.problems
            ),
        ]
    )


async def post_grades(
    uow_factory: UnitOfWorkFactory,
    waker: Waker,
    clock: Clock,
    directory: SisDirectory | None,
    *,
    tenant_id: str,
    destination_id: str,
    course_id: str,
    actor: str,
    activity_ids: Sequence[str] = (),
    remaster: bool = False,
) -> PostResult:
    """ "Post grades": a run over the chosen activities (default: all selected for the SIS) of
    a course. Activities not selected or failing validation (the SIS asked through
    `directory` for each group's category, as ticking asks: `validate_asking`) are left out
    and reported with each reason (`left_out`); when none can go, every activity asked for
    is, the unticked ones of a whole course included. The others' hold (ticked with a hold)
    is lifted, and those not named stay held. The run's stages and counts are the engine's
    (follow `run.id`). `remaster` resends every result and the line item details."""
    activities = await asyncio.to_thread(
        _activities, uow_factory, tenant_id, destination_id, course_id, activity_ids
    )
    checks = await validate_asking(
        uow_factory,
        directory,
        tenant_id=tenant_id,
        destination_id=destination_id,
        course_id=course_id,
        activity_ids=activities,
    )
    posted = [c.activity_id for c in checks if c.selected and c.ok]
    if not posted:
        # nothing goes: every activity asked for is why, the course's unticked ones too, or a
        # post of a course with nothing ticked would be refused with no reason at all
        return PostResult(None, False, [], left_out(checks, destination_id))
    refused = left_out((c for c in checks if activity_ids or c.selected), destination_id)
    return await asyncio.to_thread(
        _queue,
        uow_factory,
        waker,
        clock,
        posted,
        refused,
        scope=RunScope(tenant_id, destination_id, course_id, tuple(sorted(posted))),
        trigger=Trigger.REMASTER if remaster else Trigger.MANUAL,
        actor=actor,
    )


def _activities(
    uow_factory: UnitOfWorkFactory,
    tenant_id: str,
    destination_id: str,
    course_id: str,
    activity_ids: Sequence[str],
) -> list[str]:
    """The ids of the activities a post names (default: all of the course's), every one of
    the course."""
    with uow_factory() as uow:
        sis_destination(uow, tenant_id, destination_id)
        if uow.courses.get(tenant_id, course_id) is None:
            raise NotFound("course", course_id)
        activities = (
            activities_of(uow, tenant_id, activity_ids)
            if activity_ids
            else uow.activities.for_course(tenant_id, course_id)
        )
        others = [a.id for a in activities if a.course_id != course_id]
        if others:
            raise InvalidInput.one(
                "activity_ids", "same_course", f"Not activities of course {course_id!r}: {others}."
            )
        return [a.id for a in activities]


def _queue(
    uow_factory: UnitOfWorkFactory,
    waker: Waker,
    clock: Clock,
    posted: list[str],
    refused: list[ActivityCheck],
    *,
    scope: RunScope,
    trigger: Trigger,
    actor: str,
) -> PostResult:
    """The run of the activities that go, their hold lifted first."""
    tenant_id, destination_id, course_id = scope.tenant_id, scope.destination_id, scope.course_id
    assert destination_id is not None and course_id is not None
    now = clock.now()
    with uow_factory() as uow:
        released: list[tuple[str, str, str, str]] = []
        for activity_id in sorted(posted):  # locked in id order, as every change of links
            released += release_held(uow, tenant_id, destination_id, course_id, activity_id)
            reopen_rejected(uow, tenant_id, destination_id, course_id, activity_id, now)
        if released:
            uow.dirty.mark_many(released, now, destination_id=destination_id)
        uow.commit()
    with uow_factory() as uow:
        course_items = uow.links.items(
            tenant_id,
            destination_id,
            [a.id for a in uow.activities.for_course(tenant_id, course_id)],
        )
    held = sorted(
        aid
        for aid, item in course_items.items()
        if item.data.get("held") and item.data.get("sync_to_sis") and aid not in posted
    )
    run, joined = request_run(uow_factory, waker, clock, scope, trigger, actor)
    return PostResult(run, joined, posted, refused, held)
