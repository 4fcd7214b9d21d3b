"""A column gone at its destination (`Provisioner.mark_gone`): its grades delivered there
are due again, read in one read under lock, so a grade computed meanwhile is not written
over with the one it replaced."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.ledger import Delivered
from gradesync.domain.model import DeliveryState, Destination, ItemLink, LedgerKey, LedgerRow
from gradesync.services.clock import SystemClock
from gradesync.services.delivery import Settlement
from gradesync.services.delivery.background import BackgroundWrites
from gradesync.services.delivery.governor import Governor
from gradesync.services.delivery.provisioning import Provisioner
from tests.support.races import start_second

from .conftest import COURSE, DEST, FAST, T, learner, ledger, seed, settle_writer

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
ITEM = ItemLink(T, DEST, "a1", "https://lms/courses/1/items/a1", details_hash="d1")


def _row(activity: str, i: int, state: DeliveryState = DeliveryState.DELIVERED) -> LedgerRow:
    delivered = "h" if state is DeliveryState.DELIVERED else None
    return LedgerRow(
        LedgerKey(T, DEST, activity, learner(i)), state, "h", {"score_given": 7.0},
        delivered_hash=delivered, delivered_at=NOW if delivered else None, updated_at=NOW,
    )  # fmt: skip


def _column(db: Database) -> tuple[Provisioner, Destination]:
    """a1's column linked (ITEM), its grades of p000-p002 delivered, p003's pending; a2's
    grade of p000 delivered to a column of its own. A worker's provisioner."""
    seed(db, learners=4, activities=("a1", "a2"))
    with db.uow() as uow:
        uow.links.save_item(ITEM)
        rows = [_row("a1", i) for i in range(3)] + [_row("a1", 3, DeliveryState.PENDING)]
        uow.ledger.save_many([(r, COURSE) for r in [*rows, _row("a2", 0)]])
        uow.commit()
        d = uow.destinations.get(T, DEST)
    assert d is not None
    background = BackgroundWrites()
    governor = Governor(db.uow, SystemClock(), FAST, background)
    return Provisioner(db.uow, FAST, background, governor), d


def test_a_gone_columns_delivered_grades_alone_are_due_again(db: Database) -> None:
    provisioner, d = _column(db)
    before = ledger(db)
    assert provisioner.mark_gone(d, COURSE, ITEM, NOW + timedelta(minutes=1)) == 3
    after = ledger(db)
    assert {k: r.state for k, r in after.items() if r.state is DeliveryState.PENDING} == {
        ("a1", learner(i)): DeliveryState.PENDING for i in range(4)
    }
    assert after[("a1", learner(0))].desired_hash == "h"
    assert after[("a1", learner(3))] == before[("a1", learner(3))]
    assert after[("a2", learner(0))] == before[("a2", learner(0))]
    with db.uow() as uow:
        stored = uow.links.item(T, DEST, "a1")
    assert stored is not None and stored.details_hash != ITEM.details_hash  # looked at next


async def test_a_send_under_way_to_a_gone_column_goes_again(db: Database) -> None:
    """p003's grade is being sent (claimed) when a1's column is found gone: its send may
    have reached the column before it went, and would settle the row delivered to a column
    that is no more. Its claim ends instead, so the row waits, due, for a send of its own."""
    provisioner, d = _column(db)
    key = LedgerKey(T, DEST, "a1", learner(3))
    until = NOW + timedelta(minutes=5)
    with db.uow() as uow:
        uow.ledger.lease([(key, NOW)], "w:1", until)
        uow.commit()
    sent = ledger(db)[("a1", learner(3))]
    assert provisioner.mark_gone(d, COURSE, ITEM, NOW + timedelta(minutes=1)) == 3

    writer = settle_writer(db.uow)
    try:
        writer.put(
            Settlement(
                key, COURSE, Delivered(200), until, sent_hash="h", timestamp=NOW, claimed=sent
            )
        )
        await writer.flush()
    finally:
        await writer.stop()
    assert writer.claims_ended == 1
    after = ledger(db)[("a1", learner(3))]
    assert after.state is DeliveryState.PENDING and after.delivered_hash is None


def test_the_grade_refused_for_a_gone_column_keeps_its_claim(db: Database) -> None:
    """The grade whose refusal found the column gone settles as refused (it waits for the
    column made again): its claim is not ended."""
    provisioner, d = _column(db)
    key = LedgerKey(T, DEST, "a1", learner(3))
    with db.uow() as uow:
        uow.ledger.lease([(key, NOW)], "w:1", NOW + timedelta(minutes=5))
        uow.commit()
    provisioner.mark_gone(d, COURSE, ITEM, NOW + timedelta(minutes=1), refused=key)
    with db.uow() as uow:
        assert uow.ledger.get_claimed([key], "w:1")[key][1] is not None


@pytest.mark.postgres
def test_a_grade_computed_while_its_column_is_marked_gone_is_not_written_over(
    postgres_db: Database,
) -> None:
    """p001's new grade is being computed (its row changed, not yet committed) as a1's
    column is found gone: the mark waits for it, then leaves it as computed, pending with
    its new value, and reopens the other delivered grades. Read without the lock, the
    mark would write p001's row back over it with the grade it replaced."""
    db = postgres_db
    provisioner, d = _column(db)
    key = LedgerKey(T, DEST, "a1", learner(1))
    with db.uow() as computing:
        [was] = computing.ledger.get_keys([key], lock=True).values()
        new = replace(was, state=DeliveryState.PENDING, desired_hash="h2", desired={"s": 9.0})
        computing.ledger.save_many([(new, COURSE)])
        marking = start_second(
            db, lambda: provisioner.mark_gone(d, COURSE, ITEM, NOW + timedelta(minutes=1))
        )
        assert marking.blocked, "the mark never waited for the row computed"
        computing.commit()
    assert marking.finish() == 2
    rows = ledger(db)
    assert rows[("a1", learner(1))].desired_hash == "h2"
    assert rows[("a1", learner(1))].desired == {"s": 9.0}
    assert {i: rows[("a1", learner(i))].state for i in (0, 2)} == {
        0: DeliveryState.PENDING,
        2: DeliveryState.PENDING,
    }
