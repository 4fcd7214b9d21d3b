"""Repositories and the unit of work, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from gradesync.adapters.db.database import Database
from gradesync.adapters.db.mapping import from_row
from gradesync.adapters.db.schema import ledger as ledger_table
from gradesync.domain.ledger import is_pending
from gradesync.domain.model import (
    Activity,
    ActivityKind,
    Attempt,
    AttemptSelection,
    Course,
    DeliveryState,
    Destination,
    DestinationKind,
    Enrollment,
    LedgerKey,
    LedgerRow,
    Person,
    PersonLink,
    PolicySettings,
    Role,
    RunScope,
    RunStage,
    SyncRun,
    Tenant,
    Trigger,
)
from gradesync.domain.pauses import PauseCause
from gradesync.services.ports import UnitOfWork
from tests.support.statements import statements

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def seed(db: Database, tenant: str = "t1") -> None:
    with db.uow() as uow:
        uow.tenants.upsert(Tenant(tenant, "Tenant"), NOW)
        uow.courses.upsert(
            Course(
                tenant,
                "c1",
                "Biology",
                time_zone="Europe/Paris",
                starts_at=NOW - timedelta(days=30),
            )
        )
        uow.activities.upsert(
            Activity(
                tenant,
                "a1",
                "c1",
                "Quiz 1",
                10.0,
                due_at=NOW + timedelta(days=1),
                policy=PolicySettings(attempt_selection=AttemptSelection.LATEST),
            )
        )
        uow.people.upsert(Person(tenant, "p1", "Ada", "ada@example.edu"))
        uow.enrollments.upsert(Enrollment(tenant, "c1", "p1", Role.LEARNER))
        uow.commit()


def test_entities_round_trip(db: Database) -> None:
    seed(db)
    with db.uow() as uow:
        course = uow.courses.get("t1", "c1")
        act = uow.activities.get("t1", "a1")
        assert course is not None and course.time_zone == "Europe/Paris"
        assert course.starts_at == NOW - timedelta(days=30)
        assert course.starts_at is not None and course.starts_at.tzinfo is not None
        assert act is not None and act.kind is ActivityKind.GRADED
        assert act.policy.attempt_selection is AttemptSelection.LATEST
        assert uow.people.find("t1", email="ADA@example.edu")[0].id == "p1"
        assert uow.enrollments.get("t1", "c1", "p1") == Enrollment("t1", "c1", "p1", Role.LEARNER)


def test_tenant_isolation(db: Database) -> None:
    seed(db, "t1")
    seed(db, "t2")
    with db.uow() as uow:
        uow.courses.upsert(Course("t2", "c1", "Chemistry"))
        uow.commit()
    with db.uow() as uow:
        c1 = uow.courses.get("t1", "c1")
        c2 = uow.courses.get("t2", "c1")
        assert c1 is not None and c1.title == "Biology"
        assert c2 is not None and c2.title == "Chemistry"
        assert [c.id for c in uow.courses.all("t1")] == ["c1"]


def test_attempts_idempotent_by_source_event(db: Database) -> None:
    seed(db)
    a = Attempt("t1", "evt-1", "a1", "p1", 7.0, 10.0, NOW)
    with db.uow() as uow:
        first, new1 = uow.attempts.add(a, NOW)
        again, new2 = uow.attempts.add(a, NOW + timedelta(seconds=5))
        uow.commit()
    assert new1 and not new2
    assert first.id == again.id
    with db.uow() as uow:
        assert len(uow.attempts.for_key("t1", "a1", "p1")) == 1


def test_rollback_without_commit_changes_nothing(db: Database) -> None:
    seed(db)
    with db.uow() as uow:
        uow.attempts.add(Attempt("t1", "evt-2", "a1", "p1", 1.0, 10.0, NOW), NOW)
    with db.uow() as uow:
        assert uow.attempts.get_by_event("t1", "evt-2") is None


def test_engine_pause_keeps_the_reason_of_a_destination_turned_off(db: Database) -> None:
    """A send in flight when a person turned a destination off may still lift or set the
    engine's pause: that touches the time only, never the person's reason."""
    words = "LMS upgrade tonight"
    seed(db)
    with db.uow() as uow:
        for dest_id, enabled in (("off", False), ("on", True)):
            uow.destinations.upsert(
                Destination(
                    "t1",
                    dest_id,
                    DestinationKind.LTI13_AGS,
                    dest_id,
                    enabled=enabled,
                    pause_reason=None if enabled else words,
                    pause_cause=None if enabled else PauseCause.ADMIN,
                ),
                NOW,
            )
        uow.commit()
    until = NOW + timedelta(minutes=5)
    for cause, reason in ((PauseCause.CIRCUIT_OPEN, "Circuit breaker open"), (None, None)):
        with db.uow() as uow:
            for dest_id in ("off", "on"):
                if cause is None:
                    uow.destinations.lift_pause("t1", dest_id, PauseCause.CIRCUIT_OPEN)
                else:
                    uow.destinations.set_pause("t1", dest_id, until, reason, cause)
            uow.commit()
        with db.uow() as uow:
            off, on = uow.destinations.get("t1", "off"), uow.destinations.get("t1", "on")
        assert off is not None and on is not None
        assert (off.enabled, off.pause_reason, off.pause_cause) == (
            False,
            words,
            PauseCause.ADMIN,
        )
        assert (on.pause_reason, on.pause_cause) == (reason, cause)
        assert off.paused_until == on.paused_until == (until if cause else None)


def test_destination_secret_encrypted_at_rest(db: Database) -> None:
    seed(db)
    dest = Destination(
        "t1",
        "lms",
        DestinationKind.LTI13_AGS,
        "Canvas",
        "canvas",
        config={"issuer": "https://lms.example"},
        secret={"client_secret": "s3cr3t!"},
    )
    with db.uow() as uow:
        uow.destinations.upsert(dest, NOW)
        uow.commit()
    with db.engine.connect() as conn:
        raw = conn.execute(text("SELECT secret_ciphertext FROM destinations")).scalar()
    assert raw and "s3cr3t" not in raw
    with db.uow() as uow:
        loaded = uow.destinations.get("t1", "lms")
    assert loaded is not None and loaded.secret == {"client_secret": "s3cr3t!"}
    assert loaded.kind is DestinationKind.LTI13_AGS


def test_ledger_due_and_person_links(db: Database) -> None:
    seed(db)
    with db.uow() as uow:
        uow.destinations.upsert(Destination("t1", "lms", DestinationKind.LTI13_AGS, "LMS"), NOW)
        key = LedgerKey("t1", "lms", "a1", "p1")
        uow.ledger.save(
            LedgerRow(
                key,
                DeliveryState.PENDING,
                desired_hash="h1",
                desired={"score_given": 7.0},
                updated_at=NOW,
            ),
            "c1",
        )
        uow.ledger.save(
            LedgerRow(
                LedgerKey("t1", "lms", "a1", "p2"),
                DeliveryState.RETRYING,
                next_attempt_at=NOW + timedelta(minutes=5),
                updated_at=NOW,
            ),
            "c1",
        )
        uow.links.save_person(PersonLink("t1", "lms", "p1", "sub-1"))
        uow.links.save_person(PersonLink("t1", "lms", "p1", "sourcedid-c1", course_id="c1"))
        uow.commit()
    with db.uow() as uow:
        due = uow.ledger.due(NOW, 10)
        assert [r.key.person_id for r in due] == ["p1"]
        assert {r.key.person_id for r in uow.ledger.due(NOW + timedelta(minutes=6), 10)} == {
            "p1",
            "p2",
        }
        assert uow.ledger.get(key) is not None
        link = uow.links.person("t1", "lms", "p1", "c1")
        assert link is not None and link.remote_id == "sourcedid-c1"
        general = uow.links.person("t1", "lms", "p1", "other-course")
        assert general is not None and general.remote_id == "sub-1"
        batches = list(uow.ledger.iter_scope("t1", "lms", "c1", batch=1))
        assert [len(b) for b in batches] == [1, 1]


def test_person_links_of_a_large_column_are_read_in_chunks(db: Database) -> None:
    """More learners than one IN (...) list holds: every link comes back, and a course's
    own link still wins over the general one."""
    seed(db)
    ids = [f"q{i:04d}" for i in range(1_200)]
    with db.uow() as uow:
        uow.destinations.upsert(Destination("t1", "sis", DestinationKind.LTI13_AGS, "SIS"), NOW)
        for pid in ids:
            uow.people.upsert(Person("t1", pid, pid))
            uow.links.save_person(PersonLink("t1", "sis", pid, f"student-{pid}"))
        uow.links.save_person(PersonLink("t1", "sis", "q1100", "in-c1", course_id="c1"))
        uow.commit()
    with db.uow() as uow:
        links = uow.links.people_for("t1", "sis", "c1", ids + ids[:10])
    assert len(links) == 1_200
    assert links["q0000"].remote_id == "student-q0000"
    assert links["q1100"].remote_id == "in-c1"


def _pending(key: LedgerKey, desired_hash: str = "h1") -> LedgerRow:
    return LedgerRow(
        key,
        DeliveryState.PENDING,
        desired_hash=desired_hash,
        desired={"score_given": 7.0},
        updated_at=NOW,
    )


def _destinations(db: Database, *ids: str) -> None:
    with db.uow() as uow:
        for dest in ids:
            uow.destinations.upsert(Destination("t1", dest, DestinationKind.LTI13_AGS, dest), NOW)
        uow.activities.upsert(Activity("t1", "a2", "c1", "Quiz 2", 10.0))
        uow.commit()


def test_ledger_get_keys_across_activities_and_destinations(db: Database) -> None:
    seed(db)
    _destinations(db, "lms", "sis")
    keys = [
        LedgerKey("t1", dest, activity, person)
        for dest in ("lms", "sis")
        for activity in ("a1", "a2")
        for person in ("p1", "p2", "p3")
    ]
    with db.uow() as uow:
        uow.ledger.save_many([(_pending(k), "c1") for k in keys])
        uow.commit()
    # a mix of groups, a key asked twice and one with no row: exactly the rows asked for
    wanted = [keys[0], keys[4], keys[4], keys[11], LedgerKey("t1", "lms", "a1", "nobody")]
    with db.uow() as uow, statements(db) as seen:
        rows = uow.ledger.get_keys(wanted, lock=True)
    assert set(rows) == {keys[0], keys[4], keys[11]}
    assert len(seen) == 1, seen  # one statement whatever the keys span, on either database
    assert all(rows[k].key == k and rows[k].desired_hash == "h1" for k in rows)


def test_ledger_save_many_gives_back_only_its_own_leases(db: Database) -> None:
    seed(db)
    _destinations(db, "lms")
    mine, theirs = LedgerKey("t1", "lms", "a1", "p1"), LedgerKey("t1", "lms", "a1", "p2")
    with db.uow() as uow:
        uow.ledger.save_many([(_pending(mine), "c1"), (_pending(theirs), "c1")])
        uow.ledger.lease([(mine, NOW)], "w1", NOW + timedelta(minutes=2))
        uow.ledger.lease([(theirs, NOW)], "w2", NOW + timedelta(minutes=2))
        uow.commit()
    with db.uow() as uow:
        uow.ledger.save_many(
            [(_pending(mine, "h2"), "c1"), (_pending(theirs, "h2"), "c1")], release_for="w1"
        )
        uow.commit()
    c = text("SELECT person_id, desired_hash, lease_owner, lease_until FROM ledger")
    with db.engine.connect() as conn:
        got = {r[0]: (r[1], r[2], r[3] is not None) for r in conn.execute(c)}
    assert got == {"p1": ("h2", None, False), "p2": ("h2", "w2", True)}


def test_a_ledger_row_reads_back_every_field_it_was_written_with(db: Database) -> None:
    """The ledger's reads build rows field by field: every field (each set here, so a new
    one must be too) comes back as written, and as the generic mapping reads it."""
    seed(db)
    _destinations(db, "lms")
    key = LedgerKey("t1", "lms", "a1", "p1")
    row = LedgerRow(
        key,
        DeliveryState.RETRYING,
        desired_hash="h2",
        desired={"score_given": 7.0, "comment": "très bien"},
        delivered_hash="h1",
        delivered_at=NOW,
        last_timestamp=NOW + timedelta(microseconds=5),
        tries=2,
        next_attempt_at=NOW + timedelta(minutes=1),
        reason_code="remote_5xx",
        reason_text="the platform answered 503",
        remote_status=503,
        remote_message="busy",
        updated_at=NOW + timedelta(seconds=1),
        pending_since=NOW - timedelta(seconds=9),
    )
    unset = [f.name for f in fields(LedgerRow) if getattr(row, f.name) in (None, 0)]
    assert not unset, unset
    with db.uow() as uow:
        uow.ledger.save_many([(row, "c1")])
        uow.commit()
    with db.uow() as uow:
        assert uow.ledger.get_keys([key]) == {key: row}
        raw = uow.conn.execute(select(ledger_table)).mappings().one()
    assert from_row(LedgerRow, raw, key=key) == row


def test_ledger_settle_writes_what_a_send_changed_only_while_its_claim_holds(
    db: Database,
) -> None:
    """The settle writer's write: the delivery columns as folded, read back as written; the
    desired state, course and priority stay as stored; the claim's lease is given back. A
    row held by another claim (another worker's, or a later one of the same worker) is left
    as it is, lease and all, by the settle and by a release.
    On SQLite the desired result is not bound again (one UPDATE of the delivery columns)."""
    seed(db)
    _destinations(db, "lms")
    mine, theirs, again = (LedgerKey("t1", "lms", "a1", p) for p in ("p1", "p2", "p3"))
    until, later_claim = NOW + timedelta(minutes=2), NOW + timedelta(minutes=5, microseconds=3)
    with db.uow() as uow:
        uow.ledger.save_many([(_pending(k), "c1") for k in (mine, theirs, again)], bulk=True)
        uow.ledger.lease([(mine, NOW)], "w1", until)
        uow.ledger.lease([(theirs, NOW)], "w2", until)
        uow.ledger.lease([(again, NOW)], "w1", later_claim)
        uow.commit()
    with db.uow() as uow:
        held = uow.ledger.get_claimed([mine, theirs, again], "w1")
    assert {k: u for k, (_, u) in held.items()} == {mine: until, theirs: None, again: later_claim}
    later = NOW + timedelta(seconds=3, microseconds=7)
    with db.uow() as uow:
        read = uow.ledger.get_keys([mine, theirs, again], lock=True)
        settled = {
            mine: replace(
                read[mine],
                state=DeliveryState.DELIVERED,
                delivered_hash="h1",
                delivered_at=later,
                remote_status=200,
                updated_at=later,
            ),
            theirs: replace(
                read[theirs],
                state=DeliveryState.RETRYING,
                tries=1,
                next_attempt_at=later + timedelta(seconds=1),
                reason_code="remote_5xx",
                reason_text="the platform answered 503",
                remote_status=503,
                remote_message="busy",
                updated_at=later,
                pending_since=NOW,
            ),
            again: replace(read[again], state=DeliveryState.REJECTED, updated_at=later),
        }
        with statements(db) as seen:
            uow.ledger.settle([(r, "c1", until) for r in settled.values()], "w1")
        uow.ledger.release([(theirs, until), (again, until)], "w1")
        uow.commit()
    if db.engine.dialect.name == "sqlite":
        assert len(seen) == 1 and "desired" not in seen[0], seen
    with db.uow() as uow:
        assert uow.ledger.get_keys([mine, theirs, again]) == {
            mine: settled[mine],
            theirs: read[theirs],
            again: read[again],
        }
    c = text("SELECT person_id, course_id, priority, lease_owner, lease_until FROM ledger")
    with db.engine.connect() as conn:
        got = {r[0]: (r[1], r[2], r[3], r[4] is not None) for r in conn.execute(c)}
    assert got == {
        "p1": ("c1", 1, None, False),
        "p2": ("c1", 1, "w2", True),
        "p3": ("c1", 1, "w1", True),
    }
    with db.uow() as uow:  # the claim's own release does give its lease back
        uow.ledger.release([(again, later_claim)], "w1")
        uow.commit()
    with db.uow() as uow:
        assert uow.ledger.get_claimed([again], "w1")[again][1] is None


def test_the_delivery_log_stores_a_payload_as_json_would(db: Database) -> None:
    """A score body (JSON already) is stored as it is; anything else as a trip through JSON
    gives it (a tuple as a list, a number key as text, a time or a decimal as its text)."""
    seed(db)
    _destinations(db, "lms")
    body = {"userId": "u1", "scoreGiven": 7.5, "ok": True, "n": 3, "sub": {"at": None}}
    odd = {"pair": (1, 2), 3: "three", "at": NOW, "price": Decimal("1.50")}
    keys = [LedgerKey("t1", "lms", "a1", p) for p in ("p1", "p2")]
    entries = [
        {"key": k, "sent_at": NOW, "sent_hash": "h1", "payload": p, "outcome": "delivered"}
        for k, p in zip(keys, (body, odd), strict=True)
    ]
    with db.uow() as uow:
        uow.deliveries.add_many(entries)
        uow.commit()
    with db.uow() as uow:
        got = [uow.deliveries.for_key(k)[0]["payload"] for k in keys]
    assert got == [body, json.loads(json.dumps(odd, default=str))]
    assert got[1] == {"pair": [1, 2], "3": "three", "at": str(NOW), "price": "1.50"}


def test_ledger_batches_are_one_statement_and_keep_what_row_by_row_kept(db: Database) -> None:
    """A batch of ledger rows, their leases and their delivery log entries: on PostgreSQL
    one statement each (the rows as arrays); on both databases the values read back are
    those written one by one would give (a key given twice keeps its last values, JSON
    null stays JSON null)."""
    seed(db)
    _destinations(db, "lms")
    keys = [LedgerKey("t1", "lms", "a1", f"p{i}") for i in range(30)]
    rows = [(_pending(k), "c1") for k in keys]
    rows.append((replace(_pending(keys[0], "h-last"), desired=None), "c1"))  # given twice
    entries = [
        {
            "key": k,
            "run_id": "r1" if i % 2 else None,
            "sent_at": NOW,
            "sent_hash": "h1",
            "payload": {"scoreGiven": i, "at": NOW} if i % 3 else None,
            "outcome": "delivered",
            "remote_status": 200,
            "remote_message": None,
            "latency_ms": 1.5,
        }
        for i, k in enumerate(keys)
    ]
    many: list[bool] = []  # per statement: sent as an executemany (once per row)

    def seen(*args: object) -> None:
        many.append(bool(args[-1]))

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        with db.uow() as uow, statements(db) as sent:
            uow.ledger.save_many(rows)
            uow.ledger.lease([(k, NOW) for k in keys], "w1", NOW + timedelta(minutes=2))
            uow.deliveries.add_many(entries)
            uow.commit()
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    if db.url.startswith("postgresql"):
        writes = [s for s in sent if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
        assert len(writes) == 3 and not any(many), (writes, many)
    with db.uow() as uow:
        got = uow.ledger.get_keys(keys)
        log = uow.deliveries.for_key(keys[3]) + uow.deliveries.for_key(keys[4])
    assert got[keys[0]].desired_hash == "h-last" and got[keys[0]].desired is None
    assert got[keys[1]].desired == {"score_given": 7.0}
    assert all(r.last_timestamp == NOW for r in got.values())
    assert [e["payload"] for e in log] == [None, {"scoreGiven": 4, "at": str(NOW)}]
    assert [e["run_id"] for e in log] == ["r1", None]
    with db.engine.connect() as conn:
        leased = conn.execute(text("SELECT count(*) FROM ledger WHERE lease_owner = 'w1'"))
        assert leased.scalar_one() == 30
        nulls = conn.execute(text("SELECT count(*) FROM deliveries WHERE payload IS NULL"))
        assert nulls.scalar_one() == 0  # JSON null, not SQL NULL, as one insert per row stored


def test_unit_of_work_continues_after_commit_and_rollback(db: Database) -> None:
    seed(db)
    with db.uow() as uow:
        uow.attempts.add(Attempt("t1", "evt-a", "a1", "p1", 1.0, 10.0, NOW), NOW)
        uow.commit()
        uow.attempts.add(Attempt("t1", "evt-b", "a1", "p1", 2.0, 10.0, NOW), NOW)
        uow.rollback()
        uow.attempts.add(Attempt("t1", "evt-c", "a1", "p1", 3.0, 10.0, NOW), NOW)
        uow.commit()
        uow.attempts.add(Attempt("t1", "evt-d", "a1", "p1", 4.0, 10.0, NOW), NOW)
    with db.uow() as uow:
        found = {e: uow.attempts.get_by_event("t1", f"evt-{e}") is not None for e in "abcd"}
    assert found == {"a": True, "b": False, "c": True, "d": False}


def test_runs_stage_history(db: Database) -> None:
    seed(db)
    scope = RunScope("t1", None, "c1")
    run = SyncRun("r1", scope, Trigger.MANUAL, "ada", created_at=NOW)
    with db.uow() as uow:
        uow.runs.add(run)
        uow.runs.update(
            SyncRun(
                "r1",
                scope,
                Trigger.MANUAL,
                "ada",
                stage=RunStage.COMPUTING,
                created_at=NOW,
                started_at=NOW,
            )
        )
        uow.commit()
    with db.uow() as uow:
        assert [s["stage"] for s in uow.runs.stages("r1")] == ["queued", "computing"]
        assert [r.id for r in uow.runs.active_for_scope(scope.key)] == ["r1"]
        assert uow.runs.get("r1", tenant_id="t2") is None


@pytest.mark.parametrize("n", [3])
def test_dirty_keys_collapse(db: Database, n: int) -> None:
    seed(db)
    with db.uow() as uow:
        for i in range(n):
            uow.dirty.mark("t1", "c1", "a1", "p1", NOW + timedelta(seconds=i))
        uow.commit()
    with db.uow() as uow:
        assert uow.dirty.count() == 1
        # marked again, it has still waited since its first mark
        assert uow.dirty.waiting("t1") == (1, NOW)
        assert uow.dirty.marked_at("t1", "a1", "p1") == NOW + timedelta(seconds=n - 1)
        assert uow.dirty.claim(10) == [("t1", "c1", "a1", "p1", None)]
        uow.commit()
        assert uow.dirty.count() == 0


# Per learner, the destinations one key of theirs is marked (or timed) for, in this order
# (None: every destination), and the destination it is then claimed for (None: every one).
_MARKED_FOR: dict[str, list[str | None]] = {
    "p1": ["sis"],
    "p2": ["sis", "sis"],
    "p3": ["sis", "lms"],
    "p4": ["sis", None],
    "p5": [None, "sis"],
    "p6": [None],
}
_CLAIMED_FOR = {"p1": "sis", "p2": "sis", "p3": None, "p4": None, "p5": None, "p6": None}


def _claim_all(db: Database) -> list[tuple[str, str, str, str, str | None]]:
    with db.uow() as uow:
        claimed = uow.dirty.claim(100)
        uow.commit()
    return claimed


def test_a_dirty_key_marked_for_one_destination_stays_so_until_marked_for_another(
    db: Database,
) -> None:
    """A key marked for one destination is claimed for it alone; marked again for it, it
    still is. Marked also for another destination, or for every one (a fact changed), in
    either order, it is claimed for every destination of its course."""
    seed(db)
    with db.uow() as uow:
        for person, destinations in _MARKED_FOR.items():
            for i, destination in enumerate(destinations):
                row = ("t1", "c1", "a1", person)
                uow.dirty.mark_many([row], NOW + timedelta(seconds=i), destination_id=destination)
        uow.dirty.mark_many([("t1", "c1", "a2", "p1")], NOW, destination_id="sis")
        uow.dirty.mark("t1", "c1", "a2", "p1", NOW)  # `mark` is for every destination
        uow.commit()
    claimed = {(k[2], k[3]): k[4] for k in _claim_all(db)}
    assert claimed == {("a1", p): d for p, d in _CLAIMED_FOR.items()} | {("a2", "p1"): None}


def test_a_timer_set_for_one_destination_marks_its_key_for_it_alone(db: Database) -> None:
    """A timer set for one destination marks its key for that destination when it fires;
    timed for another destination too, or for every one, in either order, for every one (at
    the earlier time). A key already marked for another destination is then marked for
    every one, as `mark_many` does."""
    seed(db)
    timers = {**_MARKED_FOR, "p7": ["sis"]}
    with db.uow() as uow:
        for person, destinations in timers.items():
            for i, destination in enumerate(destinations):
                at = NOW + timedelta(minutes=1 - i)  # the later one set is the earlier
                uow.dirty.schedule([("t1", "c1", "a1", person, at)], destination_id=destination)
        uow.dirty.mark_many([("t1", "c1", "a1", "p7")], NOW, destination_id="lms")
        uow.commit()
    with db.uow() as uow:
        assert uow.dirty.next_due_at() == NOW
        assert uow.dirty.fire_due(NOW + timedelta(minutes=1)) == len(timers)
        uow.commit()
    assert {k[3]: k[4] for k in _claim_all(db)} == {**_CLAIMED_FOR, "p7": None}


def test_live_grades_are_claimed_before_a_runs_backlog(db: Database) -> None:
    """A remaster made 40 results of one activity pending; a newer live grade (auto sync) of
    another goes in the next claim, and the settle writer leaves the priority alone."""
    seed(db)
    _destinations(db, "lms")
    backlog = [LedgerKey("t1", "lms", "a1", f"p{i:02d}") for i in range(40)]
    live = LedgerKey("t1", "lms", "a2", "p99")
    with db.uow() as uow:
        uow.ledger.save_many([(_pending(k), "c1") for k in backlog], bulk=True)
        newer = replace(_pending(live), updated_at=NOW + timedelta(minutes=5))
        uow.ledger.save_many([(newer, "c1")], bulk=False)
        uow.commit()
    with db.uow() as uow:
        claimed = uow.ledger.claimable(NOW + timedelta(hours=1), 10)
    first = [f.row.key for f in claimed]
    assert first[0] == live and len(first) == 10
    assert [f.priority for f in claimed] == [0] + [1] * 9  # what the send queues by
    assert set(first[1:]) <= set(backlog)
    with db.uow() as uow:  # a write that says nothing of priority keeps it
        uow.ledger.save_many([(replace(_pending(backlog[0]), desired_hash="h2"), "c1")])
        uow.commit()
    with db.uow() as uow:
        again = [f.row.key for f in uow.ledger.claimable(NOW + timedelta(hours=1), 2)]
    assert again[0] == live and again[1] != live


def test_a_claim_takes_exactly_the_rows_the_ledger_calls_due(db: Database) -> None:
    """The claim's SQL and the domain's rule (`ledger.is_pending`) agree, state by state: a
    pending row and a retry whose time has come are claimed; a retry not yet due, a
    delivered, a rejected and a skipped row are not."""
    seed(db)
    _destinations(db, "lms")
    now = NOW + timedelta(hours=1)
    variants = [
        (DeliveryState.PENDING, None),
        (DeliveryState.RETRYING, now - timedelta(seconds=1)),
        (DeliveryState.RETRYING, now),
        (DeliveryState.RETRYING, now + timedelta(seconds=1)),
        (DeliveryState.DELIVERED, None),
        (DeliveryState.REJECTED, None),
        (DeliveryState.SKIPPED, None),
    ]
    rows = [
        replace(_pending(LedgerKey("t1", "lms", "a1", f"p{i}")), state=state, next_attempt_at=due)
        for i, (state, due) in enumerate(variants)
    ]
    with db.uow() as uow:
        uow.ledger.save_many([(r, "c1") for r in rows], bulk=True)
        uow.commit()
    with db.uow() as uow:
        claimed = {c.row.key for c in uow.ledger.claimable(now, 100)}
    due = {r.key for r in rows if is_pending(r, now)}
    assert claimed == due
    assert len(due) == 3  # pending, and the retries due a second ago and now


def test_a_database_error_does_not_carry_the_values_it_was_sent(db: Database) -> None:
    """A statement the database refuses is logged with its traceback (a grade set aside,
    a failed request): its text names the statement, never the learner's score or comment."""
    seed(db)
    secret = "Comment-7f3a9 only the learner may read"
    row = replace(_pending(LedgerKey("t1", "nowhere", "a1", "p1")), desired={"comment": secret})
    with pytest.raises(IntegrityError) as refused, db.uow() as uow:
        uow.ledger.save_many([(row, "c1")])  # no destination "nowhere": a foreign key refuses
        uow.commit()
    assert "INSERT" in str(refused.value)
    assert secret not in str(refused.value) and "7f3a9" not in repr(refused.value)
    # nor do the readers' connections (their own engine on SQLite, refusing any write)
    insert = text("INSERT INTO tenants (id, name, policy, created_at) VALUES (:id, :n, '{}', :at)")
    with pytest.raises(DBAPIError) as read, db.reads() as uow:  # t1 exists on PostgreSQL
        uow.conn.execute(insert, {"id": "t1", "n": "Tenant-7f3a9", "at": NOW})
    assert "INSERT" in str(read.value) and "7f3a9" not in str(read.value)


def _old_waiting_at(uow: UnitOfWork, tenant: str, dest: str) -> int:
    """What the queue facts read before: every destination's count, then one kept."""
    return next((n for d, n, _ in uow.ledger.waiting(tenant) if d == dest), 0)


def _old_beat(uow: UnitOfWork, tenant: str, dest: str, course: str) -> datetime | None:
    """What the queue facts read before: every tenant's unfinished runs, then filtered."""
    beats = [
        beat
        for run, beat in uow.runs.unfinished()
        if beat is not None
        and run.scope.tenant_id == tenant
        and run.scope.destination_id in (None, dest)
        and run.scope.course_id in (None, course)
    ]
    return max(beats, default=None)


def test_a_destinations_queue_is_read_narrowly_and_as_the_wide_reads_said(db: Database) -> None:
    seed(db)
    seed(db, "t2")
    _destinations(db, "lms", "sis")
    with db.uow() as uow:
        uow.destinations.upsert(Destination("t2", "lms", DestinationKind.LTI13_AGS, "lms"), NOW)
        retrying = replace(
            _pending(LedgerKey("t1", "lms", "a2", "p1")), state=DeliveryState.RETRYING
        )
        sent = replace(_pending(LedgerKey("t1", "lms", "a2", "p2")), state=DeliveryState.DELIVERED)
        uow.ledger.save_many(
            [(_pending(LedgerKey("t1", "lms", "a1", p)), "c1") for p in ("p1", "p2", "p3")]
            + [(retrying, "c1"), (sent, "c1"), (_pending(LedgerKey("t1", "sis", "a1", "p1")), "c1")]
            + [(_pending(LedgerKey("t2", "lms", "a1", p)), "c1") for p in ("p1", "p2")]
        )
        # (tenant, destination, course, stage, heartbeat minutes before NOW); the newest
        # beats belong to runs that must not count: finished, another tenant's, elsewhere
        runs = [
            ("t1", None, None, RunStage.SENDING, 30),
            ("t1", "lms", None, RunStage.SENDING, 20),
            ("t1", None, "c1", RunStage.COMPUTING, 10),
            ("t1", "lms", "c1", RunStage.QUEUED, None),
            ("t1", "sis", "c1", RunStage.SENDING, 5),
            ("t1", "lms", "c2", RunStage.SENDING, 4),
            ("t1", "lms", "c1", RunStage.FINISHED, 3),
            ("t2", "lms", "c1", RunStage.SENDING, 1),
            ("t2", None, None, RunStage.SENDING, 2),
        ]
        for i, (tenant, dest, course, stage, ago) in enumerate(runs):
            run = SyncRun(f"r{i}", RunScope(tenant, dest, course), Trigger.MANUAL, "ada")
            uow.runs.add(replace(run, created_at=NOW))
            beat = None if ago is None else NOW - timedelta(minutes=ago)
            uow.runs.update(replace(run, stage=stage), worker_id="w", heartbeat_at=beat)
        uow.commit()
    cases = [
        ("t1", "lms", "c1", 3 + 1, NOW - timedelta(minutes=10)),
        ("t1", "sis", "c1", 1, NOW - timedelta(minutes=5)),
        ("t1", "lms", "c2", 4, NOW - timedelta(minutes=4)),
        ("t1", "sis", "c9", 1, NOW - timedelta(minutes=30)),  # the tenant-wide run alone
        ("t1", "nowhere", "c9", 0, NOW - timedelta(minutes=30)),
        ("t2", "lms", "c1", 2, NOW - timedelta(minutes=1)),
        ("t2", "sis", "c2", 0, NOW - timedelta(minutes=2)),
        ("t3", "lms", "c1", 0, None),
    ]
    with db.uow() as uow:
        for tenant, dest, course, waiting, beat in cases:
            assert uow.ledger.waiting_at(tenant, dest) == waiting
            assert uow.ledger.waiting_at(tenant, dest) == _old_waiting_at(uow, tenant, dest)
            assert uow.runs.latest_beat_covering(tenant, dest, course) == beat
            assert beat == _old_beat(uow, tenant, dest, course), (tenant, dest, course)
