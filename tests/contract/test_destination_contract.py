"""One contract for every destination client: the strict double (in memory and over HTTP)
and each real adapter against the sandbox over real HTTP. What the engine relies on holds
for all of them, so the doubles the engine's tests use cannot drift from the adapters they
stand for.

- a column is ensured once: ensuring it again with its link finds it (no second column), and
  new details update it in place;
- results are stored as sent (a zero is a score), a newer one replaces an older one, and
  read back through the adapter as the remote holds them;
- the result form (points or percent, and its scale) follows the client's capabilities;
- failures are classified the same way: a grade the remote refuses is REJECTED with the
  remote's words, a 5xx is RETRY_LATER, a 429 with Retry-After is SLOW_DOWN for that long;
  neither fault sticks: the same send then goes through.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from gradesync.domain.capabilities import Capabilities
from gradesync.domain.model import ItemLink, PersonLink, ScoreForm
from gradesync.domain.policy import DesiredResult, column_hash
from gradesync.services.destination import FailureClass, RemoteFailure, ResultTarget

from .conftest import T0, Fault, Subject, later


def desired(subject: Subject, fraction: float | None) -> DesiredResult:
    """`fraction` of a 10-point column, in the form the client's capabilities ask for."""
    caps = subject.client.capabilities
    maximum = caps.percent_scale if caps.score_form is ScoreForm.PERCENT else 10.0
    return DesiredResult(
        score_given=None if fraction is None else fraction * maximum,
        score_maximum=maximum,
        grading_progress="FullyGraded",
        activity_progress="Completed",
        comment=None,
        late=False,
        missing=False,
        excused=False,
        scored_at=T0,
        basis="contract",
        attempt_event_id="e1",
    )


async def ensure(subject: Subject, activity_id: str = "a1") -> ItemLink:
    column = subject.column(activity_id=activity_id)
    return await subject.client.ensure_column(
        subject.course, column, subject.first_link(activity_id)
    )


def target(subject: Subject, item: ItemLink, person: PersonLink) -> ResultTarget:
    return ResultTarget(subject.course, item, person)


async def test_capabilities_hold_for_what_is_sent(subject: Subject) -> None:
    """What the engine reads in the capabilities is what the remote does: a destination that
    takes pending results takes one (and holds no score for it), one that stores zeros holds
    a zero."""
    caps = subject.client.capabilities
    assert isinstance(caps, Capabilities)
    assert caps.percent_scale > 0
    item = await ensure(subject)
    ada, bo = subject.learners
    if caps.pending_results:
        pending = replace(
            desired(subject, None), grading_progress="Pending", activity_progress="Submitted"
        )
        receipt = await subject.client.put_result(target(subject, item, ada), pending, T0)
        assert 200 <= receipt.status < 300
        assert subject.held(item, ada) is None
    if caps.zeros_stored:
        await subject.client.put_result(target(subject, item, bo), desired(subject, 0.0), T0)
        assert subject.held(item, bo) == 0.0


async def test_a_column_is_ensured_once_and_updated_in_place(subject: Subject) -> None:
    before = subject.columns()
    column = subject.column()
    first = await ensure(subject)
    assert first.activity_id == "a1" and first.remote_id
    assert first.details_hash == column_hash(column)
    created = subject.columns()
    assert created in (before, before + 1)  # LTI 1.1: the launch made it already

    again = await subject.client.ensure_column(subject.course, column, first)
    assert again.remote_id == first.remote_id and again.details_hash == first.details_hash
    assert subject.columns() == created

    renamed = subject.column(title="Quiz One")
    updated = await subject.client.ensure_column(subject.course, renamed, again)
    assert updated.remote_id == first.remote_id
    assert updated.details_hash == column_hash(renamed) != first.details_hash
    assert subject.columns() == created


async def test_results_are_stored_replaced_and_read_back(subject: Subject) -> None:
    item = await ensure(subject)
    ada, bo = subject.learners
    receipt = await subject.client.put_result(
        target(subject, item, ada), desired(subject, 0.75), T0
    )
    assert 200 <= receipt.status < 300
    await subject.client.put_result(target(subject, item, bo), desired(subject, 0.0), T0)
    assert subject.held(item, ada) == pytest.approx(0.75)
    assert subject.held(item, bo) == 0.0  # a zero is a score, not nothing

    newer = desired(subject, 0.9)
    await subject.client.put_result(target(subject, item, ada), newer, later(1))
    assert subject.held(item, ada) == pytest.approx(0.9)

    back = {r.remote_person_id: r for r in await subject.client.read_results(subject.course, item)}
    assert back[ada.remote_id].score_given == pytest.approx(newer.score_given)
    assert back[bo.remote_id].score_given == 0.0
    for row in back.values():
        assert row.score_maximum in (None, pytest.approx(newer.score_maximum))


async def test_a_grade_the_remote_refuses_is_rejected_with_its_words(subject: Subject) -> None:
    item = await ensure(subject)
    with pytest.raises(RemoteFailure) as refused:
        await subject.client.put_result(
            target(subject, item, subject.stranger), desired(subject, 0.5), T0
        )
    failure = refused.value
    assert failure.failure is FailureClass.REJECTED
    assert failure.code and failure.message
    assert failure.status is None or 200 <= failure.status < 500
    assert failure.retry_after is None
    assert subject.held(item, subject.stranger) is None


@pytest.mark.parametrize(
    ("fault", "failure", "code", "status"),
    [
        ("server_error", FailureClass.RETRY_LATER, "server_error", 502),
        ("rate_limited", FailureClass.SLOW_DOWN, "rate_limited", 429),
    ],
)
async def test_transient_failures_are_classified_and_do_not_stick(
    subject: Subject, fault: Fault, failure: FailureClass, code: str, status: int
) -> None:
    item = await ensure(subject)
    ada = subject.learners[0]
    subject.fail_next(fault, retry_after=7)
    try:
        with pytest.raises(RemoteFailure) as failed:
            await subject.client.put_result(target(subject, item, ada), desired(subject, 0.5), T0)
    finally:
        subject.clear_faults()
    assert (failed.value.failure, failed.value.code, failed.value.status) == (
        failure,
        code,
        status,
    )
    assert failed.value.retry_after == (7.0 if fault == "rate_limited" else None)
    assert subject.held(item, ada) is None  # nothing was stored

    await subject.client.put_result(target(subject, item, ada), desired(subject, 0.5), later(1))
    assert subject.held(item, ada) == pytest.approx(0.5)


async def test_a_working_destination_passes_its_check(subject: Subject) -> None:
    steps = await subject.client.check()
    assert steps, "a check says what it proved"
    assert all(step.passed for step in steps), [(s.name, s.evidence) for s in steps]
