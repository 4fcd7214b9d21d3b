"""Destinations, with their secret encrypted at rest."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, delete, insert, or_, select, update

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.mapping import from_row, insert_new, to_row, upsert, utc
from gradesync.adapters.db.notifications import notify_destination
from gradesync.adapters.db.repos.base import SqlRepo
from gradesync.adapters.secretbox import SecretBox
from gradesync.domain.model import DeletedDestination, Destination
from gradesync.domain.pauses import PauseCause
from gradesync.services import ports


class DestinationRepo(SqlRepo, ports.DestinationRepo):
    """Destinations with their secret encrypted at rest: the plaintext exists only in memory."""

    def __init__(self, conn: Connection, box: SecretBox) -> None:
        super().__init__(conn)
        self.box = box
        # destinations written in this transaction: the unit of work tells this process's
        # engines after its commit (other processes hear the NOTIFY)
        self.changed: set[tuple[str, str]] = set()

    def _changed(self, tenant_id: str, destination_id: str) -> None:
        notify_destination(self.conn, tenant_id, destination_id)
        self.changed.add((tenant_id, destination_id))

    def _load(self, row: Any) -> Destination:
        return from_row(Destination, row, secret=self.box.decrypt_json(row["secret_ciphertext"]))

    def get(
        self, tenant_id: str, destination_id: str, *, for_update: bool = False
    ) -> Destination | None:
        c = t.destinations.c
        q = select(t.destinations).where(c.tenant_id == tenant_id, c.id == destination_id)
        # FOR NO KEY UPDATE: what the change's own UPDATE of non-key columns takes. A FOR
        # UPDATE would also wait for, and deadlock with, every link or ledger row inserted
        # for the destination meanwhile (their foreign keys take KEY SHARE on it). SQLite
        # has no row locks: its transactions already hold the write lock
        locked = q.with_for_update(key_share=True) if for_update else q
        row = self.conn.execute(locked).mappings().first()
        return self._load(row) if row else None

    def get_many(self, tenant_id: str, destination_ids: Iterable[str]) -> dict[str, Destination]:
        c = t.destinations.c
        ids = sorted(set(destination_ids))
        if not ids:  # no round trip for nothing
            return {}
        rows = self.conn.execute(
            select(t.destinations).where(c.tenant_id == tenant_id, c.id.in_(ids))
        ).mappings()
        return {r["id"]: self._load(r) for r in rows}

    def _row(self, dest: Destination, now: datetime) -> dict[str, Any]:
        row = to_row(dest, exclude=("secret",))
        row["secret_ciphertext"] = self.box.encrypt_json(dest.secret) if dest.secret else None
        row["created_at"] = utc(now)
        return row

    def upsert(self, dest: Destination, now: datetime) -> None:
        row = self._row(dest, now)
        cols = tuple(k for k in row if k not in ("tenant_id", "id", "created_at"))
        upsert(self.conn, t.destinations, row, update=cols)
        self._changed(dest.tenant_id, dest.id)

    def add(self, dest: Destination, now: datetime) -> bool:
        if not insert_new(self.conn, t.destinations, self._row(dest, now)):
            return False
        self._changed(dest.tenant_id, dest.id)
        return True

    def all(self, tenant_id: str | None = None) -> list[Destination]:
        q = select(t.destinations).order_by(t.destinations.c.tenant_id, t.destinations.c.id)
        if tenant_id is not None:
            q = q.where(t.destinations.c.tenant_id == tenant_id)
        return [self._load(r) for r in self.conn.execute(q).mappings()]

    def delete(self, tenant_id: str, destination_id: str, now: datetime) -> bool:
        c = t.destinations.c
        name = self.conn.execute(
            delete(t.destinations)
            .where(c.tenant_id == tenant_id, c.id == destination_id)
            .returning(c.name)
        ).scalar()
        self._changed(tenant_id, destination_id)
        if name is None:
            return False
        self.conn.execute(
            insert(t.deleted_destinations).values(
                tenant_id=tenant_id, destination_id=destination_id, name=name, deleted_at=utc(now)
            )
        )
        return True

    def deleted(
        self, tenant_id: str, destination_ids: Iterable[str] | None
    ) -> list[DeletedDestination]:
        c = t.deleted_destinations.c
        q = select(c.tenant_id, c.destination_id, c.name, c.deleted_at).where(
            c.tenant_id == tenant_id
        )
        if destination_ids is not None:
            ids = sorted(set(destination_ids))
            if not ids:  # no round trip for nothing
                return []
            q = q.where(c.destination_id.in_(ids))
        rows = self.conn.execute(q.order_by(c.deleted_at, c.id))
        return [DeletedDestination(r[0], r[1], r[2], utc(r[3])) for r in rows]

    def set_pause(
        self,
        tenant_id: str,
        destination_id: str,
        until: datetime,
        reason: str,
        cause: PauseCause,
    ) -> bool:
        c = t.destinations.c
        # A destination a person turned off keeps their reason: the engine's own pauses touch
        # only the time. A pause held that ends later (a person's until a time, another
        # worker's Retry-After, written since this process last read it) is not shortened:
        # the later end wins, as in each process's own gate. The condition is read on the row
        # as the UPDATE finds it (PostgreSQL re-reads a row another transaction changed)
        written = self.conn.execute(
            update(t.destinations)
            .where(
                c.tenant_id == tenant_id,
                c.id == destination_id,
                or_(c.paused_until.is_(None), c.paused_until < utc(until)),
            )
            .values(
                paused_until=utc(until),
                pause_reason=case((c.enabled, reason), else_=c.pause_reason),
                pause_cause=case((c.enabled, cause.value), else_=c.pause_cause),
            )
        ).rowcount
        self._changed(tenant_id, destination_id)
        return bool(written)

    def lift_pause(self, tenant_id: str, destination_id: str, cause: PauseCause) -> None:
        c = t.destinations.c
        # only a pause of `cause`: one a person or another worker made since is kept. A
        # destination a person turned off keeps their reason and cause; the time the engine
        # wrote under them goes (their resume clears it all anyway)
        self.conn.execute(
            update(t.destinations)
            .where(
                c.tenant_id == tenant_id,
                c.id == destination_id,
                or_(c.pause_cause == cause.value, ~c.enabled),
            )
            .values(
                paused_until=None,
                pause_reason=case((c.enabled, None), else_=c.pause_reason),
                pause_cause=case((c.enabled, None), else_=c.pause_cause),
            )
        )
        self._changed(tenant_id, destination_id)
