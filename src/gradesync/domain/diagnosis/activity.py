"""One activity, every learner: where each destination's results stand."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from gradesync.domain.capabilities import Capabilities
from gradesync.domain.diagnosis.checks import (
    BY_DESIGN,
    TO_INCLUDE,
    Check,
    CheckCode,
    DestinationFacts,
    Diagnosis,
)
from gradesync.domain.diagnosis.destination_checks import (
    COLUMN_CODES,
    column_check,
    course_link_check,
    destination_ready_check,
    grade_scope_check,
)
from gradesync.domain.diagnosis.learner import activity_checks, course_checks
from gradesync.domain.model import (
    Activity,
    Course,
    CourseLink,
    DeliveryState,
    Destination,
    ItemLink,
)
from gradesync.domain.policy import (
    ResolvedPolicy,
)
from gradesync.domain.reasons import Reason, ReasonCode
from gradesync.domain.remedies import said_of

# --- one activity, every learner ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyState:
    """One ledger row, reduced to what triage needs."""

    destination_id: str
    activity_id: str
    person_id: str
    state: DeliveryState
    reason_code: str | None = None
    reason_text: str | None = None
    # a failed send's: how often it failed, when it is tried again, the remote's answer
    tries: int = 0
    next_attempt_at: datetime | None = None
    remote_status: int | None = None
    remote_message: str | None = None

    @property
    def said(self) -> str:
        """What its reason says happened, naming no command (`remedies.said_of`): evidence
        quotes it, and the remedy beside it is worded for its reader."""
        return said_of(self.reason_text or "")


@dataclass(frozen=True, slots=True)
class ActivityDestinationFacts:
    destination: Destination
    capabilities: Capabilities | Reason
    course_link: CourseLink | None
    item_link: ItemLink | None
    rows: tuple[KeyState, ...]


@dataclass(frozen=True, slots=True)
class ActivityFacts:
    now: datetime
    course: Course
    activity: Activity
    policy: ResolvedPolicy | Reason
    learners: int
    destinations: tuple[ActivityDestinationFacts, ...]


def _state_summary(rows: Sequence[KeyState]) -> tuple[str, list[str], Counter[str]]:
    states = Counter(r.state.value for r in rows)
    problems: Counter[str] = Counter(
        r.reason_code or r.state.value
        for r in rows
        if r.state in (DeliveryState.REJECTED, DeliveryState.RETRYING)
        or (
            r.state is DeliveryState.SKIPPED
            and r.reason_code not in BENIGN_SKIPS
            and r.reason_code not in BY_DESIGN
        )
    )
    text = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no rows"
    lines = []
    for code, n in problems.most_common():
        who = sorted(r.person_id for r in rows if (r.reason_code or r.state.value) == code)
        shown = ", ".join(who[:5]) + (f" and {len(who) - 5} more" if len(who) > 5 else "")
        lines.append(f"{code}: {n} ({shown})")
    return text, lines, problems


# Skips that are not a fault: the learner simply has nothing to send yet, or the person is
# not a learner (every course has a teacher; staff get no grades).
BENIGN_SKIPS = {
    ReasonCode.NOT_A_LEARNER.value,
    ReasonCode.NO_ATTEMPT_YET.value,
    ReasonCode.NOT_COMPLETED_YET.value,
    ReasonCode.NOT_GRADED_YET.value,
    ReasonCode.ZEROS_NOT_STORED.value,
    ReasonCode.ENROLLMENT_INACTIVE.value,
    ReasonCode.LEFT_COURSE.value,
}


def left_out_by_design(r: KeyState) -> bool:
    """A result a person left out on purpose: said apart, never a problem."""
    return r.state is DeliveryState.SKIPPED and r.reason_code in BY_DESIGN


def diagnose_activity(facts: ActivityFacts) -> Diagnosis:
    checks: list[Check] = []
    checks += course_checks(facts.course)
    checks += activity_checks(facts.activity, facts.policy)
    for af in facts.destinations:
        d = af.destination
        checks.append(destination_ready_check(d, af.capabilities, facts.now))
        scope = grade_scope_check(d)
        if scope is not None:
            checks.append(scope)
        dfacts = DestinationFacts(d, af.capabilities, af.course_link, af.item_link)
        checks.append(course_link_check(dfacts, facts.course))
        refused = Counter(r.reason_code for r in af.rows if r.reason_code in COLUMN_CODES)
        top = refused.most_common(1)
        col = column_check(
            dfacts,
            facts.activity,
            (str(top[0][0]), top[0][1]) if top else None,
            policy=facts.policy,
        )
        text, lines, problems = _state_summary(af.rows)
        delivered = sum(1 for r in af.rows if r.state is DeliveryState.DELIVERED)
        left_out = [r for r in af.rows if left_out_by_design(r)]
        if left_out and not problems and not delivered:
            # a person left this activity out at this destination (e.g. not ticked for the
            # SIS): no column and no grades there is what they asked for, not a fault
            why = left_out[0].said or str(left_out[0].reason_code)
            checks.append(replace(col, excluded=True) if not col.passed else col)
            checks.append(
                Check(
                    CheckCode.LEARNERS_DELIVERED,
                    f"Learners' grades delivered to {d.name!r}",
                    False,
                    f"{facts.learners} learner(s); ledger: {text}. Left out on purpose: {why}",
                    TO_INCLUDE.get(str(left_out[0].reason_code)),
                    d.id,
                    excluded=True,
                )
            )
            continue
        checks.append(col)
        checks.append(
            Check(
                CheckCode.LEARNERS_DELIVERED,
                f"Learners' grades delivered to {d.name!r}",
                not problems,
                f"{facts.learners} learner(s); ledger: {text}."
                + (" Problems: " + "; ".join(lines) + "." if lines else "")
                + ("" if delivered or problems else " Nothing delivered yet."),
                "Diagnose one of the learners listed for the exact cause "
                "(`gradesync doctor --learner ... --activity ...`)."
                if problems
                else None,
                d.id,
            )
        )
    if not facts.destinations:
        checks.append(
            Check(
                CheckCode.COURSE_CONNECTED,
                "The course syncs to a destination",
                False,
                f"Course {facts.course.id!r} is not connected to any LMS or SIS.",
                "Connect the course to an LMS (Deep Linking or a launch) or a SIS class.",
            )
        )
    return Diagnosis(
        "activity",
        facts.activity.title,
        tuple(checks),
        {"course_id": facts.course.id, "activity_id": facts.activity.id},
    )
