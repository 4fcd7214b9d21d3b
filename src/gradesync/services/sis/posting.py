"""Post grades: the SIS passback run for a selection, the way an admin asks for it."""

from __future__ import annotations

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
from gradesync.services.sis.common import sis_destination
from gradesync.services.sis.selection import (
    ActivityCheck,
    activities_of,
    release_held,
    reopen_rejected,
    validate,
)
from gradesync.services.wakeup import Waker


@dataclass(frozen=True, slots=True)
class PostResult:
    run: SyncRun | None  # None when nothing in the selection could be sent
    joined: bool
    posted: list[str]  # activity ids in the run
    refused: list[ActivityCheck]  # selected but failing validation, or not selected
    held: list[str] = field(default_factory=list)  # ticked with a hold, not posted: wait


def nothing_to_post(result: PostResult, remedy: str) -> InvalidInput:
    """The refusal of a post that queued no run (every caller's, `remedy` in its words):
    `nothing_to_post`, then each refused activity's problems."""
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


def post_grades(
    uow_factory: UnitOfWorkFactory,
    waker: Waker,
    clock: Clock,
    *,
    tenant_id: str,
    destination_id: str,
    course_id: str,
    actor: str,
    activity_ids: Sequence[str] = (),
    remaster: bool = False,
) -> PostResult:
    """ "Post grades": a run over the chosen activities (default: all selected for the SIS) of
    a course. Activities not selected or failing validation are left out and reported; the
    others' hold (ticked with a hold) is lifted, and those not named stay held. The
    run's stages and counts are the engine's (follow `run.id`). `remaster` resends every
    result and the line item details."""
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
    checks = (
        validate(
            uow_factory,
            tenant_id=tenant_id,
            destination_id=destination_id,
            activity_ids=[a.id for a in activities],
        )
        if activities
        else []
    )
    posted = [c.activity_id for c in checks if c.selected and c.ok]
    refused = [c for c in checks if not (c.selected and c.ok) and (activity_ids or c.selected)]
    if not posted:
        return PostResult(None, False, [], refused)
    now = clock.now()
    with uow_factory() as uow:
        released: list[tuple[str, str, str, str]] = []
        for activity_id in posted:
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
    scope = RunScope(tenant_id, destination_id, course_id, tuple(sorted(posted)))
    run, joined = request_run(
        uow_factory, waker, clock, scope, Trigger.REMASTER if remaster else Trigger.MANUAL, actor
    )
    return PostResult(run, joined, posted, refused, held)
