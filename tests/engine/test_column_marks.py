"""A column marked to be checked (a run's mark, a person's change) is checked by the first
write after the mark, in whichever process: neither a write begun before the mark, saved
after it, nor a process's memory of the column takes the mark for one seen already."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

from gradesync.adapters.db.database import Database
from gradesync.domain.columns import (
    RESCALE_KEY,
    check_mark,
    columns_made,
    look_mark,
    marked_to_check,
)
from gradesync.domain.model import CourseLink, Destination, DestinationKind, ItemLink
from gradesync.domain.policy import Column, column_hash
from gradesync.services.sis.common import touch_items
from tests.support.columns import FakeColumns, Provisioning, worker_provisioning

from .conftest import COURSE, DEST, FAST, T, seed

COLUMN = Column("Quiz", 10.0, None, None, "a1")
ACT = "a1"


@dataclass
class _Lms(FakeColumns):
    """A destination's columns: a write records what it was asked and writes the column's
    details; `hold` keeps the next write between its read of the column and its answer
    until released."""

    details: str | None = None
    asked: list[tuple[str | None, bool]] = field(default_factory=list)
    hold: asyncio.Event | None = None
    reading: asyncio.Event = field(default_factory=asyncio.Event)

    async def write(self, column: Column, link: ItemLink | None, *, force: bool) -> ItemLink:
        assert link is not None
        self.asked.append((link.details_hash, force))
        self.reading.set()
        if self.hold is not None:
            hold, self.hold = self.hold, None
            await hold.wait()
        self.details = column_hash(column)
        return replace(link, details_hash=self.details)


def _worker(db: Database) -> Provisioning:
    """One worker process's provisioner (its caches are its own)."""
    return worker_provisioning(db.uow, FAST)


def _destination(db: Database) -> tuple[Destination, CourseLink]:
    with db.uow() as uow:
        d, link = uow.destinations.get(T, DEST), uow.links.course(T, DEST, COURSE)
    assert d is not None and link is not None
    return d, link


def _stored(db: Database) -> ItemLink:
    with db.uow() as uow:
        item = uow.links.item(T, DEST, ACT)
    assert item is not None
    return item


def _save(db: Database, item: ItemLink) -> None:
    with db.uow() as uow:
        uow.links.save_item(item)
        uow.commit()


def _mark(db: Database, run_id: str) -> None:
    with db.uow() as uow:
        uow.links.mark_items_to_check(T, DEST, [ACT], check_mark(run_id))
        uow.commit()


async def _racing_write(db: Database, written: Column) -> _Lms:
    """A worker's write of `written` reads the column, a remaster (run r2, for the same
    details or others) marks it meanwhile, and the write answers and saves its link after
    the mark."""
    seed(db, learners=1)
    d, course = _destination(db)
    _save(db, ItemLink(T, DEST, ACT, "li-1", "an older hash"))
    lms, racing = _Lms(hold=asyncio.Event()), _worker(db)
    hold = lms.hold
    assert hold is not None
    write = asyncio.create_task(
        racing.provisioner.ensure_column(lms, d, course, written, _stored(db))
    )
    await lms.reading.wait()
    _mark(db, "r2")
    hold.set()
    await write
    await racing.background.wait()  # its link saved
    return lms


async def _first_send_after(db: Database, lms: _Lms, wanted: Column) -> None:
    """Another worker sends the column's first grade after the mark."""
    p, background, _ = _worker(db)
    d, course = _destination(db)
    await p.ensure_column(lms, d, course, wanted, _stored(db), for_grades=True)
    await background.wait()


async def test_a_write_begun_before_a_remaster_with_the_details_wanted_keeps_its_mark(
    db: Database,
) -> None:
    """The racing write wrote the details the run wants, but it read the column before the
    run began (a hand edit in the LMS after that read is what the remaster is there to put
    right): the mark stays, and the first send after it checks the column. It erased the
    mark: the column was taken as written for the run and never checked."""
    lms = await _racing_write(db, COLUMN)
    assert _stored(db).details_hash == check_mark("r2")
    await _first_send_after(db, lms, COLUMN)
    assert lms.asked[-1] == (check_mark("r2"), True)  # checked, whatever its details
    assert _stored(db).details_hash == column_hash(COLUMN)


async def test_a_write_of_the_old_details_begun_before_a_remaster_keeps_its_mark(
    db: Database,
) -> None:
    """A policy change (the column's points) and a remaster for it, while a write of the old
    details was on its way: its save does not pass for the run's check of the column (the
    run counted it written and did not write it; `SyncService._provisioning`)."""
    wanted = replace(COLUMN, score_maximum=20.0)
    lms = await _racing_write(db, COLUMN)
    stored = _stored(db)
    assert marked_to_check(stored) and stored.details_hash == check_mark("r2")
    await _first_send_after(db, lms, wanted)
    assert lms.asked[-1] == (check_mark("r2"), True)
    assert lms.details == column_hash(wanted) == _stored(db).details_hash


async def test_a_resumed_runs_mark_seen_here_was_checked_here_for_that_run(
    db: Database,
) -> None:
    """A run resumed in the same process marks its columns again with the same mark; a
    column this process wrote after that mark (the only way the marked link is in its
    cache) was checked for the run, and is not checked a second time here. A process
    that did not check it for the run (a fresh one) checks it."""
    seed(db, learners=1)
    d, course = _destination(db)
    _save(db, ItemLink(T, DEST, ACT, "li-1", column_hash(COLUMN)))
    lms = _Lms(details="edited by hand")
    p, background, _ = _worker(db)
    _mark(db, "r1")
    await p.ensure_column(lms, d, course, COLUMN, _stored(db), for_grades=True)
    await background.wait()
    assert lms.asked == [(check_mark("r1"), True)] and lms.details == column_hash(COLUMN)
    assert _stored(db).details_hash == column_hash(COLUMN)

    _mark(db, "r1")  # resumed: `SyncService._owe_rewrites` again
    await p.ensure_column(lms, d, course, COLUMN, _stored(db), for_grades=True)
    assert len(lms.asked) == 1  # checked once for r1, by this process, after r1's mark
    fresh, _, _ = _worker(db)
    await fresh.ensure_column(lms, d, course, COLUMN, _stored(db), for_grades=True)
    assert lms.asked[-1] == (check_mark("r1"), True)

    _mark(db, "r2")  # another remaster: checked again here
    await p.ensure_column(lms, d, course, COLUMN, _stored(db), for_grades=True)
    assert lms.asked[-1] == (check_mark("r2"), True)


async def test_a_persons_second_change_is_not_taken_for_the_first_by_a_worker(
    db: Database,
) -> None:
    """A SIS-side change (an alignment, a class) asks each of the course's columns to be
    looked at again (`touch_items`). A first change that left a column as it was, then a
    second: a long-running worker looks at the column again for the second (it took the
    second mark, equal in value to the first, for the link it had read then)."""
    seed(db, learners=1)
    d, course = _destination(db)
    _save(db, ItemLink(T, DEST, ACT, "li-1", column_hash(COLUMN), {"category": "c-1"}))
    lms = _Lms()
    p, background, _ = _worker(db)
    for change in range(2):
        with db.uow() as uow:
            touch_items(uow, T, DEST, COURSE)
            uow.commit()
        await p.ensure_column(lms, d, course, COLUMN, _stored(db), for_grades=True)
        await background.wait()
        assert len(lms.asked) == change + 1, f"change {change + 1} not looked at"
        assert _stored(db).details_hash == column_hash(COLUMN)


async def test_a_persons_change_during_a_write_is_not_saved_over(db: Database) -> None:
    """A SIS-side change made while a write of the column is on its way (it read the course
    as it was): the write's save leaves the change's mark, and the next send looks again."""
    seed(db, learners=1)
    d, course = _destination(db)
    _save(db, ItemLink(T, DEST, ACT, "li-1", None, {"category": "c-1"}))
    lms, (p, background, _) = _Lms(hold=asyncio.Event()), _worker(db)
    hold = lms.hold
    assert hold is not None
    write = asyncio.create_task(p.ensure_column(lms, d, course, COLUMN, _stored(db)))
    await lms.reading.wait()
    with db.uow() as uow:
        touch_items(uow, T, DEST, COURSE)
        uow.commit()
    hold.set()
    await write
    await background.wait()
    assert _stored(db).details_hash != column_hash(COLUMN)
    await p.ensure_column(lms, d, course, COLUMN, _stored(db), for_grades=True)
    assert len(lms.asked) == 2


@dataclass
class _Sis(_Lms):
    """A SIS's write: it creates the line item (`created`) and learns of it (`learned`),
    keeping what the link held, as `OneRosterClient.ensure_column` does."""

    created: str = "li-new"
    learned: dict[str, object] = field(default_factory=dict)

    async def write(self, column: Column, link: ItemLink | None, *, force: bool) -> ItemLink:
        written = await super().write(column, link, force=force)
        return replace(written, remote_id=self.created, data={**written.data, **self.learned})


@dataclass
class _Ags(_Lms):
    """An AGS write: its link keeps the line item's own fields only
    (`AgsClient.ensure_column`)."""

    async def write(self, column: Column, link: ItemLink | None, *, force: bool) -> ItemLink:
        written = await super().write(column, link, force=force)
        return replace(written, data={"label": column.title})


async def _write_across(db: Database, lms: _Lms, change: ItemLink) -> None:
    """A write of the column that reads it, `change` saved meanwhile, then its answer."""
    d, course = _destination(db)
    p, background, _ = _worker(db)
    hold = lms.hold = asyncio.Event()
    write = asyncio.create_task(p.ensure_column(lms, d, course, COLUMN, _stored(db)))
    await lms.reading.wait()
    _save(db, change)
    hold.set()
    await write
    await background.wait()


async def test_a_write_refused_for_a_persons_change_still_saves_what_it_found(
    db: Database,
) -> None:
    """A SIS line item created (and matched) by a write while a person ticked the activity
    to send at once (Post grades: its hold lifted): the refused save dropped the whole
    row, the line item the write created and what it learned of it with it. Now the
    person's mark and choices stay, and what the write found is saved beside them."""
    seed(db, learners=1)
    _save(db, ItemLink(T, DEST, ACT, "", None, {"sync_to_sis": True, "held": True}))
    learned = {"line_items": {"class-1": "li-new"}, "matched": {"class-1": "created"}}
    lms = _Sis(learned=learned)
    before = _stored(db)
    posted = replace(before, details_hash=look_mark("posted"), data={"sync_to_sis": True})
    await _write_across(db, lms, posted)
    stored = _stored(db)
    assert stored.details_hash == look_mark("posted")  # looked at again by the next send
    assert stored.remote_id == "li-new"
    assert stored.data == {"sync_to_sis": True, **learned}  # the hold stays lifted


async def test_a_refused_write_leaves_a_line_item_a_launch_named_meanwhile(
    db: Database,
) -> None:
    """A launch naming the LMS's own line item for the column while a write of the older
    one was on its way: the launch's line item and link stay, and what the write found of
    the older line item (its label) is not given to the launch's."""
    seed(db, learners=1)
    _save(db, ItemLink(T, DEST, ACT, "li-1", "an older hash"))
    lms = _Sis(created="li-1", learned={"label": "Quiz"})
    launched = ItemLink(T, DEST, ACT, "li-lms", look_mark("launch"), {"resourceLinkId": "rl"})
    await _write_across(db, lms, launched)
    stored = _stored(db)
    assert (stored.remote_id, stored.details_hash) == ("li-lms", look_mark("launch"))
    assert stored.data == {"resourceLinkId": "rl"}


async def test_a_column_write_keeps_the_rescale_verify_put_on_its_link(db: Database) -> None:
    """Verify's record of a rescale it put back (`domain.overrides.rescale_entry`) is
    verify's: a write that keeps only the line item's own fields (an AGS write) does not
    drop it, nor does one that read it before verify cleared it bring it back."""
    seed(db, learners=1)
    entry = {"rescaled_to": 99.0, "at": "2026-01-01T00:00:00.000000+00:00"}
    _save(db, ItemLink(T, DEST, ACT, "li-1", check_mark("r1"), {RESCALE_KEY: entry}))
    d, course = _destination(db)
    p, background, _ = _worker(db)
    ags = _Ags()
    await p.ensure_column(ags, d, course, COLUMN, _stored(db), for_grades=True)
    await background.wait()
    stored = _stored(db)
    assert stored.details_hash == column_hash(COLUMN)
    assert stored.data == {"label": "Quiz", RESCALE_KEY: entry}

    with db.uow() as uow:  # a write reads it, verify clears it meanwhile
        uow.links.mark_items_to_check(T, DEST, [ACT], check_mark("r2"))
        uow.commit()
    sis = _Sis(created="li-1", hold=asyncio.Event())
    hold = sis.hold
    assert hold is not None
    write = asyncio.create_task(p.ensure_column(sis, d, course, COLUMN, _stored(db)))
    await sis.reading.wait()
    with db.uow() as uow:
        uow.links.update_item_data(T, DEST, ACT, {RESCALE_KEY: None})
        uow.commit()
    hold.set()
    await write
    await background.wait()
    stored = _stored(db)
    assert stored.details_hash == column_hash(COLUMN)
    assert RESCALE_KEY not in stored.data


def test_a_column_gone_is_made_again_only_where_gradesync_makes_columns() -> None:
    """LTI 1.1 passes a grade to the LMS's own column: one deleted there is never made again
    by gradesync, so its refusal marks nothing (`Deliverer.send`)."""
    assert not columns_made(DestinationKind.LTI11_OUTCOMES)
    made = [DestinationKind.LTI13_AGS, DestinationKind.ONEROSTER_REST]
    assert all(columns_made(k) for k in [*made, DestinationKind.ONEROSTER_CSV])


async def test_a_launch_during_an_accepted_write_keeps_the_learners_sourcedid(
    db: Database,
) -> None:
    """An LTI 1.1 launch by a new learner while a write of the column is on its way: the
    launch keeps the column's details hash (its link named the same column), so the write
    is saved as written, and it read the column before the launch stored the learner's
    `sourcedids` entry. The write saved the learner's result id away with the column it
    had read; it keeps what it changed only, and the launch's entry stays."""
    seed(db, learners=1)
    launched = {
        "resource_link_id": "rl-1",
        "course_id": COURSE,
        "outcome_service_url": "https://lms/outcomes",
        "sourcedids": {"p1": "sid-1"},
        "outcome_urls": {"p1": "https://lms/outcomes"},
    }
    _save(db, ItemLink(T, DEST, ACT, "rl-1", look_mark("first launch"), launched))
    before = _stored(db)
    second = {
        **launched,
        "sourcedids": {"p1": "sid-1", "p2": "sid-2"},
        "outcome_urls": {"p1": "https://lms/outcomes", "p2": "https://lms/outcomes"},
    }
    # LTI 1.1: the write records the details as in step and keeps the link's data as read
    await _write_across(db, _Lms(), replace(before, data=second))
    stored = _stored(db)
    assert stored.details_hash == column_hash(COLUMN)  # saved as written
    assert stored.data == second


async def test_a_sis_selection_during_an_accepted_write_keeps_its_keys(db: Database) -> None:
    """A SIS selection's keys (here: a hold, and when it was ticked) stored while a write of
    the column is on its way, the details hash left as it was: the write is saved as
    written, with the line items it learned, and the selection's keys stay as stored."""
    seed(db, learners=1)
    _save(db, ItemLink(T, DEST, ACT, "", look_mark("ticked"), {"sync_to_sis": True}))
    learned = {"line_items": {"class-1": "li-new"}, "matched": {"class-1": "created"}}
    lms = _Sis(learned=learned)
    before = _stored(db)
    held = {"sync_to_sis": True, "held": True, "selected_at": "2026-01-01T00:00:00+00:00"}
    await _write_across(db, lms, replace(before, data=held))
    stored = _stored(db)
    assert (stored.remote_id, stored.details_hash) == ("li-new", column_hash(COLUMN))
    assert stored.data == {**held, **learned}
