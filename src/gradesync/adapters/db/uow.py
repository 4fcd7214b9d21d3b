"""The unit of work: one transaction, the repositories that share it, commit or roll back."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import Connection, Engine

from gradesync.adapters.db.api_keys import ApiKeyRepo
from gradesync.adapters.db.launches import LaunchRepo
from gradesync.adapters.db.repositories import (
    ActivityRepo,
    AttemptRepo,
    CourseRepo,
    DeliveryLogRepo,
    DestinationRepo,
    DirtyKeyRepo,
    DueDateOverrideRepo,
    EnrollmentRepo,
    LedgerRepo,
    LinkRepo,
    PersonRepo,
    RunRepo,
    ScheduleRepo,
    TenantRepo,
    UserRepo,
)
from gradesync.adapters.secretbox import SecretBox


class SqlUnitOfWork:
    """`with db.uow() as uow: ...; uow.commit()`. Leaving the block without commit rolls back,
    so a failed request changes nothing."""

    conn: Connection

    def __init__(self, engine: Engine, box: SecretBox) -> None:
        self._engine = engine
        self._box = box

    def __enter__(self) -> SqlUnitOfWork:
        self.conn = self._engine.connect()
        self._tx = self.conn.begin()
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
        self.users = UserRepo(c)
        self.api_keys = ApiKeyRepo(c)
        self.launches = LaunchRepo(c)
        return self

    def commit(self) -> None:
        self._tx.commit()
        self._tx = self.conn.begin()

    def rollback(self) -> None:
        self._tx.rollback()
        self._tx = self.conn.begin()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._tx.rollback()
        finally:
            self.conn.close()
