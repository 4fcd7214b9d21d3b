"""The ledger rows of some people in some courses at one destination (SQLite and
PostgreSQL): what a learner moved to another SIS student or class reads, under lock
(`sis.mapping._send_to_new_student`), instead of each course's whole ledger."""

from __future__ import annotations

from datetime import UTC, datetime

from gradesync.adapters.db.database import Database
from gradesync.domain.model import DeliveryState, LedgerKey, LedgerRow
from gradesync.testing import add_course, add_destination, add_tenant

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _row(tenant: str, dest: str, activity: str, person: str) -> LedgerRow:
    key = LedgerKey(tenant, dest, activity, person)
    return LedgerRow(key, DeliveryState.PENDING, "h", {"score_given": 7.0}, updated_at=NOW)


def _ledger(db: Database) -> None:
    """p1, p2 and p3 in courses c1 (a1, a2), c2 (b1) and c3 (d1) at sis and lms, and p1 in
    c1 of tenant t2."""
    for tenant in ("t1", "t2"):
        add_tenant(db.uow, tenant)
        add_course(db.uow, tenant, "c1", ("a1", "Quiz", 10.0), ("a2", "Essay", 10.0))
        add_course(db.uow, tenant, "c2", ("b1", "Quiz", 10.0))
        add_course(db.uow, tenant, "c3", ("d1", "Quiz", 10.0))
        for dest in ("lms", "sis"):
            add_destination(db.uow, tenant, dest, links={"c1": "L1", "c2": "L2", "c3": "L3"})
    course = {"a1": "c1", "a2": "c1", "b1": "c2", "d1": "c3"}
    rows = [
        (_row("t1", dest, activity, person), course[activity])
        for dest in ("lms", "sis")
        for activity in ("a2", "a1", "b1", "d1")
        for person in ("p3", "p1", "p2")
    ]
    rows.append((_row("t2", "sis", "a1", "p1"), "c1"))
    with db.uow() as uow:
        uow.ledger.save_many(rows, bulk=False)
        uow.commit()


def test_the_rows_of_some_people_in_some_courses_at_one_destination(db: Database) -> None:
    _ledger(db)
    with db.uow() as uow:
        ledger = uow.ledger
        found = ledger.of_people("t1", "sis", ["c2", "c1"], {"p1", "p3", "p9"})
        locked = ledger.of_people("t1", "sis", ["c1", "c2"], ["p3", "p1"], lock=True)
        one = ledger.of_people("t1", "lms", ["c3"], ["p2"])
        none = [
            ledger.of_people("t1", "sis", [], ["p1"]),
            ledger.of_people("t1", "sis", ["c1"], []),
        ]
    # only those people's rows in those courses at that destination, each with its course,
    # in key order (activity, then person)
    assert [(r.key.activity_id, r.key.person_id, c) for r, c in found] == [
        ("a1", "p1", "c1"),
        ("a1", "p3", "c1"),
        ("a2", "p1", "c1"),
        ("a2", "p3", "c1"),
        ("b1", "p1", "c2"),
        ("b1", "p3", "c2"),
    ]
    assert {(r.key.tenant_id, r.key.destination_id) for r, _ in found} == {("t1", "sis")}
    assert all(r.state is DeliveryState.PENDING and r.desired_hash == "h" for r, _ in found)
    assert locked == found
    assert [(r.key, c) for r, c in one] == [(LedgerKey("t1", "lms", "d1", "p2"), "c3")]
    assert none == [[], []]
