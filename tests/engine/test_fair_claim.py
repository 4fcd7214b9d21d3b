"""Courses share a destination fairly: within a priority, a claim deals pending rows
round-robin between the courses that have some, so a big backlog of one course (a
remaster) never makes another course's grades wait until it is done."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from gradesync.adapters.db import schema
from gradesync.adapters.db.database import Database
from gradesync.adapters.db.repos import ledger as ledger_repo
from gradesync.domain.model import CourseLink, DeliveryState, LedgerKey, LedgerRow
from gradesync.services.ports.ledger import FAIR_COURSES
from gradesync.testing import add_course
from gradesync.testing.seeding import EPOCH
from gradesync.testing.waiting import wait_for_async
from tests.engine.conftest import DEST, FAST, Harness, T, learner, post, seed


def _row(activity: str, person: str, minute: float) -> LedgerRow:
    return LedgerRow(
        key=LedgerKey(T, DEST, activity, person),
        state=DeliveryState.PENDING,
        desired_hash=f"h-{activity}-{person}",
        desired={"score_given": 1.0, "score_maximum": 10.0},
        updated_at=EPOCH + timedelta(minutes=minute),
    )


def _queue(db: Database, course: str, activity: str, n: int, start: float, bulk: bool) -> None:
    with db.uow() as uow:
        uow.ledger.save_many(
            [(_row(activity, learner(i), start + i / 100), course) for i in range(n)], bulk=bulk
        )
        uow.commit()


def _claim(db: Database, limit: int, after: str = "") -> list[tuple[str, str]]:
    with db.uow() as uow:
        got = uow.ledger.claimable(EPOCH + timedelta(hours=1), limit, courses_after=after)
    return [(course, row.key.person_id) for row, course, _ in got]


def test_two_courses_queued_share_each_claim(db: Database) -> None:
    seed(db, learners=0)
    _queue(db, "big", "a1", 50, start=0, bulk=True)  # a remaster of course "big", first
    _queue(db, "small", "b1", 6, start=5, bulk=True)  # another course's run, queued after
    _queue(db, "live", "c1", 2, start=9, bulk=False)  # two live grades, newest of all

    first = _claim(db, 8)
    # live grades first, then the two courses' runs half and half (each its oldest first)
    assert first[:2] == [("live", learner(0)), ("live", learner(1))]
    courses = [course for course, _ in first[2:]]
    assert courses.count("big") == 3 and courses.count("small") == 3, first
    assert [p for c, p in first if c == "big"] == [learner(i) for i in range(3)]
    assert [p for c, p in first if c == "small"] == [learner(i) for i in range(3)]

    # a course that runs short leaves its share to the others
    with db.uow() as uow:
        uow.ledger.save_many([(_row("c1", learner(i), 9), "live") for i in range(2)])
        uow.commit()
    second = _claim(db, 30)
    assert sum(1 for c, _ in second if c == "small") == 6
    assert sum(1 for c, _ in second if c == "big") == 22  # the rest of the batch


def test_more_courses_than_one_claim_serves_take_turns(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_repo, "FAIR_COURSES", 2)
    seed(db, learners=0)
    for k, course in enumerate(("c-a", "c-b", "c-c")):
        _queue(db, course, f"x{k}", 4, start=k, bulk=True)
    assert {c for c, _ in _claim(db, 4)} == {"c-a", "c-b"}
    assert {c for c, _ in _claim(db, 4, after="c-b")} == {"c-c", "c-a"}  # round to the start
    assert {c for c, _ in _claim(db, 4, after="c-c")} == {"c-a", "c-b"}


def test_rows_another_claimer_lets_go_mid_claim_are_claimed_once(
    postgres_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim reads each course's rows in steps (the next share after those it took).
    Rows another claimer held at the first step and let go unchanged before the next (rows
    it read but did not choose) come back into the order ahead of this claim's own: the
    next step must not hand out this claim's rows a second time (seen as one result sent
    twice at once in a remaster on PostgreSQL)."""
    db = postgres_db
    seed(db, learners=0)
    _queue(db, "big", "a1", 20, start=0, bulk=True)
    _queue(db, "small", "b1", 2, start=0, bulk=True)  # runs short: a second step for "big"
    other = db.engine.connect()
    other.begin()
    ledger = schema.ledger
    held = [learner(i) for i in range(5)]  # the oldest five of "big"
    other.execute(
        select(ledger.c.person_id)
        .where(ledger.c.activity_id == "a1", ledger.c.person_id.in_(held))
        .with_for_update()
    ).all()
    steps = 0
    shares = ledger_repo._shares

    def next_step(*args: object) -> object:
        nonlocal steps
        steps += 1
        if steps == 2:
            other.rollback()  # the other claimer lets its rows go, unchanged
        return shares(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(ledger_repo, "_shares", next_step)
    try:
        claimed = _claim(db, 20)
    finally:
        other.close()
    assert steps >= 2
    assert len(claimed) == len(set(claimed)), sorted(claimed)
    # the rows let go wait for the next claim; every other row is claimed, once
    assert sorted(p for c, p in claimed if c == "big") == [learner(i) for i in range(5, 20)]


async def test_a_course_s_grades_are_not_held_behind_another_course_s_backlog(
    harness: Harness, db: Database
) -> None:
    seed(db, learners=40, config={"concurrency": 1})  # course c1, 40 learners, activity a1
    add_course(db.uow, T, "c2", ("b1", "Quiz b1", 10.0), learners=[learner(i) for i in range(5)])
    with db.uow() as uow:
        uow.links.save_course(CourseLink(T, DEST, "c2", "https://lms/courses/2"))
        uow.commit()
    engine = await harness.use(replace(FAST, claim_batch=4))
    post(db, harness.waker, [("a1", learner(i), 5.0) for i in range(40)])  # c1's backlog
    await engine.process_dirty()
    post(db, harness.waker, [("b1", learner(i), 6.0) for i in range(5)])  # then c2's grades
    await engine.process_dirty()

    await engine.deliver_due()

    order = harness.remote.order
    assert len(order) == 45
    c2_at = [i for i, (item, _) in enumerate(order) if item.endswith("/b1")]
    # oldest first would send c2's five after all forty of c1; shared, they go early
    assert len(c2_at) == 5 and max(c2_at) < 16, c2_at


async def test_a_pass_serves_more_courses_than_one_claim_holds(
    harness: Harness, db: Database
) -> None:
    """A grade each in many courses (live grades, a vendor's many platforms): a claim serves
    FAIR_COURSES of them and the pass claims again at once, not after the next poll."""
    seed(db, learners=1)
    courses = [f"k{n:02d}" for n in range(FAIR_COURSES + 8)]
    for n, course in enumerate(courses):
        add_course(db.uow, T, course, (f"q{n}", f"Quiz {n}", 10.0), learners=[learner(0)])
        with db.uow() as uow:
            uow.links.save_course(CourseLink(T, DEST, course, f"https://lms/courses/{course}"))
            uow.commit()
    # no poll within the test: only the claim saying "rows may be left" claims again
    engine = await harness.use(replace(FAST, poll=timedelta(hours=1)))
    post(db, harness.waker, [(f"q{n}", learner(0), 7.0) for n in range(len(courses))])
    await engine.process_dirty()

    stats = await engine.deliver_due()

    assert len(harness.remote.order) == len(courses), stats


async def test_a_live_grade_is_claimed_at_once_while_a_run_fills_the_pass_s_hands(
    harness: Harness, db: Database
) -> None:
    """A remaster keeps a pass's hands full (it claims more only as rows go out); a live
    grade computed meanwhile is claimed at once and, first at the slots, sent next."""
    seed(db, learners=40, activities=("a1", "b1"), config={"concurrency": 1})
    engine = await harness.use(replace(FAST, claim_batch=4, poll=timedelta(hours=1)))
    desired = {
        "score_given": 5.0,
        "score_maximum": 10.0,
        "grading_progress": "FullyGraded",
        "activity_progress": "Completed",
    }
    with db.uow() as uow:  # a run's rows: 40 results of a1 made pending by a remaster
        uow.ledger.save_many(
            [(replace(_row("a1", learner(i), i / 100), desired=desired), "c1") for i in range(40)],
            bulk=True,
        )
        uow.commit()
    remote = harness.remote
    remote.hold = asyncio.Event()  # the LMS answers only when the test lets it
    passing = asyncio.create_task(engine.deliver_due())
    await remote.wait_for(lambda: remote.sends == 1, "the run's first send")
    # the pass now holds 16 of the run's rows (four claims of 4), one of them at the LMS
    post(db, harness.waker, [("b1", learner(0), 9.0)])
    await engine.process_dirty()  # computed: the live grade is due
    governor = engine.deliverer.governor
    slots = governor.limits_for(governor.destinations[(T, DEST)]).semaphore
    # claimed, prepared and queued for the slot at a live grade's priority (0): only then is
    # "next" decided (the claim alone leaves its preparation racing the first send's end)
    await wait_for_async(lambda: slots.waiting(0) == 1, "the live grade at the slots")
    remote.hold.set()
    await passing

    sent = [item.rsplit("/", 1)[-1] for item, _ in remote.order]
    assert len(sent) == 41
    assert sent.index("b1") == 1, sent  # right after the send already at the LMS
