"""Invariants of the policy engine, checked on generated facts (hypothesis)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gradesync.domain.ledger import Delivered, after_delivery, is_pending, reconcile, result_hash
from gradesync.domain.model import (
    Activity,
    ActivityKind,
    Attempt,
    AttemptSelection,
    Course,
    DeliveryState,
    Enrollment,
    ExtraCredit,
    LedgerKey,
    LedgerRow,
    PastDueZeros,
    ScoreForm,
)
from gradesync.domain.policy import (
    Capabilities,
    DesiredResult,
    NoResult,
    PolicyInput,
    ResolvedPolicy,
    desired_result,
)

T0 = datetime(2025, 1, 6, tzinfo=UTC)
COURSE = Course(tenant_id="t", id="c1", title="Course")
LEARNER = Enrollment(tenant_id="t", course_id="c1", person_id="p1")

points_st = st.sampled_from([1.0, 5.0, 10.0, 12.5, 100.0])


@st.composite
def attempts_st(draw: st.DrawFn, min_size: int = 1, graded_only: bool = True) -> list[Attempt]:
    n = draw(st.integers(min_size, 6))
    out = []
    for i in range(n):
        maximum = draw(st.sampled_from([None, 10.0, 20.0, 50.0]))
        top = maximum if maximum is not None else 10.0
        score = draw(
            st.floats(0, top * 1.5, allow_nan=False).map(lambda x: round(x, 2))
            if graded_only
            else st.none() | st.floats(0, top * 1.5, allow_nan=False).map(lambda x: round(x, 2))
        )
        out.append(
            Attempt(
                tenant_id="t",
                source_event_id=f"ev-{i}",
                activity_id="a1",
                person_id="p1",
                score_given=score,
                score_maximum=maximum,
                completed_at=T0 + timedelta(minutes=draw(st.integers(0, 60 * 24 * 14))),
                late=draw(st.booleans()),
                comment=draw(st.none() | st.sampled_from(["ok", "see me"])),
            )
        )
    return out


def activity(points: float, due: datetime | None = None) -> Activity:
    return Activity(
        tenant_id="t", id="a1", course_id="c1", title="Quiz", points_possible=points, due_at=due
    )


def run(
    attempts: list[Attempt],
    points: float,
    policy: ResolvedPolicy,
    caps: Capabilities = Capabilities(),
    now: datetime = T0 + timedelta(days=30),
    act: Activity | None = None,
) -> DesiredResult | NoResult:
    return desired_result(
        PolicyInput(
            policy=policy,
            course=COURSE,
            activity=act or activity(points),
            enrollment=LEARNER,
            attempts=attempts,
            due_override=None,
            capabilities=caps,
            now=now,
        )
    )


def as_points(a: Attempt, points: float) -> float:
    assert a.score_given is not None
    if a.score_maximum is None:
        return a.score_given
    return a.score_given / a.score_maximum * points


@settings(max_examples=300)
@given(
    attempts=attempts_st(),
    points=points_st,
    selection=st.sampled_from(list(AttemptSelection)),
    extra=st.sampled_from(list(ExtraCredit)),
    accepts_extra=st.booleans(),
)
def test_selected_score_is_an_attempts_score_or_their_average(
    attempts: list[Attempt],
    points: float,
    selection: AttemptSelection,
    extra: ExtraCredit,
    accepts_extra: bool,
) -> None:
    policy = ResolvedPolicy(attempt_selection=selection, extra_credit=extra)
    out = run(attempts, points, policy, Capabilities(extra_credit=accepts_extra))
    assert isinstance(out, DesiredResult)
    assert out.score_given is not None and out.grading_progress == "FullyGraded"
    scores = [as_points(a, points) for a in attempts]
    candidates = [*scores, math.fsum(scores) / len(scores)]
    capped = not (extra is ExtraCredit.PASS_THROUGH and accepts_extra)
    if capped:
        candidates = [min(c, points) for c in candidates]
        assert 0 <= out.score_given <= points
    assert any(abs(out.score_given - c) <= 1e-6 for c in candidates)
    assert out.score_maximum == points
    # and it is the right one
    chrono = sorted(attempts, key=lambda a: (a.completed_at, a.source_event_id))
    expected = {
        AttemptSelection.HIGHEST: max(scores),
        AttemptSelection.LATEST: as_points(chrono[-1], points),
        AttemptSelection.FIRST: as_points(chrono[0], points),
        AttemptSelection.AVERAGE: math.fsum(scores) / len(scores),
    }[selection]
    assert abs(out.score_given - (min(expected, points) if capped else expected)) <= 1e-6
    # the counted attempt is one of them and carries the date
    assert out.attempt_event_id in {a.source_event_id for a in attempts}
    assert out.scored_at in {a.completed_at for a in attempts}


@settings(max_examples=200)
@given(
    attempts=attempts_st(graded_only=False),
    points=points_st,
    selection=st.sampled_from(list(AttemptSelection)),
    data=st.data(),
)
def test_input_order_does_not_matter(
    attempts: list[Attempt], points: float, selection: AttemptSelection, data: st.DataObject
) -> None:
    policy = ResolvedPolicy(attempt_selection=selection)
    shuffled = data.draw(st.permutations(attempts))
    assert run(attempts, points, policy) == run(list(shuffled), points, policy)


@settings(max_examples=200)
@given(attempts=attempts_st(), points=points_st, scale=st.sampled_from([1.0, 100.0]))
def test_percent_is_points_rescaled(attempts: list[Attempt], points: float, scale: float) -> None:
    policy = ResolvedPolicy()
    in_points = run(attempts, points, policy)
    in_percent = run(
        attempts, points, policy, Capabilities(score_form=ScoreForm.PERCENT, percent_scale=scale)
    )
    assert isinstance(in_points, DesiredResult) and isinstance(in_percent, DesiredResult)
    assert in_points.score_given is not None and in_percent.score_given is not None
    assert in_percent.score_maximum == scale
    assert abs(in_percent.score_given - in_points.score_given * scale / points) <= 1e-5
    assert 0 <= in_percent.score_given <= scale


@settings(max_examples=200)
@given(
    attempts=attempts_st(min_size=0, graded_only=False),
    zeros=st.sampled_from(list(PastDueZeros)),
    a=st.integers(0, 60),
    b=st.integers(0, 60),
)
def test_result_depends_on_now_only_through_the_zero_point(
    attempts: list[Attempt], zeros: PastDueZeros, a: int, b: int
) -> None:
    # Past the zero point (due date + grace), the result is the same whatever the clock says;
    # otherwise every resync would find every key changed.
    due = T0 + timedelta(days=3)
    act = activity(10.0, due)
    policy = ResolvedPolicy(past_due_zeros=zeros, grace_period_minutes=30)
    first = run(attempts, 10.0, policy, now=due + timedelta(minutes=30, days=a), act=act)
    second = run(attempts, 10.0, policy, now=due + timedelta(minutes=30, days=b), act=act)
    assert first == second


# --- a policy change recomputes every affected key -------------------------------------------

policy_st = st.builds(
    ResolvedPolicy,
    attempt_selection=st.sampled_from(list(AttemptSelection)),
    extra_credit=st.sampled_from(list(ExtraCredit)),
    past_due_zeros=st.sampled_from(list(PastDueZeros)),
    grace_period_minutes=st.sampled_from([0, 60, 60 * 24 * 10]),
    minimum_points=st.sampled_from([0.0, 1.0, 6.0]),
)


@st.composite
def gradebook_st(draw: st.DrawFn) -> list[tuple[Activity, str, list[Attempt]]]:
    """A few activities x a few learners, each with some attempts (maybe none)."""
    cells = []
    for ai in range(draw(st.integers(1, 3))):
        act = Activity(
            tenant_id="t",
            id=f"a{ai}",
            course_id="c1",
            title=f"Activity {ai}",
            points_possible=draw(st.sampled_from([0.0, 5.0, 10.0])),
            kind=draw(st.sampled_from(list(ActivityKind))),
            due_at=T0 + timedelta(days=draw(st.integers(1, 10))),
            assigned=draw(st.booleans()),
        )
        for pi in range(draw(st.integers(1, 3))):
            attempts = [
                replace(x, activity_id=act.id, person_id=f"p{pi}", completed=draw(st.booleans()))
                for x in draw(attempts_st(min_size=0, graded_only=False))
            ]
            cells.append((act, f"p{pi}", attempts))
    return cells


def outcome(
    policy: ResolvedPolicy, act: Activity, person: str, attempts: list[Attempt]
) -> DesiredResult | NoResult:
    return desired_result(
        PolicyInput(
            policy=policy,
            course=COURSE,
            activity=act,
            enrollment=replace(LEARNER, person_id=person),
            attempts=attempts,
            due_override=None,
            capabilities=Capabilities(statuses=True, percent_scale=100.0),
            now=T0 + timedelta(days=7),
        )
    )


@settings(max_examples=150, deadline=None)
@given(cells=gradebook_st(), before=policy_st, after=policy_st)
def test_policy_change_recomputes_every_affected_key(
    cells: list[tuple[Activity, str, list[Attempt]]],
    before: ResolvedPolicy,
    after: ResolvedPolicy,
) -> None:
    now = T0 + timedelta(days=7)
    ledger: dict[LedgerKey, LedgerRow] = {}
    # sync everything under the old policy
    for act, person, attempts in cells:
        key = LedgerKey("t", "d1", act.id, person)
        row = reconcile(None, key, outcome(before, act, person, attempts), now)
        assert row is not None
        if is_pending(row, now):
            assert row.desired_hash is not None
            row = after_delivery(row, row.desired_hash, Delivered(200), now)
        ledger[key] = row
    # change the policy and recompute
    for act, person, attempts in cells:
        key = LedgerKey("t", "d1", act.id, person)
        old, new = outcome(before, act, person, attempts), outcome(after, act, person, attempts)
        row = ledger[key]
        written = reconcile(row, key, new, now + timedelta(minutes=1))
        current = written or row
        if isinstance(new, NoResult):
            assert current.state is DeliveryState.SKIPPED
            assert current.reason_code == new.reason.code
            continue
        h = result_hash(new)
        assert current.desired_hash == h
        if isinstance(old, DesiredResult) and result_hash(old) == h:
            assert not is_pending(current, now)  # unaffected: nothing to send
        else:
            # affected: pending, unless the destination already holds exactly this result
            assert is_pending(current, now) == (row.delivered_hash != h)
        ledger[key] = current
    # delivering what is pending leaves every destination cell equal to the new policy's result
    for key, row in ledger.items():
        if is_pending(row, now):
            assert row.desired_hash is not None
            ledger[key] = after_delivery(row, row.desired_hash, Delivered(200), now)
    for act, person, attempts in cells:
        key = LedgerKey("t", "d1", act.id, person)
        new = outcome(after, act, person, attempts)
        if isinstance(new, DesiredResult):
            assert ledger[key].state is DeliveryState.DELIVERED
            assert ledger[key].delivered_hash == result_hash(new)
