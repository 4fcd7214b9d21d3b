"""A batch of grades matches its learners to their SIS students by SIS id (the link saved in
the batch's transaction) before it locks or writes any ledger row, and saves those links in
their key's order, whichever group of the batch (every destination, or the one a mark
names) wants them; then it locks every group's ledger rows at once, in key order. On
PostgreSQL a link saved stays locked until the transaction ends: a batch that saved them
group by group, after the first group's ledger rows, deadlocked with another batch wanting
the same learners in the other order, and each was then worked out a key at a time."""

from __future__ import annotations

import re
import threading
from types import TracebackType
from typing import Any

import pytest
from sqlalchemy import Connection, text

from gradesync.adapters.db.database import Database
from gradesync.adapters.db.repos.links import LinkRepo
from gradesync.domain.model import PersonLink
from gradesync.services import sis
from gradesync.services.compute import ComputeStats, compute_dirty, compute_now
from gradesync.services.ports import UnitOfWork
from gradesync.services.worker import Clients
from gradesync.testing import DEADLINE, DoubleFactory, ManualClock, wait_for
from tests.support.statements import statements

from .facts import NOW, map_to_class, seed_school


def _school(db: Database) -> ManualClock:
    """Course c1 mapped to a SIS class (no activity ticked: matching does not wait for one),
    its learners p1 and p2 with SIS ids and matched to no student yet, nothing marked."""
    clock = ManualClock(NOW)
    seed_school(db, clock)
    sis.add_connection(
        db.uow, clock, tenant_id="t1", destination_id="sis", name="SIS",
        base_url="http://sis.example/", client_id="gs", client_secret="secret-1",
    )  # fmt: skip
    map_to_class(db, "sis")
    with db.uow() as uow:  # as if a worker had computed what set-up marked
        uow.dirty.claim(1000)
        uow.commit()
    return clock


def _mark(db: Database, clock: ManualClock, everywhere: str, person: str, at_sis: str) -> None:
    """Two groups of one batch: `everywhere` marked for every destination of the course, and
    `at_sis` for the SIS alone (what a SIS change marks), each of one of the learners."""
    with db.uow() as uow:
        uow.dirty.mark_many([("t1", "c1", everywhere, person)], clock.now())
        other = "p2" if person == "p1" else "p1"
        uow.dirty.mark_many([("t1", "c1", at_sis, other)], clock.now(), destination_id="sis")
        uow.commit()


def _links(db: Database) -> dict[str, str]:
    with db.uow() as uow:
        return {p: link.remote_id for p, link in uow.links.people("t1", "sis", "c1").items()}


def test_a_batch_saves_its_sis_links_before_its_ledger_rows(db: Database) -> None:
    clock = _school(db)
    # sorted, hw1's group (p2, at the SIS alone) comes first, quiz1's (p1) second
    _mark(db, clock, "quiz1", "p1", "hw1")
    with statements(db) as seen:
        stats = compute_dirty(db.uow, clock, Clients(DoubleFactory()).capabilities)
    assert stats.dirty == 2 and stats.keys == 2
    links = [i for i, s in enumerate(seen) if re.search(r"\bINTO person_links\b", s)]
    ledger = [i for i, s in enumerate(seen) if re.search(r"\bledger\b", s)]
    assert len(links) == 2 and ledger, seen
    assert max(links) < min(ledger), seen
    # both groups' ledger rows read (locked, on PostgreSQL) by one statement, in key order,
    # before either group writes
    reads = [i for i in ledger if seen[i].lstrip().startswith("SELECT")]
    assert reads == ledger[:1], [seen[i] for i in ledger]
    assert _links(db) == {"p1": "stu-1", "p2": "stu-2"}


class _HoldsFirstLink(LinkRepo):
    """Person links saved as the database saves them, but the first one saved is held (its
    transaction waits, holding the link's row) until `go` is set."""

    def __init__(self, conn: Connection, held: threading.Event, go: threading.Event) -> None:
        super().__init__(conn)
        self.held, self.go = held, go

    def save_person(self, link: PersonLink) -> None:
        super().save_person(link)
        if not self.held.is_set():
            self.held.set()
            assert self.go.wait(DEADLINE)


class _Holding:
    """A unit of work of `db` whose links are `_HoldsFirstLink`'s."""

    def __init__(self, db: Database, held: threading.Event, go: threading.Event) -> None:
        self.uow, self.held, self.go = db.uow(), held, go

    def __enter__(self) -> UnitOfWork:
        uow = self.uow.__enter__()
        uow.links = _HoldsFirstLink(uow.conn, self.held, self.go)
        return uow

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.uow.__exit__(kind, exc, tb)


def _waiting_on_a_lock(db: Database) -> bool:
    with db.engine.connect() as conn:
        return bool(conn.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar())


@pytest.mark.postgres
def test_two_batches_wanting_the_same_learners_at_a_sis_do_not_deadlock(
    postgres_db: Database,
) -> None:
    """Batch A (quiz1 for p1, hw1 for p2 at the SIS) and batch B (nodue for p2, long for p1
    at the SIS) in the opposite order: A holds the first link it saves until B waits for a
    lock, then both go on. Saved group by group, A held p2's link and B p1's, and each then
    waited for the other's."""
    db = postgres_db
    clock = _school(db)
    _mark(db, clock, "quiz1", "p1", "hw1")
    _mark(db, clock, "nodue", "p2", "long")
    capabilities = Clients(DoubleFactory()).capabilities
    held, go = threading.Event(), threading.Event()
    done: dict[str, ComputeStats] = {}

    def batch(name: str, activities: list[str], factory: Any) -> threading.Thread:
        def run() -> None:
            done[name] = compute_now(
                factory,
                clock,
                capabilities,
                tenant_id="t1",
                activity_ids=activities,
            )

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    a = batch("a", ["quiz1", "hw1"], lambda: _Holding(db, held, go))
    try:
        assert held.wait(DEADLINE), "batch A saved no link"
        b = batch("b", ["nodue", "long"], db.uow)
        wait_for(lambda: _waiting_on_a_lock(db), "batch B waiting for a link batch A holds")
    finally:
        go.set()
    a.join(DEADLINE)
    b.join(DEADLINE)
    assert not a.is_alive() and not b.is_alive()
    # compute_now gives a batch that failed (a deadlock) back to the worker: none did
    assert (done["a"].dirty, done["b"].dirty) == (2, 2), done
    with db.uow() as uow:
        assert uow.dirty.count() == 0
    assert _links(db) == {"p1": "stu-1", "p2": "stu-2"}
