"""What the LTI tool stored, as the rest of gradesync reads it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from gradesync.domain.diagnosis import LaunchFact, RejectionFact


class LaunchRepo(Protocol):
    """LTI launches and refused launches, read by diagnostics (the LTI tool writes them)."""

    def for_person(
        self, tenant_id: str, person_id: str, destination_id: str | None = None, limit: int = 50
    ) -> list[LaunchFact]:
        """A person's launches, newest first."""

    def for_people(
        self, tenant_id: str, destination_id: str, person_ids: Iterable[str]
    ) -> dict[str, list[LaunchFact]]:
        """Launches of these people at one destination, newest first, by person."""

    def summary(self, tenant_id: str, destination_id: str) -> tuple[int, datetime | None]:
        """How many launches came through a destination, and the latest one's time."""

    def rejections(
        self,
        tenant_id: str,
        destination_id: str | None = None,
        *,
        issuer: str | None = None,
        client_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[RejectionFact]:
        """Refused launches for a tenant (and a destination: recorded against it, or naming
        its issuer and client id when the refusal came before gradesync knew the tenant)."""
