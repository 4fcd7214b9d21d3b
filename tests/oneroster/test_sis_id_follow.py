"""How a learner's link follows their new SIS id, beyond the simple move
(tests/oneroster/test_sis_id_matching.py): a link saved before links were marked with where
they came from, a student another learner of the course holds, a send in flight to the old
student (or settled just before the move locks its row), and a roster import moving several
learners of one course at once (a chain of SIS ids, a swap)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.db.repos.ledger import LedgerRepo
from gradesync.domain.ledger import Delivered
from gradesync.domain.model import DeliveryState, LedgerKey, LedgerRow, PersonLink
from gradesync.domain.passback import STUDENT_CHANGED
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services.clock import SystemClock
from gradesync.services.delivery.records import DueAt, Settlement
from gradesync.services.delivery.settle import SettleWriter
from gradesync.services.engine_config import EngineSettings
from gradesync.services.ports import UnitOfWork
from gradesync.services.sis import course_overview, map_student
from gradesync.testing import wait_for
from tests.support.served import Served
from tests.support.sis import SIS_PATH, one_learner_matched, results_in, sis_row
from tests.support.statements import statements

from .facts import ROSTER


@pytest.fixture
def gs(db: Database, tmp_path: Path, sis: RunningSandbox) -> Iterator[Served]:
    """p1's 8 in q1 sent to the SIS (stu-1); p2's 7 skipped: Bo has no SIS id."""
    yield from one_learner_matched(db, tmp_path, sis, ROSTER)


def _link(gs: Served, person: str) -> PersonLink | None:
    with gs.runtime.uow() as uow:
        return uow.links.people(gs.tenant, "sis", "c1").get(person)


def _matched(gs: Served, person: str) -> dict[str, Any]:
    checks = gs.ok("GET", f"/activities/q1/learners/{person}/diagnosis")["checks"]
    [matched] = [c for c in checks if c["code"] == "matched_in_sis"]
    return matched


def _unmarked(gs: Served, person: str) -> None:
    """`person`'s link in c1 as it was saved before links said where they came from."""
    with gs.runtime.uow() as uow:
        link = uow.links.people(gs.tenant, "sis", "c1")[person]
        uow.links.save_person(replace(link, data={}))
        uow.commit()


def _give_sis_id_unannounced(gs: Served, person_id: str, sis_id: str) -> None:
    """The SIS id stored the way no ingest would: nothing follows it."""
    with gs.runtime.uow() as uow:
        person = uow.people.get(gs.tenant, person_id)
        assert person is not None
        uow.people.upsert(replace(person, sis_id=sis_id))
        uow.commit()


def test_a_link_of_an_earlier_sis_id_is_not_said_to_be_picked_by_hand(gs: Served) -> None:
    """Ada was linked by her SIS id before links were marked, and her SIS id changed without
    gradesync following it. Her diagnosis said "Linked by hand", which nobody did: it says
    her link is of an earlier SIS id and, in each reader's words, what links her by the new
    one; so does the course's SIS page. Then map-students does it."""
    _unmarked(gs, "p1")
    _give_sis_id_unannounced(gs, "p1", "stu-2")
    matched = _matched(gs, "p1")
    assert matched["passed"], matched
    assert "by hand" not in matched["evidence"], matched
    assert "not their SIS id 'stu-2'" in matched["evidence"], matched
    assert f"POST /api/v1{SIS_PATH}/courses/c1/students" in matched["remedy"], matched
    overview = course_overview(
        gs.runtime.uow, tenant_id=gs.tenant, destination_id="sis", course_id="c1"
    )
    ada = next(m for m in overview.learners if m.person.id == "p1")
    assert (ada.student_id, ada.sis_id_not_followed, ada.by_hand) == ("stu-1", "stu-2", False)
    gs.ok("POST", f"{SIS_PATH}/courses/c1/students")
    link = _link(gs, "p1")
    assert link is not None and link.remote_id == "stu-2"
    assert "not their SIS id" not in _matched(gs, "p1")["evidence"]


def test_an_unmarked_link_follows_and_a_hand_picked_one_stays(gs: Served) -> None:
    """A link in a course saved before links were marked was made by the SIS id (one picked
    by hand is a link of no course): it follows the new SIS id. Picked by hand, it does not,
    and the diagnosis says so."""
    _unmarked(gs, "p1")
    gs.ok("PUT", "/people/p1", json={"name": "Ada", "sis_id": "stu-2"})
    link = _link(gs, "p1")
    assert link is not None and link.remote_id == "stu-2"
    gs.ok("PUT", f"{SIS_PATH}/students/p1", json={"student_id": "stu-1"})
    gs.ok("PUT", "/people/p1", json={"name": "Ada", "sis_id": "stu-3"})
    link = _link(gs, "p1")
    assert link is not None and link.remote_id == "stu-1"
    matched = _matched(gs, "p1")
    assert "Linked by hand" in matched["evidence"] and not matched["remedy"], matched


def test_a_new_sis_id_another_learner_is_linked_to_is_not_followed(
    gs: Served, sis: RunningSandbox
) -> None:
    """Bo is linked to stu-2; Ada's SIS id is changed to stu-2 (the two swapped, in separate
    imports, say). Her link moved onto stu-2 beside Bo's, and both learners' grades went to
    one student's record. It stays, and her diagnosis names Bo and what fixes it."""
    gs.ok("PUT", "/people/p2", json={"name": "Bo", "sis_id": "stu-2"})
    wait_for(lambda: results_in(sis).get("stu-2") == 7.0, "p2's grade in the SIS")
    gs.ok("PUT", "/people/p1", json={"name": "Ada", "sis_id": "stu-2"})
    link = _link(gs, "p1")
    assert link is not None and link.remote_id == "stu-1"
    matched = _matched(gs, "p1")
    assert "another learner of the course (p2)" in matched["evidence"], matched
    assert f"POST /api/v1{SIS_PATH}/courses/c1/students" in matched["remedy"], matched
    # Bo's SIS id corrected too: map-students links each by their own
    gs.ok("PUT", "/people/p2", json={"name": "Bo", "sis_id": "stu-1"})
    gs.ok("POST", f"{SIS_PATH}/courses/c1/students")
    links = {p: _link(gs, p) for p in ("p1", "p2")}
    assert {p: x.remote_id for p, x in links.items() if x} == {"p1": "stu-2", "p2": "stu-1"}
    assert "another learner" not in _matched(gs, "p1")["evidence"]


def _claimed_sending_to_stu_1(gs: Served, key: LedgerKey) -> tuple[LedgerRow, datetime, datetime]:
    """Ada's row once delivered to stu-1, then as a worker's claim leaves it while it sends
    her grade there again: pending, leased to another worker; (the row, when it was
    claimed, its lease's end)."""
    wait_for(lambda: sis_row(gs, "p1") == (DeliveryState.DELIVERED, None), "p1's row delivered")
    with gs.runtime.uow() as uow:
        delivered = uow.ledger.get(key)
        assert delivered is not None and delivered.state is DeliveryState.DELIVERED
        claimed = replace(delivered, state=DeliveryState.PENDING, delivered_hash=None)
        uow.ledger.save_many([(claimed, "c1")])
        now = SystemClock().now()
        until = now + timedelta(minutes=5)
        uow.ledger.lease([(key, now)], "w:other", until)
        uow.commit()
    return claimed, now, until


def test_a_send_in_flight_to_the_old_student_is_sent_again_to_the_new_one(
    gs: Served, sis: RunningSandbox
) -> None:
    """Ada's 8 is being sent to stu-1 (her row claimed by a worker) when her SIS id becomes
    stu-2. That send settled as delivered, though to the old student, and her row was left
    DELIVERED with nothing at stu-2. The move takes the claim's lease: its outcome is not
    written, the row goes to stu-2, and the history says the send to stu-1 was under way."""
    key = LedgerKey(gs.tenant, "sis", "q1", "p1")
    claimed, now, until = _claimed_sending_to_stu_1(gs, key)
    gs.ok("PUT", "/people/p1", json={"name": "Ada", "sis_id": "stu-2"})
    # the send to stu-1 answers now: the SIS took it. The claim's worker is told what its
    # settle left due (a claim made meanwhile may have skipped the row it locked); here,
    # the served worker is
    said_due: list[set[DueAt]] = []
    waker = gs.runtime.waker
    assert waker is not None

    def due(where: set[DueAt]) -> None:
        said_due.append(where)
        waker.wake_delivery()

    writer = SettleWriter(gs.runtime.uow, SystemClock(), EngineSettings(), "w:other", on_due=due)
    settled = Settlement(
        key, "c1", Delivered(200), until, sent_hash=claimed.desired_hash, timestamp=now,
        logged=True, claimed=claimed,
    )  # fmt: skip

    async def settle() -> None:
        writer.put(settled)
        await writer.flush()
        await writer.stop()

    asyncio.run(settle())
    # said due unless the served worker, woken by the move, sent it to stu-2 already
    assert said_due in ([], [{(gs.tenant, "sis", "c1", "q1")}]), said_due
    wait_for(
        lambda: results_in(sis).get("stu-2") == 8.0,
        "p1's grade sent to their new SIS student",
        explain=lambda: f"p1's row: {sis_row(gs, 'p1')}",
    )
    wait_for(lambda: sis_row(gs, "p1") == (DeliveryState.DELIVERED, None), "p1's row delivered")
    with gs.runtime.uow() as uow:
        lines = [x for x in uow.deliveries.for_key(key) if x["outcome"] == STUDENT_CHANGED]
    assert len(lines) == 1 and "a send to it was under way" in lines[0]["remote_message"]


def test_a_roster_import_moving_learners_of_a_course_reads_its_ledger_once(
    gs: Served, db: Database
) -> None:
    """An import correcting the SIS ids of several learners of one course read the course's
    whole ledger once per learner, inside the import's transaction, then once; now it reads
    only the moved learners' rows, once. Ada leaves stu-1 and Bo takes it in the same
    import (followed in the links' key order)."""
    gs.ok("PUT", "/people/p2", json={"name": "Bo", "sis_id": "stu-2"})
    wait_for(lambda: (_link(gs, "p2") or PersonLink("", "", "", "")).remote_id == "stu-2", "Bo")
    people = [
        {"id": "p1", "name": "Ada", "sis_id": "stu-3"},
        {"id": "p2", "name": "Bo", "sis_id": "stu-1"},
    ]
    with statements(db) as seen:
        gs.ok("POST", "/ingest", json={"people": people})
    links = {p: _link(gs, p) for p in ("p1", "p2")}
    assert {p: x.remote_id for p, x in links.items() if x} == {"p1": "stu-3", "p2": "stu-1"}
    # a course's whole ledger at the SIS (`ledger.get_many` of no activity), or the moved
    # learners' rows (`ledger.of_people`), which only mapping's send to a new student reads
    # here: no worker does
    whole = re.compile(
        r"WHERE ledger\.tenant_id = \S+ AND ledger\.destination_id = \S+ "
        r"AND ledger\.course_id = \S+\s*$"
    )
    assert [s for s in seen if whole.search(s)] == []
    theirs = [s for s in seen if re.search(r"\bledger\.person_id IN \(", s)]
    assert len(theirs) == 1, theirs


def _links(gs: Served) -> dict[str, str]:
    links = {p: _link(gs, p) for p in ("p1", "p2")}
    return {p: x.remote_id for p, x in links.items() if x}


def _bo_linked_to_stu_2(gs: Served, sis: RunningSandbox) -> None:
    gs.ok("PUT", "/people/p2", json={"name": "Bo", "sis_id": "stu-2"})
    wait_for(lambda: results_in(sis).get("stu-2") == 7.0, "p2's grade in the SIS")


def test_an_import_giving_a_learner_the_sis_id_another_leaves_follows_both(
    gs: Served, sis: RunningSandbox
) -> None:
    """One import gives Ada (p1) Bo's SIS id stu-2 and Bo a new one, stu-3. Checked one at a
    time in person order against the course's links as they were, Ada's move was refused
    (Bo still held stu-2); the course's moves are settled as a set, and both follow."""
    _bo_linked_to_stu_2(gs, sis)
    people = [
        {"id": "p1", "name": "Ada", "sis_id": "stu-2"},
        {"id": "p2", "name": "Bo", "sis_id": "stu-3"},
    ]
    gs.ok("POST", "/ingest", json={"people": people})
    assert _links(gs) == {"p1": "stu-2", "p2": "stu-3"}
    wait_for(
        lambda: results_in(sis).get("stu-2") == 8.0,
        "p1's grade sent to their new SIS student",
        explain=lambda: f"{results_in(sis)}",
    )
    # Bo's 7 is sent to stu-3, whom the sandbox's class does not hold: it refuses it
    wait_for(
        lambda: sis_row(gs, "p2") == (DeliveryState.REJECTED, "invalid_data"),
        "p2's grade sent to stu-3",
        explain=lambda: f"p2's row: {sis_row(gs, 'p2')}",
    )
    assert results_in(sis).get("stu-2") == 8.0
    for person in ("p1", "p2"):
        assert "another learner" not in _matched(gs, person)["evidence"]


def test_an_import_swapping_two_learners_sis_ids_follows_both(
    gs: Served, sis: RunningSandbox
) -> None:
    """One import swaps Ada's and Bo's SIS ids (stu-1 <-> stu-2): each move alone would put
    two learners on one student, so both were refused; together they do not, and both
    follow."""
    _bo_linked_to_stu_2(gs, sis)
    people = [
        {"id": "p1", "name": "Ada", "sis_id": "stu-2"},
        {"id": "p2", "name": "Bo", "sis_id": "stu-1"},
    ]
    gs.ok("POST", "/ingest", json={"people": people})
    assert _links(gs) == {"p1": "stu-2", "p2": "stu-1"}
    wait_for(
        lambda: results_in(sis) == {"stu-1": 7.0, "stu-2": 8.0},
        "each grade sent to its learner's new SIS student",
        explain=lambda: f"{results_in(sis)}",
    )
    for person in ("p1", "p2"):
        assert "another learner" not in _matched(gs, person)["evidence"]


class _SettledBeforeRead(LedgerRepo):
    """The ledger as the database keeps it, but just before the moved learners' rows are
    read (`of_people`) `settle` runs: what a worker's settle commits then."""

    def __init__(self, uow: UnitOfWork, settle: Any) -> None:
        super().__init__(uow.conn)  # type: ignore[attr-defined]
        self.settle = settle

    def of_people(self, *args: Any, **kwargs: Any) -> Any:
        if self.settle is not None:
            settle, self.settle = self.settle, None
            settle(self)
        return super().of_people(*args, **kwargs)


class _Settling:
    """A unit of work of `db` whose ledger is `_SettledBeforeRead`'s."""

    def __init__(self, db: Database, settle: Any) -> None:
        self.uow, self.settle = db.uow(), settle

    def __enter__(self) -> UnitOfWork:
        uow = self.uow.__enter__()
        uow.ledger = _SettledBeforeRead(uow, self.settle)
        return uow

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.uow.__exit__(kind, exc, tb)


def test_a_send_settled_just_before_the_move_reads_its_row_is_sent_to_the_new_one(
    gs: Served, sis: RunningSandbox, db: Database
) -> None:
    """Ada's 8 is being sent to stu-1 when she is linked to stu-2 by hand. The move read her
    row (claimed: pending) without a lock; the send's settle committed DELIVERED for stu-1
    before the move took the row's lease, and the move then found no lease and decided from
    its stale read: the row stayed DELIVERED and stu-2 never got her grade. It reads her
    rows once, under lock, and decides from that read: a settle committed up to then is in
    it (one committed after waits for the move's transaction, and finds its lease taken).
    On PostgreSQL the settle is a worker's, committed on its own connection just before the
    read; SQLite's one writer at a time leaves no room for that, so there it is written in
    the move's own transaction."""
    key = LedgerKey(gs.tenant, "sis", "q1", "p1")
    claimed, now, until = _claimed_sending_to_stu_1(gs, key)

    def settle(ledger: LedgerRepo) -> None:
        if ledger.postgres:
            writer = SettleWriter(gs.runtime.uow, SystemClock(), EngineSettings(), "w:other")
            settled = Settlement(
                key, "c1", Delivered(200), until, sent_hash=claimed.desired_hash,
                timestamp=now, logged=True, claimed=claimed,
            )  # fmt: skip

            async def run() -> None:
                writer.put(settled)
                await writer.flush()
                await writer.stop()

            asyncio.run(run())
        else:
            took = replace(claimed, state=DeliveryState.DELIVERED)
            ledger.save_many([(replace(took, delivered_hash=claimed.desired_hash), "c1")])
            assert ledger.release([(key, until)], "w:other") == 1
        row = ledger.get(key)  # committed (PostgreSQL), or written: what the lock reads
        assert row is not None and row.state is DeliveryState.DELIVERED, row

    map_student(
        lambda: _Settling(db, settle),
        tenant_id=gs.tenant,
        destination_id="sis",
        person_id="p1",
        student_id="stu-2",
        waker=gs.runtime.waker,
    )
    wait_for(
        lambda: results_in(sis).get("stu-2") == 8.0,
        "p1's grade sent to their new SIS student",
        explain=lambda: f"p1's row: {sis_row(gs, 'p1')}",
    )


def _first(seen: list[str], pattern: str) -> int:
    return next(i for i, s in enumerate(seen) if re.search(pattern, s))


def test_moving_a_link_marks_its_keys_before_it_saves_the_link(gs: Served, db: Database) -> None:
    """A computation claims dirty rows, then saves the links it matches: an import following
    a new SIS id, or map-students, saved the link and then marked the keys, and on
    PostgreSQL the two could deadlock. Both mark first now."""
    with statements(db) as seen:
        gs.ok("PUT", "/people/p1", json={"name": "Ada", "sis_id": "stu-2"})
    assert _first(seen, r"\bINTO dirty_keys\b") < _first(seen, r"\bINTO person_links\b"), seen
    _give_sis_id_unannounced(gs, "p1", "stu-1")
    with statements(db) as seen:
        gs.ok("POST", f"{SIS_PATH}/courses/c1/students")
    assert _first(seen, r"\bINTO dirty_keys\b") < _first(seen, r"\bINTO person_links\b"), seen
