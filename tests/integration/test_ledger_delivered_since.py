"""The ledger's rows delivered since a time, and those not, selected by the database (SQLite
and PostgreSQL): a run that writes a column itself makes due again the grades sent to it
meanwhile, as it was (`RunExecutor._resend_sent_since`), without reading the whole column."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from gradesync.adapters.db.database import Database
from gradesync.domain.model import DeliveryState, LedgerKey, LedgerRow
from gradesync.testing import add_course, add_destination, add_tenant

SINCE = datetime(2026, 11, 2, 12, 0, 0, 250_000, tzinfo=UTC)
AFTER, BEFORE = SINCE + timedelta(minutes=1), SINCE - timedelta(microseconds=1)


def _row(
    key: LedgerKey, state: DeliveryState = DeliveryState.DELIVERED, at: datetime | None = AFTER
) -> LedgerRow:
    return LedgerRow(
        key, state, "h", {"score_given": 7.0}, delivered_hash="h" if at else None,
        delivered_at=at, updated_at=AFTER,
    )  # fmt: skip


def _ledger(db: Database) -> None:
    """Column a1 of course c1 at lms, and rows beside it that are not in its scope."""
    for tenant in ("t1", "t2"):
        add_tenant(db.uow, tenant)
        add_course(db.uow, tenant, "c1", ("a1", "Quiz", 10.0), ("a2", "Essay", 10.0))
        add_course(db.uow, tenant, "c2", ("b1", "Quiz", 10.0))
        for dest in ("lms", "sis"):
            add_destination(db.uow, tenant, dest, links={"c1": "L1", "c2": "L2"})

    def key(person: str, activity: str = "a1", dest: str = "lms", tenant: str = "t1") -> LedgerKey:
        return LedgerKey(tenant, dest, activity, person)

    rows = [
        (_row(key("p1")), "c1"),  # delivered since: the one of the scope
        (_row(key("p2"), at=SINCE), "c1"),  # at `since` exactly counts
        (_row(key("p3"), at=BEFORE), "c1"),  # delivered before
        (_row(key("p4"), DeliveryState.PENDING), "c1"),  # delivered since, changed since
        (_row(key("p5"), DeliveryState.RETRYING), "c1"),  # its next send failed
        (_row(key("p6"), DeliveryState.PENDING, at=None), "c1"),  # never delivered
        (_row(key("p7"), DeliveryState.SKIPPED, at=None), "c1"),  # nothing to send
        # delivered since, out of the scope: another activity, destination, course, tenant
        (_row(key("p1", activity="a2")), "c1"),
        (_row(key("p1", dest="sis")), "c1"),
        (_row(key("p1", activity="b1")), "c2"),
        (_row(key("p1", tenant="t2")), "c1"),
    ]
    with db.uow() as uow:
        uow.ledger.save_many(rows, bulk=False)
        uow.commit()


def test_the_rows_of_a_column_delivered_since_a_time(db: Database) -> None:
    _ledger(db)
    with db.uow() as uow:
        ledger = uow.ledger

        def column(since: datetime) -> list[tuple[str, str, str, str]]:
            return ledger.delivered_since(
                "t1", since, destination_id="lms", course_id="c1", activity_ids=["a1"]
            )

        delivered = column(SINCE)
        # the same time in another zone selects the same rows
        also = column(SINCE.astimezone(timezone(timedelta(hours=1))))
        wider = ledger.delivered_since("t1", SINCE, destination_id="lms")
        others = ledger.not_delivered_since(
            "t1", SINCE, destination_id="lms", course_id="c1", activity_ids=["a1"]
        )
    assert sorted(delivered) == [("lms", "c1", "a1", "p1"), ("lms", "c1", "a1", "p2")]
    assert sorted(also) == sorted(delivered)
    assert sorted(p for _, c, a, p in wider) == ["p1", "p1", "p1", "p2"]
    assert {(c, a) for _, c, a, _ in wider} == {("c1", "a1"), ("c1", "a2"), ("c2", "b1")}
    # its neighbour, what a run from `since` did not write, is the rest of the column that
    # holds a result but for the rows delivered since and changed since (due anyway)
    assert sorted(p for *_, p in others) == ["p3", "p6"]
