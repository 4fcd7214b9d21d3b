"""A destination as `GET /destinations/{id}` answers it and `gradesync destinations show
--json` prints it (never its secrets)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from gradesync.domain.model import Destination
from gradesync.runtime import Runtime
from gradesync.services import destination_admin as svc


class DestinationOut(BaseModel):
    id: str
    kind: str
    name: str
    profile: str
    config: dict[str, Any]
    enabled: bool
    paused_until: datetime | None
    pause_reason: str | None


class DestinationShownOut(DestinationOut):
    """`GET /destinations/{id}`: the destination with its results counted. The other answers
    (the list, limits, pause, resume) leave `ledger` out rather than answer it null: they do
    not count."""

    ledger: dict[str, int]


def dest_out(rt: Runtime, d: Destination, ledger: dict[str, int] | None = None) -> DestinationOut:
    view = svc.public_view(d, rt.clock.now())
    if ledger is None:  # not counted: left out, never answered null
        return DestinationOut.model_validate(view)
    return DestinationShownOut.model_validate({**view, "ledger": ledger})
