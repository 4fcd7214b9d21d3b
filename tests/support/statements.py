"""Counting the SQL statements a piece of code sends: on PostgreSQL each is a round trip,
so tests of batching count them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from gradesync.adapters.db.database import Database


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """The statements sent through `db`'s engine inside the block, in order."""
    seen: list[str] = []

    def count(_c: object, _cur: object, statement: str, *_: object) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


@contextmanager
def transactions(db: Database) -> Iterator[list[object]]:
    """The transactions begun through `db`'s engine inside the block (their connections)."""
    begun: list[object] = []

    def count(conn: object) -> None:
        begun.append(conn)

    event.listen(db.engine, "begin", count)
    try:
        yield begun
    finally:
        event.remove(db.engine, "begin", count)
