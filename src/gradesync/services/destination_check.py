"""`destinations check`: prove a destination works end to end before a course goes live.

Seed 001 advises "testing before your course goes live to make sure grades sync for at
least one item". This does it on purpose, step by step, each step with its evidence:

1. the destination's own check: settings, token, granted scopes;
2. for a connected course: the course's gradebook is reachable, line items can be listed;
3. with `send_test` (LTI 1.3 AGS, where the protocol allows it): a test column
   ("gradesync connection check", 1 point) is found or created, a test result is sent for one
   learner who has launched from the course and read back to compare, and the column is
   deleted again, whatever the test found (`check_test_result`: within the destination's
   limits, and nothing at all while it is paused);
4. LTI 1.1 (no token, nothing to call before a launch): one learner's grade is read back
   (one readResult, signed like every send), so a wrong secret or a refused host shows here,
   not at the first grade.

Nothing is written to the ledger: the test result is not a grade of any activity. Only the
test result writes to the destination: an LTI 1.1 consumer's check reads one grade, a SIS's
check lists its categories.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from gradesync.domain.diagnosis import ProbeStep, pause_said, when
from gradesync.domain.errors import FieldProblem, InvalidInput, NotFound
from gradesync.domain.model import (
    Course,
    CourseLink,
    Destination,
    DestinationKind,
    ItemLink,
    PersonLink,
    Role,
)
from gradesync.domain.remedies import RESUME, Reader, Remedy
from gradesync.services.check_test_result import failed_step, send_test
from gradesync.services.clock import Clock
from gradesync.services.delivery.governor import Governor
from gradesync.services.destination import (
    DestinationClient,
    OneResultReader,
    RemoteFailure,
    ResultTarget,
)
from gradesync.services.diagnostics import probe
from gradesync.services.ports import UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class _Plan:
    destination: Destination
    course: Course | None
    course_link: CourseLink | None
    items: list[ItemLink]  # the course's columns gradesync knows, by activity id
    learner: PersonLink | None


def _plan(
    uow_factory: UnitOfWorkFactory,
    tenant_id: str,
    destination_id: str,
    course_id: str | None,
    learner_id: str | None,
    send_test: bool = False,
) -> _Plan:
    with uow_factory() as uow:
        d = uow.destinations.get(tenant_id, destination_id)
        if d is None:
            raise NotFound("destination", destination_id)
        links = uow.links.courses_for_destination(tenant_id, destination_id)
        # named as the request names them, with the rules of an ingest; all at once
        unknown: list[FieldProblem] = []
        refused = _test_result_problem(d) if send_test else None
        if refused is not None:
            unknown.append(refused)
        if course_id is not None and uow.courses.get(tenant_id, course_id) is None:
            unknown.append(FieldProblem("course_id", "unknown_course", f"No course {course_id!r}."))
        if learner_id is not None and uow.people.get(tenant_id, learner_id) is None:
            unknown.append(
                FieldProblem("learner_id", "unknown_person", f"No person {learner_id!r}.")
            )
        if unknown:
            raise InvalidInput(unknown)
        if course_id is not None:
            links = [lk for lk in links if lk.course_id == course_id]
        link = links[0] if links else None
        cid = course_id or (link.course_id if link else None)
        course = uow.courses.get(tenant_id, cid) if cid else None
        items: list[ItemLink] = []
        learner: PersonLink | None = None
        if course is not None:
            acts = [a.id for a in uow.activities.for_course(tenant_id, course.id)]
            known = uow.links.items(tenant_id, d.id, acts)
            items = [known[aid] for aid in sorted(known) if known[aid].remote_id]
            if learner_id is not None:
                enr = uow.enrollments.get(tenant_id, course.id, learner_id)
                if enr is None or enr.role is not Role.LEARNER:
                    raise InvalidInput.one(
                        "learner_id",  # as the request names it
                        "not_a_learner",
                        f"{learner_id!r} is not a learner of the course.",
                    )
                learner = uow.links.person(tenant_id, d.id, learner_id, course.id)
                if learner is None:
                    raise InvalidInput.one(
                        "learner_id",
                        "never_launched",
                        f"{learner_id!r} has never launched gradesync from this LMS.",
                    )
            else:  # the first learner who launched from this course
                for e in uow.enrollments.for_course(tenant_id, course.id):
                    if e.role is not Role.LEARNER:
                        continue
                    here = [
                        x
                        for x in uow.launches.for_person(tenant_id, e.person_id, d.id)
                        if x.course_id == course.id
                    ]
                    pl = uow.links.person(tenant_id, d.id, e.person_id, course.id)
                    if here and pl is not None and pl.remote_id:
                        learner = pl
                        break
            if d.kind is DestinationKind.LTI11_OUTCOMES and learner is not None:
                # an LTI 1.1 link launched before the tool named an activity for it has a
                # column of the resource link's own id: the learner's launches name them
                launched = {
                    r.resource_link_id
                    for r in uow.launches.records_for_person(tenant_id, learner.person_id, d.id)
                    if r.course_id == course.id and r.resource_link_id
                }
                more = uow.links.items(
                    tenant_id, d.id, sorted(launched - {i.activity_id for i in items})
                )
                items += [more[aid] for aid in sorted(more)]
    return _Plan(d, course, link, items, learner)


def _test_result_problem(d: Destination) -> FieldProblem | None:
    """A test result needs a column of its own, which only AGS can create: anywhere else it
    would overwrite a learner's grade (LTI 1.1) or post one to the SIS."""
    if d.kind is DestinationKind.LTI13_AGS:
        return None
    return FieldProblem(
        "send_test",
        "not_supported",
        f"A test result can be sent only to an LTI 1.3 (AGS) destination; {d.name!r} cannot "
        "make a column for it, so a test result would land on a real grade. Check it without "
        "the test result: it reads a learner's grade back instead.",
    )


# how an LMS refuses a result it does not know (adapters/destinations/lti11.py)
_UNKNOWN_RESULT = {"unknown_sourcedid", "unknown_user"}


async def _lti11_read_back(
    client: DestinationClient,
    link: CourseLink,
    items: list[ItemLink],
    learner: PersonLink | None,
) -> ProbeStep:
    """readResult for one learner's grade (the learner named, else the first who launched
    from the course), signed as a grade is: the consumer's key, secret and allowed hosts are
    proven with one request and without changing any grade."""
    name = "A learner's grade reads back"
    if learner is None:
        return ProbeStep(
            name,
            False,
            "No learner has opened an activity of this course from the LMS yet, so the LMS "
            "has not said where any grade goes and nothing can be read back.",
            "Have one learner (a test student) open a graded gradesync link in the course, "
            "then check again.",
            code="no_learner_launched",
        )
    who = learner.person_id
    if not isinstance(client, OneResultReader):
        return ProbeStep(
            name,
            False,
            f"{client.destination.kind.value} cannot read back.",
            None,
            code="cannot_read_back",
        )
    for item in items:
        try:
            back = await client.read_one(ResultTarget(link, item, learner))
        except RemoteFailure as exc:
            if exc.code == "no_sourcedid":
                continue  # not launched from this activity: nothing was asked of the LMS
            if exc.code in _UNKNOWN_RESULT:
                return _unknown_result(name, exc, who, item.activity_id, link.course_id)
            return failed_step(name, exc)
        except Exception as exc:
            return failed_step(name, exc)
        held = "no grade yet" if back.score_given is None else f"a grade of {back.score_given:g}"
        return ProbeStep(
            name,
            True,
            f"readResult answered for learner {who!r} in activity {item.activity_id!r}: {held}.",
            code="grade_read_back",
        )
    return ProbeStep(
        name,
        False,
        f"Learner {who!r} never opened a graded activity of this course that gradesync knows, "
        "so the LMS has not said where their grade goes and nothing can be read back.",
        "Have the learner (or one named with --learner) open a graded gradesync link in the "
        "course, then check again.",
        code="no_activity_opened",
    )


def _unknown_result(
    name: str, exc: RemoteFailure, who: str, activity_id: str, course_id: str
) -> ProbeStep:
    """The LMS verified the signature but does not know the result asked for: the learner
    did launch, so the LMS has forgotten the result id or no longer counts them a student."""
    status = f" (HTTP {exc.status})" if exc.status is not None else ""
    if exc.code == "unknown_user":
        what = f"The LMS does not count learner {who!r} as a student of the course"
        remedy = (
            f"Check that {who!r} is still a student of the course in the LMS, or check with "
            f"another learner: --course {course_id} --learner PERSON_ID."
        )
    else:
        what = f"The LMS does not know learner {who!r}'s result id for activity {activity_id!r}"
        remedy = (
            f"Have {who!r} open activity {activity_id!r} from the LMS once more (the launch "
            f"gives the current result id), or check with another learner: --course "
            f"{course_id} --learner PERSON_ID."
        )
    return ProbeStep(
        name, False, f"{what}: it answered{status}: {exc.message}", remedy, code=exc.code
    )


async def check_destination(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    tenant_id: str,
    destination_id: str,
    client: DestinationClient,
    governor: Governor,
    *,
    course_id: str | None = None,
    learner_id: str | None = None,
    send_test: bool = False,
) -> list[ProbeStep]:
    """Every step, in order; a failed step stops the steps that depend on it. A paused
    destination's check ends with a step saying so: what the LMS answers says nothing of
    whether gradesync sends it grades. `governor`: what the test result's requests wait on,
    as every send does (`check_test_result`)."""
    plan = await asyncio.to_thread(
        _plan, uow_factory, tenant_id, destination_id, course_id, learner_id, send_test
    )
    steps = await _steps(plan, clock, client, governor, send_test)
    paused = _paused_step(plan.destination, clock.now())
    return steps if paused is None else [*steps, paused]


def _paused_step(d: Destination, now: datetime) -> ProbeStep | None:
    why = f" ({d.pause_reason})" if d.pause_reason else ""
    name = "gradesync sends grades to it"
    if not d.enabled:
        fix = Remedy(RESUME, destination=d.id)
        return ProbeStep(
            name,
            False,
            f"{d.name!r} is paused{why}: gradesync sends it nothing until it is resumed.",
            fix.words(Reader.CLI),
            code="destination_paused",
            fix=fix,
        )
    said = pause_said(d, now)
    if said is not None and d.paused_until is not None:
        # a misconfiguration's pause ends, but sending is paused again while the settings
        # are wrong: the settings are fixed, then it is resumed, as `doctor` says it
        return ProbeStep(
            name,
            False,
            f"{d.name!r} is paused until {when(d.paused_until)}{why}.",
            f"Nothing to do: sending resumes by itself at {when(d.paused_until)}."
            if said.lifts_by_itself
            else said.remedy,
            code="destination_paused_until",
        )
    return None


async def _steps(
    plan: _Plan, clock: Clock, client: DestinationClient, governor: Governor, test: bool
) -> list[ProbeStep]:
    steps = await probe(client)
    if not all(s.passed for s in steps):
        return steps
    d = plan.destination
    if plan.course is None:
        steps.append(
            ProbeStep(
                "A course is connected",
                False,
                f"No course is connected to {d.name!r} yet.",
                "Add gradesync to an LMS course with Deep Linking (or launch it once), then "
                "check again to test that course's gradebook.",
                code="no_course_connected",
            )
        )
        return steps
    course = plan.course
    try:
        link = await client.ensure_course(course, plan.course_link)
    except Exception as exc:
        steps.append(failed_step("The course's gradebook is reachable", exc))
        return steps
    if d.kind is DestinationKind.LTI11_OUTCOMES:
        steps.append(
            ProbeStep(
                "The course was launched from the LMS",
                True,
                f"{course.id}: {link.remote_id}",
                code="course_launched",
            )
        )
        steps.append(await _lti11_read_back(client, link, plan.items, plan.learner))
        return steps
    steps.append(
        ProbeStep(
            "The course's gradebook is reachable",
            True,
            f"{course.id}: {link.remote_id}",
            code="gradebook_reachable",
        )
    )
    if d.kind is DestinationKind.LTI13_AGS:
        if not test:
            steps.append(
                ProbeStep(
                    "Columns are listed",
                    True,
                    f"{len(plan.items)} column(s) linked to gradesync activities in this course.",
                    code="columns_listed",
                )
            )
            for item in plan.items[:1]:
                try:
                    backs = await client.read_results(link, item)
                except Exception as exc:
                    steps.append(failed_step("Results can be read back", exc))
                    return steps
                steps.append(
                    ProbeStep(
                        "Results can be read back",
                        True,
                        f"{len(backs)} result(s) in {item.remote_id}.",
                        code="results_read",
                    )
                )
            return steps
        steps += await send_test(governor, clock, client, course, link, plan.learner)
    return steps
