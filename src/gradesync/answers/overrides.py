"""Grades changed by hand in the LMS as `GET /courses/{id}/overrides` answers them and
`gradesync overrides --json` prints them; a repair as `POST /courses/{id}/repair` and
`gradesync repair --json` answer it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from gradesync.answers.runs import RunOut, asked_out
from gradesync.runtime import Runtime
from gradesync.services import overrides


class OverrideOut(BaseModel):
    destination_id: str
    activity_id: str
    person_id: str
    state: str
    sent_given: float | None = Field(description="The score gradesync sent.")
    sent_maximum: float | None = Field(description="The maximum gradesync sent with it.")
    delivered_at: datetime | None
    lms: str | None = Field(description="What the LMS holds, in its words.")
    explanation: str | None = Field(description="What happened, and what the policy does.")
    policy: Literal["keep_lms_edit", "gradesync_wins"]


def overrides_out(rows: list[dict[str, Any]]) -> list[OverrideOut]:
    """Overridden grades as the API answers them (also `gradesync overrides --json`)."""
    return [OverrideOut(**r) for r in rows]


class UnreadOut(BaseModel):
    destination_id: str
    activity_id: str
    error: str = Field(description="Why the LMS's timestamps could not be read, in its words.")


class RepairOut(BaseModel):
    run: RunOut | None
    marked: int
    skipped: int
    keys: list[dict[str, str]]
    unread: list[UnreadOut] = Field(
        description="Columns whose LMS timestamps could not be read first: their grades are "
        "resent with gradesync's clock only."
    )
    warning: str | None = Field(description="What `unread` means for the repair, if any.")


def repair_out(rt: Runtime, tenant_id: str, result: overrides.RepairResult) -> RepairOut:
    """A repair as the API answers it (also `gradesync repair --json`); its run as
    `GET /runs/{id}` shows it, stages included."""
    return RepairOut(
        run=(
            asked_out(rt, tenant_id, result.run, result.joined) if result.run is not None else None
        ),
        marked=result.marked,
        skipped=result.skipped,
        keys=[
            {
                "destination_id": k.destination_id,
                "activity_id": k.activity_id,
                "person_id": k.person_id,
            }
            for k in result.keys
        ],
        unread=[
            UnreadOut(destination_id=u.destination_id, activity_id=u.activity_id, error=u.error)
            for u in result.unread
        ],
        warning=overrides.unread_warning(result.unread),
    )
