"""The delivery workers alive, as their own heartbeats tell."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete, func, select

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.mapping import upsert, utc
from gradesync.adapters.db.repos.base import SqlRepo
from gradesync.services import ports

# the advisory lock of heartbeats (a stable signed 64-bit number)
_BEATS_LOCK = int.from_bytes(
    hashlib.blake2b(b"gradesync-worker-beats", digest_size=8).digest(), "big", signed=True
)


class WorkerRepo(SqlRepo, ports.WorkerRepo):
    def beat(self, worker_id: str, now: datetime, alive_since: datetime) -> int:
        c = t.delivery_workers.c
        if self.postgres:
            # one beat at a time: of two workers joining together, the second counts the
            # first (each statement reads what committed before it), so they cannot both
            # count themselves alone and send at full share
            self.conn.execute(select(func.pg_advisory_xact_lock(_BEATS_LOCK)))
        upsert(self.conn, t.delivery_workers, {"worker_id": worker_id, "seen_at": utc(now)})
        # workers gone for long are forgotten, so the table stays small
        self.conn.execute(
            delete(t.delivery_workers).where(c.seen_at < utc(alive_since) - (now - alive_since))
        )
        q = (
            select(func.count())
            .select_from(t.delivery_workers)
            .where(c.seen_at >= utc(alive_since))
        )
        return max(1, int(self.conn.execute(q).scalar_one()))

    def leave(self, worker_id: str) -> None:
        self.conn.execute(
            delete(t.delivery_workers).where(t.delivery_workers.c.worker_id == worker_id)
        )
