"""Columns created when an activity and its course's link are known, not on the first
grade: the first grade of a new line item does not wait for the line item to be created."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Activity, DeliveryState, RunOutcome, RunScope, Trigger
from gradesync.services import destination_admin
from gradesync.services.clock import SystemClock
from gradesync.services.ingest import IngestBatch, ingest
from gradesync.services.runs import request_run
from gradesync.testing import DEADLINE
from gradesync.testing.double import DoubleClient
from tests.engine.conftest import COURSE, DEST, Harness, T, learner, post, seed


def _item(activity: str) -> str:
    return f"https://lms/courses/1/items/{activity}"


def _ingest_activity(db: Database, harness: Harness, activity: str) -> None:
    ingest(
        db.uow,
        SystemClock(),
        harness.waker,
        T,
        IngestBatch(activities=[Activity(T, activity, COURSE, f"Quiz {activity}", 10.0)]),
    )


async def test_an_activity_of_a_linked_course_has_its_line_item_before_any_attempt(
    harness: Harness, db: Database
) -> None:
    seed(db, learners=3, activities=())
    _ingest_activity(db, harness, "a1")
    await harness.engine.process_dirty()
    await asyncio.wait_for(harness.engine.columns_ahead_done(), DEADLINE)
    assert harness.remote.sends == 0  # no grade yet, and none was sent
    assert harness.remote.column_calls == 1 and _item("a1") in harness.remote.columns

    # the first grade goes out with the line item that exists: nothing created on its way
    post(db, harness.waker, [("a1", learner(0), 7.0)])
    await harness.engine.process_dirty()
    stats = await asyncio.wait_for(harness.engine.deliver_due(), DEADLINE)
    assert stats.delivered == 1 and harness.remote.score_of(_item("a1"), "sub-p000") == 7.0
    assert harness.remote.column_calls == 1
    with db.uow() as uow:
        link = uow.links.item(T, DEST, "a1")
    assert link is not None and link.remote_id == _item("a1")


async def test_a_column_that_fails_ahead_pauses_nothing_and_is_created_by_its_first_grade(
    harness: Harness, db: Database
) -> None:
    from gradesync.testing.double import server_error

    seed(db, learners=2, activities=())
    harness.remote.column_failures["a1"] = server_error()
    _ingest_activity(db, harness, "a1")
    await harness.engine.process_dirty()
    await asyncio.wait_for(harness.engine.columns_ahead_done(), DEADLINE)
    assert harness.remote.column_calls == 1 and not harness.remote.columns
    # a failure ahead of the first grade is left to that grade's send: no pause, no row
    limits = harness.engine.deliverer.governor.limits.get((T, DEST))
    assert limits is None or limits.gate_until is None
    with db.uow() as uow:  # the learners' rows say "no grade yet", not the failure
        rows = uow.ledger.get_many(T, DEST, COURSE).values()
    assert rows and {r.state for r in rows} == {DeliveryState.SKIPPED}

    del harness.remote.column_failures["a1"]
    post(db, harness.waker, [("a1", learner(1), 4.0)])
    await harness.engine.process_dirty()
    stats = await asyncio.wait_for(harness.engine.deliver_due(), DEADLINE)
    assert stats.delivered == 1 and harness.remote.column_calls == 2


async def test_a_noop_resync_after_columns_created_ahead_sends_nothing(
    harness: Harness, db: Database
) -> None:
    seed(db, learners=3, activities=())
    _ingest_activity(db, harness, "a1")
    _ingest_activity(db, harness, "a2")
    await harness.engine.process_dirty()
    await asyncio.wait_for(harness.engine.columns_ahead_done(), DEADLINE)
    assert set(harness.remote.columns) == {_item("a1"), _item("a2")}
    post(db, harness.waker, [(a, learner(i), 5.0) for i in range(3) for a in ("a1", "a2")])
    await harness.engine.process_dirty()
    assert (await asyncio.wait_for(harness.engine.deliver_due(), DEADLINE)).delivered == 6
    sends, writes = harness.remote.sends, harness.remote.column_writes
    with db.uow() as uow:
        assert {r.state for r in uow.ledger.get_many(T, DEST, COURSE).values()} == {
            DeliveryState.DELIVERED
        }

    scope = RunScope(T, DEST, COURSE)
    run, _ = request_run(db.uow, None, SystemClock(), scope, Trigger.RESYNC, "ada@school")
    done = await asyncio.wait_for(harness.engine.execute_run(run.id), DEADLINE)
    assert done is not None and done.outcome is RunOutcome.SUCCEEDED, done.message
    assert harness.remote.sends == sends and done.counts["sent"] == 0
    assert harness.remote.column_writes == writes


async def test_a_column_known_during_a_timed_pause_is_created_once_the_pause_ends(
    harness: Harness, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An admin's pause until a time (as a Retry-After's): the line item is not asked for
    before it ends, and is created then by itself, with no resume and no grade."""
    asked: list[datetime] = []
    ensure_column = DoubleClient.ensure_column

    async def noted(self: DoubleClient, *args: object, **kw: object) -> object:
        asked.append(SystemClock().now())
        return await ensure_column(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(DoubleClient, "ensure_column", noted)
    seed(db, learners=2, activities=())
    until = SystemClock().now() + timedelta(milliseconds=300)
    destination_admin.pause(db.uow, SystemClock(), T, DEST, actor="ada", until=until)
    _ingest_activity(db, harness, "a1")
    await harness.engine.process_dirty()
    await asyncio.wait_for(harness.engine.columns_ahead_done(), DEADLINE)
    assert _item("a1") in harness.remote.columns
    assert len(asked) == 1 and asked[0] >= until, (asked, until)


async def test_a_renamed_activity_has_its_column_rewritten_though_no_grade_changes(
    harness: Harness, db: Database
) -> None:
    """A title or due date changed after the column was written changes no grade, so no send
    rewrites the column: computing finds its details differ from what was written and has
    it rewritten at once, each change once (docs/lti13.md, docs/oneroster.md)."""
    seed(db, learners=2, activities=())
    _ingest_activity(db, harness, "a1")
    post(db, harness.waker, [("a1", learner(0), 7.0)])
    await harness.engine.process_dirty()
    assert (await asyncio.wait_for(harness.engine.deliver_due(), DEADLINE)).delivered == 1
    await asyncio.wait_for(harness.engine.columns_ahead_done(), DEADLINE)
    sends, writes = harness.remote.sends, harness.remote.column_writes

    renamed = Activity(T, "a1", COURSE, "Quiz One", 10.0)
    ingest(db.uow, SystemClock(), harness.waker, T, IngestBatch(activities=[renamed]))
    stats = await harness.engine.process_dirty()
    assert stats.pending == 0  # no grade changed
    await asyncio.wait_for(harness.engine.columns_ahead_done(), DEADLINE)
    assert harness.remote.columns[_item("a1")]["title"] == "Quiz One"
    assert harness.remote.column_writes == writes + 1 and harness.remote.sends == sends

    # computed again with nothing changed: not written again
    ingest(db.uow, SystemClock(), harness.waker, T, IngestBatch(activities=[renamed]))
    post(db, harness.waker, [("a1", learner(0), 7.0)])  # the same score: nothing to send
    await harness.engine.process_dirty()
    await asyncio.wait_for(harness.engine.columns_ahead_done(), DEADLINE)
    assert harness.remote.column_writes == writes + 1


async def test_a_rewrite_that_failed_for_a_while_is_tried_again_by_the_next_computing(
    harness: Harness, db: Database
) -> None:
    """A renamed activity's column whose rewrite the LMS answered with a 5xx: no send would
    ever write it, so the next computing of the activity (here a learner's attempt with the
    score sent already: nothing to send) tries it again; it was tried once per change and
    left stale."""
    from gradesync.testing.double import server_error

    seed(db, learners=2, activities=())
    _ingest_activity(db, harness, "a1")
    post(db, harness.waker, [("a1", learner(0), 7.0)])
    await harness.engine.process_dirty()
    assert (await asyncio.wait_for(harness.engine.deliver_due(), DEADLINE)).delivered == 1
    await asyncio.wait_for(harness.engine.columns_ahead_done(), DEADLINE)

    harness.remote.column_failures["a1"] = server_error()
    renamed = Activity(T, "a1", COURSE, "Quiz One", 10.0)
    ingest(db.uow, SystemClock(), harness.waker, T, IngestBatch(activities=[renamed]))
    await harness.engine.process_dirty()
    await asyncio.wait_for(harness.engine.columns_ahead_done(), DEADLINE)
    assert harness.remote.columns[_item("a1")]["title"] == "Quiz a1"  # the 5xx

    del harness.remote.column_failures["a1"]
    post(db, harness.waker, [("a1", learner(0), 7.0)])
    await harness.engine.process_dirty()
    await asyncio.wait_for(harness.engine.columns_ahead_done(), DEADLINE)
    assert harness.remote.columns[_item("a1")]["title"] == "Quiz One"
