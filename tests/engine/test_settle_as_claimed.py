"""The settle writer writes a send's outcome into the row as its claim read it, without
reading the row again, only while the row is still as that claim left it: a newer grade
computed during the send (ingest changes a claimed row's desired state and keeps its
lease), or a lease that ran out and was taken again, sends the batch's outcomes back to be
folded into their rows read again under lock."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from gradesync.adapters.db.database import Database
from gradesync.domain.ledger import Delivered
from gradesync.domain.model import DeliveryState, LedgerKey, LedgerRow
from gradesync.services.clock import SystemClock
from gradesync.services.compute import compute_activity
from gradesync.services.delivery import Settlement
from gradesync.services.delivery.settle import SettleWriter
from gradesync.services.worker import Clients, Engine
from gradesync.testing import DoubleFactory
from tests.support.statements import statements

from .conftest import COURSE, DEST, FAST, T, learner, ledger, post, seed, settle_writer

PEOPLE = 3


async def _claimed(
    db: Database, people: int = PEOPLE
) -> tuple[dict[LedgerKey, LedgerRow], datetime, datetime]:
    """Three learners' grades (or `people`'s) computed, then claimed by w:1 (two minutes):
    each row as the claim read it, the score timestamp stamped on them and the claim's
    lease_until."""
    seed(db, learners=people)
    post(db, None, [("a1", learner(i), 7.0) for i in range(people)])
    await _compute(db)
    rows = {r.key: r for r in ledger(db).values()}
    stamp = SystemClock().now()
    until = stamp + timedelta(minutes=2)
    with db.uow() as uow:
        uow.ledger.lease([(k, stamp) for k in rows], "w:1", until)
        uow.commit()
    return rows, stamp, until


async def _compute(db: Database) -> None:
    engine = Engine(db.uow, SystemClock(), DoubleFactory(), FAST)
    await engine.process_dirty()
    await engine.aclose()


def _delivered(row: LedgerRow, stamp: datetime, until: datetime) -> Settlement:
    """The settlement of a send of `row` the destination took, carrying the row."""
    return Settlement(
        row.key,
        COURSE,
        Delivered(200),
        until,
        sent_hash=row.desired_hash,
        timestamp=stamp,
        payload={"scoreGiven": 7.0},
        logged=True,
        claimed=row,
    )


def _leases(db: Database) -> dict[str, str | None]:
    with db.engine.connect() as conn:
        found = conn.exec_driver_sql("SELECT person_id, lease_owner FROM ledger")
        return {person: owner for person, owner in found}


def _logged(db: Database, key: LedgerKey) -> list[str]:
    with db.uow() as uow:
        return [e["outcome"] for e in uow.deliveries.for_key(key)]


async def test_outcomes_of_rows_as_their_claim_left_them_are_written_without_a_read(
    db: Database,
) -> None:
    rows, stamp, until = await _claimed(db)
    writer = settle_writer(db.uow)
    try:
        for row in rows.values():
            writer.put(_delivered(row, stamp, until))
        await writer.flush()
    finally:
        await writer.stop()
    assert writer.read_again == 0
    after = ledger(db)
    assert {r.state for r in after.values()} == {DeliveryState.DELIVERED}
    assert all(
        r.delivered_hash == r.desired_hash and r.last_timestamp == stamp for r in after.values()
    )
    assert set(_leases(db).values()) == {None}
    assert all(_logged(db, k) == ["delivered"] for k in rows)


async def test_a_grade_computed_during_the_send_stays_pending_for_the_newer_value(
    db: Database,
) -> None:
    """One learner's new attempt is computed while the batch is out: ingest rewrites the
    claimed row's desired state (keeping its lease and its place in the queue). The old
    value's delivery must leave that row pending with the new value, and the others
    delivered, each outcome written and logged once."""
    rows, stamp, until = await _claimed(db)
    changed = LedgerKey(T, DEST, "a1", learner(1))
    post(db, None, [("a1", learner(1), 9.0)])
    await _compute(db)
    newer = ledger(db)[("a1", learner(1))]
    assert newer.desired_hash != rows[changed].desired_hash
    assert _leases(db)[learner(1)] == "w:1"  # still claimed: computing keeps the lease

    writer = settle_writer(db.uow)
    try:
        for row in rows.values():
            writer.put(_delivered(row, stamp, until))
        await writer.flush()
    finally:
        await writer.stop()
    assert writer.read_again == 1  # one row not as its claim read it: read again
    after = ledger(db)
    row = after[("a1", learner(1))]
    assert row.state is DeliveryState.PENDING
    assert row.desired_hash == newer.desired_hash
    assert row.delivered_hash == rows[changed].desired_hash  # what the LMS holds now
    others = [after[("a1", learner(i))] for i in (0, 2)]
    assert all(r.state is DeliveryState.DELIVERED for r in others)
    assert set(_leases(db).values()) == {None}
    assert all(_logged(db, k) == ["delivered"] for k in rows)
    assert writer.claims_ended == 0


def _remaster(db: Database, person: str) -> None:
    """`person`'s grade of a1 remastered (computed by a run, pending whatever it was)."""
    compute_activity(
        db.uow,
        SystemClock(),
        Clients(DoubleFactory()).capabilities,
        tenant_id=T,
        destination_id=DEST,
        course_id=COURSE,
        activity_id="a1",
        person_ids=[person],
        remaster=True,
    )


async def test_a_remaster_during_the_send_has_the_grade_sent_again(db: Database) -> None:
    """A remaster computes while a batch is out (a person edited the LMS's gradebook after
    the send reached it): the send carried the value still desired, so its outcome would
    settle the row delivered over the remaster's mark and the grade would not go again. The
    remaster ends those claims: their rows wait, due, for a send of their own; rows the
    remaster did not compute settle as usual."""
    rows, stamp, until = await _claimed(db)
    remastered = LedgerKey(T, DEST, "a1", learner(1))
    _remaster(db, learner(1))
    assert _leases(db)[learner(1)] is None  # its claim ended

    writer = settle_writer(db.uow)
    try:
        for row in rows.values():
            writer.put(_delivered(row, stamp, until))
        await writer.flush()
    finally:
        await writer.stop()
    assert writer.claims_ended == 1
    after = ledger(db)
    assert after[("a1", learner(1))].state is DeliveryState.PENDING
    assert after[("a1", learner(1))].desired_hash == rows[remastered].desired_hash
    assert {after[("a1", learner(i))].state for i in (0, 2)} == {DeliveryState.DELIVERED}
    assert set(_leases(db).values()) == {None}
    assert _logged(db, remastered) == []  # its send goes again, and is logged then


async def test_a_remaster_of_a_newer_grade_during_the_send_keeps_the_claim(
    db: Database,
) -> None:
    """A newer attempt of p001's is remastered while the older grade is being sent: the
    claim is kept, so the newer grade waits for the older send's settle and goes after it,
    in order (ending the claim would let both sends race, the older able to land last)."""
    rows, stamp, until = await _claimed(db)
    changed = LedgerKey(T, DEST, "a1", learner(1))
    post(db, None, [("a1", learner(1), 9.0)])
    _remaster(db, learner(1))
    assert _leases(db)[learner(1)] == "w:1"

    writer = settle_writer(db.uow)
    try:
        writer.put(_delivered(rows[changed], stamp, until))
        await writer.flush()
    finally:
        await writer.stop()
    assert writer.claims_ended == 0
    row = ledger(db)[("a1", learner(1))]
    assert row.state is DeliveryState.PENDING
    assert row.delivered_hash == rows[changed].desired_hash != row.desired_hash


async def test_a_lease_taken_again_is_left_to_its_new_claim(db: Database) -> None:
    """The lease of one row ran out and another worker claimed it: the outcome (and the
    release of another row, not sent) of the old claim is not written over it."""
    rows, stamp, until = await _claimed(db)
    taken = LedgerKey(T, DEST, "a1", learner(0))
    unsent = LedgerKey(T, DEST, "a1", learner(2))
    with db.uow() as uow:
        uow.ledger.lease([(taken, stamp)], "w:2", until + timedelta(minutes=1))
        uow.commit()
    before = ledger(db)[("a1", learner(0))]

    writer = settle_writer(db.uow)
    try:
        writer.put(_delivered(rows[taken], stamp, until))
        writer.put(_delivered(rows[LedgerKey(T, DEST, "a1", learner(1))], stamp, until))
        writer.put(Settlement(unsent, COURSE, None, until))  # let go unsent
        await writer.flush()
    finally:
        await writer.stop()
    assert writer.read_again == 1 and writer.claims_ended == 1
    after = ledger(db)
    assert after[("a1", learner(0))] == before
    assert after[("a1", learner(1))].state is DeliveryState.DELIVERED
    assert after[("a1", learner(2))] == replace(rows[unsent], last_timestamp=stamp)
    assert _leases(db) == {learner(0): "w:2", learner(1): None, learner(2): None}
    assert _logged(db, taken) == []


async def test_a_release_of_a_lease_taken_again_counts_its_lease_gone(db: Database) -> None:
    """Let go unsent, without a read: a lease given back by its own claim only, and one
    taken since by another worker counted as a lease gone (no outcome was left unwritten)."""
    rows, stamp, until = await _claimed(db)
    taken = LedgerKey(T, DEST, "a1", learner(0))
    with db.uow() as uow:
        uow.ledger.lease([(taken, stamp)], "w:2", until + timedelta(minutes=1))
        uow.commit()
    writer = settle_writer(db.uow)
    try:
        for key in rows:
            writer.put(Settlement(key, COURSE, None, until))
        await writer.flush()
    finally:
        await writer.stop()
    assert (writer.read_again, writer.claims_ended, writer.leases_gone) == (0, 0, 1)
    assert _leases(db) == {learner(0): "w:2", learner(1): None, learner(2): None}


async def test_taking_leases_says_in_flight_only_those_not_run_out(db: Database) -> None:
    """A learner moved to another SIS student has the leases of their rows taken
    (`sis.mapping._send_to_new_student`): every lease is dropped, but one that ran out was
    said in flight too, and the grade's history then said a send was under way."""
    rows, stamp, _ = await _claimed(db)
    ran_out = LedgerKey(T, DEST, "a1", learner(0))
    with db.uow() as uow:
        uow.ledger.lease([(ran_out, stamp)], "w:2", stamp - timedelta(seconds=1))
        taken = uow.ledger.take_leases(list(rows), stamp)
        uow.commit()
    assert sorted(k.person_id for k in taken) == [learner(1), learner(2)]
    assert set(_leases(db).values()) == {None}


async def test_taking_leases_writes_once_and_leaves_the_rows_not_held_as_they_are(
    db: Database,
) -> None:
    """The leases of a moved learner's rows are dropped in one write (it was a statement a
    row): a row given with no lease is left as it is, a row not given keeps its lease, and
    a key given twice, or with no row, changes nothing more."""
    _, stamp, until = await _claimed(db, 4)
    first, free, third = (LedgerKey(T, DEST, "a1", learner(i)) for i in range(3))
    with db.uow() as uow:
        assert uow.ledger.release([(free, until)], "w:1") == 1
        uow.commit()
    nobody = LedgerKey(T, DEST, "a1", "p999")
    before = ledger(db)
    with statements(db) as seen, db.uow() as uow:
        taken = uow.ledger.take_leases([third, first, free, first, nobody], stamp)
        uow.commit()
    assert sorted(k.person_id for k in taken) == [learner(0), learner(2)]
    assert _leases(db) == {learner(0): None, learner(1): None, learner(2): None, learner(3): "w:1"}
    after = ledger(db)
    assert {k: after[k] for k in (("a1", learner(1)), ("a1", learner(3)))} == {
        k: before[k] for k in (("a1", learner(1)), ("a1", learner(3)))
    }
    assert len([s for s in seen if "UPDATE ledger" in s]) == 1, seen


async def test_a_retry_whose_lease_was_taken_is_said_due_by_its_settle(db: Database) -> None:
    """A claimed retry whose lease a move to another SIS student took: its settle writes
    nothing and says the row due (a claim made meanwhile may have skipped it), as it does a
    pending one; a retry was left to the next poll."""
    rows, stamp, until = await _claimed(db)
    key = LedgerKey(T, DEST, "a1", learner(0))
    retrying = replace(
        rows[key], state=DeliveryState.RETRYING, tries=1, next_attempt_at=stamp - timedelta(1)
    )
    with db.uow() as uow:
        uow.ledger.save_many([(retrying, COURSE)])
        assert uow.ledger.take_leases([key], stamp) == [key]
        uow.commit()
    said: list[set[tuple[str, str, str, str]]] = []
    settings = replace(FAST, settle_gather=timedelta(0))
    writer = SettleWriter(db.uow, SystemClock(), settings, "w:1", on_due=said.append)
    try:
        writer.put(_delivered(retrying, stamp, until))
        await writer.flush()
    finally:
        await writer.stop()
    assert writer.claims_ended == 1
    assert said == [{(T, DEST, COURSE, "a1")}]
    assert ledger(db)[("a1", learner(0))].state is DeliveryState.RETRYING
