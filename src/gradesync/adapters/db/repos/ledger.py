"""The ledger (per key: what should be, what was sent, its delivery state and lease) and the
log of every send."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import cache
from operator import attrgetter, itemgetter
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.driver_rows import decoded_rows
from gradesync.adapters.db.mapping import (
    bulk_insert,
    insert_many,
    rows_of_arrays,
    to_row,
    unnest_params,
    unnested,
    upsert,
    utc,
)
from gradesync.adapters.db.repos.base import SqlRepo
from gradesync.adapters.db.sqlite_rows import (
    as_stored,
    execute_rows,
    execute_tuples,
    remembered,
)
from gradesync.domain.held import HOLDING_OUTCOMES
from gradesync.domain.model import DeliveryState, LedgerKey, LedgerRow
from gradesync.services import ports
from gradesync.services.ports.ledger import FAIR_COURSES, Claimable

log = logging.getLogger(__name__)

_WAITING = (DeliveryState.PENDING.value, DeliveryState.RETRYING.value)
# ledger priorities, claimed in this order: live grades (auto sync), then runs' rows
LIVE = 0
CLAIM_PRIORITIES = (LIVE, 1)


def _in_scope(
    tenant_id: str | None = None,
    destination_id: str | None = None,
    course_id: str | None = None,
    activity_ids: Sequence[str] | None = None,
) -> list[Any]:
    """The ledger rows of a scope: each part given narrows it, each left out does not."""
    c = t.ledger.c
    conds: list[Any] = []
    if tenant_id:
        conds.append(c.tenant_id == tenant_id)
    if destination_id:
        conds.append(c.destination_id == destination_id)
    if course_id:
        conds.append(c.course_id == course_id)
    if activity_ids:
        conds.append(c.activity_id.in_(list(activity_ids)))
    return conds


def _ledger_row(r: Any) -> LedgerRow:
    """A ledger row from its result row, field by field: claims and settles read hundreds a
    second, and `from_row`'s walk over the fields cost about a third of a settle's read.
    `tests/integration/test_storage.py` checks it reads what `from_row` reads."""
    return LedgerRow(
        LedgerKey(r["tenant_id"], r["destination_id"], r["activity_id"], r["person_id"]),
        DeliveryState(r["state"]),
        desired_hash=r["desired_hash"],
        desired=r["desired"],
        delivered_hash=r["delivered_hash"],
        delivered_at=utc(r["delivered_at"]),
        last_timestamp=utc(r["last_timestamp"]),
        tries=r["tries"],
        next_attempt_at=utc(r["next_attempt_at"]),
        reason_code=r["reason_code"],
        reason_text=r["reason_text"],
        remote_status=r["remote_status"],
        remote_message=r["remote_message"],
        updated_at=utc(r["updated_at"]),
        pending_since=utc(r["pending_since"]),
    )


# SQLite and PostgreSQL: a claim's reads of whole ledger rows (`select(t.ledger)`) taken as
# the driver gives them and decoded once a column (`driver_rows`), not through a `Row`, a
# mapping and `_ledger_row`: that was most of a claim's CPU
_LEDGER_COLUMNS = tuple(t.ledger.c)
_AT = {c.name: i for i, c in enumerate(_LEDGER_COLUMNS)}
_KEY_AT = itemgetter(*(_AT[n] for n in ("tenant_id", "destination_id", "activity_id", "person_id")))
_ROW_FIELDS = tuple(f.name for f in fields(LedgerRow))[2:]  # after the key and the state
_FIELDS_AT = itemgetter(*(_AT[n] for n in _ROW_FIELDS))
_STATE_AT, _COURSE_AT, _PRIORITY_AT = _AT["state"], _AT["course_id"], _AT["priority"]
_STATES = {s.value: s for s in DeliveryState}


def _ledger_rows(result: Any) -> list[tuple[LedgerRow, str, int]]:
    """The whole ledger rows `result` reads, each as (row, its course, its priority): what
    `_ledger_row` makes of each, with no Python step per value but the decoding
    (`tests/integration/test_driver_rows.py` checks the two read the same)."""
    out = []
    for v in decoded_rows(result, _LEDGER_COLUMNS):
        state = v[_STATE_AT]
        row = LedgerRow(
            LedgerKey(*_KEY_AT(v)),
            _STATES.get(state) or DeliveryState(state),
            *_FIELDS_AT(v),
        )
        out.append((row, v[_COURSE_AT], v[_PRIORITY_AT]))
    return out


@cache
def _ledger_upsert(dialect: str, columns: tuple[str, ...], release: bool) -> Any:
    """The ledger's upsert statement, built once per shape: building it (`excluded` in
    particular) costs more than executing a settle batch's worth of rows from the cache.
    On PostgreSQL the rows come as arrays (`unnested`): one execution for a batch, where an
    executemany ran the statement once per row on the server."""
    stmt: Any
    if dialect == "postgresql":
        stmt = postgresql.insert(t.ledger).from_select(columns, unnested(t.ledger, columns))
    else:
        stmt = sqlite.insert(t.ledger)
    keys = [c.name for c in t.ledger.primary_key.columns]
    set_: dict[str, Any] = {
        k: stmt.excluded[k] for k in columns if k not in keys and k != "release_owner"
    }
    c = t.ledger.c
    if "lease_until" in columns:
        # a settle (PostgreSQL): the rows carry their claim's lease; a row is written only
        # while it still holds that lease, which it gives back
        x = stmt.excluded
        set_["lease_owner"] = set_["lease_until"] = None
        still = (c.lease_owner == x.lease_owner) & (c.lease_until == x.lease_until)
        return stmt.on_conflict_do_update(index_elements=keys, set_=set_, where=still)
    if release:
        held = c.lease_owner == bindparam("release_owner")  # the existing row's lease
        set_["lease_owner"] = case((held, None), else_=c.lease_owner)
        set_["lease_until"] = case((held, None), else_=c.lease_until)
    return stmt.on_conflict_do_update(index_elements=keys, set_=set_)


# What settling a send changes in a row (`domain.ledger.after_delivery`, `reconcile` with
# no result): never its key, course, desired state or priority. SQLite's settle writes
# these and no others (`_settled`)
_SETTLED = (
    "state",
    "delivered_hash",
    "delivered_at",
    "last_timestamp",
    "tries",
    "next_attempt_at",
    "reason_code",
    "reason_text",
    "remote_status",
    "remote_message",
    "updated_at",
    "pending_since",
)
_KEY_PARAMS = ("k_t", "k_d", "k_a", "k_p")
# What folding a send's outcome reads of a row, or carries over from it into `_SETTLED`:
# every settled column but the remote's answer (always the outcome's), and the desired hash
# it compares with what was sent. A settle that did not read the row again writes it only
# while these are as its claim read them (`settle_as_claimed`); a column missing here would
# let a change made during the send be folded over (`tests/integration/
# test_ledger_settled_columns.py` checks that a fold depends on no other).
_FOLDED = (
    "desired_hash",
    *(n for n in _SETTLED if n not in ("remote_status", "remote_message")),
)
# each bound as the column of its name stores its values (`sqlite_rows.execute_rows`)
_RELEASED = {"claim_until": "lease_until"}


def _bound(r: LedgerRow, names: tuple[str, ...], prefix: str = "") -> dict[str, Any]:
    """The columns `names` of `r` as bound parameters named `prefix` + the column (an enum
    as its value, a time in UTC, as `mapping.to_row` stores them)."""
    values: dict[str, Any] = {}
    for name in names:
        v = getattr(r, name)
        if isinstance(v, Enum):
            v = v.value
        elif isinstance(v, datetime):
            v = utc(v)
        values[prefix + name] = v
    return values


def _settled(r: LedgerRow) -> dict[str, Any]:
    """The `_SETTLED` columns of `r` as bound parameters (`_bound`) and its key as
    `_KEY_PARAMS`."""
    values = _bound(r, _SETTLED)
    k = r.key
    values.update(k_t=k.tenant_id, k_d=k.destination_id, k_a=k.activity_id, k_p=k.person_id)
    return values


@cache
def _by_key() -> Any:
    """SQLite: an UPDATE of one row by its key (`_KEY_PARAMS`); the columns it sets are
    those the rows name (`sqlite_rows.execute_rows`)."""
    c = t.ledger.c
    key = (c.tenant_id, c.destination_id, c.activity_id, c.person_id)
    return update(t.ledger).where(
        *(col == bindparam(k) for col, k in zip(key, _KEY_PARAMS, strict=True))
    )


@cache
def _settle_update() -> Any:
    """SQLite: a settled row's delivery columns (`_SETTLED`, bound by their names) written
    by its key (`_KEY_PARAMS`) while it still holds its claim's lease (:release_owner,
    :claim_until), which it gives back."""
    c = t.ledger.c
    return (
        _by_key()
        .where(
            c.lease_owner == bindparam("release_owner"),
            c.lease_until == bindparam("claim_until"),
        )
        .values(lease_owner=None, lease_until=None)
    )


@cache
def _settle_as_claimed() -> Any:
    """SQLite: `_settle_update` while the row's `_FOLDED` columns still hold what its claim
    read (:w_<column>, null-safe), its score timestamp the one the claim stamped."""
    c = t.ledger.c
    return _settle_update().where(
        *(c[n].is_not_distinct_from(bindparam(f"w_{n}")) for n in _FOLDED)
    )


def _locked_in_key_order(k: Any, *read: Any, where: Sequence[Any] = ()) -> Any:
    """PostgreSQL: the rows of `k` (`_keys_as_arrays`) whose keys the ledger holds (of
    those ledger rows, the ones that meet `where`, with their columns `read` as the lock
    finds them), those ledger rows locked in key order, as every other writer of the
    ledger takes its locks.
    FOR NO KEY UPDATE, the lock the UPDATE of their non-key columns takes itself (FOR
    UPDATE is for deleting a row or changing its key): it conflicts with every other
    writer's, so the order holds. A statement joining `k` to the ledger locks the rows in
    the order its plan meets them (the order they are stored in, for a hash join), and
    could deadlock with a writer taking them in key order
    (`tests/integration/test_ledger_lock_order.py`). Materialized, so it is not folded into
    the statement that uses it."""
    return (
        select(*k.c, *read)
        .join(t.ledger, and_(*_of_keys_in(k)))
        .where(*where)
        .order_by(k.c.t, k.c.d, k.c.a, k.c.p)
        .with_for_update(of=t.ledger, key_share=True)
        .cte("locked")
        .prefix_with("MATERIALIZED")
    )


@cache
def _settle_as_claimed_by_arrays() -> Any:
    """PostgreSQL: `_settle_as_claimed` for rows given as arrays (one execution): the
    settled columns `s_<column>`, the claim's lease `until` and what it read `w_<column>`,
    the rows locked in key order first."""
    c = t.ledger.c
    k = _locked_in_key_order(
        _keys_as_arrays(
            ("k_t", "k_d", "k_a", "k_p"),
            *((f"s_{n}", c[n].type) for n in _SETTLED),
            ("until", c.lease_until.type),
            *((f"w_{n}", c[n].type) for n in _FOLDED),
        )
    )
    return (
        update(t.ledger)
        .where(
            *_of_keys_in(k),
            c.lease_owner == bindparam("owner"),
            c.lease_until == k.c.until,
            *(c[n].is_not_distinct_from(k.c[f"w_{n}"]) for n in _FOLDED),
        )
        .values({n: k.c[f"s_{n}"] for n in _SETTLED} | {"lease_owner": None, "lease_until": None})
    )


@cache
def _release_by_arrays() -> Any:
    """PostgreSQL: leases given back, the rows given as arrays of their keys and the claim's
    lease `until` (one execution), each while it holds that lease of :owner, the rows
    locked in key order first."""
    c = t.ledger.c
    k = _locked_in_key_order(
        _keys_as_arrays(("k_t", "k_d", "k_a", "k_p"), ("until", c.lease_until.type))
    )
    return (
        update(t.ledger)
        .where(*_of_keys_in(k), c.lease_owner == bindparam("owner"), c.lease_until == k.c.until)
        .values(lease_owner=None, lease_until=None)
    )


@cache
def _leases_taken() -> Any:
    """PostgreSQL: the leases of rows given as arrays of their keys (`_KEY_PARAMS`) dropped,
    whoever holds them, in one execution, the held rows locked in key order first; it
    returns each of them as (its key, the end of its lease as it was)."""
    c = t.ledger.c
    k = _locked_in_key_order(
        _keys_as_arrays(_KEY_PARAMS), c.lease_until.label("was"), where=[c.lease_owner.is_not(None)]
    )
    return (
        update(t.ledger)
        .where(*_of_keys_in(k))
        .values(lease_owner=None, lease_until=None)
        .returning(k.c.t, k.c.d, k.c.a, k.c.p, k.c.was)
    )


@cache
def _lease_dropped() -> Any:
    """SQLite: a row's lease dropped by its key (`_KEY_PARAMS`), whoever holds it."""
    return _by_key().values(lease_owner=None, lease_until=None)


def _as_read(was: LedgerRow, stamp: datetime | None) -> dict[str, Any]:
    """The `_FOLDED` columns of `was` as `_settle_as_claimed` compares them (:w_<column>),
    its score timestamp `stamp` when its claim stamped one."""
    values = _bound(was, _FOLDED, "w_")
    if stamp is not None:
        values["w_last_timestamp"] = utc(stamp)
    return values


# SQLite: a lease's parameters of `_by_key` as one tuple a row (`LedgerRepo.lease`)
_LEASED = ("lease_owner", "lease_until", "last_timestamp", *_KEY_PARAMS)
# SQLite: `_settle_as_claimed`'s parameters as one tuple a row (`execute_tuples`), taken
# from the rows by `attrgetter` and only the times and the state converted: binding them
# by name through dicts cost about a third of the statement
_AS_CLAIMED = (
    *_KEY_PARAMS,
    *_SETTLED,
    "claim_until",
    *(f"w_{n}" for n in _FOLDED),
    "release_owner",
)
_SETTLED_OF = attrgetter(*_SETTLED)
_FOLDED_OF = attrgetter(*_FOLDED)
_TIMES = tuple(n for n in _SETTLED if t.ledger.c[n].type.python_type is datetime)


def _as_claimed_tuples(
    dialect: Any,
    rows: Sequence[tuple[LedgerRow, LedgerRow, datetime | None, datetime]],
    owner: str,
) -> list[tuple[Any, ...]]:
    """The `_AS_CLAIMED` values of each of `rows` (as `settle_as_claimed` takes them) as
    SQLite stores them: what `_settled`, `_as_read` and `execute_rows` bind, without a dict
    or a Python step for every value."""
    text = remembered(as_stored(dialect, t.ledger.c.updated_at))
    settled_times = [_SETTLED.index(n) for n in _TIMES]
    folded_times = [_FOLDED.index(n) for n in _TIMES if n in _FOLDED]
    state_s, state_f = _SETTLED.index("state"), _FOLDED.index("state")
    stamp_f = _FOLDED.index("last_timestamp")
    out = []
    for new, was, stamp, until in rows:
        k = new.key
        s = list(_SETTLED_OF(new))
        s[state_s] = s[state_s].value
        for i in settled_times:
            s[i] = text(s[i])
        w = list(_FOLDED_OF(was))
        w[state_f] = w[state_f].value
        for i in folded_times:
            w[i] = text(w[i])
        if stamp is not None:
            w[stamp_f] = text(stamp)
        out.append(
            (k.tenant_id, k.destination_id, k.activity_id, k.person_id, *s, text(until), *w, owner)
        )
    return out


@cache
def _ledger_by_json_keys() -> Any:
    """SQLite: the rows of any keys in one statement, the keys bound as one JSON array of
    [tenant, destination, activity, person] (`json_each` walks it; each key is one probe of
    the primary key)."""
    c = t.ledger.c
    k = func.json_each(bindparam("keys")).table_valued("value").alias("k")
    return (
        select(t.ledger)
        .select_from(k)
        .join(
            t.ledger,
            and_(
                c.tenant_id == func.json_extract(k.c.value, "$[0]"),
                c.destination_id == func.json_extract(k.c.value, "$[1]"),
                c.activity_id == func.json_extract(k.c.value, "$[2]"),
                c.person_id == func.json_extract(k.c.value, "$[3]"),
            ),
        )
    )


def _of_keys_in(k: Any) -> list[ColumnElement[bool]]:
    """The ledger's rows whose keys are rows of `k` (`_keys_as_arrays`)."""
    c = t.ledger.c
    return [
        c.tenant_id == k.c.t,
        c.destination_id == k.c.d,
        c.activity_id == k.c.a,
        c.person_id == k.c.p,
    ]


def _keys_as_arrays(names: tuple[str, str, str, str], *more: tuple[str, Any]) -> Any:
    """PostgreSQL: ledger keys bound as four text arrays (`names`: tenant, destination,
    activity, person) and `more` (name, element type) beside them, unnested into rows `k`
    (columns t, d, a, p and `more`'s names)."""
    id_type = t.ledger.c.person_id.type
    keys = [(col, name, id_type) for col, name in zip("tdap", names, strict=True)]
    return rows_of_arrays("k", *keys, *((n, n, typ) for n, typ in more))


@cache
def _ledger_by_keys(for_update: bool) -> Any:
    """PostgreSQL: the rows of any keys in one statement (a live batch spans courses,
    activities and destinations; a statement per activity was a round trip each), in key
    order, so its locks are too."""
    c = t.ledger.c
    k = _keys_as_arrays(("t", "d", "a", "p"))
    q = (
        select(t.ledger)
        .join(k, and_(*_of_keys_in(k)))
        .order_by(c.tenant_id, c.destination_id, c.activity_id, c.person_id)
    )
    return q.with_for_update(of=t.ledger) if for_update else q


@cache
def _next_pending_course() -> Any:
    """SQLite: the first course above :above ('' for the first of all) with rows pending
    of :priority, one seek along `ix_ledger_fair`."""
    c = t.ledger.c
    return select(func.min(c.course_id)).where(
        c.state == DeliveryState.PENDING.value,
        c.priority == bindparam("priority"),
        c.course_id > bindparam("above"),
    )


@cache
def _pending_courses_round() -> Any:
    """PostgreSQL: up to :most courses with rows in :state of :priority, in course order
    from just above :above round to it (`LedgerRepo._pending_courses`), in one statement:
    each step is one seek along `ix_ledger_fair`, and the steps after the wrap are taken
    only when the courses above :above are too few."""
    next_course = (
        "SELECT min(course_id) FROM ledger"
        " WHERE state = :state AND priority = :priority AND course_id > {prev}"
    )
    return text(
        f"""
        WITH RECURSIVE
          above(course, n) AS (
              SELECT ({next_course.format(prev=":above")}), 1
            UNION ALL
              SELECT ({next_course.format(prev="above.course")}), n + 1
              FROM above WHERE above.course IS NOT NULL AND n < :most
          ),
          wrapped(course, n) AS (
              SELECT ({next_course.format(prev="''")}), 1 WHERE :above <> ''
            UNION ALL
              SELECT ({next_course.format(prev="wrapped.course")}), n + 1
              FROM wrapped WHERE wrapped.course < :above AND n < :most
          )
        SELECT course FROM (
            SELECT 0 AS turn, course FROM above WHERE course IS NOT NULL
          UNION ALL
            SELECT 1 AS turn, course FROM wrapped WHERE course <= :above
        ) AS found
        ORDER BY turn, course LIMIT :most
        """
    )


def _shares(priority: int, free: list[Any], skip: int, share: int) -> Any:
    """PostgreSQL: pending rows of `priority` of each course in :courses, oldest first, the
    `share` after the first `skip` of each (rows other claimers hold skipped)."""
    c = t.ledger.c
    k = rows_of_arrays("k", ("course", "courses", c.course_id.type))
    each = (
        select(t.ledger)
        .where(
            c.state == DeliveryState.PENDING.value,
            c.priority == priority,
            c.course_id == k.c.course,
            *free,
        )
        .order_by(c.updated_at)
        .offset(skip)
        .limit(share)
        .with_for_update(skip_locked=True)
        .lateral("each")
    )
    return select(each).select_from(k.join(each, true()))


def _oldest_first(found: tuple[LedgerRow, str]) -> datetime:
    assert found[0].updated_at is not None  # NOT NULL
    return found[0].updated_at


def _key_tuple(k: LedgerKey) -> tuple[str, str, str, str]:
    return (k.tenant_id, k.destination_id, k.activity_id, k.person_id)


@cache
def _lease_by_arrays() -> Any:
    """PostgreSQL: lease rows given as arrays of their keys and timestamps, one execution."""
    c = t.ledger.c
    k = _keys_as_arrays(("k_t", "k_d", "k_a", "k_p"), ("ts", c.last_timestamp.type))
    return (
        update(t.ledger)
        .where(*_of_keys_in(k))
        .values(
            lease_owner=bindparam("owner"),
            lease_until=bindparam("until"),
            last_timestamp=k.c.ts,
        )
    )


# The sizes `next_retry_at`'s statements come in: a chunk of destinations is padded (its
# last one asked again) to the next of them. SQLAlchemy caches a compiled statement per
# shape, and one scalar subquery per destination made a shape per count of destinations: a
# vendor's thousands of platforms filled the cache (500 statements of up to 100 subqueries,
# tens of MB) with statements that differ only in length.
_PROBES = (1, 4, 16, 64, 100)
_END_OF_TIME = datetime(9999, 12, 31, tzinfo=UTC)


def _padded(chunk: list[tuple[str, str]]) -> list[tuple[str, str]]:
    size = next(n for n in _PROBES if n >= len(chunk))
    return chunk + [chunk[-1]] * (size - len(chunk))


class LedgerRepo(SqlRepo, ports.LedgerRepo):
    def get(self, key: LedgerKey) -> LedgerRow | None:
        c = t.ledger.c
        row = (
            self.conn.execute(
                select(t.ledger).where(
                    c.tenant_id == key.tenant_id,
                    c.destination_id == key.destination_id,
                    c.activity_id == key.activity_id,
                    c.person_id == key.person_id,
                )
            )
            .mappings()
            .first()
        )
        return _ledger_row(row) if row else None

    def get_many(
        self,
        tenant_id: str,
        destination_id: str,
        course_id: str,
        activity_ids: Sequence[str] | None = None,
        *,
        state: DeliveryState | None = None,
        lock: bool = False,
    ) -> dict[tuple[str, str], LedgerRow]:
        c = t.ledger.c
        q = select(t.ledger).where(
            c.tenant_id == tenant_id, c.destination_id == destination_id, c.course_id == course_id
        )
        if activity_ids:
            q = q.where(c.activity_id.in_(list(activity_ids)))
        if state is not None:
            q = q.where(c.state == state.value)
        if lock and self.postgres:
            # locked as the rows come out of the sort: in key order (SQLite: its write
            # transaction already excludes every other writer)
            q = q.order_by(c.activity_id, c.person_id).with_for_update(of=t.ledger)
        return {
            (r["activity_id"], r["person_id"]): _ledger_row(r)
            for r in self.conn.execute(q).mappings()
        }

    @staticmethod
    def _values(row: LedgerRow, course_id: str) -> dict[str, Any]:
        v = to_row(row, exclude=("key",))
        v.update(
            tenant_id=row.key.tenant_id,
            destination_id=row.key.destination_id,
            activity_id=row.key.activity_id,
            person_id=row.key.person_id,
            course_id=course_id,
        )
        return v

    def save(self, row: LedgerRow, course_id: str) -> None:
        upsert(self.conn, t.ledger, self._values(row, course_id))

    def refresh_statistics(self) -> None:
        self._analyze("ledger")

    def save_many(
        self,
        rows: Sequence[tuple[LedgerRow, str]],
        *,
        release_for: str | None = None,
        bulk: bool | None = None,
    ) -> None:
        # one cached statement: on PostgreSQL one execution with the rows as arrays, on
        # SQLite the driver's executemany (a multi-VALUES statement would be compiled anew
        # each time)
        if not rows:
            return
        values = [self._values(r, cid) for r, cid in rows]
        if bulk is not None:
            for v in values:
                v["priority"] = 1 if bulk else LIVE
        dialect = self.conn.dialect.name
        stmt = _ledger_upsert(dialect, tuple(values[0]), release_for is not None)
        if dialect == "postgresql":
            # one statement may change a row once: a key given twice keeps its last values,
            # as one execution per row would leave it
            last = {_key_tuple(r.key): v for (r, _), v in zip(rows, values, strict=True)}
            params: dict[str, Any] = unnest_params(t.ledger, list(last.values()))
            if release_for is not None:
                params["release_owner"] = release_for
            self.conn.execute(stmt, params)
            return
        shared = {"release_owner": release_for} if release_for is not None else None
        execute_rows(self.conn, stmt, values, shared)

    def insert_new(self, rows: Sequence[tuple[LedgerRow, str]]) -> set[LedgerKey]:
        if not rows:
            return set()
        keys = tuple(c.name for c in t.ledger.primary_key.columns)
        values = [self._values(r, cid) for r, cid in rows]
        stmt, params = bulk_insert(self.conn, t.ledger, values, conflict=list(keys), returning=keys)
        return {
            LedgerKey(r.tenant_id, r.destination_id, r.activity_id, r.person_id)
            for r in self.conn.execute(stmt, params)
        }

    def settle(self, rows: Sequence[tuple[LedgerRow, str, datetime]], owner: str) -> None:
        if not rows:
            return
        if self.postgres:
            # one statement (arrays), each row with its claim's lease to match
            values = [
                {**self._values(r, cid), "lease_owner": owner, "lease_until": utc(until)}
                for r, cid, until in rows
            ]
            last = {_key_tuple(r.key): v for (r, _, _), v in zip(rows, values, strict=True)}
            stmt = _ledger_upsert("postgresql", tuple(values[0]), False)
            self.conn.execute(stmt, unnest_params(t.ledger, list(last.values())))
            return
        # SQLite: only the delivery columns, by key. An upsert of the whole row cost twice
        # as much per row: every column bound again, the desired result re-encoded as JSON.
        # The claim's lease is matched as the column stores it (a parameter of the
        # statement's own is bound as given).
        stored = t.ledger.c.lease_until.type.dialect_impl(self.conn.dialect).bind_processor(
            self.conn.dialect
        )
        assert stored is not None
        execute_rows(
            self.conn,
            _settle_update(),
            [_settled(r) | {"claim_until": stored(utc(until))} for r, _, until in rows],
            {"release_owner": owner},
        )

    def settle_as_claimed(
        self,
        rows: Sequence[tuple[LedgerRow, LedgerRow, datetime | None, datetime]],
        owner: str,
    ) -> int:
        if not rows:
            return 0
        if self.postgres:
            settled = [_settled(new) for new, _, _, _ in rows]
            read = [_as_read(was, stamp) for _, was, stamp, _ in rows]
            params: dict[str, Any] = {
                k: [v[k] for v in settled] for k in ("k_t", "k_d", "k_a", "k_p")
            }
            params.update({f"s_{n}": [v[n] for v in settled] for n in _SETTLED})
            params.update({k: [v[k] for v in read] for k in read[0]})
            params["until"] = [utc(until) for _, _, _, until in rows]
            params["owner"] = owner
            return int(self.conn.execute(_settle_as_claimed_by_arrays(), params).rowcount)
        dialect = self.conn.dialect
        return execute_tuples(
            self.conn, _settle_as_claimed(), _AS_CLAIMED, _as_claimed_tuples(dialect, rows, owner)
        )

    def course_of(self, key: LedgerKey) -> str | None:
        c = t.ledger.c
        return self.conn.execute(
            select(c.course_id).where(
                c.tenant_id == key.tenant_id,
                c.destination_id == key.destination_id,
                c.activity_id == key.activity_id,
                c.person_id == key.person_id,
            )
        ).scalar()

    def due(
        self,
        now: datetime,
        limit: int,
        *,
        tenant_id: str | None = None,
        destination_id: str | None = None,
        course_id: str | None = None,
    ) -> list[LedgerRow]:
        c = t.ledger.c
        conds: list[ColumnElement[bool]] = [
            (c.state == DeliveryState.PENDING.value)
            | and_(c.state == DeliveryState.RETRYING.value, c.next_attempt_at <= utc(now)),
            *_in_scope(tenant_id, destination_id, course_id),
        ]
        rows = self.conn.execute(
            select(t.ledger).where(*conds).order_by(c.updated_at).limit(limit)
        ).mappings()
        return [_ledger_row(r) for r in rows]

    def next_retry_at(
        self, now: datetime, destinations: Sequence[tuple[str, str]]
    ) -> datetime | None:
        # per destination, the first retrying row `claimable` could take (its conditions):
        # one probe each along `ix_ledger_retrying`, a statement per 100 destinations. Then
        # the rows before it, leased, are claimable once their leases end: few, they are
        # what claims hold.
        c = t.ledger.c
        ends = case((c.lease_until > c.next_attempt_at, c.lease_until), else_=c.next_attempt_at)
        soonest: datetime | None = None
        keys = list(destinations)
        for i in range(0, len(keys), _PROBES[-1]):
            chunk = keys[i : i + _PROBES[-1]]
            asked = _padded(chunk)
            frees = self.conn.execute(
                select(
                    *(
                        select(c.next_attempt_at)
                        .where(t.RETRYING, *self._due_conditions(now, tn, dest, None, None, ())[1:])
                        .order_by(c.next_attempt_at)
                        .limit(1)
                        .scalar_subquery()
                        for tn, dest in asked
                    )
                )
            ).one()[: len(chunk)]
            padding = (None,) * (len(asked) - len(chunk))
            # every probe has the same conditions, a destination without a free row
            # compared with the end of time, so the statement's shape is its size alone
            helds = self.conn.execute(
                select(
                    *(
                        select(func.min(ends))
                        .where(
                            t.RETRYING,
                            *_in_scope(tn, dest),
                            c.lease_until >= utc(now),
                            c.next_attempt_at < (utc(free) if free is not None else _END_OF_TIME),
                        )
                        .scalar_subquery()
                        for (tn, dest), free in zip(asked, frees + padding, strict=True)
                    )
                )
            ).one()[: len(chunk)]
            for free, held in zip(frees, helds, strict=True):
                if held is not None:
                    # claimable once `now` is past its lease
                    held = utc(held) + timedelta(microseconds=1)
                for at in (utc(free), held):
                    if at is not None and (soonest is None or at < soonest):
                        soonest = at
        return soonest

    def counts_by_state(
        self, tenant_id: str, *, destination_id: str | None = None, course_id: str | None = None
    ) -> dict[str, int]:
        c = t.ledger.c
        conds = [c.tenant_id == tenant_id, *_in_scope(None, destination_id, course_id)]
        rows = self.conn.execute(select(c.state, func.count()).where(*conds).group_by(c.state))
        return {r[0]: r[1] for r in rows}

    def counts_by_outcome(
        self, tenant_id: str, destination_id: str, reason_codes: Sequence[str]
    ) -> list[tuple[str, bool, bool, int]]:
        c = t.ledger.c
        sent = c.delivered_hash.is_not(None)
        # reason_code IN (...) is NULL for a row without one: count it as not matching
        marked = func.coalesce(c.reason_code.in_(list(reason_codes)), False)
        rows = self.conn.execute(
            select(c.state, sent, marked, func.count())
            .where(*_in_scope(tenant_id, destination_id))
            .group_by(c.state, sent, marked)
        )
        return [(r[0], bool(r[1]), bool(r[2]), r[3]) for r in rows]

    def waiting(self, tenant_id: str) -> list[tuple[str, int, datetime | None]]:
        c = t.ledger.c
        rows = self.conn.execute(
            select(c.destination_id, func.count(), func.min(c.updated_at))
            .where(c.tenant_id == tenant_id, c.state.in_(_WAITING))
            .group_by(c.destination_id)
            .order_by(c.destination_id)
        )
        return [(r[0], int(r[1]), utc(r[2])) for r in rows]

    def waiting_at(self, tenant_id: str, destination_id: str) -> int:
        c = t.ledger.c
        return int(
            self.conn.execute(
                select(func.count()).where(
                    c.tenant_id == tenant_id,
                    c.destination_id == destination_id,
                    c.state.in_(_WAITING),
                )
            ).scalar_one()
        )

    def oldest_waiting(self, tenant_id: str) -> tuple[LedgerRow, str] | None:
        c = t.ledger.c
        r = (
            self.conn.execute(
                select(t.ledger)
                .where(c.tenant_id == tenant_id, c.state.in_(_WAITING))
                .order_by(c.updated_at, c.destination_id, c.activity_id, c.person_id)
                .limit(1)
            )
            .mappings()
            .first()
        )
        return None if r is None else (_ledger_row(r), r["course_id"])

    def for_person(self, tenant_id: str, person_id: str) -> list[LedgerRow]:
        c = t.ledger.c
        rows = self.conn.execute(
            select(t.ledger).where(c.tenant_id == tenant_id, c.person_id == person_id)
        ).mappings()
        return [_ledger_row(r) for r in rows]

    def of_people(
        self,
        tenant_id: str,
        destination_id: str,
        course_ids: Collection[str],
        person_ids: Collection[str],
        *,
        lock: bool = False,
    ) -> list[tuple[LedgerRow, str]]:
        if not course_ids or not person_ids:
            return []
        c = t.ledger.c
        q = (
            select(t.ledger)
            .where(
                c.tenant_id == tenant_id,
                c.destination_id == destination_id,
                c.course_id.in_(sorted(set(course_ids))),
                c.person_id.in_(sorted(set(person_ids))),
            )
            .order_by(c.tenant_id, c.destination_id, c.activity_id, c.person_id)
        )
        if lock and self.postgres:
            # locked as the rows come out of the sort: in key order (SQLite: its write
            # transaction already excludes every other writer)
            q = q.with_for_update(of=t.ledger)
        return [(row, course) for row, course, _ in _ledger_rows(self.conn.execute(q))]

    def iter_scope(
        self, tenant_id: str, destination_id: str, course_id: str, batch: int = 1000
    ) -> Iterator[list[LedgerRow]]:
        c = t.ledger.c
        after: tuple[str, str] = ("", "")
        while True:
            rows = (
                self.conn.execute(
                    select(t.ledger)
                    .where(
                        c.tenant_id == tenant_id,
                        c.destination_id == destination_id,
                        c.course_id == course_id,
                        (c.activity_id > after[0])
                        | and_(c.activity_id == after[0], c.person_id > after[1]),
                    )
                    .order_by(c.activity_id, c.person_id)
                    .limit(batch)
                )
                .mappings()
                .all()
            )
            if not rows:
                return
            yield [_ledger_row(r) for r in rows]
            after = (rows[-1]["activity_id"], rows[-1]["person_id"])

    # --- the sync engine: row locks, leases, scope summaries ---------------------------

    def get_keys(
        self, keys: Sequence[LedgerKey], *, lock: bool = False
    ) -> dict[LedgerKey, LedgerRow]:
        return {row.key: row for row in map(_ledger_row, self._of_keys(keys, lock))}

    def get_claimed(
        self, keys: Sequence[LedgerKey], owner: str
    ) -> dict[LedgerKey, tuple[LedgerRow, datetime | None]]:
        out: dict[LedgerKey, tuple[LedgerRow, datetime | None]] = {}
        for r in self._of_keys(keys, True):
            row = _ledger_row(r)
            out[row.key] = (row, utc(r["lease_until"]) if r["lease_owner"] == owner else None)
        return out

    def _of_keys(self, keys: Sequence[LedgerKey], lock: bool) -> Any:
        if not keys:
            return []
        if self.postgres:
            ordered = [_key_tuple(k) for k in sorted(set(keys), key=_key_tuple)]
            columns = {n: [k[i] for k in ordered] for i, n in enumerate("tdap")}
            return self.conn.execute(_ledger_by_keys(lock), columns).mappings()
        # SQLite: the keys as one JSON array, one statement whatever they span (a row-value
        # IN, `(a, b, c, d) IN (VALUES ...)`, scans the whole ledger; a statement per
        # activity with its persons in an IN list cost 2.4x the CPU of this for a settle
        # batch spanning activities). No row locks: its write transaction already excludes
        # every other writer.
        wanted = json.dumps([list(_key_tuple(k)) for k in set(keys)])
        return self.conn.execute(_ledger_by_json_keys(), {"keys": wanted}).mappings()

    def _due_conditions(
        self,
        now: datetime,
        tenant_id: str | None,
        destination_id: str | None,
        course_id: str | None,
        activity_ids: Sequence[str] | None,
        exclude_destinations: Sequence[tuple[str, str]],
    ) -> list[Any]:
        c = t.ledger.c
        conds: list[Any] = [
            (c.state == DeliveryState.PENDING.value)
            | and_(c.state == DeliveryState.RETRYING.value, c.next_attempt_at <= utc(now)),
            c.lease_until.is_(None) | (c.lease_until < utc(now)),
            *_in_scope(tenant_id, destination_id, course_id, activity_ids),
        ]
        if exclude_destinations:
            conds.append(tuple_(c.tenant_id, c.destination_id).not_in(list(exclude_destinations)))
        return conds

    def claimable(
        self,
        now: datetime,
        limit: int,
        *,
        tenant_id: str | None = None,
        destination_id: str | None = None,
        course_id: str | None = None,
        activity_ids: Sequence[str] | None = None,
        exclude_destinations: Sequence[tuple[str, str]] = (),
        courses_after: str = "",
        live_only: bool = False,
    ) -> list[Claimable]:
        # Each state is read along its own index (`ix_ledger_fair`, `ix_ledger_due`), so a
        # claim costs the same whatever the backlog; SKIP LOCKED on PostgreSQL (SQLite's
        # write transaction already excludes other claimers).
        c = t.ledger.c
        # the due conditions without the first (the state): each query below names its own
        free = self._due_conditions(
            now, tenant_id, destination_id, course_id, activity_ids, exclude_destinations
        )[1:]
        if live_only:
            free.append(c.priority == LIVE)
        retrying = (
            select(t.ledger)
            .where(c.state == DeliveryState.RETRYING.value, c.next_attempt_at <= utc(now), *free)
            .order_by(c.next_attempt_at, c.activity_id, c.person_id)
            .limit(limit)
        )
        # (priority, order within it, stamp, row, course): live grades first; within a
        # priority, due retries, then pending rows shared between courses
        found: list[tuple[int, int, datetime, LedgerRow, str]] = []
        for row, course, prio in self._locked(retrying):
            assert row.next_attempt_at is not None
            found.append((prio, -1, row.next_attempt_at, row, course))
        for priority in (LIVE,) if live_only else CLAIM_PRIORITIES:
            if sum(1 for f in found if f[0] <= priority) >= limit:
                break  # enough rows claimed ahead of this priority
            courses = (
                [course_id]
                if course_id
                else self._pending_courses(priority, courses_after, FAIR_COURSES)
            )
            for turn, (row, course) in enumerate(
                self._shared_pending(priority, courses, limit, free)
            ):
                assert row.updated_at is not None  # NOT NULL
                found.append((priority, turn, row.updated_at, row, course))
        found.sort(key=lambda f: (f[0], f[1]))
        chosen = found[:limit]
        # sent oldest first within the batch
        chosen.sort(key=lambda f: (f[0], f[2]))
        return [Claimable(row, course, priority) for priority, _, _, row, course in chosen]

    def _locked(self, q: Select[Any]) -> list[tuple[LedgerRow, str, int]]:
        if self.postgres:
            q = q.with_for_update(skip_locked=True)
        return _ledger_rows(self.conn.execute(q))

    def _pending_courses(self, priority: int, after: str, most: int) -> list[str]:
        """Up to `most` courses with pending rows of `priority`, in course order from just
        after `after` round to it: one index seek each (`ix_ledger_fair`), however many rows
        each course holds."""
        if self.postgres:
            return self._pending_courses_pg(priority, after, most)

        def next_course(above: str | None) -> str | None:
            params = {"priority": priority, "above": above or ""}
            found: str | None = self.conn.execute(_next_pending_course(), params).scalar()
            return found

        out: list[str] = []
        cursor: str | None = after or None
        wrapped = cursor is None
        while len(out) < most:
            course = next_course(cursor)
            if course is None or (wrapped and after and course > after):
                if wrapped:
                    break
                wrapped, cursor = True, None
                continue
            if course in out:
                break
            out.append(course)
            cursor = course
        return out

    def _pending_courses_pg(self, priority: int, after: str, most: int) -> list[str]:
        args = {"state": DeliveryState.PENDING.value, "priority": priority}
        found = self.conn.execute(_pending_courses_round(), {**args, "above": after, "most": most})
        return list(found.scalars())

    def _shared_pending(
        self, priority: int, courses: list[str], limit: int, free: list[Any]
    ) -> list[tuple[LedgerRow, str]]:
        """Pending rows of `priority`, oldest first within each course, dealt round-robin
        between `courses` (one of each, then the next of each): a remaster of one course
        cannot hold back another course's rows. Each course is read along `ix_ledger_fair`
        in bounded steps; a course that runs short leaves its share to the others."""
        c = t.ledger.c
        rows: dict[str, list[tuple[LedgerRow, str]]] = {course: [] for course in courses}
        # A step reads past the rows taken so far by their count (OFFSET). On PostgreSQL
        # each statement sees the latest commits: rows another claimer held at one step
        # (skipped) and let go unchanged come back ahead of ours at the next, and the
        # offset then lands on rows this claim already holds. Those are left out: a key
        # claimed twice would be sent twice at once.
        taken_keys: set[tuple[str, str, str, str]] = set()

        def new_rows(got: list[tuple[LedgerRow, str]]) -> list[tuple[LedgerRow, str]]:
            fresh = [g for g in got if _key_tuple(g[0].key) not in taken_keys]
            taken_keys.update(_key_tuple(g[0].key) for g in fresh)
            return fresh

        # SQLite: one statement for every course and step, built once per claim (building
        # it again for each cost more than running it)
        step = (
            None
            if self.postgres
            else select(t.ledger)
            .where(
                c.state == DeliveryState.PENDING.value,
                c.priority == bindparam("priority"),
                c.course_id == bindparam("course"),
                *free,
            )
            # index order only: a tie-breaker outside the index would sort every row of a
            # remaster that made them pending at one instant
            .order_by(c.updated_at)
            .offset(bindparam("skip"))
            .limit(bindparam("share"))
        )
        open_courses = list(courses)
        room = limit
        taken = 0  # rows each open course gave so far (a course stays open giving its share)
        while open_courses and room > 0:
            share = max(1, -(-room // len(open_courses)))
            still: list[str] = []
            if self.postgres:
                # every open course's next share in one statement: a round trip each was
                # most of a claim's time
                got_pg: dict[str, list[tuple[LedgerRow, str]]] = {k: [] for k in open_courses}
                q = _shares(priority, free, taken, share)
                for row, in_course, _ in _ledger_rows(
                    self.conn.execute(q, {"courses": open_courses})
                ):
                    got_pg[in_course].append((row, in_course))
                for course, got in got_pg.items():
                    got.sort(key=_oldest_first)  # each course's rows in its own order
                    fresh = new_rows(got)
                    rows[course] += fresh
                    room -= len(fresh)
                    if len(got) == share:
                        still.append(course)
                open_courses, taken = still, taken + share
                continue
            assert step is not None
            for course in open_courses:
                params = {"priority": priority, "course": course, "skip": taken, "share": share}
                got = [(row, course) for row, _, _ in _ledger_rows(self.conn.execute(step, params))]
                fresh = new_rows(got)
                rows[course] += fresh
                room -= len(fresh)
                if len(got) == share:
                    still.append(course)
            open_courses, taken = still, taken + share
        dealt: list[tuple[LedgerRow, str]] = []
        depth = max((len(v) for v in rows.values()), default=0)
        for i in range(depth):
            dealt += [rows[course][i] for course in courses if i < len(rows[course])]
        return dealt[:limit]

    def lease(
        self, rows: Sequence[tuple[LedgerKey, datetime]], owner: str, until: datetime
    ) -> None:
        if not rows:
            return
        if self.postgres:
            self.conn.execute(
                _lease_by_arrays(),
                {
                    "k_t": [k.tenant_id for k, _ in rows],
                    "k_d": [k.destination_id for k, _ in rows],
                    "k_a": [k.activity_id for k, _ in rows],
                    "k_p": [k.person_id for k, _ in rows],
                    "ts": [utc(ts) for _, ts in rows],
                    "owner": owner,
                    "until": utc(until),
                },
            )
            return
        # SQLite: through the driver's executemany, one tuple a row already in the stored
        # form (`execute_tuples`): the lease's owner and end, the same for every row, made
        # once, and each row's score timestamp formatted, with no dict a row and no
        # converter per value (a settle compares the lease's end as stored here)
        text = as_stored(self.conn.dialect, t.ledger.c.last_timestamp)  # every time's form
        shared = (owner, text(until))
        execute_tuples(
            self.conn,
            _by_key(),
            _LEASED,
            [(*shared, text(ts), *_key_tuple(k)) for k, ts in rows],
        )

    def release(self, claims: Sequence[tuple[LedgerKey, datetime]], owner: str) -> int:
        if not claims:
            return 0
        if self.postgres:
            keys = [_key_tuple(k) for k, _ in claims]
            params: dict[str, Any] = {n: [k[i] for k in keys] for i, n in enumerate(_KEY_PARAMS)}
            params["until"] = [utc(u) for _, u in claims]
            params["owner"] = owner
            return int(self.conn.execute(_release_by_arrays(), params).rowcount)
        # SQLite: the driver's executemany of `_settle_update` with no settled column
        return execute_rows(
            self.conn,
            _settle_update(),
            [
                {"k_t": k[0], "k_d": k[1], "k_a": k[2], "k_p": k[3], "claim_until": utc(u)}
                for k, u in ((_key_tuple(k), u) for k, u in claims)
            ],
            {"release_owner": owner},
            like=_RELEASED,
        )

    def take_leases(self, keys: Sequence[LedgerKey], now: datetime) -> list[LedgerKey]:
        if not keys:
            return []
        if self.postgres:
            wanted = sorted({_key_tuple(k) for k in keys})
            params = {n: [k[i] for k in wanted] for i, n in enumerate(_KEY_PARAMS)}
            found = self.conn.execute(_leases_taken(), params)
            leased = [(LedgerKey(*r[:4]), utc(r[4])) for r in found]
        else:
            # SQLite: no row locks (its write transaction already excludes every other
            # writer): the held leases read, then dropped by the driver's executemany
            key_of = itemgetter("tenant_id", "destination_id", "activity_id", "person_id")
            leased = [
                (LedgerKey(*key_of(r)), utc(r["lease_until"]))
                for r in self._of_keys(keys, False)
                if r["lease_owner"] is not None
            ]
            execute_tuples(
                self.conn, _lease_dropped(), _KEY_PARAMS, [_key_tuple(k) for k, _ in leased]
            )
        # a run-out lease is dropped too (its send may still settle while no claim took the
        # row again) but is not said to be in flight
        return [k for k, until in leased if until is not None and until > now]

    def clear_leases(self, owner: str | None = None) -> int:
        c = t.ledger.c
        q = update(t.ledger).where(c.lease_owner.is_not(None))
        if owner is not None:
            q = q.where(c.lease_owner == owner)
        return int(self.conn.execute(q.values(lease_owner=None, lease_until=None)).rowcount or 0)

    def retry_now(self, tenant_id: str, destination_id: str, now: datetime) -> int:
        c = t.ledger.c
        q = (
            update(t.ledger)
            .where(
                c.tenant_id == tenant_id,
                c.destination_id == destination_id,
                c.state == DeliveryState.RETRYING.value,
                c.next_attempt_at > utc(now),
            )
            .values(next_attempt_at=utc(now))
        )
        return int(self.conn.execute(q).rowcount or 0)

    def due_summary(
        self,
        now: datetime,
        *,
        tenant_id: str | None = None,
        destination_id: str | None = None,
        course_id: str | None = None,
        activity_ids: Sequence[str] | None = None,
        exclude_destinations: Sequence[tuple[str, str]] = (),
    ) -> tuple[int, int, datetime | None, datetime | None]:
        c = t.ledger.c
        scope = _in_scope(tenant_id, destination_id, course_id, activity_ids)
        if exclude_destinations:
            scope.append(tuple_(c.tenant_id, c.destination_id).not_in(list(exclude_destinations)))
        due_now = self.conn.execute(
            select(func.count())
            .select_from(t.ledger)
            .where(*scope, *self._due_conditions(now, None, None, None, None, ()))
        ).scalar()
        leased, leases_end = self.conn.execute(
            select(func.count(), func.max(c.lease_until))
            .select_from(t.ledger)
            .where(*scope, c.lease_until >= utc(now))
        ).one()
        next_retry = self.conn.execute(
            select(func.min(c.next_attempt_at)).where(
                *scope, c.state == DeliveryState.RETRYING.value
            )
        ).scalar()
        return int(due_now or 0), int(leased or 0), utc(next_retry), utc(leases_end)

    def not_delivered_since(
        self,
        tenant_id: str,
        since: datetime,
        *,
        destination_id: str | None = None,
        course_id: str | None = None,
        activity_ids: Sequence[str] | None = None,
    ) -> list[tuple[str, str, str, str]]:
        c = t.ledger.c
        holds = [c.state != DeliveryState.SKIPPED.value, c.desired_hash.is_not(None)]
        before = c.delivered_at.is_(None) | (c.delivered_at < utc(since))
        return self._keys_where(
            tenant_id, [*holds, before], destination_id, course_id, activity_ids
        )

    def delivered_since(
        self,
        tenant_id: str,
        since: datetime,
        *,
        destination_id: str | None = None,
        course_id: str | None = None,
        activity_ids: Sequence[str] | None = None,
    ) -> list[tuple[str, str, str, str]]:
        c = t.ledger.c
        since_then = [c.state == DeliveryState.DELIVERED.value, c.delivered_at >= utc(since)]
        return self._keys_where(tenant_id, since_then, destination_id, course_id, activity_ids)

    def _keys_where(
        self,
        tenant_id: str,
        conds: Sequence[Any],
        destination_id: str | None,
        course_id: str | None,
        activity_ids: Sequence[str] | None,
    ) -> list[tuple[str, str, str, str]]:
        """(destination, course, activity, person) of the scope's rows that meet `conds`:
        the one query of `delivered_since` and `not_delivered_since`."""
        c = t.ledger.c
        scope = _in_scope(None, destination_id, course_id, activity_ids)
        rows = self.conn.execute(
            select(c.destination_id, c.course_id, c.activity_id, c.person_id).where(
                c.tenant_id == tenant_id, *conds, *scope
            )
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def scope_summary(
        self,
        tenant_id: str,
        *,
        destination_id: str | None = None,
        course_id: str | None = None,
        activity_ids: Sequence[str] | None = None,
        delivered_since: datetime | None = None,
        leave_out: Sequence[str] = (),
    ) -> list[tuple[str, str | None, bool, int]]:
        c = t.ledger.c
        conds: list[Any] = [
            c.tenant_id == tenant_id,
            *_in_scope(None, destination_id, course_id, activity_ids),
        ]
        if leave_out:
            conds.append(c.destination_id.not_in(list(leave_out)))
        fresh: Any = (
            case((c.delivered_at >= utc(delivered_since), True), else_=False)
            if delivered_since is not None
            else literal(False)
        )
        rows = self.conn.execute(
            select(c.state, c.reason_code, fresh.label("fresh"), func.count())
            .where(*conds)
            .group_by(c.state, c.reason_code, fresh)
        )
        return [(r[0], r[1], bool(r[2]), int(r[3])) for r in rows]


# delivery log outcomes that were a send (an override seen or a repair asked for is not)
SENDS = ("delivered", "retrying", "rejected")


class DeliveryLogRepo(SqlRepo, ports.DeliveryLogRepo):
    def add(
        self,
        *,
        key: LedgerKey,
        run_id: str | None,
        sent_at: datetime,
        sent_hash: str | None,
        payload: dict[str, Any] | None,
        outcome: str,
        remote_status: int | None,
        remote_message: str | None,
        latency_ms: float | None,
        score_scale: float | None = None,
    ) -> None:
        self.conn.execute(
            insert(t.deliveries).values(
                tenant_id=key.tenant_id,
                destination_id=key.destination_id,
                activity_id=key.activity_id,
                person_id=key.person_id,
                run_id=run_id,
                sent_at=utc(sent_at),
                sent_hash=sent_hash,
                payload=json.loads(json.dumps(payload, default=str))
                if payload is not None
                else None,
                outcome=outcome,
                remote_status=remote_status,
                remote_message=remote_message,
                latency_ms=latency_ms,
                score_scale=score_scale,
            )
        )

    def for_key(self, key: LedgerKey, limit: int = 20) -> list[dict[str, Any]]:
        c = t.deliveries.c
        rows = self.conn.execute(
            select(t.deliveries)
            .where(
                c.tenant_id == key.tenant_id,
                c.destination_id == key.destination_id,
                c.activity_id == key.activity_id,
                c.person_id == key.person_id,
            )
            .order_by(c.id.desc())
            .limit(limit)
        ).mappings()
        return [dict(r) | {"sent_at": utc(r["sent_at"])} for r in rows]

    def last_holding(
        self, tenant_id: str, destination_id: str, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        if not keys:
            return {}
        c = t.deliveries.c
        wanted = set(keys)
        activities = sorted({a for a, _ in wanted})
        newest = (
            select(func.max(c.id))
            .where(
                c.tenant_id == tenant_id,
                c.destination_id == destination_id,
                c.activity_id.in_(activities),
                c.person_id.in_(sorted({p for _, p in wanted})),
                c.outcome.in_(HOLDING_OUTCOMES),
            )
            .group_by(c.activity_id, c.person_id)
        )
        rows = self.conn.execute(
            select(
                c.activity_id, c.person_id, c.outcome, c.payload, c.sent_at, c.score_scale
            ).where(c.id.in_(newest.scalar_subquery()))
        ).mappings()
        return {
            (r["activity_id"], r["person_id"]): dict(r) | {"sent_at": utc(r["sent_at"])}
            for r in rows
            if (r["activity_id"], r["person_id"]) in wanted
        }

    def last_tries(
        self, tenant_id: str, destination_id: str, activity_ids: Sequence[str]
    ) -> dict[tuple[str, str], datetime]:
        if not activity_ids:
            return {}
        c = t.deliveries.c
        rows = self.conn.execute(
            select(c.activity_id, c.person_id, func.max(c.sent_at))
            .where(
                c.tenant_id == tenant_id,
                c.destination_id == destination_id,
                c.activity_id.in_(list(activity_ids)),
                c.outcome.in_(SENDS),
            )
            .group_by(c.activity_id, c.person_id)
        )
        return {(a, p): utc(at) for a, p, at in rows}

    def since(self, tenant_id: str, since: datetime) -> list[dict[str, Any]]:
        c = t.deliveries.c
        rows = self.conn.execute(
            select(c.destination_id, c.sent_at, c.outcome, c.latency_ms)
            .where(c.tenant_id == tenant_id, c.sent_at >= utc(since), c.outcome.in_(SENDS))
            .order_by(c.sent_at)
        ).mappings()
        return [dict(r) | {"sent_at": utc(r["sent_at"])} for r in rows]

    def logged_to(self, tenant_id: str, destination_id: str) -> bool:
        c = t.deliveries.c
        line = select(c.id).where(  # ix_deliveries_key: one index probe
            c.tenant_id == tenant_id, c.destination_id == destination_id
        )
        return self.conn.execute(line.limit(1)).first() is not None

    def last_send(self, tenant_id: str, destination_id: str, since: datetime) -> datetime | None:
        c = t.deliveries.c
        return utc(
            self.conn.execute(
                select(func.max(c.sent_at)).where(
                    c.tenant_id == tenant_id,
                    c.sent_at >= utc(since),  # ix_deliveries_time: the recent log alone
                    c.destination_id == destination_id,
                    c.outcome.in_(SENDS),
                )
            ).scalar()
        )

    def delivered_by_run(
        self,
        tenant_id: str,
        run_id: str,
        destination_ids: Sequence[str],
        since: datetime,
        until: datetime | None = None,
    ) -> dict[str, int]:
        c = t.deliveries.c
        if not destination_ids:
            return {}
        before = [] if until is None else [c.sent_at < utc(until)]
        keys = (
            select(c.destination_id, c.activity_id, c.person_id)
            .where(
                c.tenant_id == tenant_id,
                c.sent_at >= utc(since),  # ix_deliveries_time: the run's time alone
                *before,
                c.run_id == run_id,
                c.destination_id.in_(list(destination_ids)),
                c.outcome == "delivered",
            )
            .distinct()
            .subquery()
        )
        rows = self.conn.execute(
            select(keys.c.destination_id, func.count()).group_by(keys.c.destination_id)
        )
        return {str(d): int(n) for d, n in rows}

    def add_many(self, entries: Sequence[dict[str, Any]]) -> None:
        if not entries:
            return
        if not self.postgres:
            # SQLite: one tuple a line, only the time and the payload converted
            # (`execute_tuples`)
            c = t.deliveries.c
            when = remembered(as_stored(self.conn.dialect, c.sent_at))
            payload = as_stored(self.conn.dialect, c.payload)
            execute_tuples(
                self.conn,
                _log_insert(),
                _LOGGED,
                [_log_line(e, when, payload) for e in entries],
            )
            return
        insert_many(
            self.conn,
            t.deliveries,
            [dict(zip(_LOGGED, _log_line(e, utc, _as_given), strict=True)) for e in entries],
        )


# the delivery log's columns as `add_many` gives them (`_log_line`), in this order; on SQLite
# every column's value but the time's and the payload's is stored as given
# (`test_sqlite_rows.py` compares with SQLAlchemy's)
_LOGGED = (
    "tenant_id",
    "destination_id",
    "activity_id",
    "person_id",
    "run_id",
    "sent_at",
    "sent_hash",
    "payload",
    "outcome",
    "remote_status",
    "remote_message",
    "latency_ms",
    "score_scale",
)


def _log_line(
    e: dict[str, Any], when: Callable[[datetime], Any], payload: Callable[[Any], Any]
) -> tuple[Any, ...]:
    """One line of the delivery log, its values in `_LOGGED`'s order, the time and the
    payload as `when` and `payload` store them."""
    k = e["key"]
    return (
        k.tenant_id,
        k.destination_id,
        k.activity_id,
        k.person_id,
        e.get("run_id"),
        when(e["sent_at"]),
        e.get("sent_hash"),
        payload(_stored_payload(e.get("payload"))),
        e["outcome"],
        e.get("remote_status"),
        e.get("remote_message"),
        e.get("latency_ms"),
        e.get("score_scale"),
    )


def _as_given(value: Any) -> Any:
    return value


@cache
def _log_insert() -> Any:
    return insert(t.deliveries)


def _stored_payload(payload: dict[str, Any] | None) -> Any:
    """A sent payload as the log stores it: as it is when it is JSON already (a score body
    always is), else through JSON with anything else as its text (a time, a decimal)."""
    if payload is None or _is_json(payload):
        return payload
    return json.loads(json.dumps(payload, default=str))


def _is_json(v: Any) -> bool:
    """Whether `v` is made of what JSON holds only: checked in a fifth of the time a trip
    through JSON takes, once for every line of the delivery log."""
    kind = type(v)
    if kind is str or kind is float or kind is int or kind is bool or v is None:
        return True
    if kind is dict:
        return all(type(k) is str and _is_json(x) for k, x in v.items())
    if kind is list:
        return all(_is_json(x) for x in v)
    return False
