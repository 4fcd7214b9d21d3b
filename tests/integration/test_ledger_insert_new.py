"""Rows inserted only where their key has none (SQLite and PostgreSQL): what the LTI 1.1 ->
1.3 migration writes for a grade it carries over, so that a row the engine computed
meanwhile is kept as computed (`lti.migration._carry_over`)."""

from __future__ import annotations

from datetime import UTC, datetime

from gradesync.adapters.db.database import Database
from gradesync.domain.model import DeliveryState, LedgerKey, LedgerRow
from gradesync.testing import add_course, add_destination, add_tenant

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _row(person: str, state: DeliveryState, digest: str) -> LedgerRow:
    key = LedgerKey("t1", "lms", "a1", person)
    delivered = digest if state is DeliveryState.DELIVERED else None
    return LedgerRow(key, state, digest, {"score_given": 7.0}, delivered, updated_at=NOW)


def test_only_keys_without_a_row_are_inserted(db: Database) -> None:
    add_tenant(db.uow, "t1")
    add_course(db.uow, "t1", "c1", ("a1", "Quiz", 10.0))
    add_destination(db.uow, "t1", "lms", links={"c1": "L1"})
    computed = _row("p2", DeliveryState.PENDING, "newer")
    with db.uow() as uow:
        uow.ledger.save_many([(computed, "c1")])
        uow.commit()

    carried = [_row(p, DeliveryState.DELIVERED, "older") for p in ("p1", "p2", "p3")]
    with db.uow() as uow:
        several = uow.ledger.insert_new([(r, "c1") for r in carried])
        one = uow.ledger.insert_new([(_row("p4", DeliveryState.DELIVERED, "older"), "c1")])
        again = uow.ledger.insert_new([(_row("p4", DeliveryState.PENDING, "newer"), "c1")])
        nothing = uow.ledger.insert_new([])
        uow.commit()

    assert several == {carried[0].key, carried[2].key}
    assert one == {LedgerKey("t1", "lms", "a1", "p4")} and again == nothing == set()
    with db.uow() as uow:
        rows = uow.ledger.get_many("t1", "lms", "c1")
    assert rows[("a1", "p2")] == computed  # kept as computed
    assert {p: r.state for (_, p), r in rows.items()} == {
        "p1": DeliveryState.DELIVERED,
        "p2": DeliveryState.PENDING,
        "p3": DeliveryState.DELIVERED,
        "p4": DeliveryState.DELIVERED,
    }
    assert rows[("a1", "p1")] == carried[0]
