"""What moves at a destination, read for a grade waiting there (`DestinationQueue`): how
many grades wait for it, gradesync's latest send to it and the heartbeat of a run under way
that covers the grade. The diagnosis says from them whether a backlog is being sent or
nothing is."""

from __future__ import annotations

from datetime import datetime

from gradesync.domain.diagnosis import STALLED_AFTER, DestinationQueue
from gradesync.services.ports import UnitOfWork


def destination_queue(
    uow: UnitOfWork, tenant_id: str, destination_id: str, course_id: str, now: datetime
) -> DestinationQueue:
    """The destination's queue as a grade of `course_id` waiting there sees it at `now`."""
    return DestinationQueue(
        waiting=uow.ledger.waiting_at(tenant_id, destination_id),
        last_send=uow.deliveries.last_send(tenant_id, destination_id, now - STALLED_AFTER),
        run_beat=uow.runs.latest_beat_covering(tenant_id, destination_id, course_id),
    )
