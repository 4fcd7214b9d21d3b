"""`bulk_insert` builds each shape of statement once: building an upsert cost as much as
running it for a few rows. The cached statement must still write what each call asks."""

from __future__ import annotations

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.database import Database
from gradesync.adapters.db.mapping import bulk_insert, upsert
from gradesync.domain.model import Person, Tenant
from tests.integration.test_bulk_ingest import NOW


def _people(*names: str) -> list[dict[str, object]]:
    return [
        {"tenant_id": "t1", "id": f"p{i}", "name": n, "email": None, "sis_id": None}
        for i, n in enumerate(names)
    ]


def test_one_statement_per_shape_and_each_call_writes_its_rows(db: Database) -> None:
    with db.uow() as uow:
        uow.tenants.upsert(Tenant("t1", "Tenant"), NOW)
        uow.commit()
    keys = ["tenant_id", "id"]
    with db.engine.begin() as conn:
        first, _ = bulk_insert(conn, t.people, _people("A", "B"), conflict=keys, update=("name",))
        again, _ = bulk_insert(conn, t.people, _people("C", "D"), conflict=keys, update=("name",))
        other, _ = bulk_insert(conn, t.people, _people("E", "F"), conflict=keys)
        assert again is first and other is not first
        upsert(conn, t.people, _people("Ada", "Bo"), update=("name",))
        upsert(conn, t.people, _people("Ada Lovelace"), update=("name",))  # one row: not unnest
        upsert(conn, t.people, _people("Ada L.", "Bo B."), update=("name",))
    with db.uow() as uow:
        assert uow.people.get_many("t1", ["p0", "p1"]) == {
            "p0": Person("t1", "p0", "Ada L."),
            "p1": Person("t1", "p1", "Bo B."),
        }
