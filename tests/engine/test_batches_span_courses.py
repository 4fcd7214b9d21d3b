"""Live grades arrive from many courses at once. A batch of dirty keys is computed for all
its courses together, and a claim reads what sending needs for all its courses together:
each key still gets its own course's enrolment, person link and destinations, and on
PostgreSQL (where each statement is a round trip) a batch or a claim costs the same
statements whether its keys come from one course or from many."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.model import DeliveryState, Enrollment, EnrollmentStatus, PersonLink
from gradesync.domain.reasons import ReasonCode
from gradesync.services.clock import SystemClock
from gradesync.services.compute import NO_PERSON_LINK, compute_dirty
from gradesync.services.delivery import DeliveryScope
from gradesync.services.worker import Clients, Engine
from gradesync.testing import DoubleFactory, add_course, add_destination, add_tenant
from tests.engine.conftest import FAST, T, post
from tests.support.statements import statements


def _compute(db: Database) -> int:
    """One batch (all the dirty keys); the number of keys it consumed."""
    stats = compute_dirty(db.uow, SystemClock(), Clients(DoubleFactory()).capabilities)
    return stats.dirty


def test_each_key_of_a_many_course_batch_gets_its_own_courses_facts(db: Database) -> None:
    add_tenant(db.uow, T)
    add_course(db.uow, T, "c1", ("a1", "Quiz 1", 10.0), learners=["p1", "p2"])
    add_course(db.uow, T, "c2", ("b1", "Essay", 10.0), learners=["p1"])
    with db.uow() as uow:  # p2 dropped c2: no grade there, while c1's still goes
        uow.enrollments.upsert(Enrollment(T, "c2", "p2", status=EnrollmentStatus.DROPPED))
        uow.commit()
    # lms serves both courses; p1 is known there in c2 only, p2 everywhere
    add_destination(db.uow, T, "lms", links={"c1": "L1", "c2": "L2"}, people={"p2": "lms-p2"})
    with db.uow() as uow:
        uow.links.save_person(PersonLink(T, "lms", "p1", "lms-p1-c2", course_id="c2"))
        uow.commit()
    # sis serves c1 only, and knows p1 only
    add_destination(db.uow, T, "sis", links={"c1": "S1"}, people={"p1": "sis-p1"})
    post(db, None, [("a1", "p1", 7.0), ("a1", "p2", 8.0), ("b1", "p1", 9.0), ("b1", "p2", 6.0)])

    assert _compute(db) == 4  # one batch, both courses

    with db.uow() as uow:
        rows = {
            (d, r.key.activity_id, r.key.person_id): r
            for d, c in (("lms", "c1"), ("lms", "c2"), ("sis", "c1"), ("sis", "c2"))
            for r in uow.ledger.get_many(T, d, c).values()
        }
    sent = {k: (r.desired or {}).get("score_given") for k, r in rows.items()}
    assert {k: r.state for k, r in rows.items() if r.state is DeliveryState.PENDING} == {
        ("lms", "a1", "p2"): DeliveryState.PENDING,
        ("lms", "b1", "p1"): DeliveryState.PENDING,  # its link for c2 counts in c2
        ("sis", "a1", "p1"): DeliveryState.PENDING,
    }
    assert sent[("lms", "a1", "p2")] == 8.0
    assert sent[("lms", "b1", "p1")] == 9.0
    assert sent[("sis", "a1", "p1")] == 7.0
    assert rows[("lms", "a1", "p1")].reason_code == NO_PERSON_LINK  # c2's link is not c1's
    assert rows[("sis", "a1", "p2")].reason_code == NO_PERSON_LINK
    assert rows[("lms", "b1", "p2")].reason_code == ReasonCode.ENROLLMENT_INACTIVE
    assert not [k for k in rows if k[0] == "sis" and k[1] == "b1"]  # c2 is not linked to sis


def _courses(db: Database, n: int, first: int) -> list[tuple[str, str, float]]:
    """n courses, each with two activities and two learners, linked to two destinations;
    the scores of one attempt per learner and activity."""
    scores = []
    for c in range(first, first + n):
        course, activities = f"c{c}", (f"a{c}x", f"a{c}y")
        people = [f"p{c}a", f"p{c}b"]
        add_course(db.uow, T, course, *((a, a, 10.0) for a in activities), learners=people)
        scores += [(a, p, 5.0) for a in activities for p in people]
    return scores


def _world(db: Database) -> tuple[list[tuple[str, str, float]], list[tuple[str, str, float]]]:
    """One course and eight others (the scores of each), linked to two destinations."""
    add_tenant(db.uow, T)
    one, many = _courses(db, 1, 0), _courses(db, 8, 1)
    courses = [f"c{i}" for i in range(9)]
    people = {p for _, p, _ in one + many}
    for dest in ("lms", "sis"):
        add_destination(
            db.uow,
            T,
            dest,
            links={c: f"{dest}-{c}" for c in courses},
            people={p: f"{dest}-{p}" for p in people},
        )
    return one, many


@pytest.mark.postgres
def test_a_batch_of_many_courses_costs_the_statements_of_one(postgres_db: Database) -> None:
    db = postgres_db
    one, many = _world(db)

    post(db, None, one)
    with statements(db) as for_one:
        assert _compute(db) == 4
    post(db, None, many)
    with statements(db) as for_many:
        assert _compute(db) == 32

    assert len(for_many) == len(for_one), (for_one, for_many)
    with db.uow() as uow:
        pending = sum(
            uow.ledger.counts_by_state(T, destination_id=d).get("pending", 0)
            for d in ("lms", "sis")
        )
    assert pending == 2 * (4 + 32)


@pytest.mark.postgres
async def test_a_claim_of_many_courses_costs_the_statements_of_one(
    postgres_db: Database,
) -> None:
    db = postgres_db
    one, many = _world(db)
    settings = replace(FAST, destinations_ttl=timedelta(hours=1))  # read once, below
    engine = Engine(db.uow, SystemClock(), DoubleFactory(), settings)
    try:
        assert await engine.deliverer.claim(DeliveryScope(), 100) == ([], {}, False)
        post(db, None, one)
        _compute(db)
        with statements(db) as for_one:
            claimed, facts, _ = await engine.deliverer.claim(DeliveryScope(), 100)
        assert len(claimed) == 2 * 4 and len(facts) == 2  # both destinations, one course
        post(db, None, many)
        _compute(db)
        with statements(db) as for_many:
            claimed, facts, _ = await engine.deliverer.claim(DeliveryScope(), 100)
        assert len(claimed) == 2 * 32 and len(facts) == 2 * 8
    finally:
        await engine.aclose()

    assert len(for_many) == len(for_one), (for_one, for_many)
    # each claimed row comes with its own course's facts
    for (_, dest, course), f in facts.items():
        assert f.course is not None and f.course.id == course
        assert f.course_link is not None and f.course_link.remote_id == f"{dest}-{course}"
        assert set(f.activities) == {f"a{course[1:]}x", f"a{course[1:]}y"}
        assert {p: link.remote_id for p, link in f.people.items()} == {
            p: f"{dest}-{p}" for p in (f"p{course[1:]}a", f"p{course[1:]}b")
        }
