"""The check's test result (`destinations check --send-test`, LTI 1.3 AGS only): a column of
gradesync's own, a full score for one learner, read back, then the column deleted again.

The test leaves nothing in the gradebook: whatever it found, the column it made (or found
from an earlier check) is deleted with its result, and a step says so, or, when the LMS
refused, names the column to delete by hand. Each request goes to the LMS as a send does
(`Governor.request`): within the destination's rate limit and concurrency, and never while
it is paused. A paused destination is written nothing at all: the step says so, and how to
resume it.
"""

from __future__ import annotations

from datetime import datetime

from gradesync.domain.diagnosis import ProbeStep, when
from gradesync.domain.model import Course, CourseLink, Destination, ItemLink, PersonLink, ScoreForm
from gradesync.domain.overrides import same_grade
from gradesync.domain.policy import Column, DesiredResult
from gradesync.domain.remedies import RESUME_TO_TEST, Reader, Remedy
from gradesync.services.clock import Clock
from gradesync.services.delivery.asked import asked
from gradesync.services.delivery.governor import DestinationPaused, Governor
from gradesync.services.destination import (
    ColumnRemover,
    DestinationClient,
    RemoteFailure,
    ResultTarget,
)

CHECK_ACTIVITY_ID = "gradesync-connection-check"
CHECK_TITLE = "gradesync connection check"
NOT_SENT = "A test result is sent"


async def send_test(
    governor: Governor,
    clock: Clock,
    client: DestinationClient,
    course: Course,
    link: CourseLink,
    learner: PersonLink | None,
) -> list[ProbeStep]:
    """The test's steps, in order: the test column, the result sent and read back (or why
    not), and the column removed."""
    d = client.destination
    held = _paused(d, clock.now())
    if held is not None:
        return [held]
    column = Column(CHECK_TITLE, 1.0, None, None, CHECK_ACTIVITY_ID)
    try:
        item = await asked(
            governor, d, lambda gate: client.ensure_column(link, column, None, each_request=gate)
        )
    except Exception as exc:
        return [_failed("Line items are listed and a test column exists", exc, d)]
    steps = [
        ProbeStep(
            "Line items are listed and a test column exists",
            True,
            f"{CHECK_TITLE!r}: {item.remote_id}",
            code="test_column_ready",
        )
    ]
    # whatever the test found (each of its steps says a failure rather than raise it); a
    # check stopped meanwhile leaves the column, for the next one to find and delete
    steps += await _result(governor, clock, client, link, item, learner)
    steps.append(await _removed(governor, client, course, link, item))
    return steps


def _paused(d: Destination, now: datetime) -> ProbeStep | None:
    """While `d` is paused gradesync sends it nothing, and a test result is no exception: it
    would pass a pause an administrator (or the LMS's own answers) set."""
    why = f" ({d.pause_reason})" if d.pause_reason else ""
    if not d.enabled:
        held = f"{d.name!r} is paused{why}"
    elif d.paused_until is not None and d.paused_until > now:
        held = f"{d.name!r} is paused until {when(d.paused_until)}{why}"
    else:
        return None
    return _not_sent(
        d,
        f"Nothing was written to the LMS: {held}, and gradesync sends it nothing while it is "
        "paused, a test result included.",
    )


def _not_sent(d: Destination, evidence: str) -> ProbeStep:
    fix = Remedy(RESUME_TO_TEST, destination=d.id)
    return ProbeStep(
        NOT_SENT, False, evidence, fix.words(Reader.CLI), code="test_not_sent_paused", fix=fix
    )


async def _result(
    governor: Governor,
    clock: Clock,
    client: DestinationClient,
    link: CourseLink,
    item: ItemLink,
    learner: PersonLink | None,
) -> list[ProbeStep]:
    d = client.destination
    if learner is None:
        return [
            ProbeStep(
                "A test result is sent and read back",
                False,
                "No learner of the course has launched gradesync from it yet, so there is "
                "nobody to send a test result for.",
                "Have one learner (a test student) open a gradesync link in the course, or "
                "name one with --learner, then check again.",
                code="no_learner_launched",
            )
        ]
    caps = client.capabilities
    top = caps.percent_scale if caps.score_form is ScoreForm.PERCENT else 1.0
    result = DesiredResult(
        score_given=top,
        score_maximum=top,
        grading_progress="FullyGraded",
        activity_progress="Completed",
        comment=CHECK_TITLE,
        late=False,
        missing=False,
        excused=False,
        scored_at=None,
        basis="connection check",
        attempt_event_id=None,
    )
    target = ResultTarget(link, item, learner)
    try:
        receipt = await asked(governor, d, lambda _: client.put_result(target, result, clock.now()))
    except Exception as exc:
        return [_failed("A test result is accepted", exc, d)]
    steps = [
        ProbeStep(
            "A test result is accepted",
            True,
            f"{top:g}/{top:g} for {learner.person_id} (LMS user {learner.remote_id}): "
            f"HTTP {receipt.status}.",
            code="test_result_accepted",
        )
    ]
    try:
        backs = await asked(
            governor, d, lambda gate: client.read_results(link, item, each_request=gate)
        )
    except Exception as exc:
        return [*steps, _failed("The test result reads back", exc, d)]
    got = next((b for b in backs if b.remote_person_id == learner.remote_id), None)
    ok = got is not None and same_grade(top, top, got.score_given, got.score_maximum)
    steps.append(
        ProbeStep(
            "The test result reads back",
            ok,
            f"The gradebook holds {got.score_given}/{got.score_maximum}."
            if got is not None
            else "The gradebook lists no result for the learner.",
            None
            if ok
            else "The LMS accepted the score but does not show it: check the "
            "column's settings in the LMS (muted, hidden, or a different grading type).",
            code="test_result_read_back" if ok else "test_result_not_shown",
        )
    )
    return steps


async def _removed(
    governor: Governor,
    client: DestinationClient,
    course: Course,
    link: CourseLink,
    item: ItemLink,
) -> ProbeStep:
    """The test column deleted, with its result: a column of 1/1 scores left in the
    gradebook would be read as a grade (and counted in a total, on some LMSs)."""
    name = "The test column is removed"
    column = f"{CHECK_TITLE!r} ({item.remote_id})"
    try:
        if not isinstance(client, ColumnRemover):
            raise TypeError(f"{client.destination.kind.value} cannot delete a column")
        remover = client
        await asked(governor, client.destination, lambda _: remover.delete_column(link, item))
    except Exception as exc:
        return ProbeStep(
            name,
            False,
            f"The test column {column} is still in the gradebook of course {course.id}: "
            f"deleting it failed: {_said(exc)}.",
            f"Delete the column {CHECK_TITLE!r} from the gradebook of course "
            f"{course.title!r} ({course.id}) in the LMS by hand; the next check that sends a "
            "test result deletes it too.",
            code="test_column_left",
        )
    return ProbeStep(
        name,
        True,
        f"The test column {column} was deleted from the gradebook, with its test result.",
        code="test_column_removed",
    )


def _said(exc: BaseException) -> str:
    if isinstance(exc, RemoteFailure):
        status = f" (HTTP {exc.status})" if exc.status is not None else ""
        return f"{exc.code}{status}: {exc.message}"
    if isinstance(exc, DestinationPaused):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def failed_step(name: str, exc: BaseException) -> ProbeStep:
    """A check's step that failed: what the destination answered, with its remedy (held as
    a code where the adapter holds it so, for each reader's words: `ProbeStep.read_over`)."""
    if isinstance(exc, RemoteFailure):
        return ProbeStep(name, False, _said(exc), exc.remedy, code=exc.code, fix=exc.fix)
    return ProbeStep(name, False, _said(exc), None, code="check_error")


def _failed(name: str, exc: BaseException, d: Destination) -> ProbeStep:
    if isinstance(exc, DestinationPaused):  # paused while the check ran: nothing more sent
        return _not_sent(
            d,
            f"Not sent: {exc}; gradesync sends it nothing while it is paused, a test result "
            "included.",
        )
    return failed_step(name, exc)
