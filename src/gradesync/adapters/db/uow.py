"""The unit of work: one transaction, the repositories that share it, commit or roll back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine

from gradesync.adapters.db.repos.accounts import ApiKeyRepo, UserRepo
from gradesync.adapters.db.repos.destinations import DestinationRepo
from gradesync.adapters.db.repos.dirty import DirtyKeyRepo
from gradesync.adapters.db.repos.facts import (
    ActivityRepo,
    AttemptRepo,
    CourseRepo,
    DueDateOverrideRepo,
    EnrollmentRepo,
    PersonRepo,
    TenantRepo,
)
from gradesync.adapters.db.repos.ledger import DeliveryLogRepo, LedgerRepo
from gradesync.adapters.db.repos.links import LinkRepo
from gradesync.adapters.db.repos.lti import LaunchRepo, LtiLinkRepo, NonceRepo, ToolKeyRepo
from gradesync.adapters.db.repos.runs import RunRepo
from gradesync.adapters.db.repos.schedules import ScheduleRepo
from gradesync.adapters.db.repos.workers import WorkerRepo
from gradesync.adapters.secretbox import SecretBox
from gradesync.services import ports
from gradesync.services.destination_signals import SIGNALS


class SqlUnitOfWork:
    """`with db.uow() as uow: ...; uow.commit()`. Leaving the block without commit rolls back,
    so a failed request changes nothing."""

    conn: Connection

    def __init__(
        self, engine: Engine, box: SecretBox, refuse: Callable[[], Exception] | None = None
    ) -> None:
        self._engine = engine
        self._box = box
        # why this process may not write (a schema a newer release upgraded): raised at
        # commit, so the transaction rolls back and nothing it did is kept
        self._refuse = refuse

    def __enter__(self) -> SqlUnitOfWork:
        self.conn = self._engine.connect()
        self.conn.begin()
        c = self.conn
        self.tenants = TenantRepo(c)
        self.courses = CourseRepo(c)
        self.activities = ActivityRepo(c)
        self.people = PersonRepo(c)
        self.enrollments = EnrollmentRepo(c)
        self.overrides = DueDateOverrideRepo(c)
        self.attempts = AttemptRepo(c)
        self.destinations = DestinationRepo(c, self._box)
        self.links = LinkRepo(c)
        self.ledger = LedgerRepo(c)
        self.dirty = DirtyKeyRepo(c)
        self.deliveries = DeliveryLogRepo(c)
        self.runs = RunRepo(c)
        self.schedules = ScheduleRepo(c)
        self.workers = WorkerRepo(c)
        self.users = UserRepo(c)
        self.api_keys = ApiKeyRepo(c)
        self.launches = LaunchRepo(c)
        self.nonces = NonceRepo(c)
        self.tool_keys = ToolKeyRepo(c, self._box)
        self.lti_links = LtiLinkRepo(c)
        return self

    # After a commit or rollback the next transaction begins with the next statement
    # (SQLAlchemy's autobegin, through the same `begin` hook), not at once: on SQLite an
    # eager BEGIN IMMEDIATE would take the write lock for a transaction that is most often
    # only rolled back at exit, and make every other writer wait for it.

    def commit(self) -> None:
        if self._refuse is not None:
            raise self._refuse()
        self.conn.commit()
        # this process's engines re-read a destination written here before their next send
        # (an admin's pause or edit takes effect at once, not on their slow poll)
        changed, self.destinations.changed = self.destinations.changed, set()
        for tenant_id, destination_id in sorted(changed):
            SIGNALS.changed(tenant_id, destination_id)

    def rollback(self) -> None:
        self.conn.rollback()
        self.destinations.changed = set()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        with self.conn.begin_nested():  # SAVEPOINT; rolled back to it when the block raises
            yield

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.conn.rollback()
        finally:
            self.conn.close()


if TYPE_CHECKING:
    # mypy checks here, once, that this is the unit of work the services ask for (its
    # repositories each subclass their port)
    _conforms: type[ports.UnitOfWork] = SqlUnitOfWork
