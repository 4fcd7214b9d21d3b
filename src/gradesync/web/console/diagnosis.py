"""Diagnosis page: pick a learner and an activity, see why their grade is where it is.

The diagnostics service's ordered checks (name, passed, evidence, remedy) come first
(`gradesync.services.diagnostics.diagnose_learner_activity`). The records follow in every case: the
learner's enrollment and attempts, and per destination the ledger's state and reason, the
destination's own answer and the delivery log.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from gradesync.domain import remedies
from gradesync.domain.errors import NotFound
from gradesync.domain.model import ConsoleUser, Role, UserRole
from gradesync.domain.natural_order import natural_key
from gradesync.services import console_queries as cq
from gradesync.web.console.common import PageError, course_for, render, runtime_of
from gradesync.web.console.destinations import KIND_LABELS
from gradesync.web.console.session import current_user

log = logging.getLogger(__name__)
router = APIRouter()


def run_checks(
    request: Request, tenant_id: str, activity_id: str, person_id: str, *, instructor: bool
) -> Any:
    """The diagnostics service's ordered checks for the pair (a `Diagnosis`). A remedy naming
    a command says, for an `instructor`, who can run it; for an administrator, the console's
    action that does the same where there is one."""
    d = runtime_of(request).diagnose_learner_activity(tenant_id, person_id, activity_id)
    if not instructor:
        return d.read_over(remedies.Reader.CONSOLE)
    fit = [
        replace(c, remedy=c.fix.for_instructor())
        if c.fix is not None
        else replace(c, remedy=remedies.for_instructor(c.remedy_code, c.remedy))
        if c.remedy
        else c
        for c in d.checks
    ]
    return replace(d, checks=tuple(fit))


def _in_course(evidence: cq.PairEvidence) -> bool:
    """The person is enrolled in the course, or has an attempt or a grade in the activity."""
    return bool(
        evidence.enrollment
        or evidence.attempts
        or any(d.row is not None for d in evidence.destinations)
    )


@router.get("/diagnosis", response_class=HTMLResponse)
def diagnosis(
    request: Request,
    course: str = "",
    activity: str = "",
    person: str = "",
    user: ConsoleUser = Depends(current_user),
) -> HTMLResponse:
    rt = runtime_of(request)
    with rt.uow() as uow:
        courses = sorted(
            (c for c in uow.courses.all(user.tenant_id) if user.can_see_course(c.id)),
            key=lambda c: c.title.lower(),
        )
    if not course and len(courses) == 1:
        course = courses[0].id
    activities: list[Any] = []
    people: list[Any] = []
    if course:
        course_for(request, user, course)
        with rt.uow() as uow:
            activities = sorted(
                uow.activities.for_course(user.tenant_id, course), key=lambda a: a.title.lower()
            )
            enrolled = uow.enrollments.for_course(user.tenant_id, course)
            found = uow.people.get_many(user.tenant_id, [e.person_id for e in enrolled])
            people = sorted(
                (
                    (found.get(e.person_id), e)
                    for e in enrolled
                    if e.role is Role.LEARNER or e.person_id == person
                ),
                key=lambda pe: natural_key(pe[0].name if pe[0] else pe[1].person_id),
            )
    evidence = checks = None
    if activity and activity not in {a.id for a in activities}:
        # another course chosen in the form, which still sends the last course's activity
        # and learner: show the new course's lists to choose from
        activity = person = ""
    instructor = user.role is not UserRole.ADMIN  # reads the remedies they can act on
    if course and activity and person:
        try:
            evidence = cq.pair_evidence(
                rt.uow, user.tenant_id, activity, person, instructor=instructor
            )
        except NotFound as exc:
            raise PageError(404, str(exc)) from exc
        if not _in_course(evidence) and instructor:
            # an instructor sees the people of their courses, not any id typed in, nor
            # whether it exists
            raise PageError(404, str(NotFound("person", person)))
        try:
            checks = run_checks(request, user.tenant_id, activity, person, instructor=instructor)
        except Exception:  # the records below still answer the question
            log.exception("diagnostics failed for %s/%s", activity, person)
    return render(
        request,
        "console/diagnosis.html",
        user,
        nav="diagnosis",
        courses=courses,
        activities=activities,
        people=people,
        course_id=course,
        activity_id=activity,
        person_id=person,
        evidence=evidence,
        checks=checks,
        kind_labels=KIND_LABELS,
    )
