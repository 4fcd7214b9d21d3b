"""A sync run as `GET /runs/{id}` answers it and `gradesync runs show --json` (and every
command that prints a run) prints it, with its stages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from gradesync.domain.model import SyncRun
from gradesync.runtime import Runtime
from gradesync.services import queries


class StageOut(BaseModel):
    stage: str
    at: datetime | None  # stored as ISO text; a datetime, so written with `Z` as every time
    # e.g. "worker X stopped (last heard ...); requeued by Y; resumed by Y"
    note: str | None = None
    attempt: int = 1  # 2 from the first resume on (`domain.run_history`)


class RunOut(BaseModel):
    id: str
    trigger: str
    actor: str
    course_id: str | None
    destination_id: str | None
    destination_name: str | None = Field(
        description="The destination's name when the run was asked for (null: every "
        "destination), kept once the destination is deleted; a destination made again under "
        "the same id does not rename its runs.",
    )
    activity_ids: list[str]
    stage: str
    outcome: str | None
    counts: dict[str, Any]
    message: str | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    stages: list[StageOut] | None = None
    joined: bool | None = None  # on trigger: joined a run already queued for the same scope


def run_out(
    run: SyncRun, stages: list[dict[str, object]] | None = None, joined: bool | None = None
) -> RunOut:
    return RunOut(
        id=run.id,
        trigger=run.trigger.value,
        actor=run.actor,
        course_id=run.scope.course_id,
        destination_id=run.scope.destination_id,
        destination_name=run.destination_name,
        activity_ids=list(run.scope.activity_ids),
        stage=run.stage.value,
        outcome=run.outcome.value if run.outcome else None,
        counts=dict(run.counts),
        message=run.message,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        stages=[StageOut.model_validate(s) for s in stages] if stages is not None else None,
        joined=joined,
    )


def asked_out(rt: Runtime, tenant_id: str, run: SyncRun, joined: bool) -> RunOut:
    """A run just asked for (or joined) as `GET /runs/{id}` shows it: with its stages, read
    with the run so both say the same moment (a worker may have taken it already)."""
    d = queries.run_detail(rt.uow, tenant_id, run.id)
    return run_out(d.run, d.stages, joined=joined)
