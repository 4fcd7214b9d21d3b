"""The facts gradesync reconciles from: tenants, courses, activities, people, enrollments,
due-date overrides and attempts."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any, TypeVar, cast

from sqlalchemy import (
    Connection,
    Select,
    Table,
    and_,
    bindparam,
    func,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.mapping import (
    bulk_insert,
    conflict_set,
    from_row,
    insert_new,
    rows_of_arrays,
    to_row,
    unnest_params,
    unnested,
    upsert,
    utc,
    was_inserted,
)
from gradesync.adapters.db.repos.base import SqlRepo
from gradesync.adapters.db.repos.dirty import DirtyKeyRepo, remarked
from gradesync.domain.model import (
    Activity,
    Attempt,
    Course,
    DueDateOverride,
    Enrollment,
    Person,
    Tenant,
)
from gradesync.services import ports

_Fact = TypeVar("_Fact")


def _by_ids(
    conn: Connection, table: Table, model: type[_Fact], tenant_id: str, ids: Iterable[str]
) -> dict[str, _Fact]:
    """A tenant's rows of `table` with these ids, by id, in one statement (none for none)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    if conn.dialect.name == "postgresql":
        rows = conn.execute(_by_id_array(table), {"tenant": tenant_id, "ids": wanted})
    else:
        rows = conn.execute(
            select(table).where(table.c.tenant_id == tenant_id, table.c.id.in_(wanted))
        )
    return {r["id"]: from_row(model, r) for r in rows.mappings()}


@cache
def _by_id_array(table: Table) -> Select[Any]:
    """PostgreSQL: `_by_ids`'s read, the ids as one array (`_probe`)."""
    return _probe(table, "id")


def _lock(conn: Connection, table: Table, tenant_id: str, ids: Iterable[str]) -> None:
    """PostgreSQL: a tenant's rows of `table` with these ids (those stored) held to the
    transaction's end, taken in id order; FOR NO KEY UPDATE, as an update of them takes,
    which other transactions' foreign-key checks do not wait for. SQLite: nothing to do (a
    write transaction holds the whole database)."""
    wanted = sorted(set(ids))
    if wanted and conn.dialect.name == "postgresql":
        conn.execute(_lock_array(table), {"tenant": tenant_id, "ids": wanted})


@cache
def _lock_array(table: Table) -> Select[Any]:
    """`_lock`'s statement: `_probe`'s, each row found locked as it is found, in the order
    of the ids given (sorted)."""
    return _probe(table, "id", lock=True)


@cache
def _by_pair_array(table: Table, first: str) -> Select[Any]:
    """PostgreSQL: a tenant's rows of `table` whose (`first`, person_id) is one of the pairs
    given as two arrays, `firsts` and `persons` (`_probe`)."""
    return _probe(table, first, "person_id")


def _probe(table: Table, *key: str, lock: bool = False) -> Select[Any]:
    """PostgreSQL: the rows of `table` of tenant `tenant` whose `key` columns equal one row
    of the arrays `ids` (one key column) or `firsts` and `persons` (two), found by one probe
    of the table's key per row wanted, whatever the table's size or statistics.

    psycopg prepares a statement it runs often, and the generic plan made while a tenant had
    few rows stays: for `id IN ($2, ..., $501)` it read every row of the tenant and compared
    each with every id (a roster batch's read of 500 people took 75 ms at 10,000 people and
    grew with them); for the arrays joined to the table, it compared every row with every
    pair. The lookup below is a subquery with an OFFSET, which PostgreSQL plans on its own
    (never merged into a join): an index lookup on the key for each row wanted."""
    names = ("ids",) if len(key) == 1 else ("firsts", "persons")
    wanted = rows_of_arrays(
        "wanted", *((k, n, table.c[k].type) for k, n in zip(key, names, strict=True))
    )
    found = (
        select(table)
        .where(table.c.tenant_id == bindparam("tenant"), *(table.c[k] == wanted.c[k] for k in key))
        .offset(0)
    )
    if lock:  # `lock`: each row found is locked FOR NO KEY UPDATE as it is found
        found = found.with_for_update(key_share=True)
    lateral = found.lateral("found")
    return select(lateral).select_from(wanted).join(lateral, true())


def _pair_params(tenant_id: str, wanted: Iterable[tuple[str, str]]) -> dict[str, Any]:
    pairs = sorted(wanted)
    return {
        "tenant": tenant_id,
        "firsts": [a for a, _ in pairs],
        "persons": [p for _, p in pairs],
    }


def _set(
    table: Table, fields: Collection[str] | None, *, fixed: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """The columns an upsert sets on a row stored already: those of `fields` (None: every
    one) but its key and the `fixed` ones, in the table's order (one statement is built per
    set)."""
    return tuple(
        c.name
        for c in table.columns
        if not c.primary_key and c.name not in fixed and (fields is None or c.name in fields)
    )


def _upsert_found(
    conn: Connection,
    table: Table,
    rows: list[dict[str, Any]],
    update: tuple[str, ...],
    absent: Collection[str],
    *,
    same: str | None = None,
    fill: bool = False,
) -> dict[str, bool]:
    """`rows` (keyed by tenant_id and id) upserted in one statement, `update` set on a row
    stored already (where its `same` column equals the row's; `bulk_insert`; only where
    blank with `fill`: `conflict_set`), and of the
    ids `absent` (read as not stored by this transaction) those the write found stored,
    made meanwhile by another transaction: True where it wrote over the row, False where it
    left it as stored (nothing to set, or its `same` column differs). The statement tells
    it itself, returning the ids it wrote and, on PostgreSQL, whether it inserted each. On
    SQLite a write transaction holds the whole database from its first statement, so a row
    it read absent and wrote was inserted (and with no `same` column, nothing is returned)."""
    if not rows:
        return {}
    wanted = set(absent) & {r["id"] for r in rows}
    postgres = conn.dialect.name == "postgresql"
    if not wanted or (same is None and not postgres):  # nothing it could find
        upsert(conn, table, rows, update=update, fill=fill, same=same)
        return {}
    if same is not None and not update:
        # nothing to set: `same` set to itself where it matches, so such a row is returned
        # (DO NOTHING would return none, and one in the same course would read as left)
        update = (same,)
    keys = [c.name for c in table.primary_key.columns]
    stmt, params = bulk_insert(
        conn,
        table,
        rows,
        conflict=keys,
        update=update,
        returning=("id",),
        fill=fill,
        same=same,
        inserted=postgres,
    )
    inserted = {r.id: r.inserted if postgres else True for r in conn.execute(stmt, params)}
    return {i: i in inserted for i in wanted if not inserted.get(i, False)}


_KEY_NAMES = ("tenant_id", "course_id", "activity_id", "person_id")


def _marks(keys: Any, now: Any, *, unique: bool = False) -> Any:
    """PostgreSQL: the dirty keys `keys` (a subquery of `_KEY_NAMES`) marked as
    `DirtyKeyRepo.mark_many` marks them: the time refreshed, for every destination,
    `waiting_since` kept from the first mark; a key listed twice is marked once (`unique`:
    `keys` lists none twice, and no sort is needed to find them)."""
    d = t.dirty_keys
    rows = select(*(keys.c[n] for n in _KEY_NAMES), now, now, now, null())
    if not unique:
        rows = rows.ext(
            postgresql.distinct_on(keys.c.tenant_id, keys.c.activity_id, keys.c.person_id)
        )
    marks = postgresql.insert(d).from_select(
        [*_KEY_NAMES, "marked_at", "waiting_since", "queued_at", "destination_id"], rows
    )
    return marks.on_conflict_do_update(
        index_elements=[c.name for c in d.primary_key.columns],
        set_={n: marks.excluded[n] for n in remarked(None)},
    )


_PERSON_COLUMNS = tuple(c.name for c in t.people.columns)


@cache
def _enroll_and_mark(people_set: tuple[str, ...], fill: bool) -> Any:
    """PostgreSQL: the people (arrays `p_*`; a person stored already gets the columns
    `people_set`, only where blank with `fill`: `conflict_set`) and the enrollments (one
    array per column) upserted and, in the same statement, the key of each enrollment
    written for every activity of its course marked dirty with the keys `also_*`; returns
    how many keys were marked and the ids of the people it updated (with no column to set,
    those it inserted: it leaves the others). Built once per (`people_set`, `fill`). (A new
    person's enrollment is checked against it at the statement's end, when the people are
    written.)"""
    e, a, d, pe = t.enrollments, t.activities, t.dirty_keys, t.people
    sent = rows_of_arrays("sent", *((n, f"p_{n}", pe.c[n].type) for n in _PERSON_COLUMNS))
    persons = postgresql.insert(pe).from_select(
        _PERSON_COLUMNS, select(*(sent.c[n] for n in _PERSON_COLUMNS))
    )
    person_key = [c.name for c in pe.primary_key.columns]
    persons = (
        persons.on_conflict_do_update(
            index_elements=person_key, set_=conflict_set(pe, persons.excluded, people_set, fill)
        )
        if people_set
        else persons.on_conflict_do_nothing(index_elements=person_key)
    )
    names = tuple(c.name for c in e.columns)
    enrolled = postgresql.insert(e).from_select(names, unnested(e, names))
    enrolled = enrolled.on_conflict_do_update(
        index_elements=[c.name for c in e.primary_key.columns],
        set_={n: enrolled.excluded[n] for n in names if not e.c[n].primary_key},
    )
    written = enrolled.returning(e.c.tenant_id, e.c.course_id, e.c.person_id).cte("enrolled")
    # each enrollment's keys, each once: an enrollment is one (course, person) and an
    # activity belongs to one course
    own = (
        select(
            written.c.tenant_id,
            written.c.course_id,
            a.c.id.label("activity_id"),
            written.c.person_id,
        )
        .join_from(
            written,
            a,
            and_(a.c.tenant_id == written.c.tenant_id, a.c.course_id == written.c.course_id),
        )
        .cte("own")
    )
    # and the other keys (each once already) that are not among them
    also = rows_of_arrays("also", *((n, f"also_{n}", d.c[n].type) for n in _KEY_NAMES))
    same = and_(*(own.c[n] == also.c[n] for n in ("tenant_id", "activity_id", "person_id")))
    keys = union_all(
        select(*(own.c[n] for n in _KEY_NAMES)),
        select(*(also.c[n] for n in _KEY_NAMES)).where(
            ~select(own.c.person_id).where(same).exists()
        ),
    ).subquery("keys")
    now = bindparam("now", type_=d.c.marked_at.type)
    marked = _marks(keys, now, unique=True).returning(d.c.person_id).cte("marked")
    written = persons.returning(pe.c.id, was_inserted(pe)).cte("persons")
    told = select(func.array_agg(written.c.id))
    return select(
        select(func.count()).select_from(marked).scalar_subquery(),
        (told.where(~written.c.inserted) if people_set else told).scalar_subquery(),
    )


class TenantRepo(SqlRepo, ports.TenantRepo):
    def get(self, tenant_id: str, *, for_update: bool = False) -> Tenant | None:
        q = select(t.tenants).where(t.tenants.c.id == tenant_id)
        # SQLite has no row locks: its transactions already hold the write lock (BEGIN IMMEDIATE)
        row = self.conn.execute(q.with_for_update() if for_update else q).mappings().first()
        return from_row(Tenant, row) if row else None

    def upsert(self, tenant: Tenant, now: datetime) -> None:
        row = to_row(tenant)
        row["created_at"] = utc(tenant.created_at or now)
        upsert(self.conn, t.tenants, row, update=("name", "policy"))

    def add(self, tenant: Tenant, now: datetime) -> bool:
        row = to_row(tenant)
        row["created_at"] = utc(tenant.created_at or now)
        return insert_new(self.conn, t.tenants, row)

    def all(self) -> list[Tenant]:
        rows = self.conn.execute(select(t.tenants).order_by(t.tenants.c.id)).mappings()
        return [from_row(Tenant, r) for r in rows]


class CourseRepo(SqlRepo, ports.CourseRepo):
    def get(self, tenant_id: str, course_id: str, *, for_update: bool = False) -> Course | None:
        c = t.courses.c
        q = select(t.courses).where(c.tenant_id == tenant_id, c.id == course_id)
        # SQLite has no row locks: its transactions already hold the write lock (BEGIN IMMEDIATE)
        row = self.conn.execute(q.with_for_update() if for_update else q).mappings().first()
        return from_row(Course, row) if row else None

    def get_many(self, tenant_id: str, course_ids: Iterable[str]) -> dict[str, Course]:
        return _by_ids(self.conn, t.courses, Course, tenant_id, course_ids)

    def lock(self, tenant_id: str, ids: Iterable[str]) -> None:
        _lock(self.conn, t.courses, tenant_id, ids)

    def upsert(self, course: Course) -> None:
        upsert(self.conn, t.courses, to_row(course))

    def upsert_many(
        self,
        courses: Sequence[Course],
        *,
        fields: Collection[str] | None = None,
        absent: Collection[str] = (),
    ) -> dict[str, bool]:
        rows = [to_row(x) for x in courses]
        return _upsert_found(self.conn, t.courses, rows, _set(t.courses, fields), absent)

    def all(self, tenant_id: str) -> list[Course]:
        c = t.courses.c
        rows = self.conn.execute(
            select(t.courses).where(c.tenant_id == tenant_id).order_by(c.id)
        ).mappings()
        return [from_row(Course, r) for r in rows]


class ActivityRepo(SqlRepo, ports.ActivityRepo):
    def get(self, tenant_id: str, activity_id: str, *, for_update: bool = False) -> Activity | None:
        c = t.activities.c
        q = select(t.activities).where(c.tenant_id == tenant_id, c.id == activity_id)
        row = self.conn.execute(q.with_for_update() if for_update else q).mappings().first()
        return from_row(Activity, row) if row else None

    def get_many(self, tenant_id: str, activity_ids: Iterable[str]) -> dict[str, Activity]:
        return _by_ids(self.conn, t.activities, Activity, tenant_id, activity_ids)

    def lock(self, tenant_id: str, ids: Iterable[str]) -> None:
        _lock(self.conn, t.activities, tenant_id, ids)

    def upsert(self, activity: Activity) -> None:
        upsert(self.conn, t.activities, to_row(activity))

    def upsert_many(
        self,
        activities: Sequence[Activity],
        *,
        fields: Collection[str] | None = None,
        absent: Collection[str] = (),
    ) -> dict[str, bool]:
        # an activity never moves to another course (ingest refuses it): one made meanwhile
        # by another batch, in another course, is left as it is there, not written over
        return _upsert_found(
            self.conn,
            t.activities,
            [to_row(x) for x in activities],
            _set(t.activities, fields, fixed=("course_id",)),
            absent,
            same="course_id",
        )

    def for_course(self, tenant_id: str, course_id: str) -> list[Activity]:
        c = t.activities.c
        rows = self.conn.execute(
            select(t.activities)
            .where(c.tenant_id == tenant_id, c.course_id == course_id)
            .order_by(c.due_at, c.id)
        ).mappings()
        return [from_row(Activity, r) for r in rows]


class PersonRepo(SqlRepo, ports.PersonRepo):
    def get(self, tenant_id: str, person_id: str) -> Person | None:
        c = t.people.c
        row = (
            self.conn.execute(select(t.people).where(c.tenant_id == tenant_id, c.id == person_id))
            .mappings()
            .first()
        )
        return from_row(Person, row) if row else None

    def get_many(self, tenant_id: str, person_ids: Iterable[str]) -> dict[str, Person]:
        return _by_ids(self.conn, t.people, Person, tenant_id, person_ids)

    def lock(self, tenant_id: str, ids: Iterable[str]) -> None:
        _lock(self.conn, t.people, tenant_id, ids)

    def upsert(self, person: Person) -> None:
        upsert(self.conn, t.people, to_row(person))

    def upsert_many(
        self,
        people: Sequence[Person],
        *,
        fields: Collection[str] | None = None,
        fill_blanks: bool = False,
        absent: Collection[str] = (),
    ) -> dict[str, bool]:
        rows = [to_row(x) for x in people]
        return _upsert_found(
            self.conn, t.people, rows, _set(t.people, fields), absent, fill=fill_blanks
        )

    def find(
        self,
        tenant_id: str,
        *,
        email: str | None = None,
        name: str | None = None,
        sis_id: str | None = None,
    ) -> list[Person]:
        c = t.people.c
        conds = [c.tenant_id == tenant_id]
        if sis_id:
            conds.append(c.sis_id == sis_id)
        if email:  # `email IS NOT NULL`: SQLite uses the (partial) email index only with it
            conds += [c.email.is_not(None), func.lower(c.email) == email.lower()]
        if name:
            conds.append(func.lower(c.name) == name.lower())
        rows = self.conn.execute(select(t.people).where(*conds).order_by(c.id)).mappings()
        return [from_row(Person, r) for r in rows]

    def find_many(
        self, tenant_id: str, *, emails: Iterable[str] = (), names: Iterable[str] = ()
    ) -> tuple[dict[str, list[Person]], dict[str, list[Person]]]:
        c = t.people.c
        wanted_emails = {e.lower() for e in emails if e}
        wanted_names = {n.lower() for n in names if n}
        either = []
        if wanted_emails:  # `email IS NOT NULL` as in `find`, for SQLite's partial index
            either.append(and_(c.email.is_not(None), func.lower(c.email).in_(wanted_emails)))
        if wanted_names:
            either.append(func.lower(c.name).in_(wanted_names))
        by_email: dict[str, list[Person]] = {}
        by_name: dict[str, list[Person]] = {}
        if not either:  # no round trip for nothing
            return by_email, by_name
        # grouped by the database's own lower() of each, which `find` compares too
        rows = self.conn.execute(
            select(
                t.people,
                func.lower(c.email).label("low_email"),
                func.lower(c.name).label("low_name"),
            )
            .where(c.tenant_id == tenant_id, or_(*either))
            .order_by(c.id)
        ).mappings()
        for r in rows:
            person = from_row(Person, r)
            if r["low_email"] in wanted_emails:
                by_email.setdefault(r["low_email"], []).append(person)
            if r["low_name"] in wanted_names:
                by_name.setdefault(r["low_name"], []).append(person)
        return by_email, by_name


class EnrollmentRepo(SqlRepo, ports.EnrollmentRepo):
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

    def upsert_many(self, enrollments: Sequence[Enrollment]) -> None:
        upsert(self.conn, t.enrollments, [to_row(x) for x in enrollments])

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
        if not self.postgres or not enrollments:  # in-process statements: as they are
            found = PersonRepo(self.conn).upsert_many(
                people, fields=people_fields, fill_blanks=people_fill_blanks, absent=people_absent
            )
            self.upsert_many(enrollments)
            activities: dict[tuple[str, str], list[str]] = {}  # by course, read once each
            keys = list(also)
            for e in enrollments:
                course = (e.tenant_id, e.course_id)
                if course not in activities:
                    activities[course] = [a.id for a in ActivityRepo(self.conn).for_course(*course)]
                keys += ((*course, aid, e.person_id) for aid in activities[course])
            unique = list(dict.fromkeys(keys))
            DirtyKeyRepo(self.conn).mark_many(unique, now)
            return len(unique), found
        # PostgreSQL: one statement. The enrollments go as one array per column and the
        # server lists their keys from the activities (a roster batch of 500 learners in a
        # course of 10 activities: 5,000 keys the client no longer builds and sends).
        params: dict[str, Any] = unnest_params(t.enrollments, [to_row(x) for x in enrollments])
        params["now"] = utc(now)
        others = list(dict.fromkeys(also))  # each once, as the statement takes them
        for i, n in enumerate(_KEY_NAMES):
            params[f"also_{n}"] = [k[i] for k in others]
        person_rows = [to_row(x) for x in people]
        for n in _PERSON_COLUMNS:
            params[f"p_{n}"] = [r[n] for r in person_rows]
        people_set = _set(t.people, people_fields)
        marking = _enroll_and_mark(people_set, people_fill_blanks)
        marked, told = self.conn.execute(marking, params).one()
        # of the people read absent, those found stored (as `_upsert_found` tells them)
        absent = set(people_absent) & {x.id for x in people}
        if people_set:
            return int(marked), {i: True for i in told or () if i in absent}
        return int(marked), {i: False for i in absent - set(told or ())}

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

    def for_pairs(
        self, tenant_id: str, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], Enrollment]:
        c = t.enrollments.c
        wanted = set(pairs)
        if not wanted:  # no round trip for nothing
            return {}
        if self.postgres:
            rows = self.conn.execute(
                _by_pair_array(t.enrollments, "course_id"), _pair_params(tenant_id, wanted)
            ).mappings()
        else:
            rows = self.conn.execute(
                select(t.enrollments).where(
                    c.tenant_id == tenant_id,
                    c.course_id.in_({course for course, _ in wanted}),
                    c.person_id.in_({p for _, p in wanted}),
                )
            ).mappings()
        out: dict[tuple[str, str], Enrollment] = {}
        for r in rows:
            k = (r["course_id"], r["person_id"])
            if k in wanted:
                out[k] = from_row(Enrollment, r)
        return out


class DueDateOverrideRepo(SqlRepo, ports.DueDateOverrideRepo):
    def upsert(self, override: DueDateOverride) -> None:
        upsert(self.conn, t.due_date_overrides, to_row(override))

    def upsert_many(self, overrides: Sequence[DueDateOverride]) -> None:
        upsert(self.conn, t.due_date_overrides, [to_row(x) for x in overrides])

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
        c = t.due_date_overrides.c
        wanted = set(pairs)
        if not wanted:  # no round trip for nothing
            return {}
        if self.postgres:
            rows = self.conn.execute(
                _by_pair_array(t.due_date_overrides, "activity_id"),
                _pair_params(tenant_id, wanted),
            ).mappings()
        else:
            rows = self.conn.execute(
                select(t.due_date_overrides).where(
                    c.tenant_id == tenant_id,
                    c.activity_id.in_({a for a, _ in wanted}),
                    c.person_id.in_({p for _, p in wanted}),
                )
            ).mappings()
        out: dict[tuple[str, str], datetime] = {}
        for a, p, due in ((r["activity_id"], r["person_id"], r["due_at"]) for r in rows):
            if (a, p) in wanted:
                out[(a, p)] = utc(due)
        return out


# Event ids per read: bound parameters well under SQLite's limit (32,766).
_IDS_PER_STATEMENT = 1000

# an attempt's columns sent as they are (the times go through `utc`; the id and the time
# recorded are the server's and the statement's)
_PLAIN = (
    "tenant_id",
    "source_event_id",
    "activity_id",
    "person_id",
    "score_given",
    "score_maximum",
    "completed",
    "comment",
    "late",
    "excused",
)
_SENT = (*_PLAIN, "completed_at", "started_at")


@cache
def _insert_and_mark() -> Any:
    """PostgreSQL: the attempts (one array per column) inserted unless their event id is
    stored, and in the same statement the key of each one inserted, with the keys `also_*`,
    marked dirty for every destination as `DirtyKeyRepo.mark_many` marks them (a key marked
    already: `dirty.remarked`); returns the new attempts' ids. Built once."""
    a, d = t.attempts, t.dirty_keys
    now = bindparam("now", type_=a.c.recorded_at.type)
    src = rows_of_arrays("rows", *((n, f"u_{n}", a.c[n].type) for n in _SENT))
    new = (
        postgresql.insert(a)
        .from_select([*_SENT, "recorded_at"], select(*(src.c[n] for n in _SENT), now))
        .on_conflict_do_nothing(index_elements=["tenant_id", "source_event_id"])
        .returning(a.c.id, a.c.tenant_id, a.c.source_event_id, a.c.activity_id, a.c.person_id)
        .cte("new")
    )
    courses = rows_of_arrays(
        "course_of",
        ("activity_id", "course_activity_ids", d.c.activity_id.type),
        ("course_id", "course_ids", d.c.course_id.type),
    )
    also = rows_of_arrays("also", *((n, f"also_{n}", d.c[n].type) for n in _KEY_NAMES))
    keys = union_all(
        select(new.c.tenant_id, courses.c.course_id, new.c.activity_id, new.c.person_id).join_from(
            new, courses, courses.c.activity_id == new.c.activity_id
        ),
        select(*(also.c[n] for n in _KEY_NAMES)),
    ).subquery("keys")
    marks = _marks(keys, now)
    return select(new.c.id, new.c.tenant_id, new.c.source_event_id).add_cte(marks.cte("marked"))


def _first_of_each(attempts: Sequence[Attempt]) -> dict[tuple[str, str], Attempt]:
    """A batch's attempts by (tenant, event id), the first of each: an event id twice in the
    batch is inserted once, as one attempt at a time would."""
    first: dict[tuple[str, str], Attempt] = {}
    for a in attempts:
        first.setdefault((a.tenant_id, a.source_event_id), a)
    return first


_Stored = TypeVar("_Stored")


def _in_batch_order(
    attempts: Sequence[Attempt],
    stored: Mapping[tuple[str, str], _Stored],
    new: Collection[tuple[str, str]],
) -> list[tuple[_Stored, bool]]:
    """Per attempt of the batch, in its order: what is stored for its event id, and whether
    this attempt added it (the first of an event id the insert added; not its repeats)."""
    out: list[tuple[_Stored, bool]] = []
    seen: set[tuple[str, str]] = set()
    for a in attempts:
        key = (a.tenant_id, a.source_event_id)
        out.append((stored[key], key in new and key not in seen))
        seen.add(key)
    return out


class AttemptRepo(SqlRepo, ports.AttemptRepo):
    def add(self, attempt: Attempt, now: datetime) -> tuple[Attempt, bool]:
        row = to_row(attempt, exclude=("id",))
        row["recorded_at"] = utc(now)
        ins = postgresql if self.postgres else sqlite
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

    def add_many(self, attempts: Sequence[Attempt], now: datetime) -> list[tuple[Attempt, bool]]:
        # One INSERT ... ON CONFLICT DO NOTHING RETURNING for the whole batch, then one read
        # of the event ids that were already stored: two round trips per batch instead of one
        # or two per attempt (on PostgreSQL each is a network round trip).
        first = _first_of_each(attempts)
        rows = []
        for a in first.values():
            row = to_row(a, exclude=("id",))
            row["recorded_at"] = utc(now)
            rows.append(row)
        new_ids: dict[tuple[str, str], int] = {}
        if rows:
            stmt, params = bulk_insert(
                self.conn,
                t.attempts,
                rows,
                conflict=["tenant_id", "source_event_id"],
                returning=("id", "tenant_id", "source_event_id"),
            )
            for r in self.conn.execute(stmt, params):
                new_ids[(r.tenant_id, r.source_event_id)] = r.id
        stored: dict[tuple[str, str], Attempt] = {}
        for row in rows:
            key = (row["tenant_id"], row["source_event_id"])
            if key in new_ids:
                stored[key] = from_row(Attempt, row, id=new_ids[key])
        stored |= self._stored_before(first, new_ids)
        return _in_batch_order(attempts, stored, new_ids)

    def add_many_marking(
        self,
        attempts: Sequence[Attempt],
        now: datetime,
        course_of: Mapping[str, str],
        also: Sequence[tuple[str, str, str, str]] = (),
    ) -> list[tuple[int, bool]]:
        if not self.postgres:  # in-process statements: the two writes as they are
            added = self.add_many(attempts, now)
            new_keys = [
                (a.tenant_id, course_of[a.activity_id], a.activity_id, a.person_id)
                for a, (_, new) in zip(attempts, added, strict=True)
                if new
            ]
            DirtyKeyRepo(self.conn).mark_many(list(dict.fromkeys([*also, *new_keys])), now)
            return [(cast(int, stored.id), new) for stored, new in added]
        # PostgreSQL: the insert and the marks in one statement, so the batch waits for the
        # server once, not twice. The rows go as arrays straight from the attempts (no row
        # dict and no domain object per attempt: a batch is a thousand of them).
        first = _first_of_each(attempts)
        rows = list(first.values())
        acts = sorted({a.activity_id for a in rows})
        params: dict[str, Any] = {f"u_{n}": [getattr(a, n) for a in rows] for n in _PLAIN}
        for n in ("completed_at", "started_at"):
            params[f"u_{n}"] = [utc(getattr(a, n)) for a in rows]
        params["now"] = utc(now)
        params["course_activity_ids"] = acts
        params["course_ids"] = [course_of[x] for x in acts]  # KeyError: a course unknown
        for i, n in enumerate(_KEY_NAMES):
            params[f"also_{n}"] = [k[i] for k in also]
        new_ids = {
            (r.tenant_id, r.source_event_id): r.id
            for r in self.conn.execute(_insert_and_mark(), params)
        }
        ids = dict(new_ids)
        for key, old in self._stored_before(first, new_ids).items():
            assert old.id is not None
            ids[key] = old.id
        return _in_batch_order(attempts, ids, new_ids)

    def _stored_before(
        self, first: Iterable[tuple[str, str]], new: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], Attempt]:
        """The attempts stored before for the batch's (tenant, event id)s the insert did not
        add: one read per tenant."""
        old_by_tenant: dict[str, list[str]] = {}
        for tenant_id, event_id in first:
            if (tenant_id, event_id) not in new:
                old_by_tenant.setdefault(tenant_id, []).append(event_id)
        return {
            (tenant_id, event_id): old
            for tenant_id, event_ids in old_by_tenant.items()
            for event_id, old in self.get_by_events(tenant_id, event_ids).items()
        }

    def refresh_statistics(self) -> None:
        # and the keys ingest marks: planned while few waited, a claim would sort them all
        self._analyze("attempts", "people", "dirty_keys")

    def get_by_events(self, tenant_id: str, source_event_ids: Iterable[str]) -> dict[str, Attempt]:
        c = t.attempts.c
        wanted = list(dict.fromkeys(source_event_ids))
        out: dict[str, Attempt] = {}
        if self.postgres:
            # The ids as one array joined to the table, not `IN ($2, ..., $1001)`: psycopg
            # prepares a statement it runs often, and the generic plan of the list took
            # 45 ms a batch of 1,000 at 20,000 attempts, growing with both.
            ids = rows_of_arrays("wanted", ("id", "ids", c.source_event_id.type))
            rows = self.conn.execute(
                select(t.attempts)
                .join(ids, c.source_event_id == ids.c.id)
                .where(c.tenant_id == tenant_id),
                {"ids": wanted},
            ).mappings()
            return {r["source_event_id"]: from_row(Attempt, r) for r in rows}
        for at in range(0, len(wanted), _IDS_PER_STATEMENT):
            rows = self.conn.execute(
                select(t.attempts).where(
                    c.tenant_id == tenant_id,
                    c.source_event_id.in_(wanted[at : at + _IDS_PER_STATEMENT]),
                )
            ).mappings()
            for r in rows:
                out[r["source_event_id"]] = from_row(Attempt, r)
        return out

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
        c = t.attempts.c
        wanted = set(pairs)
        out: dict[tuple[str, str], list[Attempt]] = {}
        if not wanted:  # no round trip for nothing
            return out
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
