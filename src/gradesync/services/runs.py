"""Requesting runs: the one way a run is asked for, whoever asks.

Every entrypoint (JSON API, console, CLI, scheduler, SIS "Post grades", repair) comes through
`request_run`; people and programs through `ask_for_run`, which also holds the rule of which
triggers they may ask for. A run's scope is checked once, here (`check_scope`), so the same
mistake gets the same answer everywhere. Executing runs is `services.sync`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from gradesync.domain.course_connection import not_connected
from gradesync.domain.errors import FieldProblem, InvalidInput, NotFound
from gradesync.domain.model import Course, Destination, RunScope, RunStage, SyncRun, Trigger
from gradesync.domain.remedies import Reader
from gradesync.services.clock import Clock
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory
from gradesync.services.wakeup import Waker

__all__ = [
    "REQUESTABLE",
    "ask_for_run",
    "check_scope",
    "get_run",
    "get_run_stages",
    "new_run_id",
    "request_run",
    "requestable",
    "scope_of",
]

# A request joins an active run of the same scope whose trigger does at least as much.
_STRENGTH = {
    Trigger.SCHEDULE: 0,
    Trigger.MANUAL: 1,
    Trigger.RESYNC: 1,
    Trigger.REPAIR: 2,
    Trigger.REMASTER: 3,
}

# What a person or a program may ask for; schedule and repair runs are started by gradesync,
# and auto sync needs no run.
REQUESTABLE = (Trigger.MANUAL, Trigger.RESYNC, Trigger.REMASTER)


def new_run_id() -> str:
    return "run_" + uuid.uuid4().hex


def requestable(trigger: Trigger | str) -> Trigger:
    """The trigger if a person or a program may ask for it; InvalidInput otherwise."""
    try:
        t: Trigger | None = Trigger(trigger)
    except ValueError:
        t = None
    if t is None or t not in REQUESTABLE:
        names = [x.value for x in REQUESTABLE]
        raise InvalidInput.one(
            "trigger",
            "one_of",
            f"A run can be requested as {', '.join(names[:-1])} or {names[-1]}.",
        )
    return t


def check_scope(uow: UnitOfWork, scope: RunScope) -> tuple[Course | None, Destination | None]:
    """Refuse a scope naming things the tenant does not have, every problem at once; else the
    course and the destination it names (None for none), for a caller that needs them too."""
    problems: list[FieldProblem] = []
    course: Course | None = None
    if scope.course_id is not None:
        course = uow.courses.get(scope.tenant_id, scope.course_id)
        if course is None:
            problems.append(
                FieldProblem("course_id", "unknown_course", f"No course {scope.course_id!r}.")
            )
    dest: Destination | None = None
    if scope.destination_id is not None:
        dest = uow.destinations.get(scope.tenant_id, scope.destination_id)
        if dest is None:
            problems.append(
                FieldProblem(
                    "destination_id",
                    "unknown_destination",
                    f"No destination {scope.destination_id!r}.",
                )
            )
    if len(set(scope.activity_ids)) != len(scope.activity_ids):
        problems.append(FieldProblem("activity_ids", "unique", "Select each activity once."))
    if scope.activity_ids and scope.course_id is None:
        # activities are chosen within a course: without it they cannot be judged
        problems.append(
            FieldProblem(
                "course_id", "required", "Choose the course the selected activities belong to."
            )
        )
    found = uow.activities.get_many(scope.tenant_id, scope.activity_ids) if scope.course_id else {}
    for i, aid in enumerate(scope.activity_ids if scope.course_id else ()):
        act = found.get(aid)
        if act is None:
            problems.append(
                FieldProblem(f"activity_ids[{i}]", "unknown_activity", f"No activity {aid!r}.")
            )
        elif act.course_id != scope.course_id:
            problems.append(
                FieldProblem(
                    f"activity_ids[{i}]",
                    "other_course",
                    f"Activity {aid!r} belongs to course {act.course_id!r}, "
                    f"not {scope.course_id!r}.",
                )
            )
    if problems:
        raise InvalidInput(problems)
    return course, dest


def scope_of(
    uow: UnitOfWork,
    tenant_id: str,
    destination_id: str | None,
    course_id: str | None,
    activity_ids: Sequence[str],
) -> RunScope:
    """A checked scope from form or request values ("" is none; activities sorted, once)."""
    scope = RunScope(
        tenant_id, destination_id or None, course_id or None, tuple(sorted(set(activity_ids)))
    )
    check_scope(uow, scope)
    return scope


def _check_linked(uow: UnitOfWork, scope: RunScope, reader: Reader) -> None:
    """A run asked for a course at a destination the course is not connected to would send
    nothing and read as a success: refuse it, saying what connects the course (a launch from
    the LMS course, a SIS class mapping) where the asker reads it (`reader`: a SIS mapping's
    command at the command line, the API's route over the API). A course's run at all its
    destinations is not refused here: with none yet, it ends saying so."""
    if scope.course_id is None or scope.destination_id is None:
        return
    course = uow.courses.get(scope.tenant_id, scope.course_id)
    dest = uow.destinations.get(scope.tenant_id, scope.destination_id)
    if course is None or dest is None:  # refused by check_scope already
        return
    if uow.links.course(scope.tenant_id, dest.id, course.id) is None:
        said = not_connected(course, dest).read_over(reader)
        raise InvalidInput.one("destination_id", "not_linked", said)


def _check_request(
    uow: UnitOfWork, scope: RunScope, trigger: Trigger, actor: str
) -> Destination | None:
    """Refuse a request that cannot run; the destination it names (None: every one)."""
    problems: list[FieldProblem] = []
    if trigger not in _STRENGTH:
        problems.append(
            FieldProblem(
                "trigger",
                "one_of",
                "A run's trigger is manual, resync, remaster, schedule or repair; auto sync "
                "needs no run.",
            )
        )
    if not actor or not actor.strip():
        problems.append(FieldProblem("actor", "required", "Say who asked for the run."))
    if problems:
        raise InvalidInput(problems)
    if uow.tenants.get(scope.tenant_id) is None:
        raise NotFound("tenant", scope.tenant_id)
    return check_scope(uow, scope)[1]


def request_run(
    uow_factory: UnitOfWorkFactory,
    waker: Waker | None,
    clock: Clock,
    scope: RunScope,
    trigger: Trigger,
    actor: str,
    *,
    schedule_id: str | None = None,
    linked_only: bool = False,
    reader: Reader = Reader.CLI,
) -> tuple[SyncRun, bool]:
    """Queue a run, or join the active run of the same scope. Returns (run, joined).
    `linked_only`: refuse a course's run at a destination it is not connected to
    (`not_linked`), as a person's or program's request is, in the words of its `reader`.

    Joins a queued or running run whose trigger does at least as much (remaster > repair >
    manual = resync > schedule); a queued run with a weaker trigger is upgraded and joined.
    Otherwise a new run is queued (behind a running one of the same scope, if any)."""
    with uow_factory() as uow:
        dest = _check_request(uow, scope, trigger, actor)
        if linked_only:
            _check_linked(uow, scope, reader)
        uow.runs.lock_scope(scope.key)
        active = uow.runs.active_for_scope(scope.key)
        for run in active:
            if _STRENGTH.get(run.trigger, 0) >= _STRENGTH[trigger]:
                return run, True
        for run in active:
            # a run a worker claimed since the read runs as it was claimed: not joined, as
            # one read running is not (upgraded behind its worker, it would say it did
            # what it never does)
            if run.stage is RunStage.QUEUED and uow.runs.upgrade_queued(run.id, trigger.value):
                uow.commit()
                joined = replace(run, trigger=trigger)
                if waker is not None:
                    waker.wake_run(joined.id, scope)
                return joined, True
        run = SyncRun(
            id=new_run_id(),
            scope=scope,
            trigger=trigger,
            actor=actor.strip(),
            created_at=clock.now(),
            # its history names the destination as it is now, after it is deleted too
            destination_name=dest.name if dest is not None else None,
        )
        uow.runs.add(run, schedule_id=schedule_id)
        uow.commit()
    if waker is not None:
        waker.wake_run(run.id, scope)
    return run, False


def ask_for_run(
    uow_factory: UnitOfWorkFactory,
    waker: Waker | None,
    clock: Clock,
    scope: RunScope,
    trigger: Trigger | str,
    actor: str,
    reader: Reader = Reader.CLI,
) -> tuple[SyncRun, bool]:
    """A run a person or a program asks for ("Sync now", resync, remaster): only the
    requestable triggers, and for a course only at a destination it is connected to (a
    typo'd scope must not read as a run that succeeded); otherwise `request_run`."""
    return request_run(
        uow_factory,
        waker,
        clock,
        scope,
        requestable(trigger),
        actor,
        linked_only=True,
        reader=reader,
    )


def get_run(uow_factory: UnitOfWorkFactory, tenant_id: str, run_id: str) -> SyncRun | None:
    with uow_factory() as uow:
        return uow.runs.get(run_id, tenant_id)


def get_run_stages(
    uow_factory: UnitOfWorkFactory, tenant_id: str, run_id: str
) -> list[dict[str, Any]]:
    """[{stage, at}] as they happened (empty for an unknown run)."""
    with uow_factory() as uow:
        if uow.runs.get(run_id, tenant_id) is None:
            return []
        return uow.runs.stages(run_id)
