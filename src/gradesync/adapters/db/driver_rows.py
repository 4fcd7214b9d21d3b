"""A query's rows as the driver gives them, each value decoded by a converter made once.

Read through SQLAlchemy, a row becomes a `Row`, then a mapping read by name, and each value
of it takes its type's processing, every time: a claim's rows cost more that way than the
statement that reads them. Here the statement still runs through SQLAlchemy (compiled and
cached, its parameters bound as ever), but its rows are taken from the driver's cursor as
tuples, and only the columns whose type processes results are converted, by that type's own
result processor for the dialect (the same one SQLAlchemy calls), a time then put in UTC as
`mapping.utc` does. `tests/integration/test_driver_rows.py` checks the values equal
SQLAlchemy's on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, Dialect

_Decoders = tuple[tuple[int, Callable[[Any], Any]], ...]
# kept on the dialect, as `sqlite_rows` keeps its statements: they go with its engine
_DECODERS = "_gradesync_driver_decoders"


def decoded_rows(
    result: CursorResult[Any], columns: Sequence[ColumnElement[Any]]
) -> list[list[Any]]:
    """Every row of `result`, a query whose columns are `columns` in that order, as a list
    of its values decoded as SQLAlchemy decodes them (a time in UTC). The result is closed."""
    cursor = result.cursor
    try:
        # the driver's type of each column, as SQLAlchemy gives it to the result processor
        # (PostgreSQL's floats and numerics are decoded by it)
        codes = tuple(d[1] for d in cursor.description)
        rows = cursor.fetchall()
    finally:
        result.close()
    steps = _decoders_for(result.dialect, tuple(columns), codes)
    out = []
    for raw in rows:
        row = list(raw)
        for i, decode in steps:
            v = row[i]
            if v is not None:  # every result processor gives None for None
                row[i] = decode(v)
        out.append(row)
    return out


def _decoders_for(
    dialect: Dialect, columns: tuple[ColumnElement[Any], ...], codes: tuple[Any, ...]
) -> _Decoders:
    cache: dict[tuple[Any, ...], _Decoders] = dialect.__dict__.setdefault(_DECODERS, {})
    key = (columns, codes)
    if key not in cache:
        steps = []
        for i, (column, code) in enumerate(zip(columns, codes, strict=True)):
            decode = _decoder(dialect, column, code)
            if decode is not None:
                steps.append((i, decode))
        cache[key] = tuple(steps)
    return cache[key]


def _decoder(
    dialect: Dialect, column: ColumnElement[Any], code: Any
) -> Callable[[Any], Any] | None:
    process = column.type.dialect_impl(dialect).result_processor(dialect, code)
    try:
        is_time = column.type.python_type is datetime
    except NotImplementedError:
        is_time = False
    if not is_time:
        return process
    if process is None:
        return _in_utc
    convert: Callable[[Any], Any] = process
    return lambda v: _in_utc(convert(v))


def _in_utc(v: datetime) -> datetime:
    """`mapping.utc`: a naive time is UTC by construction; an aware one is put in UTC."""
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
