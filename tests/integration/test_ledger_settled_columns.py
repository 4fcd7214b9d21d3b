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
from gradesync.domain.model import (
    DeliveryState,
    Destination,
    DestinationKind,
    LedgerKey,
    LedgerRow,
    Tenant,
)
from gradesync.domain.reasons import Reason

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
KEY = LedgerKey("t1", "lms", "a1", "p1")
UNTIL = NOW + timedelta(minutes=2)  # a claim's lease
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
    with sqlite_db.uow() as uow:
        uow.tenants.upsert(Tenant("t1", "Tenant"), NOW)
        uow.destinations.upsert(Destination("t1", "lms", DestinationKind.LTI13_AGS, "LMS"), NOW)
        uow.ledger.save_many([(_row(), "c1")])
        uow.ledger.lease([(KEY, NOW)], "w1", UNTIL)  # the claim the settle writes for
        uow.commit()
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
