"""Dirty keys: the keys whose facts changed, waiting to be recomputed into the ledger."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    bindparam,
    case,
    delete,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import ReturningDelete

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.mapping import upsert, utc
from gradesync.adapters.db.repos.base import SqlRepo
from gradesync.services import ports

_IDS_PER_STATEMENT = 1000  # bound parameters well under SQLite's limit


def _activity_lock(tenant_id: str, activity_id: str) -> int:
    """The PostgreSQL advisory lock key of computing one activity (a stable signed 64-bit
    number)."""
    digest = hashlib.blake2b(
        f"gradesync-compute\x1f{tenant_id}\x1f{activity_id}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


def remarked(destination_id: str | None) -> tuple[str, ...]:
    """What marking a key again writes over its stored mark (the rest of the new mark is
    dropped): the time, so take(marked_at=...) keeps it dirty, and its course; not
    `waiting_since`, since the key has waited since its first mark all the same, nor its
    place in the queue (`queued_at`), so PostgreSQL rewrites the row in its page without
    touching an index (no index holds these columns). A mark for
    every destination (`destination_id` None) overrides one for a single destination; one
    for a single destination leaves a stored mark's destination(s) as they are (`mark_many`
    then widens one that named another). The one rule of every mark, in `upsert` here and
    in the PostgreSQL ingest's statements (`facts._marks`)."""
    return ("marked_at", "course_id") + (("destination_id",) if destination_id is None else ())


_CLAIMED = (
    t.dirty_keys.c.tenant_id,
    t.dirty_keys.c.course_id,
    t.dirty_keys.c.activity_id,
    t.dirty_keys.c.person_id,
    t.dirty_keys.c.destination_id,
)


def _first_keys() -> Select[Any]:
    """The keys of the first `limit` rows of the queue, read in order from its index;
    another process's claimed keys are skipped, not waited for (PostgreSQL)."""
    c = t.dirty_keys.c
    return (
        select(c.tenant_id, c.activity_id, c.person_id)
        .order_by(t.dirty_keys.c.queued_at)
        # written into the statement: planned for an unknown limit, PostgreSQL joined the
        # claimed keys to a scan of every waiting key
        .limit(bindparam("limit", type_=Integer(), literal_execute=True))
        .with_for_update(skip_locked=True)
    )


@cache
def _claim_postgres() -> ReturningDelete[Any]:
    """The first keys of the queue locked, then deleted by key: the few locked are joined to
    the table's primary key (a CTE of their own, which the planner sizes by the claim), not
    matched with `IN`, for which it scanned every waiting key. Not by `ctid`: a key marked
    again and committed after this statement began is locked in its new version, which the
    statement's snapshot does not see by place; by key it is found and deleted."""
    c = t.dirty_keys.c
    locked = _first_keys().cte("locked").prefix_with("MATERIALIZED")
    return (
        delete(t.dirty_keys)
        .where(
            c.tenant_id == locked.c.tenant_id,
            c.activity_id == locked.c.activity_id,
            c.person_id == locked.c.person_id,
        )
        .returning(*_CLAIMED)
    )


@cache
def _claim_sqlite() -> ReturningDelete[Any]:
    c = t.dirty_keys.c
    pk = tuple_(c.tenant_id, c.activity_id, c.person_id)
    return delete(t.dirty_keys).where(pk.in_(_first_keys())).returning(*_CLAIMED)


class DirtyKeyRepo(SqlRepo, ports.DirtyKeyRepo):
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
                "waiting_since": utc(now),
                "queued_at": utc(now),
                "destination_id": None,
            },
            update=remarked(None),
        )

    def mark_many(
        self,
        rows: Sequence[tuple[str, str, str, str]],
        now: datetime,
        *,
        destination_id: str | None = None,
        behind: bool = False,
    ) -> None:
        if not rows:
            return
        unique = list(dict.fromkeys(rows))
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
                    "waiting_since": utc(now),
                    "queued_at": utc(now),
                    "destination_id": destination_id,
                }
                for a, b, c, d in unique
            ],
            update=remarked(destination_id) + (("queued_at",) if behind else ()),
        )
        if destination_id is None:
            return
        # a stored mark for another destination: now for both, so every one
        c = t.dirty_keys.c
        persons: dict[tuple[str, str], list[str]] = {}
        for tenant_id, _, activity_id, person_id in unique:
            persons.setdefault((tenant_id, activity_id), []).append(person_id)
        for (tenant_id, activity_id), ids in persons.items():
            for at in range(0, len(ids), _IDS_PER_STATEMENT):
                self.conn.execute(
                    update(t.dirty_keys)
                    .where(
                        c.tenant_id == tenant_id,
                        c.activity_id == activity_id,
                        c.person_id.in_(ids[at : at + _IDS_PER_STATEMENT]),
                        c.destination_id != destination_id,
                    )
                    .values(destination_id=None)
                )

    def marked_at(self, tenant_id: str, activity_id: str, person_id: str) -> datetime | None:
        c = t.dirty_keys.c
        at = self.conn.execute(
            select(c.marked_at).where(
                c.tenant_id == tenant_id, c.activity_id == activity_id, c.person_id == person_id
            )
        ).scalar()
        return utc(at) if at is not None else None

    def peek(self, limit: int) -> list[tuple[str, str, str, str, datetime]]:
        c = t.dirty_keys.c
        rows = self.conn.execute(
            select(c.tenant_id, c.course_id, c.activity_id, c.person_id, c.marked_at)
            .order_by(c.queued_at)
            .limit(limit)
        )
        return [(r[0], r[1], r[2], r[3], utc(r[4])) for r in rows]

    def schedule(
        self,
        rows: Sequence[tuple[str, str, str, str, datetime]],
        *,
        destination_id: str | None = None,
    ) -> None:
        d = self.conn.dialect.name
        table = t.due_timers
        values = [
            {
                "tenant_id": a,
                "course_id": b,
                "activity_id": c,
                "person_id": p,
                "due_at": utc(at),
                "destination_id": destination_id,
            }
            for a, b, c, p, at in rows
        ]
        if not values:
            return
        ins = (postgresql if d == "postgresql" else sqlite).insert(table).values(values)
        # the earlier time wins: an early recompute schedules the later one again
        earlier = case(
            (table.c.due_at <= ins.excluded.due_at, table.c.due_at), else_=ins.excluded.due_at
        )
        # timed for one destination twice, it stays so; for another too, or for every one
        # (NULL, never equal), for every one: whichever time wins, neither is left out
        same = case(
            (table.c.destination_id == ins.excluded.destination_id, table.c.destination_id),
            else_=None,
        )
        self.conn.execute(
            ins.on_conflict_do_update(
                index_elements=["tenant_id", "activity_id", "person_id"],
                set_={
                    "due_at": earlier,
                    "course_id": ins.excluded.course_id,
                    "destination_id": same,
                },
            )
        )

    def fire_due(self, now: datetime) -> int:
        c = t.due_timers.c
        due = self.conn.execute(
            delete(t.due_timers)
            .where(c.due_at <= utc(now))
            .returning(c.tenant_id, c.course_id, c.activity_id, c.person_id, c.destination_id)
        ).all()
        # each marked for what its timer was set for: one destination, or every one
        by_destination: dict[str | None, list[tuple[str, str, str, str]]] = {}
        for r in due:
            by_destination.setdefault(r[4], []).append((r[0], r[1], r[2], r[3]))
        for destination_id, keys in by_destination.items():
            self.mark_many(keys, now, destination_id=destination_id)
        return len(due)

    def next_due_at(self) -> datetime | None:
        at = self.conn.execute(select(func.min(t.due_timers.c.due_at))).scalar()
        return utc(at) if at is not None else None

    def count(self) -> int:
        return int(self.conn.execute(select(func.count()).select_from(t.dirty_keys)).scalar() or 0)

    def waiting(self, tenant_id: str) -> tuple[int, datetime | None]:
        c = t.dirty_keys.c
        n, oldest = self.conn.execute(
            select(func.count(), func.min(c.waiting_since)).where(c.tenant_id == tenant_id)
        ).one()
        return int(n or 0), utc(oldest) if oldest is not None else None

    def lock_activities(self, activities: Iterable[tuple[str, str]]) -> None:
        # SQLite's write transaction already serialises computing. On PostgreSQL one
        # advisory lock per activity, taken in one order by everyone (no deadlock between
        # computations): a run recomputing one activity holds up only that activity's
        # live grades, not every course's.
        if not self.postgres:
            return
        keys = sorted({_activity_lock(tenant, activity) for tenant, activity in activities})
        if keys:
            self.conn.execute(
                text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
                {"keys": keys},
            )

    def claim(self, limit: int) -> list[tuple[str, str, str, str, str | None]]:
        statement = _claim_postgres() if self.postgres else _claim_sqlite()
        rows = self.conn.execute(statement, {"limit": limit}).all()
        self.lock_activities((r[0], r[2]) for r in rows)
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def take(
        self, keys: Sequence[tuple[str, str, str]], *, marked_at: datetime | None = None
    ) -> list[tuple[str, str, str, str, str | None]]:
        c = t.dirty_keys.c
        pk = tuple_(c.tenant_id, c.activity_id, c.person_id)
        taken: list[tuple[str, str, str, str, str | None]] = []
        wanted = list(dict.fromkeys(keys))
        for at in range(0, len(wanted), _IDS_PER_STATEMENT // 3):
            conds: list[ColumnElement[bool]] = [pk.in_(wanted[at : at + _IDS_PER_STATEMENT // 3])]
            if marked_at is not None:
                conds.append(c.marked_at == utc(marked_at))
            chosen = (
                select(c.tenant_id, c.activity_id, c.person_id)
                .where(*conds)
                .with_for_update(skip_locked=True)
            )
            taken += self._delete_chosen(chosen)
        self.lock_activities((r[0], r[2]) for r in taken)
        return taken

    def take_activities(
        self, tenant_id: str, activity_ids: Sequence[str], *, limit: int
    ) -> list[tuple[str, str, str, str, str | None]]:
        c = t.dirty_keys.c
        chosen = (
            select(c.tenant_id, c.activity_id, c.person_id)
            .where(c.tenant_id == tenant_id, c.activity_id.in_(list(activity_ids)))
            .limit(limit)
            .with_for_update()  # waits for a worker taking them: see the port
        )
        taken = self._delete_chosen(chosen)
        self.lock_activities((r[0], r[2]) for r in taken)
        return taken

    def _delete_chosen(
        self, chosen: Select[tuple[str, str, str]]
    ) -> list[tuple[str, str, str, str, str | None]]:
        """Delete the marks `chosen` selects (their keys, locked), returning what each was."""
        c = t.dirty_keys.c
        rows = self.conn.execute(
            delete(t.dirty_keys)
            .where(tuple_(c.tenant_id, c.activity_id, c.person_id).in_(chosen))
            .returning(c.tenant_id, c.course_id, c.activity_id, c.person_id, c.destination_id)
        ).all()
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]
