"""Console users and API keys (a key's row holds the SHA-256 of its token, never the token)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select, update

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.mapping import from_row, insert_new, to_row, upsert, utc
from gradesync.adapters.db.repos.base import SqlRepo
from gradesync.domain.model import ApiKey, ConsoleUser
from gradesync.services import ports


class UserRepo(SqlRepo, ports.UserRepo):
    def get(self, tenant_id: str, username: str, *, for_update: bool = False) -> ConsoleUser | None:
        c = t.users.c
        q = select(t.users).where(c.tenant_id == tenant_id, c.username == username)
        # SQLite has no row locks: its transactions already hold the write lock
        row = self.conn.execute(q.with_for_update() if for_update else q).mappings().first()
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

    def add(self, user: ConsoleUser, now: datetime) -> bool:
        row = to_row(user)
        row["created_at"] = utc(user.created_at or now)
        return insert_new(self.conn, t.users, row)

    def all(self, tenant_id: str) -> list[ConsoleUser]:
        c = t.users.c
        rows = self.conn.execute(
            select(t.users).where(c.tenant_id == tenant_id).order_by(c.username)
        ).mappings()
        return [from_row(ConsoleUser, r) for r in rows]

    def delete(self, tenant_id: str, username: str) -> bool:
        c = t.users.c
        res = self.conn.execute(
            delete(t.users).where(c.tenant_id == tenant_id, c.username == username)
        )
        return bool(res.rowcount)


class ApiKeyRepo(SqlRepo, ports.ApiKeyRepo):
    def get(self, key_id: str) -> ApiKey | None:
        row = (
            self.conn.execute(select(t.api_keys).where(t.api_keys.c.id == key_id))
            .mappings()
            .first()
        )
        return from_row(ApiKey, row) if row else None

    def add(self, key: ApiKey) -> None:
        self.conn.execute(insert(t.api_keys).values(to_row(key)))

    def revoke(self, tenant_id: str, key_id: str, now: datetime) -> bool:
        c = t.api_keys.c
        res = self.conn.execute(
            update(t.api_keys)
            .where(c.id == key_id, c.tenant_id == tenant_id, c.revoked_at.is_(None))
            .values(revoked_at=utc(now))
        )
        return bool(res.rowcount)

    def all(self, tenant_id: str) -> list[ApiKey]:
        c = t.api_keys.c
        rows = self.conn.execute(
            select(t.api_keys).where(c.tenant_id == tenant_id).order_by(c.created_at, c.id)
        ).mappings()
        return [from_row(ApiKey, r) for r in rows]
