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
    ledger: dict[str, int] | None = None  # counts by delivery state (show only)


def dest_out(rt: Runtime, d: Destination, ledger: dict[str, int] | None = None) -> DestinationOut:
    return DestinationOut.model_validate({**svc.public_view(d, rt.clock.now()), "ledger": ledger})
