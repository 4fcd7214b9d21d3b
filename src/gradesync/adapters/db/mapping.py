"""Translating domain dataclasses to table rows and back.

Fields map to columns of the same name. Enums are stored as their values, nested
`PolicySettings` as JSON objects, datetimes in UTC (SQLite hands them back naive: they are
UTC by construction, so the zone is re-attached on read).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from functools import cache
from typing import Any, TypeVar, Union, cast, overload

from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    Select,
    Table,
    Text,
    bindparam,
    func,
    literal_column,
    select,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite

from gradesync.adapters.db.sqlite_rows import execute_rows
from gradesync.domain.model import PolicySettings

T = TypeVar("T")


@overload
def utc(dt: datetime) -> datetime: ...


@overload
def utc(dt: None) -> None: ...


def utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def policy_to_json(p: PolicySettings) -> dict[str, Any]:
    return {
        f.name: (v.value if isinstance(v, Enum) else v)
        for f in dataclasses.fields(p)
        if (v := getattr(p, f.name)) is not None
    }


def _unwrap_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


@cache
def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: _unwrap_optional(hints[f.name]) for f in dataclasses.fields(cls)}


def policy_from_json(data: Mapping[Any, Any] | None) -> PolicySettings:
    # a stored policy reads as a row does: its settings' names as keys, enums as values
    return from_row(PolicySettings, data) if data else PolicySettings()


def to_row(obj: Any, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if f.name in exclude:
            continue
        v = getattr(obj, f.name)
        if isinstance(v, Enum):
            v = v.value
        elif isinstance(v, PolicySettings):
            v = policy_to_json(v)
        elif isinstance(v, datetime):
            v = utc(v)
        elif isinstance(v, tuple):
            v = list(v)
        row[f.name] = v
    return row


@cache
def _readers(cls: type) -> tuple[tuple[str, Callable[[Any], Any] | None], ...]:
    """Each field of `cls` with what turns its column's value into the field's (None: the
    value as it is), worked out once per class: rows are read by the thousand."""
    readers: list[tuple[str, Callable[[Any], Any] | None]] = []
    for name, tp in _field_types(cls).items():
        read: Callable[[Any], Any] | None = None
        if tp is PolicySettings:
            read = policy_from_json
        elif tp is datetime:
            read = utc
        elif isinstance(tp, type) and issubclass(tp, Enum):
            read = tp
        elif typing.get_origin(tp) is tuple:
            read = tuple
        readers.append((name, read))
    return tuple(readers)


def from_row(cls: type[T], row: Mapping[Any, Any], **extra: Any) -> T:
    """A `cls` from `row`'s columns of its fields' names, `extra` (fields too) taking
    precedence; a field with no column keeps its default, a column of no field is left."""
    kwargs: dict[str, Any] = {}
    for name, read in _readers(cast(type, cls)):
        if name in extra:
            continue
        try:  # a result row's `in` costs as much as reading the value: one lookup
            v = row[name]
        except KeyError:
            continue
        kwargs[name] = v if read is None or v is None else read(v)
    kwargs.update(extra)
    return cls(**kwargs)


def upsert(
    conn: Connection,
    table: Table,
    values: dict[str, Any] | list[dict[str, Any]],
    *,
    update: tuple[str, ...] | None = None,
    fill: bool = False,
    same: str | None = None,
) -> None:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE, on SQLite and PostgreSQL alike.
    Many rows go in one statement (a key must not repeat among them). `fill`: as
    `conflict_set`'s; `same`: as `bulk_insert`'s."""
    rows = values if isinstance(values, list) else [values]
    if not rows:
        return
    keys = [c.name for c in table.primary_key.columns]
    cols = update if update is not None else tuple(k for k in rows[0] if k not in keys)
    insert_many(conn, table, rows, conflict=keys, update=cols, fill=fill, same=same)


def conflict_set(
    table: Table, excluded: Any, update: tuple[str, ...], fill: bool
) -> dict[str, Any]:
    """An ON CONFLICT DO UPDATE's SET: each of the `update` columns to the row proposed
    (`excluded`); with `fill` (text columns), only where the stored row's is blank, NULL or
    '' as the write finds it (`COALESCE(NULLIF(col, ''), excluded.col)`): a value another
    transaction stored after this one read the row stays."""
    if not fill:
        return {c: excluded[c] for c in update}
    blank: Any = literal_column("''")  # inline: SQLite's executemany binds only the rows' values
    return {c: func.coalesce(func.nullif(table.c[c], blank), excluded[c]) for c in update}


def insert_new(conn: Connection, table: Table, row: dict[str, Any]) -> bool:
    """INSERT `row` unless its primary key is taken (by a row committed, or one being made
    by a transaction this one then waits for); whether it stored it. Told by the row
    returned: psycopg answers -1 for an INSERT's row count, which reads as true."""
    keys = [c.name for c in table.primary_key.columns]
    stmt, params = bulk_insert(conn, table, [row], conflict=keys, returning=(keys[0],))
    return conn.execute(stmt, params).first() is not None


def insert_many(
    conn: Connection,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    conflict: list[str] | None = None,
    update: tuple[str, ...] = (),
    fill: bool = False,
    same: str | None = None,
) -> None:
    """`bulk_insert`'s statement run for `rows`, when nothing is returned: on SQLite
    through the driver's executemany (`sqlite_rows`), cheaper than SQLAlchemy's."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        conflicting = tuple(conflict) if conflict is not None else None
        execute_rows(conn, _insert(False, table, None, conflicting, update, (), fill, same), rows)
        return
    stmt, params = bulk_insert(
        conn, table, rows, conflict=conflict, update=update, fill=fill, same=same
    )
    conn.execute(stmt, params)


def bulk_insert(
    conn: Connection,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    conflict: list[str] | None,
    update: tuple[str, ...] = (),
    returning: tuple[str, ...] = (),
    fill: bool = False,
    same: str | None = None,
    inserted: bool = False,
) -> tuple[Any, list[dict[str, Any]] | dict[str, Any] | None]:
    """(statement, parameters) for `conn.execute`: INSERT `rows` (all with the same keys)
    ON CONFLICT (`conflict`) DO UPDATE the `update` columns (only where blank, with `fill`:
    `conflict_set`), or DO NOTHING without them (no ON CONFLICT when `conflict` is None),
    RETURNING the `returning` columns.
    `same`: a column the stored row must hold as the row sent does to be updated (DO UPDATE
    ... WHERE); a row it does not is left as stored, and not returned. `inserted` (PostgreSQL
    only): also return `inserted`, true for a row the statement inserted, false for one it
    updated (`was_inserted`).

    The rows are parameters, never part of the statement, so it is compiled once and cached.
    On PostgreSQL many rows go as one array per column through `unnest`: one statement with
    a handful of parameters whatever the row count (multi-row VALUES would bind every value
    apart, and psycopg and the server would parse and plan thousands of them each time). On
    SQLite they go as an executemany that SQLAlchemy sends as multi-row VALUES."""
    postgres = conn.dialect.name == "postgresql"
    unnest = postgres and len(rows) > 1
    assert postgres or not inserted, "only PostgreSQL tells an insert from an update"
    stmt = _insert(
        postgres,
        table,
        tuple(rows[0]) if unnest else None,
        tuple(conflict) if conflict is not None else None,
        update,
        returning,
        fill,
        same,
        inserted,
    )
    if unnest:
        return stmt, unnest_params(table, rows)
    return stmt, rows if len(rows) > 1 else rows[0]


@cache
def _insert(
    postgres: bool,
    table: Table,
    unnest: tuple[str, ...] | None,
    conflict: tuple[str, ...] | None,
    update: tuple[str, ...],
    returning: tuple[str, ...],
    fill: bool = False,
    same: str | None = None,
    inserted: bool = False,
) -> Any:
    """`bulk_insert`'s statement, built once per shape: building it took as long as running
    it for a few rows (the ON CONFLICT's `excluded` copies the table's columns each time)."""
    if unnest is not None:
        stmt: Any = postgresql.insert(table).from_select(unnest, unnested(table, unnest))
    else:
        stmt = (postgresql if postgres else sqlite).insert(table)
    if conflict is not None and update:
        stmt = stmt.on_conflict_do_update(
            index_elements=list(conflict),
            set_=conflict_set(table, stmt.excluded, update, fill),
            where=None if same is None else table.c[same] == stmt.excluded[same],
        )
    elif conflict is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
    columns: list[Any] = [table.c[c] for c in returning]
    if inserted:
        columns.append(was_inserted(table))
    if columns:
        stmt = stmt.returning(*columns)
    return stmt


def was_inserted(table: Table) -> Any:
    """PostgreSQL: in an upsert's RETURNING, `inserted`: whether it inserted the row (true)
    or updated a stored one (false). ON CONFLICT DO UPDATE locks the stored row before it
    updates it, and the new version keeps that lock in its xmax; an inserted row has none."""
    return literal_column(f"{table.name}.xmax = 0", Boolean).label("inserted")


def rows_of_arrays(alias: str | None, *columns: tuple[str, str, Any]) -> Any:
    """PostgreSQL: values bound as one array per column, unnested into the rows of a
    derived table `alias`. Each of `columns` is (column, parameter, element type). Joined
    to a table it costs one probe (or one hash) per value whatever plan PostgreSQL
    prepares, where a generic plan for an `IN` list of parameters, or `= ANY`, made while
    the table was small, can compare every row with every value."""
    arrays = [bindparam(param, type_=postgresql.ARRAY(typ)) for _, param, typ in columns]
    return (
        func.unnest(*arrays)
        .table_valued(*(name for name, _, _ in columns))
        .render_derived(name=alias)
    )


@cache
def unnested(table: Table, names: tuple[str, ...]) -> Select[Any]:
    """PostgreSQL: rows of these columns of `table` as a SELECT from `unnest` of one array
    per column, bound as parameters `u_<column>` (`unnest_params`). A JSON column goes as
    an array of its JSON text, cast back per row (psycopg has no array of json values to
    send)."""
    source = rows_of_arrays(
        None, *((n, f"u_{n}", Text if _is_json(table, n) else table.c[n].type) for n in names)
    )
    return select(
        *(
            sql_cast(source.c[n], table.c[n].type).label(n) if _is_json(table, n) else source.c[n]
            for n in names
        )
    )


def unnest_params(table: Table, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The arrays `unnested(table, names)` reads, from `rows` (all with those keys). None in
    a JSON column is JSON null, as SQLAlchemy stores it row by row."""
    return {
        f"u_{n}": [json.dumps(r[n]) for r in rows] if _is_json(table, n) else [r[n] for r in rows]
        for n in rows[0]
    }


@cache
def _is_json(table: Table, name: str) -> bool:
    return isinstance(table.c[name].type, JSON)
