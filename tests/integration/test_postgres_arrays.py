"""Python lists go to PostgreSQL as binary arrays (`engine._send_arrays_binary`): a batch's
rows are sent as one array per column, and psycopg's text arrays escape each element in
Python, the largest part of a settle's CPU before. What goes in comes back unchanged."""

from __future__ import annotations

import json

from psycopg.adapt import PyFormat
from psycopg.types.array import ListBinaryDumper
from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import Text

from gradesync.adapters.db.database import Database

AWKWARD = ['say "hi"', "back\\slash", "{braces}, commas", "", "NULL", "ünï 😀", None]


def test_the_databases_connections_send_lists_as_binary_arrays(postgres_db: Database) -> None:
    with postgres_db.uow() as uow:
        raw = uow.conn.connection.dbapi_connection
        assert raw is not None
        assert raw.adapters.get_dumper(list, PyFormat.AUTO) is ListBinaryDumper


def test_awkward_text_and_json_come_back_unchanged(postgres_db: Database) -> None:
    payloads = [json.dumps({"comment": s}) for s in AWKWARD if s is not None]
    with postgres_db.engine.connect() as conn:
        got = conn.execute(
            select(text("x")).select_from(
                text("unnest(:a) AS x").bindparams(
                    bindparam("a", AWKWARD, type_=postgresql.ARRAY(Text))
                )
            )
        ).scalars()
        assert list(got) == AWKWARD
        back = conn.execute(
            text("SELECT (p::jsonb)->>'comment' FROM unnest(:p) AS p").bindparams(
                bindparam("p", payloads, type_=postgresql.ARRAY(Text))
            )
        ).scalars()
        assert list(back) == [s for s in AWKWARD if s is not None]
