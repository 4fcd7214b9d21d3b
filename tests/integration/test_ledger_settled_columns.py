"""SQLite's settle writes a row's delivery columns by their key, and `_SETTLED` is the one
list of them: the columns it names are written and no others, and they are exactly the
fields folding a send's outcome into a row (`after_delivery`) can change. Before, settle
named the columns again by hand and nothing read `_SETTLED`: a column added to one list and
not the other was silently not written on SQLite, while PostgreSQL wrote the whole row."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.db.repos import ledger as ledger_repo
from gradesync.domain.ledger import (
    BackoffPolicy,
    Delivered,
    DeliveryOutcome,
    Rejected,
    RetryLater,
    after_delivery,
)
from gradesync.domain.model import DeliveryState, LedgerKey, LedgerRow
from gradesync.domain.reasons import Reason
from tests.support.ledger import NOW, UNTIL, store_claimed

KEY = LedgerKey("t1", "lms", "a1", "p1")
FAILED = Reason("remote_5xx", "the platform answered 503")


def _row(**changes: Any) -> LedgerRow:
    row = LedgerRow(
        KEY,
        DeliveryState.RETRYING,
        desired_hash="h2",
        desired={"score_given": 7.0},
        delivered_hash="h1",
        delivered_at=NOW - timedelta(days=1),
        last_timestamp=NOW - timedelta(days=1),
        tries=2,
        next_attempt_at=NOW,
        reason_code="remote_5xx",
        reason_text="busy",
        remote_status=503,
        remote_message="busy",
        updated_at=NOW - timedelta(minutes=5),
        pending_since=NOW - timedelta(hours=1),
    )
    return replace(row, **changes)


def _changed(before: LedgerRow, after: LedgerRow) -> set[str]:
    return {
        f.name
        for f in dataclasses.fields(LedgerRow)
        if getattr(before, f.name) != getattr(after, f.name)
    }


def test_settled_names_what_folding_an_outcome_can_change() -> None:
    later = NOW + timedelta(seconds=3)
    folds: list[tuple[LedgerRow, str, DeliveryOutcome, datetime | None]] = [
        (_row(), "h2", Delivered(200, "ok"), later),
        (_row(), "h1", Delivered(200, "ok"), None),  # a newer value arrived meanwhile
        (_row(state=DeliveryState.SKIPPED), "h2", Delivered(200), None),
        (_row(), "h2", RetryLater(FAILED, remote_status=500), None),
        (_row(), "h2", RetryLater(FAILED, retry_after=timedelta(seconds=9)), None),
        (_row(tries=9), "h2", RetryLater(FAILED, remote_status=500), None),
        (_row(), "h2", Rejected(FAILED, 400, "no"), None),
        (_row(), "h1", Rejected(FAILED, 400, "no"), None),  # a rejection of an older value
    ]
    changed: set[str] = set()
    for row, sent_hash, outcome, sent_timestamp in folds:
        after = after_delivery(
            row,
            sent_hash,
            outcome,
            later,
            backoff=BackoffPolicy(max_tries=10),
            sent_timestamp=sent_timestamp,
        )
        changed |= _changed(row, after)
    assert changed == set(ledger_repo._SETTLED)


def test_sqlite_settle_writes_the_columns_settled_names_and_no_others(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_claimed(sqlite_db, [_row()], NOW)  # the claim the settle writes for
    # one list decides: a column it leaves out is not written
    kept = tuple(n for n in ledger_repo._SETTLED if n != "remote_message")
    monkeypatch.setattr(ledger_repo, "_SETTLED", kept)
    later = NOW + timedelta(seconds=3)
    settled = _row(
        state=DeliveryState.DELIVERED,
        desired_hash="h9",  # not a delivery column: stays as stored
        delivered_hash="h2",
        delivered_at=later,
        last_timestamp=later,
        tries=0,
        next_attempt_at=None,
        reason_code=None,
        reason_text=None,
        remote_status=200,
        remote_message="ok",
        updated_at=later,
        pending_since=None,
    )
    with sqlite_db.uow() as uow:
        uow.ledger.settle([(settled, "c1", UNTIL)], "w1")
        uow.commit()
    with sqlite_db.uow() as uow:
        got = uow.ledger.get_keys([KEY])[KEY]
    assert got == replace(settled, desired_hash="h2", remote_message="busy")


# a value other than `_row()`'s for each field a stored row may have changed to
_OTHER: dict[str, Any] = {
    "state": DeliveryState.PENDING,
    "desired_hash": "h3",
    "desired": {"score_given": 9.0},
    "delivered_hash": "h0",
    "delivered_at": NOW - timedelta(days=2),
    "last_timestamp": NOW + timedelta(seconds=1),
    "tries": 5,
    "next_attempt_at": NOW + timedelta(minutes=1),
    "reason_code": "overridden",
    "reason_text": "typed into the LMS",
    "remote_status": 418,
    "remote_message": "teapot",
    "updated_at": NOW - timedelta(minutes=5, microseconds=1),  # a microsecond apart
    "pending_since": NOW - timedelta(hours=2),
}
_FOLDS: list[tuple[dict[str, Any], str, DeliveryOutcome]] = [
    ({}, "h2", Delivered(200, "ok")),
    ({}, "h1", Delivered(200, "ok")),  # a newer value arrived meanwhile
    ({"state": DeliveryState.PENDING, "tries": 0}, "h1", Delivered(200)),
    # pending since it last changed (`updated_at`), failing now
    ({"state": DeliveryState.PENDING, "pending_since": None}, "h2", RetryLater(FAILED)),
    ({"state": DeliveryState.SKIPPED}, "h2", Delivered(200)),
    ({"state": DeliveryState.SKIPPED}, "h2", Rejected(FAILED, 400)),
    ({}, "h2", RetryLater(FAILED, remote_status=500)),
    ({}, "h2", RetryLater(FAILED, retry_after=timedelta(seconds=9))),
    ({"tries": 9}, "h2", RetryLater(FAILED, remote_status=500)),
    ({}, "h2", Rejected(FAILED, 400, "no")),
    ({}, "h1", Rejected(FAILED, 400, "no")),
    ({"delivered_hash": "h2"}, "h1", Rejected(FAILED, 400, "no")),
]


def _folded(row: LedgerRow, sent_hash: str, outcome: DeliveryOutcome) -> dict[str, Any]:
    """What a settle writes of `row` with `outcome` folded in."""
    later = NOW + timedelta(seconds=3)
    after = after_delivery(
        row, sent_hash, outcome, later, backoff=BackoffPolicy(max_tries=10), sent_timestamp=NOW
    )
    return {n: getattr(after, n) for n in ledger_repo._SETTLED}


def test_a_fold_writes_nothing_from_a_column_folded_does_not_name() -> None:
    """A settle that did not read its row again compares the `_FOLDED` columns alone with
    what its claim read: any other column changed meanwhile must not change what it
    writes. And each column it compares is one some fold depends on."""
    fields = [f.name for f in dataclasses.fields(LedgerRow) if f.name != "key"]
    assert set(ledger_repo._FOLDED) <= set(fields)
    for name in fields:
        changes = [
            _folded(_row(**base), sent, outcome)
            != _folded(_row(**(base | {name: _OTHER[name]})), sent, outcome)
            for base, sent, outcome in _FOLDS
        ]
        assert any(changes) == (name in ledger_repo._FOLDED), name


def _claimed_row(db: Database) -> tuple[LedgerRow, datetime]:
    """`_row()` stored and claimed by w1 (lease until UNTIL), its score timestamp stamped:
    the row as the claim read it, and the stamp."""
    stamp = NOW + timedelta(microseconds=11)
    store_claimed(db, [_row()], stamp)
    return _row(), stamp


def _lease(db: Database) -> tuple[str | None, datetime | None]:
    with db.uow() as uow:
        owner, until = uow.conn.exec_driver_sql("SELECT lease_owner, lease_until FROM ledger").one()
    if isinstance(until, str):  # SQLite's text
        until = datetime.fromisoformat(until).replace(tzinfo=UTC)
    return owner, until


@pytest.mark.parametrize(
    "changed", [*ledger_repo._FOLDED, "lease taken again", "lease given back", "another's lease"]
)
def test_a_settle_as_claimed_leaves_a_row_changed_since_its_claim(
    db: Database, changed: str
) -> None:
    """Written by another writer while the claim's send was out (any column the fold reads
    or carries over, or the lease), the row is left as it is, lease and all; the settle
    says it wrote nothing, so the settle writer reads it again."""
    was, stamp = _claimed_row(db)
    lease = ("w1", UNTIL)
    with db.uow() as uow:
        stored = uow.ledger.get_keys([KEY])[KEY]
        if changed in ledger_repo._FOLDED:
            uow.ledger.save_many([(replace(stored, **{changed: _OTHER[changed]}), "c1")])
        elif changed == "lease given back":
            assert uow.ledger.release([(KEY, UNTIL)], "w1") == 1
            lease = (None, None)
        else:
            lease = ("w2" if changed == "another's lease" else "w1", UNTIL + timedelta(minutes=1))
            uow.ledger.lease([(KEY, stamp)], lease[0], lease[1])
        uow.commit()
    with db.uow() as uow:
        before = uow.ledger.get_keys([KEY])[KEY]
    new = after_delivery(was, "h2", Delivered(200, "ok"), NOW, sent_timestamp=stamp)
    with db.uow() as uow:
        assert uow.ledger.settle_as_claimed([(new, was, stamp, UNTIL)], "w1") == 0
        uow.commit()
    with db.uow() as uow:
        assert uow.ledger.get_keys([KEY])[KEY] == before
    assert _lease(db) == lease


@pytest.mark.parametrize("meanwhile", [None, "remote_message"])
def test_a_settle_as_claimed_writes_a_row_as_its_claim_left_it(
    db: Database, meanwhile: str | None
) -> None:
    """The row as the claim left it (its lease, its stamp), or changed only in a column the
    fold neither reads nor keeps: the settled columns are written and the lease given
    back, the desired result as stored."""
    was, stamp = _claimed_row(db)
    if meanwhile is not None:
        with db.uow() as uow:
            stored = uow.ledger.get_keys([KEY])[KEY]
            uow.ledger.save_many([(replace(stored, **{meanwhile: _OTHER[meanwhile]}), "c1")])
            uow.commit()
    new = after_delivery(was, "h2", Delivered(200, "ok"), NOW, sent_timestamp=stamp)
    with db.uow() as uow:
        assert uow.ledger.settle_as_claimed([(new, was, stamp, UNTIL)], "w1") == 1
        uow.commit()
    with db.uow() as uow:
        got = uow.ledger.get_keys([KEY])[KEY]
    assert got == new and got.state is DeliveryState.DELIVERED and got.last_timestamp == stamp
    assert _lease(db) == (None, None)
