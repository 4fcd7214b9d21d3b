"""Repositories: one small class per aggregate, all sharing the unit of work's connection.

Every query filters by tenant: a repository method never returns another tenant's row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.mapping import from_row, to_row, upsert, utc
from gradesync.adapters.secretbox import SecretBox
from gradesync.domain.model import (
    Activity,
    Attempt,
    ConsoleUser,
    Course,
    CourseLink,
    DeliveryState,
    Destination,
    DueDateOverride,
    Enrollment,
    ItemLink,
    LedgerKey,
    LedgerRow,
    Person,
    PersonLink,
    RunScope,
    RunStage,
    Schedule,
    ScheduleAction,
    ScheduleEvent,
    SyncRun,
    Tenant,
)

# ids per IN (...) list: far below SQLite's limit on bound parameters (32,766)
_IN_CHUNK = 500


class _Repo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn


class TenantRepo(_Repo):
    def get(self, tenant_id: str) -> Tenant | None:
        row = (
            self.conn.execute(select(t.tenants).where(t.tenants.c.id == tenant_id))
            .mappings()
            .first()
        )
        return from_row(Tenant, row) if row else None

    def upsert(self, tenant: Tenant, now: datetime) -> None:
        row = to_row(tenant)
        row["created_at"] = utc(tenant.created_at or now)
        upsert(self.conn, t.tenants, row, update=("name", "policy"))

    def all(self) -> list[Tenant]:
        rows = self.conn.execute(select(t.tenants).order_by(t.tenants.c.id)).mappings()
        return [from_row(Tenant, r) for r in rows]


class CourseRepo(_Repo):
    def get(self, tenant_id: str, course_id: str) -> Course | None:
        c = t.courses.c
        row = (
            self.conn.execute(select(t.courses).where(c.tenant_id == tenant_id, c.id == course_id))
            .mappings()
            .first()
        )
        return from_row(Course, row) if row else None

    def upsert(self, course: Course) -> None:
        upsert(self.conn, t.courses, to_row(course))

    def all(self, tenant_id: str) -> list[Course]:
        c = t.courses.c
        rows = self.conn.execute(
            select(t.courses).where(c.tenant_id == tenant_id).order_by(c.id)
        ).mappings()
        return [from_row(Course, r) for r in rows]


class ActivityRepo(_Repo):
    def get(self, tenant_id: str, activity_id: str) -> Activity | None:
        c = t.activities.c
        row = (
            self.conn.execute(
                select(t.activities).where(c.tenant_id == tenant_id, c.id == activity_id)
            )
            .mappings()
            .first()
        )
        return from_row(Activity, row) if row else None

    def get_many(self, tenant_id: str, activity_ids: Iterable[str]) -> dict[str, Activity]:
        c = t.activities.c
        ids = list(set(activity_ids))
        rows = self.conn.execute(
            select(t.activities).where(c.tenant_id == tenant_id, c.id.in_(ids))
        ).mappings()
        return {r["id"]: from_row(Activity, r) for r in rows}

    def upsert(self, activity: Activity) -> None:
        upsert(self.conn, t.activities, to_row(activity))

    def for_course(self, tenant_id: str, course_id: str) -> list[Activity]:
        c = t.activities.c
        rows = self.conn.execute(
            select(t.activities)
            .where(c.tenant_id == tenant_id, c.course_id == course_id)
            .order_by(c.due_at, c.id)
        ).mappings()
        return [from_row(Activity, r) for r in rows]


class PersonRepo(_Repo):
    def get(self, tenant_id: str, person_id: str) -> Person | None:
        c = t.people.c
        row = (
            self.conn.execute(select(t.people).where(c.tenant_id == tenant_id, c.id == person_id))
            .mappings()
            .first()
        )
        return from_row(Person, row) if row else None

    def get_many(self, tenant_id: str, person_ids: Iterable[str]) -> dict[str, Person]:
        c = t.people.c
        rows = self.conn.execute(
            select(t.people).where(c.tenant_id == tenant_id, c.id.in_(list(set(person_ids))))
        ).mappings()
        return {r["id"]: from_row(Person, r) for r in rows}

    def upsert(self, person: Person) -> None:
        upsert(self.conn, t.people, to_row(person))

    def find(
        self, tenant_id: str, *, email: str | None = None, name: str | None = None
    ) -> list[Person]:
        c = t.people.c
        conds = [c.tenant_id == tenant_id]
        if email:
            conds.append(func.lower(c.email) == email.lower())
        if name:
            conds.append(func.lower(c.name) == name.lower())
        rows = self.conn.execute(select(t.people).where(*conds).order_by(c.id)).mappings()
        return [from_row(Person, r) for r in rows]


class EnrollmentRepo(_Repo):
    def get(self, tenant_id: str, course_id: str, person_id: str) -> Enrollment | None:
        c = t.enrollments.c
        row = (
            self.conn.execute(
                select(t.enrollments).where(
                    c.tenant_id == tenant_id, c.course_id == course_id, c.person_id == person_id
                )
            )
            .mappings()
            .first()
        )
        return from_row(Enrollment, row) if row else None

    def upsert(self, enrollment: Enrollment) -> None:
        upsert(self.conn, t.enrollments, to_row(enrollment))

    def for_course(self, tenant_id: str, course_id: str) -> list[Enrollment]:
        c = t.enrollments.c
        rows = self.conn.execute(
            select(t.enrollments)
            .where(c.tenant_id == tenant_id, c.course_id == course_id)
            .order_by(c.person_id)
        ).mappings()
        return [from_row(Enrollment, r) for r in rows]

    def for_person(self, tenant_id: str, person_id: str) -> list[Enrollment]:
        c = t.enrollments.c
        rows = self.conn.execute(
            select(t.enrollments).where(c.tenant_id == tenant_id, c.person_id == person_id)
        ).mappings()
        return [from_row(Enrollment, r) for r in rows]

    def for_people(
        self, tenant_id: str, course_id: str, person_ids: Iterable[str]
    ) -> dict[str, Enrollment]:
        c = t.enrollments.c
        rows = self.conn.execute(
            select(t.enrollments).where(
                c.tenant_id == tenant_id,
                c.course_id == course_id,
                c.person_id.in_(list(set(person_ids))),
            )
        ).mappings()
        return {r["person_id"]: from_row(Enrollment, r) for r in rows}


class DueDateOverrideRepo(_Repo):
    def upsert(self, override: DueDateOverride) -> None:
        upsert(self.conn, t.due_date_overrides, to_row(override))

    def for_activity(self, tenant_id: str, activity_id: str) -> dict[str, datetime]:
        c = t.due_date_overrides.c
        rows = self.conn.execute(
            select(c.person_id, c.due_at).where(
                c.tenant_id == tenant_id, c.activity_id == activity_id
            )
        )
        return {r.person_id: utc(r.due_at) for r in rows}

    def get(self, tenant_id: str, activity_id: str, person_id: str) -> datetime | None:
        c = t.due_date_overrides.c
        v = self.conn.execute(
            select(c.due_at).where(
                c.tenant_id == tenant_id, c.activity_id == activity_id, c.person_id == person_id
            )
        ).scalar()
        return utc(v)

    def for_pairs(
        self, tenant_id: str, pairs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], datetime]:
        """Overrides of these (activity, person) pairs."""
        c = t.due_date_overrides.c
        wanted = set(pairs)
        rows = self.conn.execute(
            select(c.activity_id, c.person_id, c.due_at).where(
                c.tenant_id == tenant_id,
                c.activity_id.in_({a for a, _ in wanted}),
                c.person_id.in_({p for _, p in wanted}),
            )
        )
        out: dict[tuple[str, str], datetime] = {}
        for a, p, due in rows:
            if (a, p) in wanted:
                out[(a, p)] = utc(due)
        return out


class AttemptRepo(_Repo):
    def add(self, attempt: Attempt, now: datetime) -> tuple[Attempt, bool]:
        """Store an attempt unless its source event id is already stored.
        Returns the stored attempt and whether it is new (a retried post is not counted twice)."""
        row = to_row(attempt, exclude=("id",))
        row["recorded_at"] = utc(now)
        ins = postgresql if self.conn.dialect.name == "postgresql" else sqlite
        stmt = (
            ins.insert(t.attempts)
            .values(row)
            .on_conflict_do_nothing(index_elements=["tenant_id", "source_event_id"])
            .returning(t.attempts.c.id)
        )
        new_id = self.conn.execute(stmt).scalar()
        if new_id is not None:
            return from_row(Attempt, row, id=new_id), True
        existing = self.get_by_event(attempt.tenant_id, attempt.source_event_id)
        assert existing is not None
        return existing, False

    def get_by_event(self, tenant_id: str, source_event_id: str) -> Attempt | None:
        c = t.attempts.c
        row = (
            self.conn.execute(
                select(t.attempts).where(
                    c.tenant_id == tenant_id, c.source_event_id == source_event_id
                )
            )
            .mappings()
            .first()
        )
        return from_row(Attempt, row) if row else None

    def for_key(self, tenant_id: str, activity_id: str, person_id: str) -> list[Attempt]:
        c = t.attempts.c
        rows = self.conn.execute(
            select(t.attempts)
            .where(c.tenant_id == tenant_id, c.activity_id == activity_id, c.person_id == person_id)
            .order_by(c.id)
        ).mappings()
        return [from_row(Attempt, r) for r in rows]

    def for_activities(
        self, tenant_id: str, activity_ids: Sequence[str]
    ) -> dict[tuple[str, str], list[Attempt]]:
        """All attempts on these activities, grouped by (activity, person)."""
        c = t.attempts.c
        out: dict[tuple[str, str], list[Attempt]] = {}
        rows = self.conn.execute(
            select(t.attempts)
            .where(c.tenant_id == tenant_id, c.activity_id.in_(list(activity_ids)))
            .order_by(c.id)
        ).mappings()
        for r in rows:
            out.setdefault((r["activity_id"], r["person_id"]), []).append(from_row(Attempt, r))
        return out

    def for_person(self, tenant_id: str, person_id: str) -> list[Attempt]:
        c = t.attempts.c
        rows = self.conn.execute(
            select(t.attempts)
            .where(c.tenant_id == tenant_id, c.person_id == person_id)
            .order_by(c.id)
        ).mappings()
        return [from_row(Attempt, r) for r in rows]

    def for_pairs(
        self, tenant_id: str, pairs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Attempt]]:
        """Attempts of these (activity, person) pairs, grouped, oldest first (one query)."""
        c = t.attempts.c
        wanted = set(pairs)
        out: dict[tuple[str, str], list[Attempt]] = {}
        rows = self.conn.execute(
            select(t.attempts)
            .where(
                c.tenant_id == tenant_id,
                c.activity_id.in_({a for a, _ in wanted}),
                c.person_id.in_({p for _, p in wanted}),
            )
            .order_by(c.id)
        ).mappings()
        for r in rows:
            k = (r["activity_id"], r["person_id"])
            if k in wanted:
                out.setdefault(k, []).append(from_row(Attempt, r))
        return out


class DestinationRepo(_Repo):
    """Destinations with their secret encrypted at rest: the plaintext exists only in memory."""

    def __init__(self, conn: Connection, box: SecretBox) -> None:
        super().__init__(conn)
        self.box = box

    def _load(self, row: Any) -> Destination:
        return from_row(Destination, row, secret=self.box.decrypt_json(row["secret_ciphertext"]))

    def get(self, tenant_id: str, destination_id: str) -> Destination | None:
        c = t.destinations.c
        row = (
            self.conn.execute(
                select(t.destinations).where(c.tenant_id == tenant_id, c.id == destination_id)
            )
            .mappings()
            .first()
        )
        return self._load(row) if row else None

    def upsert(self, dest: Destination, now: datetime) -> None:
        row = to_row(dest, exclude=("secret",))
        row["secret_ciphertext"] = self.box.encrypt_json(dest.secret) if dest.secret else None
        row["created_at"] = utc(now)
        cols = tuple(k for k in row if k not in ("tenant_id", "id", "created_at"))
        upsert(self.conn, t.destinations, row, update=cols)

    def all(self, tenant_id: str | None = None) -> list[Destination]:
        q = select(t.destinations).order_by(t.destinations.c.tenant_id, t.destinations.c.id)
        if tenant_id is not None:
            q = q.where(t.destinations.c.tenant_id == tenant_id)
        return [self._load(r) for r in self.conn.execute(q).mappings()]

    def delete(self, tenant_id: str, destination_id: str) -> bool:
        c = t.destinations.c
        res = self.conn.execute(
            delete(t.destinations).where(c.tenant_id == tenant_id, c.id == destination_id)
        )
        return bool(res.rowcount)

    def set_pause(
        self, tenant_id: str, destination_id: str, until: datetime | None, reason: str | None
    ) -> None:
        c = t.destinations.c
        self.conn.execute(
            update(t.destinations)
            .where(c.tenant_id == tenant_id, c.id == destination_id)
            .values(paused_until=utc(until), pause_reason=reason)
        )


class LinkRepo(_Repo):
    """Course, item and person links: how a destination knows our courses, columns, people."""

    def course(self, tenant_id: str, destination_id: str, course_id: str) -> CourseLink | None:
        c = t.course_links.c
        row = (
            self.conn.execute(
                select(t.course_links).where(
                    c.tenant_id == tenant_id,
                    c.destination_id == destination_id,
                    c.course_id == course_id,
                )
            )
            .mappings()
            .first()
        )
        return from_row(CourseLink, row) if row else None

    def courses_for_destination(self, tenant_id: str, destination_id: str) -> list[CourseLink]:
        c = t.course_links.c
        rows = self.conn.execute(
            select(t.course_links).where(
                c.tenant_id == tenant_id, c.destination_id == destination_id
            )
        ).mappings()
        return [from_row(CourseLink, r) for r in rows]

    def destinations_for_course(self, tenant_id: str, course_id: str) -> list[CourseLink]:
        c = t.course_links.c
        rows = self.conn.execute(
            select(t.course_links).where(c.tenant_id == tenant_id, c.course_id == course_id)
        ).mappings()
        return [from_row(CourseLink, r) for r in rows]

    def save_course(self, link: CourseLink) -> None:
        upsert(self.conn, t.course_links, to_row(link))

    def item(self, tenant_id: str, destination_id: str, activity_id: str) -> ItemLink | None:
        c = t.item_links.c
        row = (
            self.conn.execute(
                select(t.item_links).where(
                    c.tenant_id == tenant_id,
                    c.destination_id == destination_id,
                    c.activity_id == activity_id,
                )
            )
            .mappings()
            .first()
        )
        return from_row(ItemLink, row) if row else None

    def items(
        self, tenant_id: str, destination_id: str, activity_ids: Iterable[str]
    ) -> dict[str, ItemLink]:
        c = t.item_links.c
        rows = self.conn.execute(
            select(t.item_links).where(
                c.tenant_id == tenant_id,
                c.destination_id == destination_id,
                c.activity_id.in_(list(set(activity_ids))),
            )
        ).mappings()
        return {r["activity_id"]: from_row(ItemLink, r) for r in rows}

    def save_item(self, link: ItemLink) -> None:
        upsert(self.conn, t.item_links, to_row(link))

    def delete_item(self, tenant_id: str, destination_id: str, activity_id: str) -> None:
        c = t.item_links.c
        self.conn.execute(
            delete(t.item_links).where(
                c.tenant_id == tenant_id,
                c.destination_id == destination_id,
                c.activity_id == activity_id,
            )
        )

    def person(
        self, tenant_id: str, destination_id: str, person_id: str, course_id: str | None = None
    ) -> PersonLink | None:
        """The course-specific link when there is one, else the course-independent one."""
        c = t.person_links.c
        rows = (
            self.conn.execute(
                select(t.person_links).where(
                    c.tenant_id == tenant_id,
                    c.destination_id == destination_id,
                    c.person_id == person_id,
                    c.course_id.in_([course_id or "", ""]),
                )
            )
            .mappings()
            .all()
        )
        best = sorted(rows, key=lambda r: r["course_id"] == "")
        return self._person(best[0]) if best else None

    def people(self, tenant_id: str, destination_id: str, course_id: str) -> dict[str, PersonLink]:
        c = t.person_links.c
        rows = self.conn.execute(
            select(t.person_links).where(
                c.tenant_id == tenant_id,
                c.destination_id == destination_id,
                c.course_id.in_([course_id, ""]),
            )
        ).mappings()
        out: dict[str, PersonLink] = {}
        for r in rows:  # a course-specific link wins over a general one
            if r["person_id"] not in out or r["course_id"]:
                out[r["person_id"]] = self._person(r)
        return out

    def people_for(
        self, tenant_id: str, destination_id: str, course_id: str, person_ids: Iterable[str]
    ) -> dict[str, PersonLink]:
        """`people` restricted to some persons (a batch, or a whole column), same
        precedence. Read in chunks, so a course of any size stays within the database's
        limit on bound parameters."""
        c = t.person_links.c
        ids = sorted(set(person_ids))
        out: dict[str, PersonLink] = {}
        for i in range(0, len(ids), _IN_CHUNK):
            rows = self.conn.execute(
                select(t.person_links).where(
                    c.tenant_id == tenant_id,
                    c.destination_id == destination_id,
                    c.course_id.in_([course_id, ""]),
                    c.person_id.in_(ids[i : i + _IN_CHUNK]),
                )
            ).mappings()
            for r in rows:
                if r["person_id"] not in out or r["course_id"]:
                    out[r["person_id"]] = self._person(r)
        return out

    @staticmethod
    def _person(row: Any) -> PersonLink:
        return from_row(PersonLink, row, course_id=row["course_id"] or None)

    def save_person(self, link: PersonLink) -> None:
        row = to_row(link)
        row["course_id"] = link.course_id or ""
        upsert(self.conn, t.person_links, row)


def _ledger_row(r: Any) -> LedgerRow:
    key = LedgerKey(r["tenant_id"], r["destination_id"], r["activity_id"], r["person_id"])
    return from_row(LedgerRow, r, key=key)


@cache
def _ledger_upsert(dialect: str, columns: tuple[str, ...], release: bool) -> Any:
    """The ledger's upsert statement, built once per shape: building it (`excluded` in
    particular) costs more than executing a settle batch's worth of rows from the cache."""
    ins = postgresql if dialect == "postgresql" else sqlite
    stmt = ins.insert(t.ledger)
    keys = [c.name for c in t.ledger.primary_key.columns]
    set_: dict[str, Any] = {
        k: stmt.excluded[k] for k in columns if k not in keys and k != "release_owner"
    }
    if release:
        c = t.ledger.c
        held = c.lease_owner == bindparam("release_owner")  # the existing row's lease
        set_["lease_owner"] = case((held, None), else_=c.lease_owner)
        set_["lease_until"] = case((held, None), else_=c.lease_until)
    return stmt.on_conflict_do_update(index_elements=keys, set_=set_)


@cache
def _ledger_by_persons(for_update: bool) -> Any:
    """Ledger rows of one (tenant, destination, activity) and some persons, in key order."""
    c = t.ledger.c
    q = (
        select(t.ledger)
        .where(
            c.tenant_id == bindparam("t"),
            c.destination_id == bindparam("d"),
            c.activity_id == bindparam("a"),
            c.person_id.in_(bindparam("ps", expanding=True)),
        )
        .order_by(c.person_id)
    )
    return q.with_for_update() if for_update else q


def _key_tuple(k: LedgerKey) -> tuple[str, str, str, str]:
    return (k.tenant_id, k.destination_id, k.activity_id, k.person_id)


class LedgerRepo(_Repo):
    def get(self, key: LedgerKey) -> LedgerRow | None:
        c = t.ledger.c
        row = (
            self.conn.execute(
                select(t.ledger).where(
                    c.tenant_id == key.tenant_id,
                    c.destination_id == key.destination_id,
                    c.activity_id == key.activity_id,
                    c.person_id == key.person_id,
                )
            )
            .mappings()
            .first()
        )
        return _ledger_row(row) if row else None

    def get_many(
        self,
        tenant_id: str,
        destination_id: str,
        course_id: str,
        activity_ids: Sequence[str] | None = None,
    ) -> dict[tuple[str, str], LedgerRow]:
        c = t.ledger.c
        q = select(t.ledger).where(
            c.tenant_id == tenant_id, c.destination_id == destination_id, c.course_id == course_id
        )
        if activity_ids:
            q = q.where(c.activity_id.in_(list(activity_ids)))
        return {
            (r["activity_id"], r["person_id"]): _ledger_row(r)
            for r in self.conn.execute(q).mappings()
        }

    @staticmethod
    def _values(row: LedgerRow, course_id: str) -> dict[str, Any]:
        v = to_row(row, exclude=("key",))
        v.update(
            tenant_id=row.key.tenant_id,
            destination_id=row.key.destination_id,
            activity_id=row.key.activity_id,
            person_id=row.key.person_id,
            course_id=course_id,
        )
        return v

    def save(self, row: LedgerRow, course_id: str) -> None:
        upsert(self.conn, t.ledger, self._values(row, course_id))

    def save_many(
        self, rows: Sequence[tuple[LedgerRow, str]], *, release_for: str | None = None
    ) -> None:
        """Upsert many rows as one executemany of one cached statement (the engine's hot
        path: a multi-VALUES statement would be compiled anew for every batch).
        `release_for`: also give up the leases that owner holds on these rows, as `release`
        does, in the same statement (settling writes each row once, not twice)."""
        if not rows:
            return
        values = [self._values(r, cid) for r, cid in rows]
        if release_for is not None:
            for v in values:
                v["release_owner"] = release_for
        stmt = _ledger_upsert(self.conn.dialect.name, tuple(values[0]), release_for is not None)
        self.conn.execute(stmt, values)

    def course_of(self, key: LedgerKey) -> str | None:
        c = t.ledger.c
        return self.conn.execute(
            select(c.course_id).where(
                c.tenant_id == key.tenant_id,
                c.destination_id == key.destination_id,
                c.activity_id == key.activity_id,
                c.person_id == key.person_id,
            )
        ).scalar()

    def due(
        self,
        now: datetime,
        limit: int,
        *,
        tenant_id: str | None = None,
        destination_id: str | None = None,
        course_id: str | None = None,
    ) -> list[LedgerRow]:
        """Keys to send now: pending, or retrying whose time has come. Oldest first."""
        c = t.ledger.c
        conds: list[ColumnElement[bool]] = [
            (c.state == DeliveryState.PENDING.value)
            | and_(c.state == DeliveryState.RETRYING.value, c.next_attempt_at <= utc(now))
        ]
        if tenant_id:
            conds.append(c.tenant_id == tenant_id)
        if destination_id:
            conds.append(c.destination_id == destination_id)
        if course_id:
            conds.append(c.course_id == course_id)
        rows = self.conn.execute(
            select(t.ledger).where(*conds).order_by(c.updated_at).limit(limit)
        ).mappings()
        return [_ledger_row(r) for r in rows]

    def next_retry_at(self) -> datetime | None:
        c = t.ledger.c
        return utc(
            self.conn.execute(
                select(func.min(c.next_attempt_at)).where(c.state == DeliveryState.RETRYING.value)
            ).scalar()
        )

    def counts_by_state(
        self, tenant_id: str, *, destination_id: str | None = None, course_id: str | None = None
    ) -> dict[str, int]:
        c = t.ledger.c
        conds = [c.tenant_id == tenant_id]
        if destination_id:
            conds.append(c.destination_id == destination_id)
        if course_id:
            conds.append(c.course_id == course_id)
        rows = self.conn.execute(select(c.state, func.count()).where(*conds).group_by(c.state))
        return {r[0]: r[1] for r in rows}

    def for_person(self, tenant_id: str, person_id: str) -> list[LedgerRow]:
        c = t.ledger.c
        rows = self.conn.execute(
            select(t.ledger).where(c.tenant_id == tenant_id, c.person_id == person_id)
        ).mappings()
        return [_ledger_row(r) for r in rows]

    def iter_scope(
        self, tenant_id: str, destination_id: str, course_id: str, batch: int = 1000
    ) -> Iterator[list[LedgerRow]]:
        """Stream a course's ledger in key order, a batch at a time (bounded memory)."""
        c = t.ledger.c
        after: tuple[str, str] = ("", "")
        while True:
            rows = (
                self.conn.execute(
                    select(t.ledger)
                    .where(
                        c.tenant_id == tenant_id,
                        c.destination_id == destination_id,
                        c.course_id == course_id,
                        (c.activity_id > after[0])
                        | and_(c.activity_id == after[0], c.person_id > after[1]),
                    )
                    .order_by(c.activity_id, c.person_id)
                    .limit(batch)
                )
                .mappings()
                .all()
            )
            if not rows:
                return
            yield [_ledger_row(r) for r in rows]
            after = (rows[-1]["activity_id"], rows[-1]["person_id"])

    # --- the sync engine: row locks, leases, scope summaries ---------------------------

    def get_keys(
        self, keys: Sequence[LedgerKey], *, lock: bool = False
    ) -> dict[LedgerKey, LedgerRow]:
        """Rows of these keys. `lock` takes PostgreSQL row locks (in key order, so two
        writers never deadlock) until the transaction ends; SQLite's write transaction
        already excludes every other writer."""
        if not keys:
            return {}
        # One query per (tenant, destination, activity), persons in an IN list: SQLite
        # reads a row-value IN (`(a, b, c, d) IN (VALUES ...)`) by scanning the whole
        # ledger, so each settle batch cost a pass over every row; this walks the primary
        # key. Groups and persons go in key order, so PostgreSQL's locks still do too.
        groups: dict[tuple[str, str, str], list[str]] = {}
        for k in sorted(set(keys), key=_key_tuple):
            groups.setdefault((k.tenant_id, k.destination_id, k.activity_id), []).append(
                k.person_id
            )
        q = _ledger_by_persons(lock and self.conn.dialect.name == "postgresql")
        out: dict[LedgerKey, LedgerRow] = {}
        for (tenant_id, dest_id, activity_id), persons in groups.items():
            params = {"t": tenant_id, "d": dest_id, "a": activity_id, "ps": persons}
            for r in self.conn.execute(q, params).mappings():
                row = _ledger_row(r)
                out[row.key] = row
        return out

    def _due_conditions(
        self,
        now: datetime,
        tenant_id: str | None,
        destination_id: str | None,
        course_id: str | None,
        activity_ids: Sequence[str] | None,
        exclude_destinations: Sequence[tuple[str, str]],
    ) -> list[Any]:
        c = t.ledger.c
        conds: list[Any] = [
            (c.state == DeliveryState.PENDING.value)
            | and_(c.state == DeliveryState.RETRYING.value, c.next_attempt_at <= utc(now)),
            c.lease_until.is_(None) | (c.lease_until < utc(now)),
        ]
        if tenant_id:
            conds.append(c.tenant_id == tenant_id)
        if destination_id:
            conds.append(c.destination_id == destination_id)
        if course_id:
            conds.append(c.course_id == course_id)
        if activity_ids:
            conds.append(c.activity_id.in_(list(activity_ids)))
        if exclude_destinations:
            conds.append(tuple_(c.tenant_id, c.destination_id).not_in(list(exclude_destinations)))
        return conds

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
    ) -> list[tuple[LedgerRow, str]]:
        """Due rows nobody holds, oldest due first (pending since, or retry time), with their
        course: no result waits behind newer changes, so nothing (a course's first grade
        included) waits until the load stops. Each state is read along its own index
        (`ix_ledger_pending`, `ix_ledger_due`), so a claim costs the same whatever the
        backlog. Locked (SKIP LOCKED on PostgreSQL) so two workers claiming at once get
        different rows; `lease` them in the same transaction."""
        c = t.ledger.c
        # the due conditions without the first (the state): each query below names its own
        free = self._due_conditions(
            now, tenant_id, destination_id, course_id, activity_ids, exclude_destinations
        )[1:]
        pending = (
            select(t.ledger)
            .where(c.state == DeliveryState.PENDING.value, *free)
            .order_by(c.updated_at, c.activity_id, c.person_id)
            .limit(limit)
        )
        retrying = (
            select(t.ledger)
            .where(c.state == DeliveryState.RETRYING.value, c.next_attempt_at <= utc(now), *free)
            .order_by(c.next_attempt_at, c.activity_id, c.person_id)
            .limit(limit)
        )
        found: list[tuple[datetime, LedgerRow, str]] = []
        for q in (pending, retrying):
            if self.conn.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            for r in self.conn.execute(q).mappings():
                row = _ledger_row(r)
                since = row.next_attempt_at if row.state is DeliveryState.RETRYING else None
                stamp = since or row.updated_at
                assert stamp is not None  # updated_at is NOT NULL
                found.append((stamp, row, r["course_id"]))
        found.sort(key=lambda f: f[0])
        return [(row, course) for _, row, course in found[:limit]]

    def lease(
        self, rows: Sequence[tuple[LedgerKey, datetime]], owner: str, until: datetime
    ) -> None:
        """Hold rows for `owner` until `until`; each row's `last_timestamp` becomes the score
        timestamp about to be sent, so a send the remote applied before a crash is never
        followed by an older timestamp."""
        if not rows:
            return
        c = t.ledger.c
        stmt = (
            update(t.ledger)
            .where(
                c.tenant_id == bindparam("k_t"),
                c.destination_id == bindparam("k_d"),
                c.activity_id == bindparam("k_a"),
                c.person_id == bindparam("k_p"),
            )
            .values(lease_owner=owner, lease_until=utc(until), last_timestamp=bindparam("k_ts"))
        )
        self.conn.execute(
            stmt,
            [
                {
                    "k_t": k.tenant_id,
                    "k_d": k.destination_id,
                    "k_a": k.activity_id,
                    "k_p": k.person_id,
                    "k_ts": utc(ts),
                }
                for k, ts in rows
            ],
        )

    def release(self, keys: Sequence[LedgerKey], owner: str) -> None:
        """Give up the leases `owner` holds on these rows (a lease taken over after expiry
        belongs to its new holder and is left alone)."""
        if not keys:
            return
        c = t.ledger.c
        stmt = (
            update(t.ledger)
            .where(
                c.tenant_id == bindparam("k_t"),
                c.destination_id == bindparam("k_d"),
                c.activity_id == bindparam("k_a"),
                c.person_id == bindparam("k_p"),
                c.lease_owner == owner,
            )
            .values(lease_owner=None, lease_until=None)
        )
        self.conn.execute(
            stmt,
            [dict(zip(("k_t", "k_d", "k_a", "k_p"), _key_tuple(k), strict=True)) for k in keys],
        )

    def clear_leases(self, owner: str | None = None) -> int:
        """Drop leases (all, or one holder's): used when the only worker restarts."""
        c = t.ledger.c
        q = update(t.ledger).where(c.lease_owner.is_not(None))
        if owner is not None:
            q = q.where(c.lease_owner == owner)
        return int(self.conn.execute(q.values(lease_owner=None, lease_until=None)).rowcount or 0)

    def due_summary(
        self,
        now: datetime,
        *,
        tenant_id: str | None = None,
        destination_id: str | None = None,
        course_id: str | None = None,
        activity_ids: Sequence[str] | None = None,
    ) -> tuple[int, int, datetime | None]:
        """(rows due now, rows leased by a worker, when the next retry falls due) in a scope."""
        c = t.ledger.c
        scope: list[Any] = []
        if tenant_id:
            scope.append(c.tenant_id == tenant_id)
        if destination_id:
            scope.append(c.destination_id == destination_id)
        if course_id:
            scope.append(c.course_id == course_id)
        if activity_ids:
            scope.append(c.activity_id.in_(list(activity_ids)))
        due_now = self.conn.execute(
            select(func.count())
            .select_from(t.ledger)
            .where(*scope, *self._due_conditions(now, None, None, None, None, ()))
        ).scalar()
        leased = self.conn.execute(
            select(func.count()).select_from(t.ledger).where(*scope, c.lease_until >= utc(now))
        ).scalar()
        next_retry = self.conn.execute(
            select(func.min(c.next_attempt_at)).where(
                *scope, c.state == DeliveryState.RETRYING.value
            )
        ).scalar()
        return int(due_now or 0), int(leased or 0), utc(next_retry)

    def scope_summary(
        self,
        tenant_id: str,
        *,
        destination_id: str | None = None,
        course_id: str | None = None,
        activity_ids: Sequence[str] | None = None,
        delivered_since: datetime | None = None,
    ) -> list[tuple[str, str | None, bool, int]]:
        """Counts of rows in a scope by (state, reason_code, delivered since `delivered_since`)."""
        c = t.ledger.c
        conds: list[Any] = [c.tenant_id == tenant_id]
        if destination_id:
            conds.append(c.destination_id == destination_id)
        if course_id:
            conds.append(c.course_id == course_id)
        if activity_ids:
            conds.append(c.activity_id.in_(list(activity_ids)))
        fresh: Any = (
            case((c.delivered_at >= utc(delivered_since), True), else_=False)
            if delivered_since is not None
            else literal(False)
        )
        rows = self.conn.execute(
            select(c.state, c.reason_code, fresh.label("fresh"), func.count())
            .where(*conds)
            .group_by(c.state, c.reason_code, fresh)
        )
        return [(r[0], r[1], bool(r[2]), int(r[3])) for r in rows]


class DirtyKeyRepo(_Repo):
    """Keys whose facts changed; recomputed by the engine, many changes collapsing into one."""

    def mark(
        self, tenant_id: str, course_id: str, activity_id: str, person_id: str, now: datetime
    ) -> None:
        upsert(
            self.conn,
            t.dirty_keys,
            {
                "tenant_id": tenant_id,
                "activity_id": activity_id,
                "person_id": person_id,
                "course_id": course_id,
                "marked_at": utc(now),
            },
            # a new mark refreshes the time, so clear(marked_before=...) keeps it dirty
            update=("marked_at", "course_id"),
        )

    def mark_many(self, rows: Sequence[tuple[str, str, str, str]], now: datetime) -> None:
        """rows: (tenant_id, course_id, activity_id, person_id)."""
        if rows:
            upsert(
                self.conn,
                t.dirty_keys,
                [
                    {
                        "tenant_id": a,
                        "course_id": b,
                        "activity_id": c,
                        "person_id": d,
                        "marked_at": utc(now),
                    }
                    for a, b, c, d in dict.fromkeys(rows)
                ],
                # a new mark refreshes the time, so clear(marked_before=...) keeps it dirty
                update=("marked_at", "course_id"),
            )

    def peek(self, limit: int) -> list[tuple[str, str, str, str, datetime]]:
        c = t.dirty_keys.c
        rows = self.conn.execute(
            select(c.tenant_id, c.course_id, c.activity_id, c.person_id, c.marked_at)
            .order_by(c.marked_at)
            .limit(limit)
        )
        return [(r[0], r[1], r[2], r[3], utc(r[4])) for r in rows]

    def clear(
        self, keys: Sequence[tuple[str, str, str]], *, marked_before: datetime | None = None
    ) -> None:
        """Remove (tenant, activity, person) keys; with marked_before, only marks not newer
        than it, so a key marked again while it was being computed stays dirty."""
        c = t.dirty_keys.c
        for tenant_id, activity_id, person_id in keys:
            conds = [
                c.tenant_id == tenant_id,
                c.activity_id == activity_id,
                c.person_id == person_id,
            ]
            if marked_before is not None:
                conds.append(c.marked_at <= utc(marked_before))
            self.conn.execute(delete(t.dirty_keys).where(*conds))

    def count(self) -> int:
        return int(self.conn.execute(select(func.count()).select_from(t.dirty_keys)).scalar() or 0)

    # PostgreSQL advisory lock key of "computing desired state" (any stable 64-bit number).
    COMPUTE_LOCK = 0x67726164_65737963

    def lock_compute(self) -> None:
        """Serialise computing desired state across processes until the transaction ends, so
        a slower computation from older facts can never overwrite a newer one. SQLite's
        write transaction already does this."""
        if self.conn.dialect.name == "postgresql":
            self.conn.execute(select(func.pg_advisory_xact_lock(self.COMPUTE_LOCK)))

    def claim(self, limit: int) -> list[tuple[str, str, str, str]]:
        """Take (and delete) up to `limit` dirty keys, oldest mark first, under the compute
        lock: (tenant_id, course_id, activity_id, person_id). The deletion commits with the
        recomputed ledger rows, so a crash before the commit leaves the keys dirty, and a key
        marked again meanwhile is marked anew (the fact's transaction waits for this one)."""
        self.lock_compute()
        c = t.dirty_keys.c
        pk = tuple_(c.tenant_id, c.activity_id, c.person_id)
        oldest = select(c.tenant_id, c.activity_id, c.person_id).order_by(c.marked_at).limit(limit)
        rows = self.conn.execute(
            delete(t.dirty_keys)
            .where(pk.in_(oldest))
            .returning(c.tenant_id, c.course_id, c.activity_id, c.person_id)
        ).all()
        return [(r[0], r[1], r[2], r[3]) for r in rows]


class DeliveryLogRepo(_Repo):
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
    ) -> None:
        self.conn.execute(
            insert(t.deliveries).values(
                tenant_id=key.tenant_id,
                destination_id=key.destination_id,
                activity_id=key.activity_id,
                person_id=key.person_id,
                run_id=run_id,
                sent_at=utc(sent_at),
                sent_hash=sent_hash,
                payload=json.loads(json.dumps(payload, default=str))
                if payload is not None
                else None,
                outcome=outcome,
                remote_status=remote_status,
                remote_message=remote_message,
                latency_ms=latency_ms,
            )
        )

    def for_key(self, key: LedgerKey, limit: int = 20) -> list[dict[str, Any]]:
        c = t.deliveries.c
        rows = self.conn.execute(
            select(t.deliveries)
            .where(
                c.tenant_id == key.tenant_id,
                c.destination_id == key.destination_id,
                c.activity_id == key.activity_id,
                c.person_id == key.person_id,
            )
            .order_by(c.id.desc())
            .limit(limit)
        ).mappings()
        return [dict(r) | {"sent_at": utc(r["sent_at"])} for r in rows]

    def since(self, tenant_id: str, since: datetime) -> list[dict[str, Any]]:
        c = t.deliveries.c
        rows = self.conn.execute(
            select(c.destination_id, c.sent_at, c.outcome, c.latency_ms)
            .where(c.tenant_id == tenant_id, c.sent_at >= utc(since))
            .order_by(c.sent_at)
        ).mappings()
        return [dict(r) | {"sent_at": utc(r["sent_at"])} for r in rows]

    def add_many(self, entries: Sequence[dict[str, Any]]) -> None:
        """Log many sends at once; each entry has the keyword arguments of `add`."""
        if not entries:
            return
        self.conn.execute(
            insert(t.deliveries),
            [
                {
                    "tenant_id": e["key"].tenant_id,
                    "destination_id": e["key"].destination_id,
                    "activity_id": e["key"].activity_id,
                    "person_id": e["key"].person_id,
                    "run_id": e.get("run_id"),
                    "sent_at": utc(e["sent_at"]),
                    "sent_hash": e.get("sent_hash"),
                    "payload": json.loads(json.dumps(e["payload"], default=str))
                    if e.get("payload") is not None
                    else None,
                    "outcome": e["outcome"],
                    "remote_status": e.get("remote_status"),
                    "remote_message": e.get("remote_message"),
                    "latency_ms": e.get("latency_ms"),
                }
                for e in entries
            ],
        )


def _run(r: Any) -> SyncRun:
    scope = RunScope(
        r["tenant_id"], r["destination_id"], r["course_id"], tuple(r["activity_ids"] or ())
    )
    return from_row(SyncRun, r, scope=scope)


class RunRepo(_Repo):
    def add(self, run: SyncRun, *, schedule_id: str | None = None) -> None:
        row = to_row(run, exclude=("scope",))
        row.update(
            tenant_id=run.scope.tenant_id,
            scope_key=run.scope.key,
            destination_id=run.scope.destination_id,
            course_id=run.scope.course_id,
            activity_ids=list(run.scope.activity_ids),
            schedule_id=schedule_id,
            stages=[
                {
                    "stage": run.stage.value,
                    "at": utc(run.created_at).isoformat() if run.created_at else None,
                }
            ],
        )
        self.conn.execute(insert(t.sync_runs).values(row))

    def get(self, run_id: str, tenant_id: str | None = None) -> SyncRun | None:
        q = select(t.sync_runs).where(t.sync_runs.c.id == run_id)
        if tenant_id is not None:
            q = q.where(t.sync_runs.c.tenant_id == tenant_id)
        row = self.conn.execute(q).mappings().first()
        return _run(row) if row else None

    def stages(self, run_id: str) -> list[dict[str, Any]]:
        v = self.conn.execute(
            select(t.sync_runs.c.stages).where(t.sync_runs.c.id == run_id)
        ).scalar()
        return list(v or [])

    def update(
        self, run: SyncRun, *, worker_id: str | None = None, heartbeat_at: datetime | None = None
    ) -> None:
        """Write a run's progress; a new stage is appended to its stage history."""
        c = t.sync_runs.c
        stages = self.stages(run.id)
        if not stages or stages[-1]["stage"] != run.stage.value:
            now = heartbeat_at or run.finished_at or run.started_at
            stages.append({"stage": run.stage.value, "at": utc(now).isoformat() if now else None})
        values: dict[str, Any] = dict(
            stage=run.stage.value,
            outcome=run.outcome.value if run.outcome else None,
            counts=run.counts,
            message=run.message,
            started_at=utc(run.started_at),
            finished_at=utc(run.finished_at),
            stages=stages,
        )
        if worker_id is not None:
            values["worker_id"] = worker_id
        if heartbeat_at is not None:
            values["heartbeat_at"] = utc(heartbeat_at)
        self.conn.execute(update(t.sync_runs).where(c.id == run.id).values(**values))

    def active_for_scope(self, scope_key: str) -> list[SyncRun]:
        c = t.sync_runs.c
        rows = self.conn.execute(
            select(t.sync_runs)
            .where(c.scope_key == scope_key, c.stage != RunStage.FINISHED.value)
            .order_by(c.created_at)
        ).mappings()
        return [_run(r) for r in rows]

    def unfinished(self) -> list[tuple[SyncRun, datetime | None]]:
        """Runs not finished, with their last heartbeat (to find ones a dead worker left)."""
        c = t.sync_runs.c
        rows = self.conn.execute(
            select(t.sync_runs).where(c.stage != RunStage.FINISHED.value).order_by(c.created_at)
        ).mappings()
        return [(_run(r), utc(r["heartbeat_at"])) for r in rows]

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
    ) -> list[SyncRun]:
        c = t.sync_runs.c
        conds = [c.tenant_id == tenant_id]
        if course_id:
            conds.append(c.course_id == course_id)
        if destination_id:
            conds.append(c.destination_id == destination_id)
        if since:
            conds.append(c.created_at >= utc(since))
        if until:
            conds.append(c.created_at < utc(until))
        if trigger:
            conds.append(c.trigger == trigger)
        rows = self.conn.execute(
            select(t.sync_runs).where(*conds).order_by(c.created_at.desc()).limit(limit)
        ).mappings()
        return [_run(r) for r in rows]

    # --- the sync engine: one run per scope, claims, dead workers ------------------------

    RUNNING = (
        RunStage.COMPUTING.value,
        RunStage.PROVISIONING.value,
        RunStage.SENDING.value,
        RunStage.VERIFYING.value,
    )

    def _advisory(self, key: str) -> None:
        if self.conn.dialect.name == "postgresql":
            self.conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))

    def lock_scope(self, scope_key: str) -> None:
        """Serialise run requests for one scope until the transaction ends (PostgreSQL;
        SQLite's write transaction already does)."""
        self._advisory("gradesync-run-scope:" + scope_key)

    def set_trigger(self, run_id: str, trigger: str) -> None:
        self.conn.execute(
            update(t.sync_runs).where(t.sync_runs.c.id == run_id).values(trigger=trigger)
        )

    def claim_next(
        self, worker_id: str, now: datetime, stale_before: datetime, *, run_id: str | None = None
    ) -> SyncRun | None:
        """Start the oldest queued run (or `run_id`) whose scope has no live run: stage
        computing, owned by `worker_id`. None when there is nothing to start."""
        self._advisory("gradesync-run-claim")
        c = t.sync_runs.c
        q = select(t.sync_runs).where(c.stage == RunStage.QUEUED.value)
        if run_id is not None:
            q = q.where(c.id == run_id)
        candidates = self.conn.execute(q.order_by(c.created_at).limit(50)).mappings().all()
        if not candidates:
            return None
        busy = {
            r[0]
            for r in self.conn.execute(
                select(c.scope_key).where(
                    c.stage.in_(self.RUNNING),
                    c.heartbeat_at >= utc(stale_before),
                    c.scope_key.in_({r["scope_key"] for r in candidates}),
                )
            )
        }
        for r in candidates:
            if r["scope_key"] in busy:
                continue
            res = self.conn.execute(
                update(t.sync_runs)
                .where(c.id == r["id"], c.stage == RunStage.QUEUED.value)
                .values(
                    stage=RunStage.COMPUTING.value,
                    worker_id=worker_id,
                    heartbeat_at=utc(now),
                    started_at=utc(now),
                    stages=[
                        *(r["stages"] or []),
                        {"stage": RunStage.COMPUTING.value, "at": utc(now).isoformat()},
                    ],
                )
            )
            if res.rowcount == 1:
                return self.get(r["id"])
        return None

    def heartbeat(self, run_id: str, worker_id: str, now: datetime) -> bool:
        """Prove the run's worker is alive; False when the run was taken from it."""
        c = t.sync_runs.c
        res = self.conn.execute(
            update(t.sync_runs)
            .where(c.id == run_id, c.worker_id == worker_id, c.stage.in_(self.RUNNING))
            .values(heartbeat_at=utc(now))
        )
        return res.rowcount == 1

    def requeue_stale(
        self, stale_before: datetime, now: datetime, *, keep_worker: str | None = None
    ) -> list[str]:
        """Runs whose worker stopped proving it is alive go back to the queue, to be run again
        from the start (a run is idempotent: it sends what still differs). `keep_worker`:
        the caller's own runs, which it knows are alive, are left alone."""
        c = t.sync_runs.c
        conds: list[Any] = [
            c.stage.in_(self.RUNNING),
            c.heartbeat_at.is_(None) | (c.heartbeat_at < utc(stale_before)),
        ]
        if keep_worker is not None:
            conds.append(c.worker_id.is_(None) | (c.worker_id != keep_worker))
        rows = self.conn.execute(select(c.id, c.stages).where(*conds)).mappings().all()
        for r in rows:
            self.conn.execute(
                update(t.sync_runs)
                .where(c.id == r["id"])
                .values(
                    stage=RunStage.QUEUED.value,
                    worker_id=None,
                    stages=[
                        *(r["stages"] or []),
                        {"stage": RunStage.QUEUED.value, "at": utc(now).isoformat()},
                    ],
                    message="requeued: the worker running it stopped",
                )
            )
        return [r["id"] for r in rows]


def _schedule(r: Any) -> Schedule:
    scope = RunScope(
        r["tenant_id"], r["destination_id"], r["course_id"], tuple(r["activity_ids"] or ())
    )
    return from_row(Schedule, r, scope=scope)


class ScheduleRepo(_Repo):
    def save(self, s: Schedule) -> None:
        row = to_row(s, exclude=("scope",))
        row.update(
            destination_id=s.scope.destination_id,
            course_id=s.scope.course_id,
            activity_ids=list(s.scope.activity_ids),
        )
        upsert(self.conn, t.schedules, row)

    def get(self, schedule_id: str, tenant_id: str | None = None) -> Schedule | None:
        q = select(t.schedules).where(t.schedules.c.id == schedule_id)
        if tenant_id is not None:
            q = q.where(t.schedules.c.tenant_id == tenant_id)
        row = self.conn.execute(q).mappings().first()
        return _schedule(row) if row else None

    def all(self, tenant_id: str | None = None) -> list[Schedule]:
        q = select(t.schedules).order_by(t.schedules.c.created_at)
        if tenant_id is not None:
            q = q.where(t.schedules.c.tenant_id == tenant_id)
        return [_schedule(r) for r in self.conn.execute(q).mappings()]

    def due(self, now: datetime) -> list[Schedule]:
        c = t.schedules.c
        rows = self.conn.execute(
            select(t.schedules).where(c.paused_at.is_(None), c.next_run_at <= utc(now))
        ).mappings()
        return [_schedule(r) for r in rows]

    def delete(self, schedule_id: str, tenant_id: str) -> bool:
        c = t.schedules.c
        return bool(
            self.conn.execute(
                delete(t.schedules).where(c.id == schedule_id, c.tenant_id == tenant_id)
            ).rowcount
        )

    def advance(
        self,
        schedule_id: str,
        *,
        expected_next_run_at: datetime,
        next_run_at: datetime,
        last_run_at: datetime | None,
    ) -> bool:
        """Compare-and-set: move an unpaused schedule off the slot it was read at. False when
        another scheduler fired that slot first, or the schedule was paused or edited."""
        c = t.schedules.c
        res = self.conn.execute(
            update(t.schedules)
            .where(
                c.id == schedule_id,
                c.paused_at.is_(None),
                c.next_run_at == utc(expected_next_run_at),
            )
            .values(next_run_at=utc(next_run_at), last_run_at=utc(last_run_at))
        )
        return res.rowcount == 1

    def set_paused(
        self,
        schedule_id: str,
        tenant_id: str,
        *,
        paused_at: datetime | None,
        next_run_at: datetime | None,
    ) -> bool:
        c = t.schedules.c
        res = self.conn.execute(
            update(t.schedules)
            .where(c.id == schedule_id, c.tenant_id == tenant_id)
            .values(paused_at=utc(paused_at), next_run_at=utc(next_run_at))
        )
        return res.rowcount == 1

    def next_due_at(self) -> datetime | None:
        """When the soonest unpaused schedule is due (any tenant): the scheduler sleeps until."""
        c = t.schedules.c
        return utc(
            self.conn.execute(select(func.min(c.next_run_at)).where(c.paused_at.is_(None))).scalar()
        )

    def add_event(self, e: ScheduleEvent) -> None:
        row = to_row(e, exclude=("id",))
        self.conn.execute(insert(t.schedule_events).values(row))

    def events(
        self,
        tenant_id: str,
        *,
        schedule_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        actions: Sequence[ScheduleAction] = (),
        limit: int = 50,
    ) -> list[ScheduleEvent]:
        """A tenant's schedule log, newest first; `until` is exclusive."""
        c = t.schedule_events.c
        conds = [c.tenant_id == tenant_id]
        if schedule_id is not None:
            conds.append(c.schedule_id == schedule_id)
        if since is not None:
            conds.append(c.at >= utc(since))
        if until is not None:
            conds.append(c.at < utc(until))
        if actions:
            conds.append(c.action.in_([a.value for a in actions]))
        rows = self.conn.execute(
            select(t.schedule_events).where(*conds).order_by(c.at.desc(), c.id.desc()).limit(limit)
        ).mappings()
        return [from_row(ScheduleEvent, r) for r in rows]


class UserRepo(_Repo):
    def get(self, tenant_id: str, username: str) -> ConsoleUser | None:
        c = t.users.c
        row = (
            self.conn.execute(
                select(t.users).where(c.tenant_id == tenant_id, c.username == username)
            )
            .mappings()
            .first()
        )
        return from_row(ConsoleUser, row) if row else None

    def find_by_username(self, username: str) -> list[ConsoleUser]:
        rows = self.conn.execute(select(t.users).where(t.users.c.username == username)).mappings()
        return [from_row(ConsoleUser, r) for r in rows]

    def save(self, user: ConsoleUser, now: datetime) -> None:
        row = to_row(user)
        row["created_at"] = utc(user.created_at or now)
        upsert(
            self.conn, t.users, row, update=("display_name", "password_hash", "role", "course_ids")
        )

    def all(self, tenant_id: str) -> list[ConsoleUser]:
        c = t.users.c
        rows = self.conn.execute(
            select(t.users).where(c.tenant_id == tenant_id).order_by(c.username)
        ).mappings()
        return [from_row(ConsoleUser, r) for r in rows]
