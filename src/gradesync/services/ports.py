"""What the services need from storage, as protocols the services own.

The SQL adapter (`adapters/db`) implements them; services never import it. Keep these in step
with `adapters/db/repositories.py` (mypy checks the adapter satisfies them where it is wired).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

from gradesync.domain.diagnosis import LaunchFact, RejectionFact
from gradesync.domain.model import (
    Activity,
    ApiKey,
    Attempt,
    ConsoleUser,
    Course,
    CourseLink,
    Destination,
    DueDateOverride,
    Enrollment,
    ItemLink,
    LedgerKey,
    LedgerRow,
    Person,
    PersonLink,
    Schedule,
    ScheduleAction,
    ScheduleEvent,
    SyncRun,
    Tenant,
)


class TenantRepo(Protocol):
    def get(self, tenant_id: str) -> Tenant | None: ...

    def upsert(self, tenant: Tenant, now: datetime) -> None: ...

    def all(self) -> list[Tenant]: ...


class CourseRepo(Protocol):
    def get(self, tenant_id: str, course_id: str) -> Course | None: ...

    def upsert(self, course: Course) -> None: ...

    def all(self, tenant_id: str) -> list[Course]: ...


class ActivityRepo(Protocol):
    def get(self, tenant_id: str, activity_id: str) -> Activity | None: ...

    def get_many(self, tenant_id: str, activity_ids: Iterable[str]) -> dict[str, Activity]: ...

    def upsert(self, activity: Activity) -> None: ...

    def for_course(self, tenant_id: str, course_id: str) -> list[Activity]: ...


class PersonRepo(Protocol):
    def get(self, tenant_id: str, person_id: str) -> Person | None: ...

    def get_many(self, tenant_id: str, person_ids: Iterable[str]) -> dict[str, Person]: ...

    def upsert(self, person: Person) -> None: ...

    def find(
        self, tenant_id: str, *, email: str | None = None, name: str | None = None
    ) -> list[Person]: ...


class EnrollmentRepo(Protocol):
    def get(self, tenant_id: str, course_id: str, person_id: str) -> Enrollment | None: ...

    def upsert(self, enrollment: Enrollment) -> None: ...

    def for_course(self, tenant_id: str, course_id: str) -> list[Enrollment]: ...

    def for_person(self, tenant_id: str, person_id: str) -> list[Enrollment]: ...

    def for_people(
        self, tenant_id: str, course_id: str, person_ids: Iterable[str]
    ) -> dict[str, Enrollment]: ...


class DueDateOverrideRepo(Protocol):
    def upsert(self, override: DueDateOverride) -> None: ...

    def for_activity(self, tenant_id: str, activity_id: str) -> dict[str, datetime]: ...

    def get(self, tenant_id: str, activity_id: str, person_id: str) -> datetime | None: ...

    def for_pairs(
        self, tenant_id: str, pairs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], datetime]: ...


class AttemptRepo(Protocol):
    def add(self, attempt: Attempt, now: datetime) -> tuple[Attempt, bool]: ...

    def get_by_event(self, tenant_id: str, source_event_id: str) -> Attempt | None: ...

    def for_key(self, tenant_id: str, activity_id: str, person_id: str) -> list[Attempt]: ...

    def for_activities(
        self, tenant_id: str, activity_ids: Sequence[str]
    ) -> dict[tuple[str, str], list[Attempt]]: ...

    def for_person(self, tenant_id: str, person_id: str) -> list[Attempt]: ...

    def for_pairs(
        self, tenant_id: str, pairs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Attempt]]: ...


class DestinationRepo(Protocol):
    def get(self, tenant_id: str, destination_id: str) -> Destination | None: ...

    def upsert(self, dest: Destination, now: datetime) -> None: ...

    def all(self, tenant_id: str | None = None) -> list[Destination]: ...

    def delete(self, tenant_id: str, destination_id: str) -> bool: ...

    def set_pause(
        self, tenant_id: str, destination_id: str, until: datetime | None, reason: str | None
    ) -> None: ...


class LinkRepo(Protocol):
    def course(self, tenant_id: str, destination_id: str, course_id: str) -> CourseLink | None: ...

    def courses_for_destination(self, tenant_id: str, destination_id: str) -> list[CourseLink]: ...

    def destinations_for_course(self, tenant_id: str, course_id: str) -> list[CourseLink]: ...

    def save_course(self, link: CourseLink) -> None: ...

    def item(self, tenant_id: str, destination_id: str, activity_id: str) -> ItemLink | None: ...

    def items(
        self, tenant_id: str, destination_id: str, activity_ids: Iterable[str]
    ) -> dict[str, ItemLink]: ...

    def save_item(self, link: ItemLink) -> None: ...

    def delete_item(self, tenant_id: str, destination_id: str, activity_id: str) -> None: ...

    def person(
        self, tenant_id: str, destination_id: str, person_id: str, course_id: str | None = None
    ) -> PersonLink | None: ...

    def people(
        self, tenant_id: str, destination_id: str, course_id: str
    ) -> dict[str, PersonLink]: ...

    def save_person(self, link: PersonLink) -> None: ...

    def people_for(
        self, tenant_id: str, destination_id: str, course_id: str, person_ids: Iterable[str]
    ) -> dict[str, PersonLink]: ...


class LedgerRepo(Protocol):
    def get(self, key: LedgerKey) -> LedgerRow | None: ...

    def get_many(
        self,
        tenant_id: str,
        destination_id: str,
        course_id: str,
        activity_ids: Sequence[str] | None = None,
    ) -> dict[tuple[str, str], LedgerRow]: ...

    def save(self, row: LedgerRow, course_id: str) -> None: ...

    def save_many(
        self, rows: Sequence[tuple[LedgerRow, str]], *, release_for: str | None = None
    ) -> None: ...

    def course_of(self, key: LedgerKey) -> str | None: ...

    def due(
        self,
        now: datetime,
        limit: int,
        *,
        tenant_id: str | None = None,
        destination_id: str | None = None,
        course_id: str | None = None,
    ) -> list[LedgerRow]: ...

    def next_retry_at(self) -> datetime | None: ...

    def counts_by_state(
        self, tenant_id: str, *, destination_id: str | None = None, course_id: str | None = None
    ) -> dict[str, int]: ...

    def for_person(self, tenant_id: str, person_id: str) -> list[LedgerRow]: ...

    def iter_scope(
        self, tenant_id: str, destination_id: str, course_id: str, batch: int = 1000
    ) -> Iterator[list[LedgerRow]]: ...

    # the sync engine: row locks, leases, scope summaries
    def get_keys(
        self, keys: Sequence[LedgerKey], *, lock: bool = False
    ) -> dict[LedgerKey, LedgerRow]: ...

    def claimable(
        self,
        now: datetime,
        limit: int,
        *,
        tenant_id: str | None = None,
        destination_id: str | None = None,
        course_id: str | None = None,
        activity_ids: Sequence[str] | None = None,
        exclude_destinations: Sequence[tuple[str, str]] = (),
    ) -> list[tuple[LedgerRow, str]]: ...

    def lease(
        self, rows: Sequence[tuple[LedgerKey, datetime]], owner: str, until: datetime
    ) -> None: ...

    def release(self, keys: Sequence[LedgerKey], owner: str) -> None: ...

    def clear_leases(self, owner: str | None = None) -> int: ...

    def due_summary(
        self,
        now: datetime,
        *,
        tenant_id: str | None = None,
        destination_id: str | None = None,
        course_id: str | None = None,
        activity_ids: Sequence[str] | None = None,
    ) -> tuple[int, int, datetime | None]: ...

    def scope_summary(
        self,
        tenant_id: str,
        *,
        destination_id: str | None = None,
        course_id: str | None = None,
        activity_ids: Sequence[str] | None = None,
        delivered_since: datetime | None = None,
    ) -> list[tuple[str, str | None, bool, int]]: ...


class DirtyKeyRepo(Protocol):
    def mark(
        self, tenant_id: str, course_id: str, activity_id: str, person_id: str, now: datetime
    ) -> None: ...

    def mark_many(self, rows: Sequence[tuple[str, str, str, str]], now: datetime) -> None: ...

    def peek(self, limit: int) -> list[tuple[str, str, str, str, datetime]]: ...

    def clear(
        self, keys: Sequence[tuple[str, str, str]], *, marked_before: datetime | None = None
    ) -> None: ...

    def count(self) -> int: ...

    def lock_compute(self) -> None: ...

    def claim(self, limit: int) -> list[tuple[str, str, str, str]]: ...


class DeliveryLogRepo(Protocol):
    def add(
        self,
        *,
        key: LedgerKey,
        run_id: str | None,
        sent_at: datetime,
        sent_hash: str | None,
        payload: dict[str, Any] | None,
        outcome: str,
        remote_status: int | None,
        remote_message: str | None,
        latency_ms: float | None,
    ) -> None: ...

    def for_key(self, key: LedgerKey, limit: int = 20) -> list[dict[str, Any]]: ...

    def since(self, tenant_id: str, since: datetime) -> list[dict[str, Any]]: ...

    def add_many(self, entries: Sequence[dict[str, Any]]) -> None: ...


class RunRepo(Protocol):
    def add(self, run: SyncRun, *, schedule_id: str | None = None) -> None: ...

    def get(self, run_id: str, tenant_id: str | None = None) -> SyncRun | None: ...

    def stages(self, run_id: str) -> list[dict[str, Any]]: ...

    def update(
        self, run: SyncRun, *, worker_id: str | None = None, heartbeat_at: datetime | None = None
    ) -> None: ...

    def active_for_scope(self, scope_key: str) -> list[SyncRun]: ...

    def unfinished(self) -> list[tuple[SyncRun, datetime | None]]: ...

    def history(
        self,
        tenant_id: str,
        *,
        course_id: str | None = None,
        destination_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        trigger: str | None = None,
        limit: int = 50,
    ) -> list[SyncRun]: ...

    # the sync engine: one run per scope, claims, dead workers
    def lock_scope(self, scope_key: str) -> None: ...

    def set_trigger(self, run_id: str, trigger: str) -> None: ...

    def claim_next(
        self, worker_id: str, now: datetime, stale_before: datetime, *, run_id: str | None = None
    ) -> SyncRun | None: ...

    def heartbeat(self, run_id: str, worker_id: str, now: datetime) -> bool: ...

    def requeue_stale(
        self, stale_before: datetime, now: datetime, *, keep_worker: str | None = None
    ) -> list[str]: ...


class ScheduleRepo(Protocol):
    def save(self, s: Schedule) -> None: ...

    def get(self, schedule_id: str, tenant_id: str | None = None) -> Schedule | None: ...

    def all(self, tenant_id: str | None = None) -> list[Schedule]: ...

    def due(self, now: datetime) -> list[Schedule]: ...

    def delete(self, schedule_id: str, tenant_id: str) -> bool: ...

    def advance(
        self,
        schedule_id: str,
        *,
        expected_next_run_at: datetime,
        next_run_at: datetime,
        last_run_at: datetime | None,
    ) -> bool: ...

    def set_paused(
        self,
        schedule_id: str,
        tenant_id: str,
        *,
        paused_at: datetime | None,
        next_run_at: datetime | None,
    ) -> bool: ...

    def next_due_at(self) -> datetime | None: ...

    def add_event(self, e: ScheduleEvent) -> None: ...

    def events(
        self,
        tenant_id: str,
        *,
        schedule_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        actions: Sequence[ScheduleAction] = (),
        limit: int = 50,
    ) -> list[ScheduleEvent]: ...


class UserRepo(Protocol):
    def get(self, tenant_id: str, username: str) -> ConsoleUser | None: ...

    def find_by_username(self, username: str) -> list[ConsoleUser]: ...

    def save(self, user: ConsoleUser, now: datetime) -> None: ...

    def all(self, tenant_id: str) -> list[ConsoleUser]: ...


class ApiKeyRepo(Protocol):
    def get(self, key_id: str) -> ApiKey | None: ...

    def add(self, key: ApiKey) -> None: ...

    def revoke(self, tenant_id: str, key_id: str, now: datetime) -> bool: ...

    def all(self, tenant_id: str) -> list[ApiKey]: ...


class LaunchRepo(Protocol):
    """LTI launches and refused launches, read by diagnostics (the LTI tool writes them)."""

    def for_person(
        self, tenant_id: str, person_id: str, destination_id: str | None = None, limit: int = 50
    ) -> list[LaunchFact]: ...

    def for_people(
        self, tenant_id: str, destination_id: str, person_ids: Iterable[str]
    ) -> dict[str, list[LaunchFact]]: ...

    def summary(self, tenant_id: str, destination_id: str) -> tuple[int, datetime | None]: ...

    def rejections(
        self,
        tenant_id: str,
        destination_id: str | None = None,
        *,
        issuer: str | None = None,
        client_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[RejectionFact]: ...


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
    def users(self) -> UserRepo: ...

    @property
    def api_keys(self) -> ApiKeyRepo: ...

    @property
    def launches(self) -> LaunchRepo: ...

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...
