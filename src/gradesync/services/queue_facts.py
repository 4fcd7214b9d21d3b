"""What moves at a destination, read for a grade waiting there (`DestinationQueue`): how
many grades wait for it, gradesync's latest send to it and the heartbeat of a run under way
that covers the grade. The diagnosis says from them whether a backlog is being sent or
nothing is."""

from __future__ import annotations

from datetime import datetime

from gradesync.domain.diagnosis import STALLED_AFTER, DestinationQueue
from gradesync.domain.model import RunScope
from gradesync.services.ports import UnitOfWork


def _covers(scope: RunScope, tenant_id: str, destination_id: str, course_id: str) -> bool:
    return (
        scope.tenant_id == tenant_id
        and scope.destination_id in (None, destination_id)
        and scope.course_id in (None, course_id)
    )


def destination_queue(
    uow: UnitOfWork, tenant_id: str, destination_id: str, course_id: str, now: datetime
) -> DestinationQueue:
    """The destination's queue as a grade of `course_id` waiting there sees it at `now`."""
    waiting = next((n for d, n, _ in uow.ledger.waiting(tenant_id) if d == destination_id), 0)
    beats = [
        beat
        for run, beat in uow.runs.unfinished()
        if beat is not None and _covers(run.scope, tenant_id, destination_id, course_id)
    ]
    return DestinationQueue(
        waiting=waiting,
        last_send=uow.deliveries.last_send(tenant_id, destination_id, now - STALLED_AFTER),
        run_beat=max(beats, default=None),
    )
