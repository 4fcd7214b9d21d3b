"""What the LTI use cases need from storage: one-time nonces (LTI 1.1 and 1.3 alike), the
tool's signing keys, launch and refusal records, and the row holds that keep two launches of
one link from losing each other's entries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from gradesync.domain.diagnosis import LaunchFact, RejectionFact


@dataclass(frozen=True, slots=True)
class LaunchRecord:
    """What one launch said, kept for diagnostics."""

    tenant_id: str
    destination_id: str
    course_id: str  # "" when the LMS context is not bound to a course
    person_id: str
    resource_link_id: str | None
    roles: list[str]
    claims: dict[str, Any]
    launched_at: datetime
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused login or launch: the code, the sentence, and who sent it as far as known."""

    code: str
    message: str
    at: datetime
    tenant_id: str | None = None
    destination_id: str | None = None
    issuer: str | None = None
    client_id: str | None = None
    deployment_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    id: int | None = None


@dataclass(frozen=True, slots=True)
class StoredToolKey:
    """A tool key as stored: the private half is PEM, decrypted by the repository."""

    kid: str
    private_pem: bytes
    public_jwk: dict[str, Any]
    created_at: datetime
    generation: int
    retired_at: datetime | None = None
    signs_from: datetime | None = None  # None: from `created_at`


@dataclass(frozen=True, slots=True)
class ToolKeyRow:
    """A tool key as listed: never the private half."""

    kid: str
    created_at: datetime
    signs_from: datetime
    retired_at: datetime | None
    revoked_at: datetime | None = None


class NonceRepo(Protocol):
    """One-time values with an expiry. `value` is the whole key (its purpose as a prefix)."""

    def add(self, value: str, purpose: str, expires_at: datetime, now: datetime) -> bool:
        """Remember `value` until `expires_at`; False when it is already held (unexpired)."""
        ...

    def seen(self, value: str, now: datetime) -> bool: ...

    def purge(self, now: datetime, purpose: str | None = None) -> int: ...


class ToolKeyRepo(Protocol):
    """The tool's signing keys. Each key has a generation, unique in the store: making a key
    names the generation it follows, so two processes making one at once make one. A key is
    published from when it is made, signs from its `signs_from`, and stops signing at its
    `retired_at` (when a newer key starts)."""

    def current(self, now: datetime) -> StoredToolKey | None:
        """The key that signs at `now`: the newest started and not retired; None for an
        empty store."""
        ...

    def next_start(self, now: datetime) -> datetime | None:
        """When the next key starts signing, if one is due after `now`."""
        ...

    def latest_generation(self) -> int:
        """The highest generation stored, retired or not; 0 for an empty store."""
        ...

    def add(
        self,
        generation: int,
        kid: str,
        private_pem: bytes,
        public_jwk: dict[str, Any],
        created_at: datetime,
        signs_from: datetime,
    ) -> bool:
        """Store a key of `generation`; False (nothing stored) when that generation exists."""
        ...

    def retire_before(self, generation: int, now: datetime, at: datetime) -> None:
        """Retire the keys older than `generation` and not retired by `now`: the one signing
        now at `at`, when the new key starts; one still waiting to sign at `now`, so that it
        never signs (the newer key replaces it)."""
        ...

    def revoke_before(self, generation: int, at: datetime) -> None:
        """Revoke the keys older than `generation` at `at`: no longer published (one revoked
        already keeps its time)."""
        ...

    def published(self, retired_after: datetime, replaced_after: datetime) -> list[dict[str, Any]]:
        """Public JWKs of the keys not retired or retired after the cut-off (`retired_after`
        for a key that signed, `replaced_after` for one replaced before it began), none
        revoked, newest first."""
        ...

    def listing(self) -> list[ToolKeyRow]:
        """Every key, newest first."""
        ...

    def prune(self, retired_before: datetime, replaced_before: datetime) -> int:
        """Delete the revoked keys and the retired ones no longer published (the cut-offs
        of `published`)."""
        ...


class LaunchRepo(Protocol):
    """LTI launches and refused launches: the tool writes them, diagnostics read them."""

    def add(self, record: LaunchRecord) -> None: ...

    def add_rejection(self, rejection: Rejection) -> None: ...

    def records_for_person(
        self, tenant_id: str, person_id: str, destination_id: str | None = None, limit: int = 50
    ) -> list[LaunchRecord]:
        """A person's launches as recorded (every claim), newest first."""

    def refusals(self, *, tenant_id: str | None = None, limit: int = 100) -> list[Rejection]:
        """Refused logins and launches as recorded, newest first."""

    def for_person(
        self, tenant_id: str, person_id: str, destination_id: str | None = None, limit: int = 50
    ) -> list[LaunchFact]:
        """A person's launches, newest first."""

    def for_people(
        self, tenant_id: str, destination_id: str, person_ids: Iterable[str]
    ) -> dict[str, list[LaunchFact]]:
        """Launches of these people at one destination, newest first, by person."""

    def launched_in(self, tenant_id: str, course_id: str, person_ids: Iterable[str]) -> set[str]:
        """Which of these people launched into the course through any destination."""

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


class LtiLinkRepo(Protocol):
    """Reads and holds the LTI 1.1 launch and the registrations need beside the ordinary link
    repository."""

    def consumers_with_key(self, consumer_key: str) -> list[tuple[str, str]]:
        """(tenant id, destination id) of every LTI 1.1 consumer registered with this key."""
        ...

    def lock_issuer(self, issuer: str) -> None:
        """Hold an LTI 1.3 issuer until the transaction ends, so that two registrations of
        one LMS (issuer and client id, each deployment) check and write one after the other
        (they have no unique index: they live in the destination's config)."""
        ...

    def lock_consumer_key(self, consumer_key: str) -> None:
        """Hold this consumer key until the transaction ends, so that two registrations of
        one key check and write one after the other (the key has no unique index: it lives
        in the destination's config)."""
        ...

    def hold_course(self, tenant_id: str, destination_id: str, course_id: str) -> None:
        """Make sure the course link row exists and hold it until the transaction ends, so
        two launches updating one link's data do not lose each other's entries."""
        ...

    def hold_item(
        self, tenant_id: str, destination_id: str, activity_id: str, remote_id: str
    ) -> None: ...

    def hold_person(
        self, tenant_id: str, destination_id: str, person_id: str, course_id: str
    ) -> None: ...
