"""SQLite: an INSERT, upsert or UPDATE of many rows through the driver's own executemany.

Executed through SQLAlchemy, each value of each row goes through its parameter processing
in Python: 22 µs a row of the ledger, more than SQLite's own work. Here the statement is
compiled once per shape, and a row only has its values turned into the form SQLite stores,
by the dialect's own bind processors: a time is the same text, a JSON value the same JSON,
as when SQLAlchemy binds it (`tests/integration/test_sqlite_rows.py` compares the two).
`execute_tuples` goes further for the settle writer's statements, run for every result:
the caller gives each row as a tuple already in the stored form (`as_stored`), so no value
takes a Python step of its own."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from operator import itemgetter
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


def execute_tuples(
    conn: Connection,
    stmt: Insert | Update,
    names: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
) -> int:
    """`execute_rows` for rows given as tuples of the values of `names`, in that order, each
    already in the form SQLite stores (`as_stored`): they go to the driver as they are, only
    put in the statement's order, with no Python step per value. `names` must name every
    parameter of the statement (an UPDATE's shared ones too, repeated in each row). Returns
    how many rows the statement changed."""
    if not rows:
        return 0
    sql, pick = _positions_for(conn.dialect, stmt, names)
    return conn.exec_driver_sql(sql, list(rows) if pick is None else list(map(pick, rows))).rowcount


def as_stored(dialect: Dialect, column: Any) -> Callable[[Any], Any]:
    """A value of `column` turned into what SQLite stores for it, as `execute_rows` binds it;
    a time first put in UTC (`mapping.utc`), as the repositories bind every time. Kept on
    the dialect, as the compiled statements are."""
    cache: dict[Any, Callable[[Any], Any]] = dialect.__dict__.setdefault(_STORED, {})
    if column not in cache:
        cache[column] = _as_stored(dialect, column)
    return cache[column]


def _as_stored(dialect: Dialect, column: Any) -> Callable[[Any], Any]:
    convert = column.type.dialect_impl(dialect).bind_processor(dialect)
    if convert is None:
        return lambda v: v
    if _isoformat_stores_as(convert):
        return _utc_text
    slow = convert
    return lambda v: slow(_in_utc(v) if type(v) is datetime else v)


def remembered(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`convert` of each value once: a batch's rows share most of their times (the time of
    the write, the claim's lease), and formatting a time costs more than finding it."""
    seen: dict[Any, Any] = {None: convert(None)}

    def once(v: Any) -> Any:
        try:
            return seen[v]
        except KeyError:
            done = seen[v] = convert(v)
            return done

    return once


def _in_utc(v: datetime) -> datetime:
    if v.tzinfo is UTC:
        return v
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


def _utc_text(v: datetime | None) -> str | None:
    """A time in UTC as SQLite's DateTime stores it (`_isoformat_stores_as`)."""
    return None if v is None else _in_utc(v).isoformat(" ", "microseconds")[:26]


_Positions = tuple[str, Callable[[tuple[Any, ...]], tuple[Any, ...]] | None]
_POSITIONS = "_gradesync_sqlite_positions"
_STORED = "_gradesync_sqlite_stored"


def _positions_for(dialect: Dialect, stmt: Insert | Update, names: tuple[str, ...]) -> _Positions:
    cache: dict[tuple[Insert | Update, tuple[str, ...]], _Positions]
    cache = dialect.__dict__.setdefault(_POSITIONS, {})
    key = (stmt, names)
    if key not in cache:
        cache[key] = _positions(dialect, stmt, names)
    return cache[key]


def _positions(dialect: Dialect, stmt: Insert | Update, names: tuple[str, ...]) -> _Positions:
    compiled = stmt.compile(dialect=dialect, column_keys=list(names))
    wanted = list(compiled.positiontup or ())
    # a parameter the statement gives its value (`.values(lease_owner=None)`) goes after a
    # row's own, the same for every row
    fixed = [n for n in wanted if n not in names]
    consts: list[Any] = []
    for n in fixed:
        bind = compiled.binds[n]
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if bind.required or bind.callable is not None:
            raise ValueError(f"the statement's parameter {n!r} is not in `names`")
        consts.append(processor(bind.value) if processor is not None else bind.value)
    order = [names.index(n) if n in names else len(names) + fixed.index(n) for n in wanted]
    pick: Any = None
    if order != list(range(len(names))):
        getter = itemgetter(*order)
        extra = tuple(consts)
        if len(order) == 1:
            pick = lambda row: (getter(row + extra),)  # noqa: E731
        elif extra:
            pick = lambda row: getter(row + extra)  # noqa: E731
        else:
            pick = getter
    return str(compiled), pick


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
