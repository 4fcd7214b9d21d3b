"""Mapping gradesync to the SIS: course -> class, person -> student, and each activity group
-> one of the SIS's own categories."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, Literal

from gradesync.domain.errors import FieldProblem, InvalidInput, NotFound, Problems
from gradesync.domain.identifiers import id_problems, sis_id_problems
from gradesync.domain.ledger import reopened
from gradesync.domain.model import (
    WAITING_STATES,
    CourseLink,
    DeliveryState,
    LedgerKey,
    PersonLink,
    Role,
)
from gradesync.domain.passback import (
    BY_HAND,
    BY_SIS_ID,
    LINKED_BY,
    NOT_FOLLOWED,
    STUDENT_CHANGED,
    PassbackRule,
    settle_moves,
)
from gradesync.services.clock import Clock, SystemClock
from gradesync.services.destination import RemoteFailure
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory
from gradesync.services.sis.common import (
    COLUMN_RULES,
    DirtyKey,
    SisDirectory,
    release_keys,
    sis_destination,
    touch_items,
)
from gradesync.services.wakeup import Waker


def _date(field_name: str, value: str | date | None) -> str | None:
    if value is None or isinstance(value, date):
        return value.isoformat() if value else None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidInput.one(
            field_name, "date", f"{field_name} must be a date like 2025-01-31."
        ) from None


@contextmanager
def _changing(
    uow_factory: UnitOfWorkFactory,
    problems: Problems,
    tenant_id: str,
    destination_id: str,
    what: Literal["course", "person"],
    ident: str,
) -> Iterator[UnitOfWork]:
    """What a mapping change does first: refuse its bad input (every problem at once), then,
    in the unit of work it yields, find the SIS connection and the course or person it maps
    (NotFound: nothing changes)."""
    problems.raise_any()
    with uow_factory() as uow:
        sis_destination(uow, tenant_id, destination_id)
        found = (
            uow.courses.get(tenant_id, ident)
            if what == "course"
            else uow.people.get(tenant_id, ident)
        )
        if found is None:
            raise NotFound(what, ident)
        yield uow


def map_class(
    uow_factory: UnitOfWorkFactory,
    *,
    tenant_id: str,
    destination_id: str,
    course_id: str,
    class_id: str,
    school_id: str | None = None,
    term_start: str | date | None = None,
    term_end: str | date | None = None,
    section_id: str | None = None,
    new_section: bool = False,
    clock: Clock | None = None,
    waker: Waker | None = None,
) -> CourseLink:
    """Map a course (or one of its sections) to a SIS class sourcedId. A section's class gets
    its own line items; its learners' results go there. A section no enrollment names yet is
    refused as a likely typo (its class would get line items of every ticked activity) unless
    `new_section` says it is one the course will have. The results of the course's ticked
    activities are computed for the (new) class and sent; `waker` (when given) has a worker
    do it now."""
    problems = Problems()
    problems.items += id_problems("course_id", course_id, "The course id")
    problems.items += class_id_problems(class_id)
    problems.items += sis_id_problems(
        "school_id", school_id, "The SIS school sourcedId", required=False
    )
    if section_id is not None:
        problems.items += sis_id_problems("section_id", section_id, "The section id")
    elif new_section:
        problems.add(
            "new_section",
            "requires_section",
            "A new section is mapped with its section_id (--section); none was given.",
        )
    start = problems.check(lambda: _date("term_start", term_start))
    end = problems.check(lambda: _date("term_end", term_end))
    if start and end and start > end:
        problems.add("term_end", "after_start", "The term ends on or after its first day.")
    with _changing(uow_factory, problems, tenant_id, destination_id, "course", course_id) as uow:
        # held to the commit: read unlocked, a section mapped or a category aligned meanwhile
        # (PostgreSQL's read committed) would be written over with the link
        link = uow.links.course(tenant_id, destination_id, course_id, for_update=True)
        if link is None and section_id is None:
            # made (empty) to be held: a link that is not there locks nothing, and the course
            # mapped meanwhile by another process had what this change leaves out (the term)
            # written over as if there were no link
            link = uow.links.hold_course(tenant_id, destination_id, course_id)
        if section_id is not None:
            if link is None:
                raise InvalidInput.one(
                    "section_id",
                    "course_first",
                    "Map the course to its SIS class before its sections.",
                )
            known = sorted(
                {
                    e.section_id
                    for e in uow.enrollments.for_course(tenant_id, course_id)
                    if e.section_id
                }
            )
            if section_id not in known and not new_section:
                listed = ", ".join(repr(x) for x in known) or "none (no enrollment names one)"
                raise InvalidInput.one(
                    "section_id",
                    "unknown_section",
                    f"The course {course_id!r} has no section {section_id!r}; its sections "
                    f"(from its enrollments): {listed}. To map a section before any of its "
                    "learners is enrolled, map it as a new section.",
                )
            sections = {**(link.data.get("sections") or {}), section_id: class_id}
            link = replace(link, data={**link.data, "sections": sections})
        else:
            data = dict(link.data) if link else {}
            for key, value in (("school", school_id), ("term_start", start), ("term_end", end)):
                if value is not None:
                    data[key] = value
            if not data.get("school"):
                raise InvalidInput.one(
                    "school_id",
                    "required",
                    "The SIS school (org) sourcedId of the class is required.",
                )
            link = CourseLink(tenant_id, destination_id, course_id, class_id, data)
        uow.links.save_course(link)
        touch_items(uow, tenant_id, destination_id, course_id)
        keys = _ticked_keys(uow, tenant_id, destination_id, course_id)
        now = (clock or SystemClock()).now()
        _mark(uow, keys, now, destination_id)
        uow.commit()
    _wake(waker, keys)
    return link


def unmap_section(
    uow_factory: UnitOfWorkFactory,
    *,
    tenant_id: str,
    destination_id: str,
    course_id: str,
    section_id: str,
    clock: Clock | None = None,
    waker: Waker | None = None,
) -> CourseLink:
    """Remove a section's own SIS class: its learners' results go to the course's class
    again. Their rows in the ticked activities are sent there at once (what the section's
    class took stays there: gradesync deletes no grade it sent), and the course's line items
    are provisioned again (none more in the section's class). A section with no class of its
    own is NotFound ("section mapping"). Returns the course's mapping now; `waker` (when
    given) has a worker send at once."""
    problems = Problems()
    problems.items += id_problems("course_id", course_id, "The course id")
    problems.items += sis_id_problems("section_id", section_id, "The section id")
    with _changing(uow_factory, problems, tenant_id, destination_id, "course", course_id) as uow:
        # as in map_class
        link = uow.links.course(tenant_id, destination_id, course_id, for_update=True)
        sections: dict[str, str] = dict((link.data.get("sections") or {}) if link else {})
        if link is None or section_id not in sections:
            raise NotFound("section mapping", section_id)
        klass = sections.pop(section_id)
        data = {k: v for k, v in link.data.items() if k != "sections"}
        link = replace(link, data={**data, "sections": sections} if sections else data)
        uow.links.save_course(link)
        members = {
            e.person_id
            for e in uow.enrollments.for_course(tenant_id, course_id)
            if e.section_id == section_id and e.role is Role.LEARNER
        }
        _hold_learners(uow, tenant_id, members)
        saves: dict[str, PersonLink] = {}
        for person_id, own in uow.links.people(tenant_id, destination_id, course_id).items():
            # a learner of the section, linked in this course to its class
            if (
                person_id in members
                and own.course_id == course_id
                and own.data.get("class") == klass
            ):
                rest = {k: v for k, v in own.data.items() if k != "class"}
                saves[person_id] = replace(own, data=rest)
        moved = set(saves)
        touch_items(uow, tenant_id, destination_id, course_id)
        keys = [k for k in _ticked_keys(uow, tenant_id, destination_id, course_id) if k[3] in moved]
        now = (clock or SystemClock()).now()
        # marked before the links are saved (in their key order): a computation's order
        _mark(uow, keys, now, destination_id)
        for person_id in sorted(saves):
            uow.links.save_person(saves[person_id])
        # the same results, for another class: a recompute alone would find nothing changed
        resent = _send_to_new_student(uow, tenant_id, destination_id, [course_id], moved, keys, now)
        uow.commit()
    _wake(waker, keys, resent)
    return link


def _ticked_keys(
    uow: UnitOfWork, tenant_id: str, destination_id: str, course_id: str
) -> list[DirtyKey]:
    """Dirty keys of the course's activities ticked to send at once (not held for Post
    grades): their results are computed for the SIS as it is now mapped."""
    ids = [a.id for a in uow.activities.for_course(tenant_id, course_id)]
    items = uow.links.items(tenant_id, destination_id, ids)
    keys: list[DirtyKey] = []
    for aid in ids:
        item = items.get(aid)
        if item is not None and item.data.get("sync_to_sis") and not item.data.get("held"):
            keys += release_keys(uow, tenant_id, destination_id, course_id, aid)
    return keys


def class_id_problems(class_id: str) -> list[FieldProblem]:
    return sis_id_problems("class_id", class_id, "The SIS class sourcedId")


async def refuse_unknown_class(directory: SisDirectory, class_id: str) -> None:
    """Before a class is mapped, the SIS (a REST connection) is asked whether it has it: a
    sourcedId it cannot locate is refused `class_unknown`, instead of every post of the
    course finding it. A SIS that cannot be asked is no reason to refuse: the first post
    finds out."""
    if class_id_problems(class_id):
        return  # `map_class` refuses it, the SIS unasked
    with contextlib.suppress(RemoteFailure):
        if not await directory.class_known(class_id.strip()):
            raise InvalidInput.one(
                "class_id",
                "class_unknown",
                f"The SIS has no class {class_id.strip()!r}: check the class's sourcedId in "
                "the SIS.",
            )


async def sis_category_ids(directory: SisDirectory) -> list[str] | None:
    """The sourcedIds of the SIS's categories (a REST connection, asked afresh), for
    `align_categories` to refuse one it does not have; None when the SIS cannot be asked,
    which is no reason to refuse, as for a class (`refuse_unknown_class`): the first post
    finds out."""
    try:
        return [str(c["sourcedId"]) for c in await directory.categories(refresh=True)]
    except RemoteFailure:
        return None


def map_student(
    uow_factory: UnitOfWorkFactory,
    *,
    tenant_id: str,
    destination_id: str,
    person_id: str,
    student_id: str,
    clock: Clock | None = None,
    waker: Waker | None = None,
) -> PersonLink:
    """Map a person to their SIS student sourcedId (for every course: each course's own link,
    which wins in its course, takes the new id too and keeps its section's class). Their
    results in the ticked activities of their courses mapped to a class are computed again
    for the student now linked, and sent, as `map_course_students` does for a course;
    `waker` (when given) has a worker do it now."""
    problems = Problems()
    problems.items += sis_id_problems("student_id", student_id, "The SIS student sourcedId")
    with _changing(uow_factory, problems, tenant_id, destination_id, "person", person_id) as uow:
        # held before their links are read (`_hold_learners`)
        _hold_learners(uow, tenant_id, [person_id])
        before = uow.links.person_links(tenant_id, destination_id, person_id)
        keys = _person_ticked_keys(uow, tenant_id, destination_id, person_id)
        now = (clock or SystemClock()).now()
        # marked before the links are saved: the order a computation takes them in
        _mark(uow, keys, now, destination_id)
        by_hand = {LINKED_BY: BY_HAND}  # a new SIS id does not replace it (`follow_sis_ids`)
        link = PersonLink(tenant_id, destination_id, person_id, student_id, data=by_hand)
        uow.links.save_person(link)
        for own in before:
            if own.course_id is not None and (own.remote_id, own.data.get(LINKED_BY)) != (
                student_id,
                BY_HAND,
            ):
                data = {k: v for k, v in own.data.items() if k != NOT_FOLLOWED}
                uow.links.save_person(replace(own, remote_id=student_id, data={**data, **by_hand}))
        resent = 0
        if any(own.remote_id != student_id for own in before):
            courses = _person_sis_courses(uow, tenant_id, destination_id, person_id)
            resent = _send_to_new_student(
                uow, tenant_id, destination_id, courses, {person_id}, keys, now
            )
        uow.commit()
    _wake(waker, keys, resent)
    return link


def _hold_learners(uow: UnitOfWork, tenant_id: str, person_ids: Collection[str]) -> None:
    """Hold the people whose SIS links a change reads and writes back, to its commit, in id
    order (as an import holds those it changes). A link may not exist yet (a course's own
    link, made from the general one), so the person's row is what is held: on PostgreSQL
    (read committed) a student mapped, a course's learners mapped, or a SIS id changed
    between the read of a learner's links and their write was written over with the student
    read, and their grades went to the student they had just been mapped away from."""
    uow.people.lock(tenant_id, person_ids)


def _mark(uow: UnitOfWork, keys: list[DirtyKey], now: datetime, destination_id: str) -> None:
    """The ticked keys a mapping changed, marked for this SIS alone."""
    if keys:
        uow.dirty.mark_many(keys, now, destination_id=destination_id)


def _wake(waker: Waker | None, keys: list[DirtyKey], resent: int = 0) -> None:
    """After the commit: compute what was marked, and send what was reopened as it was (a
    recompute finds it unchanged, so only the delivery's wake sends it at once)."""
    if waker is not None and keys:
        waker.wake_keys()
    if waker is not None and resent:
        waker.wake_delivery()


def _send_to_new_student(
    uow: UnitOfWork,
    tenant_id: str,
    destination_id: str,
    courses: Collection[str],
    people: Collection[str],
    keys: list[DirtyKey],
    now: datetime,
    forgot: dict[LedgerKey, bool] | None = None,
) -> int:
    """Learners now linked to another SIS student (or, their section unmapped or changed,
    another class): their results go to the new student (or class).
    In the ticked activities (`keys`), what the SIS refused, or kept failing, for the old
    one is tried again at once, and what it took for the old one (another student's record)
    is sent again, waiting from `now`. Their desired results did not change, so a recompute
    alone would leave every row as it was. A refusal of the column's own (COLUMN_RULES: not
    the student's) stays. Every other row of theirs at this SIS in `courses` (held for Post
    grades, skipped) forgets what it delivered, so it is sent when it goes, never taken as
    already there.
    What the old student's record holds is left there: it may be a real student's.
    Returns how many rows it reopened: a recompute leaves them as they are, so only a wake of
    the delivery sends them at once. Call it once `keys` are marked: a worker computing them
    locks their dirty rows before their ledger rows, and the same order deadlocks with none.
    A send to the old one still in flight has its lease taken: its outcome is not written
    (the settle finds its claim ended, and writes nothing), so the row, waiting, goes to the
    new one; else the settle would fold it as delivered (the same result) to the new one.
    `forgot` receives the keys of the rows whose delivery to the old student it forgot, each
    with whether a send to it was in flight (its outcome unknown)."""
    if not people:
        return 0
    wanted = {(k[1], k[2], k[3]) for k in keys}
    # decided from their rows as read under lock (in key order, as every writer of the
    # ledger locks), never from a read before it: a settle could write DELIVERED for the old
    # student in between, and the row would be left so, never sent to the new one
    theirs = uow.ledger.of_people(tenant_id, destination_id, courses, people, lock=True)
    flying = set(
        uow.ledger.take_leases([r.key for r, _ in theirs if r.state in WAITING_STATES], now)
    )
    writes = []
    reopened_rows = 0
    for read, course_id in theirs:
        r, key, was = read, read.key, read.delivered_hash
        sendable = r.desired_hash is not None and (
            r.state is DeliveryState.DELIVERED
            or (
                r.state in (DeliveryState.REJECTED, DeliveryState.RETRYING)
                and (r.reason_code or "") not in COLUMN_RULES
            )
        )
        if (course_id, key.activity_id, key.person_id) in wanted and sendable:
            # the new student's record holds nothing of ours
            r = replace(reopened(r, now), delivered_hash=None)
            reopened_rows += 1
        elif r.delivered_hash is not None:
            r = replace(r, delivered_hash=None)
        elif key in flying:
            # nothing to forget: its lease gone, it waits as it is, due now (a claim took it
            # when it was due) unless a retry's time is yet to come
            reopened_rows += r.next_attempt_at is None or r.next_attempt_at <= now
        else:
            continue
        if forgot is not None and (was is not None or key in flying):
            forgot[key] = key in flying
        if r is not read:
            writes.append((r, course_id))
    if writes:
        uow.ledger.save_many(writes)
    return reopened_rows


@dataclass(frozen=True, slots=True)
class SisIdMove:
    """A learner's link in a course moved from the student of their old SIS id (`old`) to
    that of their new one (`new`) by `follow_sis_ids`."""

    destination_id: str
    course_id: str
    person_id: str
    old: str
    new: str


def course_students(
    uow: UnitOfWork, tenant_id: str, destination_id: str, course_id: str
) -> dict[str, str]:
    """The SIS student each learner of a course is linked to (what `follow_sis_ids`
    checks)."""
    learners = {
        e.person_id
        for e in uow.enrollments.for_course(tenant_id, course_id)
        if e.role is Role.LEARNER
    }
    return {
        person_id: link.remote_id
        for person_id, link in uow.links.people(tenant_id, destination_id, course_id).items()
        if person_id in learners
    }


def follow_sis_ids(
    uow: UnitOfWork, links: Collection[tuple[PersonLink, str]]
) -> tuple[list[SisIdMove], list[PersonLink]]:
    """Learners' SIS ids changed: their links in one course (each as
    `links.people_in_courses` finds it, with the new SIS id) made by their SIS id move to the
    students of the new ones, as `map_course_students` would move them. Returns the moves
    and the links to save (nothing is saved here: the caller marks the moved learners' keys
    first, in the order a computation takes its locks).
    A student picked by hand is kept: `map_student` records it as a link of no course, which
    wins over any SIS id and which `map_course_students` copies into each course's link,
    marked `BY_HAND`. A link marked by no one was made before links were marked, by the SIS
    id the learner had then (a hand-picked one was a link of no course), so it follows as one
    marked `BY_SIS_ID`.
    The course's moves are settled as one set (`settle_moves`), so SIS ids corrected in one
    import (swapped, or one taking another's old id) all follow: a move whose learner would
    still share a student with another learner of the course once the others are made is
    not (two learners' grades would go to one record); its link is kept, marked with that
    learner (`NOT_FOLLOWED`) for the diagnosis to say, until map-students links the course
    again."""
    movable: dict[str, tuple[PersonLink, str]] = {}
    for link, sis_id in links:
        if link.course_id is None or link.remote_id == sis_id:
            continue
        if link.data.get(LINKED_BY) == BY_HAND:
            continue
        own = uow.links.person_links(link.tenant_id, link.destination_id, link.person_id)
        if any(x.course_id is None for x in own):
            continue
        movable[link.person_id] = (link, sis_id)
    if not movable:
        return [], []
    first = next(iter(movable.values()))[0]
    assert first.course_id is not None and all(
        (x.destination_id, x.course_id) == (first.destination_id, first.course_id)
        for x, _ in movable.values()
    ), "one course's links"
    students = course_students(uow, first.tenant_id, first.destination_id, first.course_id)
    for person_id, (link, _) in movable.items():
        students.setdefault(person_id, link.remote_id)
    moved, refused = settle_moves(students, {p: sis_id for p, (_, sis_id) in movable.items()})
    moves: list[SisIdMove] = []
    saves: list[PersonLink] = []
    for person_id, (link, sis_id) in sorted(movable.items()):
        data = {k: v for k, v in link.data.items() if k != NOT_FOLLOWED}
        if person_id in moved:
            saves.append(replace(link, remote_id=sis_id, data={**data, LINKED_BY: BY_SIS_ID}))
            assert link.course_id is not None
            moves.append(
                SisIdMove(link.destination_id, link.course_id, person_id, link.remote_id, sis_id)
            )
        else:
            saves.append(replace(link, data={**data, NOT_FOLLOWED: refused[person_id]}))
    return moves, saves


def send_to_new_sis_ids(
    uow: UnitOfWork, tenant_id: str, moves: Collection[SisIdMove], now: datetime
) -> int:
    """The results of learners `follow_sis_ids` moved, sent to their new student (as
    `map_student` sends them; call it once their keys are marked, see `_send_to_new_student`),
    with a line in the history of each grade the old student took: the SIS keeps it, and
    gradesync deletes no grade it sent, so whoever reads the grade is told to check it there.
    The moves of a course go together (a roster's import may correct hundreds of SIS ids in
    one, inside the ingest's transaction): its ticked activities, and the moved learners'
    rows of its ledger, are read once.
    Returns how many rows it reopened."""
    groups: dict[tuple[str, str], dict[str, SisIdMove]] = {}
    for m in moves:
        groups.setdefault((m.destination_id, m.course_id), {})[m.person_id] = m
    resent = 0
    lines: list[dict[str, Any]] = []
    for (destination_id, course_id), moved in sorted(groups.items()):
        ticked = _ticked_activities(uow, tenant_id, destination_id, course_id)
        keys = [(tenant_id, course_id, aid, p) for aid in ticked for p in sorted(moved)]
        forgot: dict[LedgerKey, bool] = {}
        resent += _send_to_new_student(
            uow, tenant_id, destination_id, [course_id], moved.keys(), keys, now, forgot
        )
        for key, in_flight in forgot.items():
            m = moved[key.person_id]
            # a send in flight when it moved may have arrived, or not: its outcome is unknown
            flying = "a send to it was under way, and may have arrived; " if in_flight else ""
            said = (
                f"The learner's SIS id is now {m.new!r}: their result goes to SIS student "
                f"{m.new!r}. What was sent to {m.old!r} is left in the SIS ({flying}gradesync "
                "deletes no grade it sent): check that student's result there, and delete it "
                "in the SIS if it is not theirs."
            )
            lines.append(
                {
                    "key": key,
                    "run_id": None,
                    "sent_at": now,
                    "sent_hash": None,
                    "payload": {"former_student": m.old, "student": m.new},
                    "outcome": STUDENT_CHANGED,
                    "remote_status": None,
                    "remote_message": said,
                    "latency_ms": None,
                }
            )
    uow.deliveries.add_many(lines)
    return resent


def _person_sis_courses(
    uow: UnitOfWork, tenant_id: str, destination_id: str, person_id: str
) -> list[str]:
    """The courses one person is a learner of, or attempted an activity of, that are mapped
    to a class of this SIS."""
    courses = {
        e.course_id
        for e in uow.enrollments.for_person(tenant_id, person_id)
        if e.role is Role.LEARNER
    }
    attempted = {a.activity_id for a in uow.attempts.for_person(tenant_id, person_id)}
    courses |= {a.course_id for a in uow.activities.get_many(tenant_id, attempted).values()}
    # nothing goes to the SIS for a course until its class is mapped
    return [c for c in sorted(courses) if uow.links.course(tenant_id, destination_id, c)]


def _person_ticked_keys(
    uow: UnitOfWork, tenant_id: str, destination_id: str, person_id: str
) -> list[DirtyKey]:
    """Dirty keys of one person in the activities ticked to send at once (not held for Post
    grades) of their courses mapped to a SIS class."""
    return [
        (tenant_id, course_id, aid, person_id)
        for course_id in _person_sis_courses(uow, tenant_id, destination_id, person_id)
        for aid in _ticked_activities(uow, tenant_id, destination_id, course_id)
    ]


def _ticked_activities(
    uow: UnitOfWork, tenant_id: str, destination_id: str, course_id: str
) -> list[str]:
    """The course's activities ticked to send to this SIS at once (not held for Post
    grades)."""
    ids = [a.id for a in uow.activities.for_course(tenant_id, course_id)]
    items = uow.links.items(tenant_id, destination_id, ids)
    return [
        aid
        for aid in ids
        if (item := items.get(aid)) is not None
        and item.data.get("sync_to_sis")
        and not item.data.get("held")
    ]


@dataclass(frozen=True, slots=True)
class RosterMapping:
    mapped: list[str] = field(default_factory=list)  # person ids
    unmapped: list[str] = field(default_factory=list)  # learners with no SIS id: say who


def map_course_students(
    uow_factory: UnitOfWorkFactory,
    *,
    tenant_id: str,
    destination_id: str,
    course_id: str,
    clock: Clock | None = None,
    waker: Waker | None = None,
) -> RosterMapping:
    """Link every learner of a course to their SIS student: an explicit mapping wins, else
    the person's sis_id. Learners in a section mapped to its own class get a per-course link
    naming that class. The results of the course's ticked activities are computed again, for
    this destination only, for the learners whose student (or section's class) is new or
    changed, and sent; what the SIS refused for a learner's former student goes back to
    pending for the new one (as `map_student`), and a learner now in another class (a change
    of section) has what was sent to the old one sent to the new one at once (as
    `unmap_section`). `waker` (when given) has a worker do it now."""
    report = RosterMapping()
    with uow_factory() as uow:
        sis_destination(uow, tenant_id, destination_id)
        # held before its learners, as `unmap_section` and `map_class` take them: its
        # sections read unlocked could name a class a section unmapped meanwhile no longer has
        course = uow.links.course(tenant_id, destination_id, course_id, for_update=True)
        if course is None:
            raise InvalidInput.one(
                "course_id",
                PassbackRule.CLASS_NOT_MAPPED.value,
                "Map the course to a SIS class first.",
            )
        sections: dict[str, str] = course.data.get("sections") or {}
        enrollments = [
            e for e in uow.enrollments.for_course(tenant_id, course_id) if e.role is Role.LEARNER
        ]
        _hold_learners(uow, tenant_id, [e.person_id for e in enrollments])
        people = uow.people.get_many(tenant_id, [e.person_id for e in enrollments])
        before = uow.links.people(tenant_id, destination_id, course_id)
        saves: list[PersonLink] = []
        relinked: set[str] = set()  # learners whose student or class in the SIS changed
        moved: set[str] = set()  # of them, learners linked to another student or class
        for e in enrollments:
            general = uow.links.person(tenant_id, destination_id, e.person_id)
            person = people.get(e.person_id)
            student = (
                general.remote_id
                if general is not None and general.course_id is None
                else (person.sis_id if person else None)
            )
            if not student:
                report.unmapped.append(e.person_id)
                continue
            klass = sections.get(e.section_id or "")
            by = BY_HAND if general is not None and general.course_id is None else BY_SIS_ID
            data = {LINKED_BY: by, **({"class": klass} if klass else {})}
            saves.append(
                PersonLink(tenant_id, destination_id, e.person_id, student, course_id, data)
            )
            report.mapped.append(e.person_id)
            was = before.get(e.person_id)  # its course's own link, else the general one
            # the same student and class: only how the link is marked may differ
            if was is None or (was.remote_id, was.data.get("class")) != (student, klass):
                relinked.add(e.person_id)
            # a new class (their section's, or the course's) holds nothing of theirs yet
            if was is not None and (
                was.remote_id != student
                or (was.data.get("class") or course.remote_id) != (klass or course.remote_id)
            ):
                moved.add(e.person_id)
        # only the learners linked anew: the others' results would come out the same
        keys = (
            [k for k in _ticked_keys(uow, tenant_id, destination_id, course_id) if k[3] in relinked]
            if relinked
            else []
        )
        now = (clock or SystemClock()).now()
        # marked before the links are saved (in their key order), the order a computation
        # takes them in: it claims dirty rows, then saves the links it matches
        _mark(uow, keys, now, destination_id)
        for link in sorted(saves, key=lambda x: x.person_id):
            uow.links.save_person(link)
        resent = _send_to_new_student(uow, tenant_id, destination_id, [course_id], moved, keys, now)
        uow.commit()
    _wake(waker, keys, resent)
    return report


def align_category(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    *,
    tenant_id: str,
    destination_id: str,
    group: str,
    category_id: str | None,
    course_id: str | None = None,
    removal_must_exist: bool = False,
) -> dict[str, str]:
    """Align one activity group (`align_categories` with one change)."""
    return align_categories(
        uow_factory,
        clock,
        tenant_id=tenant_id,
        destination_id=destination_id,
        changes={group: category_id},
        course_id=course_id,
        removals_must_exist=removal_must_exist,
    )


def align_categories(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    *,
    tenant_id: str,
    destination_id: str,
    changes: Mapping[str, str | None],
    course_id: str | None = None,
    sis_categories: Collection[str] | None = None,
    removals_must_exist: bool = False,
) -> dict[str, str]:
    """Align activity groups to SIS category sourcedIds ({group: category, or None to remove
    the alignment}), for the whole connection or one course (which wins), in one unit of
    work: any change that breaks a rule refuses them all, every problem named at once (each
    message names its group or category), and nothing changes. `sis_categories`: the
    sourcedIds the SIS has (`sis_category_ids`), when it was asked; a category it does not
    have is refused `category_unknown` (every result of the group would be refused
    `category_missing`). With `removals_must_exist` (the API's DELETE, `--unalign`), removing
    an alignment the group does not have there (connection-wide, or the course's own) is
    NotFound, and nothing changes. Returns the map now set."""
    problems = Problems()
    wanted: dict[str, str | None] = {}
    ignored: set[str] = set()
    for group, category_id in changes.items():
        category = category_id.strip() if category_id is not None else None
        if not group.strip():
            to = f" to category {category!r}" if category else ""
            problems.add("group", "required", f"Name the activity group to align{to}.")
        else:  # an activity's category, as ingest takes it
            problems.items += id_problems("group", group, f"The activity group {group[:40]!r}")
        if category is not None and not category:
            problems.add(
                "category_id",
                "required",
                f"Give the SIS category sourcedId to align group {group!r} to (or remove "
                "its alignment).",
            )
        elif category is not None:
            what = f"The SIS category sourcedId for group {group[:40]!r}"
            broken = sis_id_problems("category_id", category, what)
            problems.items += broken
            if broken:  # said once: the SIS is not said not to have it too
                ignored.add(category)
        wanted[group] = category
    if sis_categories is not None:
        have = list(sis_categories)
        listed = ", ".join(have[:10]) + (", ..." if len(have) > 10 else "") or "none"
        unknown = {c for c in wanted.values() if c and c not in have and c not in ignored}
        for c in sorted(unknown):
            problems.add(
                "category_id",
                "category_unknown",
                f"The SIS has no category {c!r} (it has: {listed}): check the category's "
                "sourcedId in the SIS.",
            )
    with uow_factory() as uow:
        # the map is written back whole with what holds it (the connection, or the course's
        # link), held to the commit as in `map_class`
        dest = problems.check(
            lambda: sis_destination(uow, tenant_id, destination_id, for_update=course_id is None)
        )
        link = (
            uow.links.course(tenant_id, destination_id, course_id, for_update=True)
            if course_id
            else None
        )
        if course_id is not None and uow.courses.get(tenant_id, course_id) is None:
            # a typo, not a course waiting for its class
            problems.add("course_id", "unknown_course", f"No course {course_id!r}.")
        elif course_id is not None and link is None:
            problems.add("course_id", "class_not_mapped", "Map the course to a SIS class first.")
        problems.raise_any()
        assert dest is not None  # else refused above
        held = link.data if link is not None else dest.config
        mapping = dict(held.get("category_map") or {})
        missing = [g for g, c in wanted.items() if c is None and g not in mapping]
        if removals_must_exist and missing:
            raise NotFound("alignment", missing[0])
        for group, category in wanted.items():
            if category is None:
                mapping.pop(group, None)
            else:
                mapping[group] = category
        if link is None:
            config = {**dest.config, "category_map": mapping}
            uow.destinations.upsert(replace(dest, config=config), clock.now())
        else:
            uow.links.save_course(replace(link, data={**link.data, "category_map": mapping}))
        touch_items(uow, tenant_id, destination_id, course_id)
        uow.commit()
    return mapping


@dataclass(frozen=True, slots=True)
class CategoryAlignment:
    group: str | None
    activities: list[str]
    category_id: str | None
    problem: str | None


async def check_categories(
    uow_factory: UnitOfWorkFactory,
    directory: SisDirectory,
    *,
    tenant_id: str,
    destination_id: str,
    course_id: str,
    every_group: bool = False,
) -> list[CategoryAlignment]:
    """How each activity group of the course's selected activities (or, with `every_group`,
    of all its activities, so groups can be aligned before ticking) aligns (nothing
    created)."""
    with uow_factory() as uow:
        sis_destination(uow, tenant_id, destination_id)
        link = uow.links.course(tenant_id, destination_id, course_id)
        if link is None:
            raise InvalidInput.one(
                "course_id", "class_not_mapped", "Map the course to a SIS class first."
            )
        activities = uow.activities.for_course(tenant_id, course_id)
        items = uow.links.items(tenant_id, destination_id, [a.id for a in activities])
    groups: dict[str | None, list[str]] = {}
    for a in activities:
        item = items.get(a.id)
        if every_group or (item is not None and item.data.get("sync_to_sis")):
            groups.setdefault(a.category, []).append(a.id)
    out: list[CategoryAlignment] = []
    for group, ids in sorted(groups.items(), key=lambda kv: kv[0] or ""):
        try:
            found = await directory.resolve_category(link, group, create=False)
        except RemoteFailure as failure:
            out.append(CategoryAlignment(group, ids, None, failure.message))
        else:
            out.append(CategoryAlignment(group, ids, found, None))
    return out
