"""SQLite: an INSERT, upsert or UPDATE of many rows through the driver's own executemany.

Executed through SQLAlchemy, each value of each row goes through its parameter processing
in Python: 22 µs a row of the ledger, more than SQLite's own work. Here the statement is
compiled once per shape, and a row only has its values turned into the form SQLite stores,
by the dialect's own bind processors: a time is the same text, a JSON value the same JSON,
as when SQLAlchemy binds it (`tests/integration/test_sqlite_rows.py` compares the two)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.sql.dml import Insert, Update

# a parameter's value from a row and the statement-wide parameters
_Reader = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]


def execute_rows(
    conn: Connection,
    stmt: Insert | Update,
    rows: Sequence[Mapping[str, Any]],
    shared: Mapping[str, Any] | None = None,
    like: Mapping[str, str] | None = None,
) -> int:
    """Run `stmt` (built once and cached by the caller) for each of `rows`, which all have
    the same keys; `shared` binds the statement's other parameters, the same for every row.
    A table column no row names takes its default, as SQLAlchemy would give it. A parameter
    of the statement's own that the rows name is bound as given, or, named in `like`, as
    the table's column of that name stores its values (a time compared with a column).
    Returns how many rows the statement changed, over all of `rows`."""
    if not rows:
        return 0
    compiled = _compiled_for(conn.dialect, stmt, tuple(rows[0]), like)
    if compiled is None:  # a default made per row (`dict`, `list`): SQLAlchemy's way
        return conn.execute(stmt, [{**row, **(shared or {})} for row in rows]).rowcount
    sql, readers = compiled
    extra = shared or {}
    done = conn.exec_driver_sql(sql, [tuple(read(row, extra) for read in readers) for row in rows])
    return done.rowcount


class _PerRowDefault(Exception):
    """A column left out has a default that is not a constant."""


_Compiled = tuple[str, tuple[_Reader, ...]] | None
_Like = tuple[tuple[str, str], ...]
# kept on the dialect, so they go with its engine: a cache of the module's, keyed by the
# dialect, would keep every engine's dialect a process ever made (each test makes one)
_CACHE = "_gradesync_sqlite_rows"


def _compiled_for(
    dialect: Dialect,
    stmt: Insert | Update,
    columns: tuple[str, ...],
    like: Mapping[str, str] | None,
) -> _Compiled:
    cache: dict[tuple[Insert | Update, tuple[str, ...], _Like], _Compiled]
    cache = dialect.__dict__.setdefault(_CACHE, {})
    likes = tuple(like.items()) if like else ()
    key = (stmt, columns, likes)
    if key not in cache:
        cache[key] = _compiled(dialect, stmt, columns, dict(likes))
    return cache[key]


def _compiled(
    dialect: Dialect, stmt: Insert | Update, columns: tuple[str, ...], like: Mapping[str, str]
) -> _Compiled:
    compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
    table = stmt.table
    if not like.keys() <= set(columns):
        raise ValueError(f"`like` names parameters the rows do not: {sorted(like)}")
    try:
        readers = tuple(
            _reader(dialect, table.c.get(like.get(name, name)), name, name in columns)
            for name in compiled.positiontup or ()
        )
    except _PerRowDefault:
        return None
    return str(compiled), readers


def _reader(dialect: Dialect, column: Any, name: str, in_rows: bool) -> _Reader:
    if column is None:  # not a column: one of the statement's own parameters, given per
        # row when the rows name it (an UPDATE's key), else once for all
        if in_rows:
            return lambda row, _shared: row[name]
        return lambda _row, shared: shared[name]
    if not in_rows:
        default = column.default
        if default is not None and not default.is_scalar:
            raise _PerRowDefault(column)
        value = default.arg if default is not None else None
        return lambda _row, _shared: value
    convert = column.type.dialect_impl(dialect).bind_processor(dialect)
    if convert is None:
        return lambda row, _shared: row[name]
    if _isoformat_stores_as(convert):
        # a time: the same text by datetime's own C formatting, several times cheaper than
        # the dialect's, which formats through a dict (a settle writes five per row)
        slow = convert
        return lambda row, _shared: (
            v.isoformat(" ", "microseconds")[:26] if type(v := row[name]) is datetime else slow(v)
        )
    # as SQLAlchemy does, None too: a JSON column stores it as JSON null
    return lambda row, _shared: convert(row[name])


_SAMPLES = (
    datetime(2026, 12, 5, 1, 2, 3, 4, tzinfo=UTC),
    datetime(2026, 12, 5, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5))),
    datetime(999, 1, 2, 3, 4, 5),
)


def _isoformat_stores_as(convert: Callable[[Any], Any]) -> bool:
    """Whether `convert` turns a time into the text `isoformat` gives (SQLite's default
    storage of a DateTime: its fields as written, the zone left out), checked on samples."""
    try:
        return all(convert(v) == v.isoformat(" ", "microseconds")[:26] for v in _SAMPLES)
    except Exception:  # not a time's converter
        return False
