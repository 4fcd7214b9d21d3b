"""The unit of work: one transaction and every repository that shares it."""

from __future__ import annotations

from contextlib import AbstractContextManager
from types import TracebackType
from typing import Protocol

from gradesync.services.ports.accounts import ApiKeyRepo, UserRepo
from gradesync.services.ports.destinations import DestinationRepo
from gradesync.services.ports.dirty import DirtyKeyRepo
from gradesync.services.ports.facts import (
    ActivityRepo,
    AttemptRepo,
    CourseRepo,
    DueDateOverrideRepo,
    EnrollmentRepo,
    PersonRepo,
    TenantRepo,
)
from gradesync.services.ports.ledger import DeliveryLogRepo, LedgerRepo
from gradesync.services.ports.links import LinkRepo
from gradesync.services.ports.lti import LaunchRepo, LtiLinkRepo, NonceRepo, ToolKeyRepo
from gradesync.services.ports.runs import RunRepo
from gradesync.services.ports.schedules import ScheduleRepo
from gradesync.services.ports.workers import WorkerRepo


class UnitOfWork(Protocol):
    """One transaction. Leaving the `with` block without `commit()` rolls back."""

    @property
    def tenants(self) -> TenantRepo: ...

    @property
    def courses(self) -> CourseRepo: ...

    @property
    def activities(self) -> ActivityRepo: ...

    @property
    def people(self) -> PersonRepo: ...

    @property
    def enrollments(self) -> EnrollmentRepo: ...

    @property
    def overrides(self) -> DueDateOverrideRepo: ...

    @property
    def attempts(self) -> AttemptRepo: ...

    @property
    def destinations(self) -> DestinationRepo: ...

    @property
    def links(self) -> LinkRepo: ...

    @property
    def ledger(self) -> LedgerRepo: ...

    @property
    def dirty(self) -> DirtyKeyRepo: ...

    @property
    def deliveries(self) -> DeliveryLogRepo: ...

    @property
    def runs(self) -> RunRepo: ...

    @property
    def schedules(self) -> ScheduleRepo: ...

    @property
    def workers(self) -> WorkerRepo: ...

    @property
    def users(self) -> UserRepo: ...

    @property
    def api_keys(self) -> ApiKeyRepo: ...

    @property
    def launches(self) -> LaunchRepo: ...

    @property
    def nonces(self) -> NonceRepo: ...

    @property
    def tool_keys(self) -> ToolKeyRepo: ...

    @property
    def lti_links(self) -> LtiLinkRepo: ...

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None:
        """Make the transaction durable, then tell `destination_signals.SIGNALS` of each
        destination it wrote (so this process's engines re-read it before their next send)."""
        ...

    def rollback(self) -> None: ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A part of the transaction undone alone when its block raises (the rest stays)."""
        ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...
