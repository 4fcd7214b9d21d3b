"""Where the OneRoster CSV export remembers what it exported (services.sis_export.ExportState)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Engine, select

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.mapping import upsert, utc
from gradesync.services.sis_export import Tracked

BATCH = 1000


class SqlExportState:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def load(self, tenant_id: str, destination_id: str) -> dict[tuple[str, str], Tracked]:
        c = t.oneroster_csv_rows.c
        query = select(t.oneroster_csv_rows).where(
            c.tenant_id == tenant_id, c.destination_id == destination_id
        )
        with self._engine.connect() as conn:
            out: dict[tuple[str, str], Tracked] = {}
            for r in conn.execute(query).mappings():
                changed = utc(r["changed_at"])
                assert changed is not None
                out[(r["file"], r["sourced_id"])] = Tracked(r["row_hash"], r["status"], changed)
            return out

    def save(
        self, tenant_id: str, destination_id: str, changes: Mapping[tuple[str, str], Tracked]
    ) -> None:
        rows = [
            {
                "tenant_id": tenant_id,
                "destination_id": destination_id,
                "file": file,
                "sourced_id": sid,
                "row_hash": info.row_hash,
                "status": info.status,
                "changed_at": info.changed_at,
            }
            for (file, sid), info in changes.items()
        ]
        with self._engine.begin() as conn:
            for i in range(0, len(rows), BATCH):
                upsert(conn, t.oneroster_csv_rows, rows[i : i + BATCH])
