"""Tenant-wide policy defaults: a change reaches the gradebook without a run, for exactly the
activities whose effective policy changed; course and activity overrides still win."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.queue.inprocess import InProcessWaker
from gradesync.adapters.queue.procrastinate_app import conninfo
from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import AttemptSelection, DeliveryState, RosterMatch
from gradesync.domain.overrides import OVERRIDDEN
from gradesync.services import policies, tenants
from gradesync.services.clock import SystemClock
from gradesync.services.ports import UnitOfWork
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory
from tests.support.races import start_second

from .conftest import FAST, T, ledger, post, seed

ITEM = "https://lms/courses/1/items/{}"


async def _settle(engine: Engine) -> None:
    await engine.process_dirty()
    await engine.deliver_due()


async def test_a_tenant_default_recomputes_and_resends_only_what_it_changes(db: Database) -> None:
    seed(db, learners=2, activities=("a1", "a2"))
    clock = SystemClock()
    factory = DoubleFactory()
    engine = Engine(db.uow, clock, factory, FAST, waker=InProcessWaker())
    try:
        # attempts 9 then 6: "highest" (the built-in default) sends 9
        post(db, None, [("a1", "p000", 9.0), ("a2", "p000", 9.0)])
        post(db, None, [("a1", "p000", 6.0), ("a2", "p000", 6.0)])
        await _settle(engine)
        remote = factory.remote("lms")
        assert remote.score_of(ITEM.format("a1"), "sub-p000") == 9.0
        assert remote.score_of(ITEM.format("a2"), "sub-p000") == 9.0

        # a2 says "highest" itself: an institution-wide "latest" leaves it alone
        policies.set_activity_policy(db.uow, clock, None, T, "a2", {"attempt_selection": "highest"})
        await _settle(engine)
        change = policies.set_tenant_policy(db.uow, clock, None, T, {"attempt_selection": "latest"})
        assert change.changed == ["attempt_selection"]
        assert change.recomputed == 2  # a1's two learners; a2 is not affected
        await _settle(engine)
        assert remote.score_of(ITEM.format("a1"), "sub-p000") == 6.0
        assert remote.score_of(ITEM.format("a2"), "sub-p000") == 9.0
        assert ledger(db)[("a1", "p000")].state is DeliveryState.DELIVERED

        view = policies.policy_view(db.uow, T, "c1")
        by_act = {a.activity.id: {s.name: s for s in a.settings} for a in view.activities}
        assert by_act["a1"]["attempt_selection"].source.value == "tenant"
        assert by_act["a2"]["attempt_selection"].source.value == "activity"
        assert by_act["a1"]["attempt_selection"].value is AttemptSelection.LATEST

        # clearing the default goes back to the built-in "highest"
        policies.set_tenant_policy(db.uow, clock, None, T, {"attempt_selection": None})
        await _settle(engine)
        assert remote.score_of(ITEM.format("a1"), "sub-p000") == 9.0
        tenant_view = policies.policy_view(db.uow, T)
        assert {s.name: s.source.value for s in tenant_view.effective}["attempt_selection"] == (
            "default"
        )
    finally:
        await engine.aclose()


def test_a_bad_default_is_refused_naming_the_field_and_changes_nothing(db: Database) -> None:
    seed(db, learners=1)
    clock = SystemClock()
    with pytest.raises(InvalidInput) as err:
        policies.set_tenant_policy(
            db.uow,
            clock,
            None,
            T,
            {"past_due_zeros": "on", "grace_period_minutes": "-5", "attempt_selection": "best"},
        )
    fields = {(p.field, p.rule) for p in err.value.problems}
    assert fields == {("grace_period_minutes", "not_negative"), ("attempt_selection", "one_of")}
    with pytest.raises(InvalidInput) as err:  # a typo of twenty digits is no grace period
        policies.set_tenant_policy(
            db.uow, clock, None, T, {"grace_period_minutes": "99999999999999999999"}
        )
    assert [(p.field, p.rule) for p in err.value.problems] == [("grace_period_minutes", "maximum")]
    assert "366 days" in err.value.problems[0].message
    with db.uow() as uow:
        tenant = uow.tenants.get(T)
    assert tenant is not None and tenant.policy.past_due_zeros is None


async def test_gradesync_wins_institution_wide_sends_kept_lms_edits_again(db: Database) -> None:
    seed(db, learners=1)
    clock = SystemClock()
    factory = DoubleFactory()
    engine = Engine(db.uow, clock, factory, FAST, waker=InProcessWaker())
    try:
        post(db, None, [("a1", "p000", 7.0)])
        await _settle(engine)
        # an instructor typed 3 into the LMS; under "keep LMS edits" it was recorded and kept
        remote = factory.remote("lms")
        remote.results[(ITEM.format("a1"), "sub-p000")] = replace(
            remote.results[(ITEM.format("a1"), "sub-p000")], score_given=3.0
        )
        with db.uow() as uow:
            row = uow.ledger.get_many(T, "lms", "c1")[("a1", "p000")]
            uow.ledger.save(replace(row, reason_code=OVERRIDDEN, reason_text="kept"), "c1")
            uow.commit()

        change = policies.set_tenant_policy(db.uow, clock, None, T, {"keep_lms_edits": "false"})
        assert change.resent == 1
        assert ledger(db)[("a1", "p000")].state is DeliveryState.PENDING
        await _settle(engine)
        assert remote.score_of(ITEM.format("a1"), "sub-p000") == 7.0
        # a course that says "keep LMS edits" itself is not touched by the default
        policies.set_course_policy(db.uow, clock, None, T, "c1", {"keep_lms_edits": "true"})
        policies.set_tenant_policy(db.uow, clock, None, T, {"keep_lms_edits": "true"})
        with db.uow() as uow:
            row = uow.ledger.get_many(T, "lms", "c1")[("a1", "p000")]
            uow.ledger.save(replace(row, reason_code=OVERRIDDEN, reason_text="kept"), "c1")
            uow.commit()
        again = policies.set_tenant_policy(db.uow, clock, None, T, {"keep_lms_edits": False})
        assert again.resent == 0 and again.recomputed == 0
        # the course turning to "gradesync wins" (through ingest) does send it
        course_change = policies.set_course_policy(
            db.uow, clock, None, T, "c1", {"keep_lms_edits": None}
        )
        assert course_change.resent == 1
    finally:
        await engine.aclose()


def _another_writer_blocked(db: Database, table: str, row_id: str) -> bool:
    """Whether another connection is kept from writing the row now (without waiting)."""
    path = db.sqlite_file
    if path is not None:  # SQLite: the transaction holds the database's write lock
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError as exc:
            return "locked" in str(exc)
        finally:
            other.close()
    import psycopg

    with psycopg.connect(conninfo(db.url, queue_schema=False), autocommit=False) as other:
        try:
            other.execute(
                f"SELECT 1 FROM {table} WHERE tenant_id = %s AND id = %s FOR UPDATE NOWAIT",
                (T, row_id),
            )
            return False
        except psycopg.errors.LockNotAvailable:
            return True


@pytest.mark.parametrize(("layer", "row_id"), [("course", "c1"), ("activity", "a1")])
def test_a_course_or_activity_policy_is_changed_in_one_transaction_holding_its_row(
    db: Database, layer: str, row_id: str
) -> None:
    """Read, changed and written while no one else can write it: two people changing two
    settings at once both keep theirs (each reading the other's change first)."""
    seed(db, learners=1, activities=("a1",))
    opened: list[list[bool]] = []  # per unit of work, per read: another writer kept out?
    table = "courses" if layer == "course" else "activities"

    @contextmanager
    def watched() -> Iterator[UnitOfWork]:
        with db.uow() as uow:
            reads: list[bool] = []
            opened.append(reads)
            repo = uow.courses if layer == "course" else uow.activities
            read = repo.get

            def get(*args: Any, **kwargs: Any) -> Any:
                found = read(*args, **kwargs)
                reads.append(_another_writer_blocked(db, table, row_id))
                return found

            repo.get = get  # type: ignore[method-assign]
            yield uow

    change = policies.set_course_policy if layer == "course" else policies.set_activity_policy
    clock = SystemClock()
    change(watched, clock, None, T, row_id, {"attempt_selection": "latest"})
    change(watched, clock, None, T, row_id, {"minimum_points": 1})
    # one unit of work each, the row held from its first read
    assert len(opened) == 2 and all(reads and all(reads) for reads in opened), opened
    view = policies.policy_view(db.uow, T, "c1")
    settings = view.effective if layer == "course" else view.activities[0].settings
    own = {s.name: s.value for s in settings if s.source.value == layer}
    assert own == {"attempt_selection": AttemptSelection.LATEST, "minimum_points": 1}


@pytest.mark.parametrize("first", ["grade default", "roster matching"])
def test_a_grade_default_and_roster_matching_changed_at_once_both_stay(
    postgres_db: Database, first: str
) -> None:
    """Each writer read the tenant's policy and wrote it back whole, unlocked: on PostgreSQL the
    one committing last wrote the other's change back to its old value (after telling its
    admin "Saved"). The row is now held from the read to the commit: the second reads the
    first's change and keeps it."""
    db = postgres_db
    seed(db, learners=1, activities=("a1",))
    clock = SystemClock()

    def grade(factory: Any) -> None:
        policies.set_tenant_policy(factory, clock, None, T, {"grace_period_minutes": 10})

    def roster(factory: Any) -> None:
        tenants.set_roster_match(factory, clock, T, "email")

    one, other = (grade, roster) if first == "grade default" else (roster, grade)
    read, go = threading.Event(), threading.Event()

    @contextmanager
    def held_open() -> Iterator[UnitOfWork]:
        # the first writer's transaction stays open, its reads done, until the second has run
        # (or waits for it)
        with db.uow() as uow:
            commit = uow.commit

            def later() -> None:
                read.set()
                assert go.wait(30)
                commit()

            uow.commit = later  # type: ignore[method-assign]
            yield uow

    failed: list[BaseException] = []

    def write_first() -> None:
        try:
            one(held_open)
        except BaseException as exc:  # told below, in the test's thread
            failed.append(exc)
            read.set()

    writer = threading.Thread(target=write_first, daemon=True)
    writer.start()
    assert read.wait(30)
    racing = start_second(db, lambda: other(db.uow))
    go.set()
    writer.join(30)
    assert not writer.is_alive() and not failed, failed
    racing.finish()
    assert racing.blocked
    view = policies.policy_view(db.uow, T)
    assert view.tenant.policy.grace_period_minutes == 10
    assert view.tenant.policy.roster_match is RosterMatch.EMAIL


def test_grade_defaults_and_roster_matching_are_changed_in_one_transaction(db: Database) -> None:
    """`PATCH /tenant/policy` saved its grade settings, then roster matching, in two
    transactions (a writer between them could be lost). One call now changes both at once."""
    seed(db, learners=1, activities=("a1",))
    opened: list[UnitOfWork] = []

    @contextmanager
    def counted() -> Iterator[UnitOfWork]:
        with db.uow() as uow:
            opened.append(uow)
            yield uow

    change = policies.set_tenant_policy(
        counted,
        SystemClock(),
        None,
        T,
        {"attempt_selection": "latest"},
        roster_match=RosterMatch.EMAIL,
    )
    assert len(opened) == 1
    assert sorted(change.changed) == ["attempt_selection", "roster_match"]
    stored = policies.policy_view(db.uow, T).tenant.policy
    assert (stored.attempt_selection, stored.roster_match) == (
        AttemptSelection.LATEST,
        RosterMatch.EMAIL,
    )
    # a refused grade setting leaves roster matching as it was
    with pytest.raises(InvalidInput):
        policies.set_tenant_policy(
            counted, SystemClock(), None, T, {"grace_period_minutes": -1}, roster_match=None
        )
    assert policies.policy_view(db.uow, T).tenant.policy.roster_match is RosterMatch.EMAIL
