"""Destinations: the LMSs and SISs grades are sent to, with their credentials."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from gradesync.domain.model import DeletedDestination, Destination
from gradesync.domain.pauses import PauseCause


class DestinationRepo(Protocol):
    """Destinations with their secret; the store keeps the secret encrypted at rest."""

    def get(
        self, tenant_id: str, destination_id: str, *, for_update: bool = False
    ) -> Destination | None:
        """for_update: the row stays locked until the transaction ends (a read-modify-write
        that must not lose a change written meanwhile)."""

    def get_many(self, tenant_id: str, destination_ids: Iterable[str]) -> dict[str, Destination]:
        """The tenant's destinations with these ids, by id, in one statement (none for none)."""

    def upsert(self, dest: Destination, now: datetime) -> None: ...

    def add(self, dest: Destination, now: datetime) -> bool:
        """Create a destination; False (and nothing written) when its id is taken in its
        tenant, by one committed before or being made by a transaction this one then waits
        for."""

    def all(self, tenant_id: str | None = None) -> list[Destination]:
        """One tenant's destinations, or every tenant's."""

    def delete(self, tenant_id: str, destination_id: str, now: datetime) -> bool:
        """False when there was no such destination. Its deletion is recorded, at `now`,
        with its name (`deleted`)."""

    def deleted(
        self, tenant_id: str, destination_ids: Iterable[str] | None
    ) -> list[DeletedDestination]:
        """Each recorded deletion of the tenant's destinations with these ids (None: of every
        destination of the tenant), oldest first."""

    def set_pause(
        self,
        tenant_id: str,
        destination_id: str,
        until: datetime,
        reason: str,
        cause: PauseCause,
    ) -> bool:
        """Pause sending to a destination until a time, with the text people read and the
        cause beside it (a pause gradesync makes: a Retry-After, the breaker's, a
        misconfiguration's). A pause held that ends later is kept as it is: none is
        shortened. Whether this one was written."""

    def lift_pause(self, tenant_id: str, destination_id: str, cause: PauseCause) -> None:
        """Lift the destination's timed pause when it is of `cause` (the breaker's, once a
        request succeeds); a pause of another cause (a person's, a Retry-After) is kept."""
