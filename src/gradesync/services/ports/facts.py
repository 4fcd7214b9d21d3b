"""The facts gradesync reconciles from: tenants, courses, activities, people, enrollments,
due-date overrides and attempts."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from gradesync.domain.model import (
    Activity,
    Attempt,
    Course,
    DueDateOverride,
    Enrollment,
    Person,
    Tenant,
)


class TenantRepo(Protocol):
    def get(self, tenant_id: str, *, for_update: bool = False) -> Tenant | None:
        """for_update: the row stays locked until the transaction ends (its policy is
        rewritten whole: a change written meanwhile must not be lost)."""

    def upsert(self, tenant: Tenant, now: datetime) -> None:
        """Create or rename a tenant, or change its policy; `now` stamps a new one."""

    def add(self, tenant: Tenant, now: datetime) -> bool:
        """Create a tenant; False (and nothing written) when its id is taken, by a tenant
        committed before or being made by a transaction this one then waits for."""

    def all(self) -> list[Tenant]: ...


class CourseRepo(Protocol):
    def get(self, tenant_id: str, course_id: str, *, for_update: bool = False) -> Course | None:
        """for_update: the row stays locked until the transaction ends (a read-modify-write
        that another writer must not interleave)."""

    def get_many(self, tenant_id: str, course_ids: Iterable[str]) -> dict[str, Course]: ...

    def upsert(self, course: Course) -> None: ...

    def lock(self, tenant_id: str, ids: Iterable[str]) -> None:
        """Hold the stored ones of these rows until the transaction ends, taken in id order
        (so later writes of them, in any order, cannot deadlock with another transaction
        taking them the same way); other transactions' checks of references to them do
        not wait."""

    def upsert_many(
        self,
        courses: Sequence[Course],
        *,
        fields: Collection[str] | None = None,
        absent: Collection[str] = (),
    ) -> dict[str, bool]:
        """`upsert` for many, in one statement (their keys must differ). `fields`: the only
        ones written over a row stored already (its others keep their values, whoever wrote
        them); None: all. A new row gets every field as given.
        `absent`: ids this transaction read as not stored. Returns those of them the write
        found stored, made meanwhile by another transaction, by id: True where it wrote
        `fields` over the row, False where it left it (no field to write). The write tells
        it itself, with no read more; never any on SQLite, whose write transactions hold the
        whole database from their first statement."""

    def all(self, tenant_id: str) -> list[Course]: ...


class ActivityRepo(Protocol):
    def get(self, tenant_id: str, activity_id: str, *, for_update: bool = False) -> Activity | None:
        """for_update: as `CourseRepo.get`."""

    def get_many(self, tenant_id: str, activity_ids: Iterable[str]) -> dict[str, Activity]: ...

    def upsert(self, activity: Activity) -> None: ...

    def lock(self, tenant_id: str, ids: Iterable[str]) -> None:
        """As `CourseRepo.lock`."""

    def upsert_many(
        self,
        activities: Sequence[Activity],
        *,
        fields: Collection[str] | None = None,
        absent: Collection[str] = (),
    ) -> dict[str, bool]:
        """As `CourseRepo.upsert_many`; an activity's course is never written: one of
        `absent` found stored in another course than its item names is left as it is,
        False in the answer (on SQLite too, where none can be)."""

    def for_course(self, tenant_id: str, course_id: str) -> list[Activity]:
        """A course's activities, soonest due first."""


class PersonRepo(Protocol):
    def get(self, tenant_id: str, person_id: str) -> Person | None: ...

    def get_many(self, tenant_id: str, person_ids: Iterable[str]) -> dict[str, Person]: ...

    def upsert(self, person: Person) -> None: ...

    def lock(self, tenant_id: str, ids: Iterable[str]) -> None:
        """As `CourseRepo.lock`."""

    def upsert_many(
        self,
        people: Sequence[Person],
        *,
        fields: Collection[str] | None = None,
        fill_blanks: bool = False,
        absent: Collection[str] = (),
    ) -> dict[str, bool]:
        """As `CourseRepo.upsert_many`. `fill_blanks`: each of `fields` is written over a
        row stored already only where the row's is blank (NULL or '') when written, so a
        value stored meanwhile by another transaction stays (`domain.model.fill_blanks`).
        With it, True for an id of `absent` says the row was found stored and its blanks
        offered the values, not that any was written: a caller that needs to know reads the
        row back (as `ingest._sis_ids_meanwhile` does)."""

    def find(
        self,
        tenant_id: str,
        *,
        email: str | None = None,
        name: str | None = None,
        sis_id: str | None = None,
    ) -> list[Person]:
        """People whose email and name (each when given) match, ignoring case, and whose
        SIS id is `sis_id` (when given)."""

    def find_many(
        self, tenant_id: str, *, emails: Iterable[str] = (), names: Iterable[str] = ()
    ) -> tuple[dict[str, list[Person]], dict[str, list[Person]]]:
        """People whose email is one of `emails` or whose name is one of `names`, ignoring
        case as `find` does, in one statement (none for none): (by email, by name), each
        keyed by the value asked for, lower-cased."""


class EnrollmentRepo(Protocol):
    def get(self, tenant_id: str, course_id: str, person_id: str) -> Enrollment | None: ...

    def upsert(self, enrollment: Enrollment) -> None: ...

    def upsert_many(self, enrollments: Sequence[Enrollment]) -> None:
        """As `CourseRepo.upsert_many`."""

    def upsert_many_marking(
        self,
        enrollments: Sequence[Enrollment],
        now: datetime,
        also: Sequence[tuple[str, str, str, str]] = (),
        *,
        people: Sequence[Person] = (),
        people_fields: Collection[str] | None = None,
        people_fill_blanks: bool = False,
        people_absent: Collection[str] = (),
    ) -> tuple[int, dict[str, bool]]:
        """`upsert_many`, and in the same write every key of an enrollment written (its
        course's activities, as stored now, with its person) marked dirty with the keys
        `also` (tenant, course, activity, person), as `DirtyKeyRepo.mark_many` marks them:
        the number of keys marked, each counted once, and what `PersonRepo.upsert_many`
        answers for `people`, upserted first in the same write (with `people_fields` as its
        `fields`, `people_fill_blanks` as its `fill_blanks` and `people_absent` as its
        `absent`)."""

    def for_course(self, tenant_id: str, course_id: str) -> list[Enrollment]: ...

    def for_person(self, tenant_id: str, person_id: str) -> list[Enrollment]: ...

    def for_pairs(
        self, tenant_id: str, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], Enrollment]:
        """Enrollments of these (course, person) pairs, by pair."""


class DueDateOverrideRepo(Protocol):
    def upsert(self, override: DueDateOverride) -> None: ...

    def upsert_many(self, overrides: Sequence[DueDateOverride]) -> None:
        """As `CourseRepo.upsert_many`."""

    def for_activity(self, tenant_id: str, activity_id: str) -> dict[str, datetime]:
        """An activity's overridden due dates, by person id."""

    def get(self, tenant_id: str, activity_id: str, person_id: str) -> datetime | None: ...

    def for_pairs(
        self, tenant_id: str, pairs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], datetime]:
        """Overrides of these (activity, person) pairs."""


class AttemptRepo(Protocol):
    def add(self, attempt: Attempt, now: datetime) -> tuple[Attempt, bool]:
        """Store an attempt unless its source event id is already stored.
        Returns the stored attempt and whether it is new (a retried post is not counted twice)."""

    def add_many(self, attempts: Sequence[Attempt], now: datetime) -> list[tuple[Attempt, bool]]:
        """`add` for many attempts of one tenant in a few statements, in the given order: an
        event id repeated in `attempts` is stored once, its later copies are not new."""

    def add_many_marking(
        self,
        attempts: Sequence[Attempt],
        now: datetime,
        course_of: Mapping[str, str],
        also: Sequence[tuple[str, str, str, str]] = (),
    ) -> list[tuple[int, bool]]:
        """`add_many`, and in the same write the (activity, person) key of each new attempt
        (its course from `course_of`, by activity) and the keys `also` (tenant, course,
        activity, person) marked dirty at `now` for every destination, as
        `DirtyKeyRepo.mark_many` marks them. Returns each attempt's stored id and whether it
        is new. On PostgreSQL one statement: the server works out which attempts are new."""

    def get_by_event(self, tenant_id: str, source_event_id: str) -> Attempt | None: ...

    def refresh_statistics(self) -> None:
        """Tell the database's planner how many attempts and people it holds now, after a
        bulk ingest (a no-op where the planner does not need it)."""

    def get_by_events(self, tenant_id: str, source_event_ids: Iterable[str]) -> dict[str, Attempt]:
        """The stored attempts of these event ids (those not stored are left out)."""

    def for_key(self, tenant_id: str, activity_id: str, person_id: str) -> list[Attempt]:
        """One person's attempts on one activity, oldest first."""

    def for_activities(
        self, tenant_id: str, activity_ids: Sequence[str]
    ) -> dict[tuple[str, str], list[Attempt]]:
        """All attempts on these activities, grouped by (activity, person), oldest first."""

    def for_person(self, tenant_id: str, person_id: str) -> list[Attempt]: ...

    def for_pairs(
        self, tenant_id: str, pairs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Attempt]]:
        """Attempts of these (activity, person) pairs, grouped, oldest first."""
