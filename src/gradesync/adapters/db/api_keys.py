"""API keys: rows hold the SHA-256 of the token, never the token itself."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.mapping import from_row, to_row, utc
from gradesync.domain.model import ApiKey


class ApiKeyRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

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
