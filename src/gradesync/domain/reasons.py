"""Why nothing was sent: a machine-readable code and a sentence a support engineer can read.

Every "no result", every skip and every give-up carries a `Reason`. Codes are stable (the
diagnostics screen, the ledger and the API filter on them); texts are for people and may name
the activity, the role, the dates involved. Build reasons through the factories below so a
code is never spelt twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # remedies imports the policy, which makes reasons
    from gradesync.domain.remedies import Remedy


@dataclass(frozen=True, slots=True)
class Reason:
    """`text`: what happened, and what to do unless `fix` holds it: then it is a code and the
    ids it is about, worded for each reader when the reason is read (the ledger stores both,
    `domain.remedies.stored_text`), never in one reader's words."""

    code: str
    text: str
    fix: Remedy | None = None


class ReasonCode(StrEnum):
    # the course or activity is not to be synced
    COURSE_SYNC_DISABLED = "course_sync_disabled"
    SYNC_DISABLED = "sync_disabled"
    NOT_PUBLISHED = "not_published"
    PRACTICE_ITEM = "practice_item"
    BELOW_MINIMUM_POINTS = "below_minimum_points"
    # the person is not someone whose grade goes anywhere
    NOT_ENROLLED = "not_enrolled"
    NOT_A_LEARNER = "not_a_learner"
    ENROLLMENT_INACTIVE = "enrollment_inactive"
    LEFT_COURSE = "left_course"
    # the attempts do not produce a result (yet)
    OUTSIDE_COURSE_DATES = "outside_course_dates"
    NO_ATTEMPT_YET = "no_attempt_yet"
    NOT_COMPLETED_YET = "not_completed_yet"
    NOT_GRADED_YET = "not_graded_yet"
    # the destination cannot take the result
    ZEROS_NOT_STORED = "zeros_not_stored"
    NAME_TOO_LONG = "name_too_long"
    NAME_FORBIDDEN_CHARS = "name_forbidden_chars"
    NAME_EMPTY = "name_empty"
    FRACTIONAL_POINTS = "fractional_points"
    SCORE_OUT_OF_RANGE = "score_out_of_range"
    # delivery gave up
    RETRIES_EXHAUSTED = "retries_exhausted"
    # gradesync itself could not work the grade out from the facts
    COMPUTE_FAILED = "compute_failed"
    # gradesync itself failed while preparing or sending the grade (a bug)
    INTERNAL_ERROR = "internal_error"


def as_clause(text: str) -> str:
    """A destination's, a pause's or the log's own sentence, set inside ours: its final stop
    dropped so the line does not end ".." (or "(... .)")."""
    return text.strip().rstrip(".").rstrip()


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def course_sync_disabled(course_title: str) -> Reason:
    return Reason(
        ReasonCode.COURSE_SYNC_DISABLED,
        f"Grade sync is turned off for the course {course_title!r}; turn it on in the course's "
        "grade sync settings to send grades.",
    )


def sync_disabled(activity_title: str) -> Reason:
    return Reason(
        ReasonCode.SYNC_DISABLED,
        f"The activity {activity_title!r} is excluded from grade sync (its sync box is "
        "cleared); tick it in the grade sync settings to send its grades.",
    )


def not_published(activity_title: str) -> Reason:
    return Reason(
        ReasonCode.NOT_PUBLISHED,
        f"The activity {activity_title!r} is not published; grades are sent once it is published.",
    )


def practice_item(activity_title: str, points_possible: float, *, marked_practice: bool) -> Reason:
    """An activity is a practice item by its kind (`marked_practice`), whatever its points,
    or by being worth no points; the text says which."""
    if marked_practice:
        return Reason(
            ReasonCode.PRACTICE_ITEM,
            f"The activity {activity_title!r} is a practice item (its kind is 'practice'), and "
            "practice items are never sent to a gradebook, whatever their points.",
        )
    return Reason(
        ReasonCode.PRACTICE_ITEM,
        f"The activity {activity_title!r} is worth {points_possible:g} points, so it is a "
        "practice item, and practice items are never sent to a gradebook; give it points to "
        "send its grades.",
    )


def below_minimum_points(activity_title: str, points: float, minimum: float) -> Reason:
    return Reason(
        ReasonCode.BELOW_MINIMUM_POINTS,
        f"The activity {activity_title!r} is worth {points:g} points, under the minimum of "
        f"{minimum:g} points for grade sync; raise its points or lower the minimum.",
    )


def fractional_points(activity_title: str, points: float, limit: int) -> Reason:
    return Reason(
        ReasonCode.FRACTIONAL_POINTS,
        f"The activity {activity_title!r} is worth {points:g} points, and this destination "
        f"takes whole points only; no factor up to {limit} makes {points:g} whole, so nothing "
        "is sent. Give the activity whole points (or a simpler fraction such as 7.5).",
    )


def score_out_of_range(
    event_id: str, score_given: float, score_maximum: float | None, points: float
) -> Reason:
    scale = f" of {score_maximum:g}" if score_maximum is not None else ""
    return Reason(
        ReasonCode.SCORE_OUT_OF_RANGE,
        f"The counted attempt {event_id} scored {score_given:g}{scale}; rescaled to this "
        f"activity's {points:g} points and passed through as extra credit, that is beyond the "
        "largest number a gradebook can hold, so nothing is sent. Correct the attempt's score "
        "in the courseware (or cap extra credit, which sends full points).",
    )


def not_enrolled() -> Reason:
    return Reason(
        ReasonCode.NOT_ENROLLED,
        "This person has no enrollment in the course, so their grade has nowhere to go; they "
        "must enter through the course's link in the LMS.",
    )


def not_a_learner(role: str) -> Reason:
    return Reason(
        ReasonCode.NOT_A_LEARNER,
        f"This person's role in the course is {role!r}; only learners (students) get grades "
        "in the gradebook.",
    )


def enrollment_inactive(status: str) -> Reason:
    return Reason(
        ReasonCode.ENROLLMENT_INACTIVE,
        f"This learner's enrollment is {status!r}, not active, so no grade is sent.",
    )


def left_course(when: datetime, source: str) -> Reason:
    return Reason(
        ReasonCode.LEFT_COURSE,
        f"This learner left the course on {when.date().isoformat()} ({source}): the LMS "
        "roster lists them as no longer active, so no grade is sent.",
    )


def outside_course_dates(
    attempts: int, starts_at: datetime | None, ends_at: datetime | None
) -> Reason:
    window = " and ".join(
        part
        for part in (
            f"after the course start ({_when(starts_at)})" if starts_at else "",
            f"before the course end ({_when(ends_at)})" if ends_at else "",
        )
        if part
    )
    return Reason(
        ReasonCode.OUTSIDE_COURSE_DATES,
        f"All {attempts} attempt(s) were completed outside the course dates; only work "
        f"completed {window} counts.",
    )


def no_attempt_yet(zero_at: datetime | None) -> Reason:
    if zero_at is None:
        tail = "no zero is sent for it under the course's past-due settings."
    else:
        tail = f"a zero will be sent if there is still none at {_when(zero_at)}."
    return Reason(
        ReasonCode.NO_ATTEMPT_YET,
        f"The learner has not attempted this activity yet; {tail}",
    )


def not_completed_yet(zero_at: datetime | None) -> Reason:
    tail = "" if zero_at is None else f"; a zero is sent if it is not completed by {_when(zero_at)}"
    return Reason(
        ReasonCode.NOT_COMPLETED_YET,
        "The learner opened this completion item but has not finished it; full credit is sent "
        f"once it is completed{tail}.",
    )


def not_graded_yet(attempts: int) -> Reason:
    return Reason(
        ReasonCode.NOT_GRADED_YET,
        f"The learner submitted {attempts} attempt(s) that are not graded yet, and this "
        "destination only accepts graded results; the grade is sent once it is graded.",
    )


def zeros_not_stored(destination_note: str = "") -> Reason:
    note = f" ({destination_note})" if destination_note else ""
    return Reason(
        ReasonCode.ZEROS_NOT_STORED,
        f"The result is a zero and this destination does not store zeros{note}; the cell stays "
        "empty until the learner scores above zero.",
    )


def name_too_long(title: str, length: int, maximum: int, rules: str = "") -> Reason:
    under = f" under {rules}" if rules else ""
    return Reason(
        ReasonCode.NAME_TOO_LONG,
        f"The activity name {title!r} is {length} characters long and this destination allows "
        f"at most {maximum}{under}; shorten the name (or let the policy shorten it).",
    )


def name_forbidden_chars(title: str, chars: str, rules: str = "") -> Reason:
    shown = " ".join(chars)
    under = f" under {rules}" if rules else ""
    return Reason(
        ReasonCode.NAME_FORBIDDEN_CHARS,
        f"The activity name {title!r} contains characters this destination refuses ({shown})"
        f"{under}; rename the activity (or let the policy clean the name).",
    )


def name_empty(title: str) -> Reason:
    return Reason(
        ReasonCode.NAME_EMPTY,
        f"The activity name {title!r} is empty once cleaned for this destination, and a "
        "gradebook column needs a name; rename the activity.",
    )


def retries_exhausted(tries: int, last: Reason) -> Reason:
    """Given up after the `last` failure, whose remedy (a code, `fix`) it keeps."""
    return Reason(
        ReasonCode.RETRIES_EXHAUSTED,
        f"Gave up after {tries} failed attempts to deliver ({last.text}); it is sent again "
        "when the grade changes or on a remaster.",
        last.fix,
    )


def compute_failed(error_kind: str) -> Reason:
    """The grade could not be worked out: computing it raised `error_kind` (the error's class,
    never its message, which may quote the learner's data)."""
    return Reason(
        ReasonCode.COMPUTE_FAILED,
        f"gradesync could not work out this grade: computing it failed ({error_kind}), so "
        "nothing is sent for it and the error, with this grade's ids, is in gradesync's log "
        "for the operator. Other grades are not affected. It is worked out again when the "
        "learner's attempts, the activity, its due dates or its policy change, or on a resync.",
    )


def internal_error(error_kind: str) -> Reason:
    """Preparing or sending the grade failed inside gradesync (a bug), not at the
    destination: `error_kind` is the error's class, never its message, which may quote the
    learner's data. Tried again with the backoff of any failed send."""
    return Reason(
        ReasonCode.INTERNAL_ERROR,
        f"gradesync failed while preparing or sending this grade ({error_kind}): an error in "
        "gradesync itself, not the destination's answer. The error, with its destination and "
        "course, is in gradesync's log for the operator to report.",
    )
