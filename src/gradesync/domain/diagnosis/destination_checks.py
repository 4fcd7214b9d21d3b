"""Per destination, for one learner's grade: usable and allowed to send grades, the learner
launched from this course, the course and the column connected, the ledger's state, the
last delivery and the remote's answer, and whether the LMS still holds what was sent."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

from gradesync.domain.capabilities import Capabilities
from gradesync.domain.columns import column_written, no_column
from gradesync.domain.course_connection import not_connected
from gradesync.domain.diagnosis.checks import (
    AGS_LINEITEM,
    AGS_SCORE,
    BY_DESIGN,
    LTI_KINDS,
    REMOTE_CAUSES,
    TO_INCLUDE,
    Check,
    CheckCode,
    DestinationFacts,
    DestinationQueue,
    LearnerActivityFacts,
    code_said,
    credentials_fix,
    current_code,
    plural,
    remote_cause,
    when,
)
from gradesync.domain.grade_words import excused_text, learner_excused
from gradesync.domain.ledger import waiting_since
from gradesync.domain.model import (
    SIS_KINDS,
    Activity,
    Course,
    CourseLink,
    DeliveryState,
    Destination,
    DestinationKind,
    LedgerRow,
)
from gradesync.domain.overrides import COLUMN_RESCALED, OVERRIDDEN, POINTS_KEPT
from gradesync.domain.passback import (
    BY_HAND,
    LINKED_BY,
    NOT_FOLLOWED,
    STUDENT_CHANGED,
    PassbackRule,
)
from gradesync.domain.pauses import PauseCause
from gradesync.domain.policy import ResolvedPolicy
from gradesync.domain.reasons import Reason, as_clause
from gradesync.domain.remedies import (
    GIVE_SIS_ID,
    MATCH_SIS_STUDENTS,
    PENDING_STALLED,
    RELINK_SIS_STUDENTS,
    Reader,
    Remedy,
    lti11_column_remedy,
    remedy_of,
    said_of,
)

# --- per destination -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PauseSaid:
    """A destination's pause in words, by its kind (`Destination.pause_cause`, as the
    `gradesync_destination_paused` metric labels it): an administrator's until resumed, a
    misconfiguration's (fixed, then resumed), or one gradesync lifts by itself at its end (the
    circuit breaker's cool-down, the remote's Retry-After, a person's pause until a time)."""

    title: str
    evidence: str
    remedy: str
    lifts_by_itself: bool  # nobody needs to do anything for sending to resume
    until: datetime | None = None  # a timed pause's end: gradesync tries again by itself then


def pause_said(d: Destination, now: datetime) -> PauseSaid | None:
    """`d`'s pause at `now` as the course triage and the destination's check say it; None
    when it is not paused."""
    why = as_clause(d.pause_reason or "")
    if not d.enabled:
        return PauseSaid(
            "The destination is paused until an administrator resumes it",
            f"Paused: {why or 'by an administrator'}.",
            "Fix the cause named in the pause, then resume the destination: the grades that "
            "waited are sent at once.",
            False,
        )
    if d.paused_until is None or d.paused_until <= now:
        return None
    at = when(d.paused_until)
    evidence = f"Paused until {at}: {why or 'no reason recorded'}."
    kind = "SIS" if d.kind in SIS_KINDS else "LMS"
    remote = f"the {kind}"
    optional = "Resuming the destination sooner is optional."
    if d.pause_cause is PauseCause.CIRCUIT_OPEN:
        return PauseSaid(
            f"The {kind} failed repeatedly: gradesync paused sending to it for a while and "
            "tries again by itself",
            evidence,
            f"Nothing is needed for sending to resume: at {at} gradesync tries the destination "
            "again by itself, and once it answers, the grades that waited are sent. If the "
            f"failures go on, look into the failure the pause names on {remote}'s side. "
            + optional,
            True,
            d.paused_until,
        )
    if d.pause_cause is PauseCause.SLOW_DOWN:
        return PauseSaid(
            f"The {kind} asked gradesync to slow down: sending waits until the time it gave",
            evidence,
            f"Nothing is needed for sending to resume: at {at} gradesync sends again by "
            f"itself, and the grades that waited go then. If {remote} keeps asking, lower the "
            f"pace gradesync sends at (the destination's rate limit). " + optional,
            True,
            d.paused_until,
        )
    if d.pause_cause is PauseCause.ADMIN:
        return PauseSaid(
            "The destination is paused by an administrator until a set time",
            evidence,
            f"Nothing is needed: the pause ends by itself at {at}, and the grades that waited "
            "are sent then. Resume the destination to end it sooner.",
            True,
            d.paused_until,
        )
    if d.pause_cause is PauseCause.MISCONFIGURED:
        return PauseSaid(
            "The destination is paused: gradesync cannot send with its settings",
            evidence,
            "Fix the destination's settings named in the pause, then resume it: the grades "
            f"that waited are sent at once. Without a resume gradesync tries again by itself at "
            f"{at}, and is paused again while the settings are wrong.",
            False,
            d.paused_until,
        )
    return PauseSaid(  # a pause whose cause was not recorded
        "The destination is paused",
        evidence,
        f"Sending resumes by itself at {at}; if the pause names a misconfiguration, fix it and "
        "resume the destination.",
        False,
        d.paused_until,
    )


def destination_ready_check(d: Destination, caps: Capabilities | Reason, now: datetime) -> Check:
    name = f"Destination {d.name!r} is usable"
    if not d.enabled:
        return Check(
            CheckCode.DESTINATION_READY,
            name,
            False,
            f"Paused: {as_clause(d.pause_reason or 'by an administrator')}.",
            f"Fix the cause, then resume it (`gradesync destinations resume {shlex.quote(d.id)}`).",
            d.id,
        )
    paused = pause_said(d, now)
    if paused is not None:
        return Check(CheckCode.DESTINATION_READY, name, False, paused.evidence, paused.remedy, d.id)
    if isinstance(caps, Reason):
        return Check(
            CheckCode.DESTINATION_READY,
            name,
            False,
            caps.text,
            "Fix the destination's settings.",
            d.id,
        )
    return Check(
        CheckCode.DESTINATION_READY,
        name,
        True,
        f"{d.kind.value}, profile {d.profile}, enabled.",
        None,
        d.id,
    )


def grade_scope_check(d: Destination) -> Check | None:
    """AGS only: the registration must ask for the scopes that write grades."""
    if d.kind is not DestinationKind.LTI13_AGS:
        return None
    scopes = d.config.get("scopes")
    if not scopes:
        return Check(
            CheckCode.GRADE_SCOPE,
            "Configured to send grades",
            True,
            "Asks for the default AGS scopes (score, line items, results).",
            None,
            d.id,
        )
    missing = [s for s in (AGS_SCORE, AGS_LINEITEM) if s not in scopes]
    if missing:
        return Check(
            CheckCode.GRADE_SCOPE,
            "Configured to send grades",
            False,
            f"The registration does not ask for {', '.join(missing)}.",
            REMOTE_CAUSES["no_grade_scope"][1],
            d.id,
        )
    return Check(
        CheckCode.GRADE_SCOPE,
        "Configured to send grades",
        True,
        f"Asks for {', '.join(sorted(scopes))}.",
        None,
        d.id,
    )


# how SISs say they have no such object (the sandbox and OneRoster's `unknownobject`)
_NO_SUCH = ("does not exist", "doesn't exist", "not found", "unknown", "no such", "not exist")


def unknown_student(df: DestinationFacts) -> str | None:
    """The SIS's words when its last refusal of this grade says it has no student under the
    learner's current SIS id (a refusal naming an earlier id is not this learner's problem
    any more); None otherwise. The standard gives no code for it, so the message is read."""
    row, link = df.ledger, df.person_link
    if df.destination.kind not in SIS_KINDS or row is None or link is None or not link.remote_id:
        return None
    if row.state not in (DeliveryState.REJECTED, DeliveryState.RETRYING):
        return None
    said = row.remote_message or said_of(row.reason_text or "")
    if not names_id(said, link.remote_id) or not any(p in said.lower() for p in _NO_SUCH):
        return None
    return said


def names_id(said: str, sourced_id: str) -> bool:
    """Whether a message names this id whole and exactly: a refusal of student 's12' does
    not name 's1' (nor 'S1'). The id ends where a character that cannot continue it does;
    '.', ':' and '/' continue it only when more of the id follows (a sentence's full stop).
    A SIS may name the student only by the request's URL: there the id is whole segments of
    the path ('.../students/s1'), percent-encoded or not."""
    before = r"(?<![\w-])(?<![\w-][.:/])"
    after = r"(?![\w-])(?![.:/][\w-])"
    if re.search(before + re.escape(sourced_id) + after, said) is not None:
        return True
    return any(_in_path(m.group(1), sourced_id) for m in _URL_PATH.finditer(said))


# a URL's path, or a path standing alone ('/students/s1' after a space, a quote or a bracket);
# it ends at its query, its fragment, a space or a closing quote or bracket
_URL_PATH = re.compile(r"(?:[A-Za-z][\w+.-]*://[^/\s?#]*|(?<![^\s\"'(<\[]))(/[^\s?#\"'<>()\[\]]+)")


def _in_path(path: str, sourced_id: str) -> bool:
    """Whether the id is one or more whole segments of the path (an id may hold '/')."""
    parts = sourced_id.split("/")
    for p in {path, path.rstrip(".,;:!")}:  # a sentence's stop after the URL is not the id's
        segments = [unquote(s) for s in p.split("/")]
        if sourced_id in segments:
            return True
        if any(segments[i : i + len(parts)] == parts for i in range(len(segments))):
            return True
    return False


def map_student_remedy(d: Destination, person_id: str) -> str:
    return (
        "Link the learner to the student sourcedId the SIS has: "
        f"`gradesync sis map-student {d.id} {person_id} SOURCEDID`."
    )


def _not_their_sis_id(
    df: DestinationFacts, own: str | None, course_id: str, person_id: str
) -> tuple[str, Remedy | None]:
    """What a learner's diagnosis says of a link to a student other than their SIS id's (""
    for none), and what fixes it. A link made by the SIS id follows it
    (`services.sis.follow_sis_ids`): one picked by hand is kept, but not silently; one made by
    an earlier SIS id (saved before links were marked, or not moved because another learner
    holds that student) stays until the course's learners are linked again."""
    link, d = df.person_link, df.destination
    assert link is not None
    student = link.remote_id
    if not own or own == student:
        return "", None
    # a link saved before links were marked is known as picked by hand by the link of no
    # course beside it (`hand_picked`)
    if df.hand_picked or link.data.get(LINKED_BY) == BY_HAND:
        return (
            f" Linked by hand: the learner's own SIS id is {own!r}, which does not replace a "
            f"student picked by hand; link them to {own!r} if that is theirs.",
            None,
        )
    fix = Remedy(RELINK_SIS_STUDENTS, destination=d.id, course=course_id, person=person_id)
    other = link.data.get(NOT_FOLLOWED)
    if other:
        return (
            f" Linked to {student!r}, not their SIS id {own!r}: when it changed, another "
            f"learner of the course ({other}) was linked to SIS student {own!r}, so this link "
            "was not moved (two learners' grades would go to one student's record). Check both "
            "learners' SIS ids, then link the course's learners again.",
            fix,
        )
    return (
        f" Linked to {student!r}, not their SIS id {own!r}: the link was made by an earlier "
        "SIS id, and stays until the course's learners are linked again.",
        fix,
    )


def launch_check(facts: LearnerActivityFacts, df: DestinationFacts) -> Check:
    d, course = df.destination, facts.course
    name = "The learner launched gradesync from this course"
    if d.kind not in LTI_KINDS:
        linked = df.person_link is not None and bool(df.person_link.remote_id)
        refused = unknown_student(df)
        if df.person_link is not None and refused is not None:
            status = df.ledger.remote_status if df.ledger else None
            answered = f" (HTTP {status})" if status is not None else ""
            return Check(
                CheckCode.MATCHED_IN_SIS,
                "The learner is matched to a student in the SIS",
                False,
                f"SIS id {df.person_link.remote_id!r}, but the SIS has no such student: it "
                f"answered{answered}: {refused}",
                map_student_remedy(d, facts.person.id),
                d.id,
            )
        if df.person_link is not None and linked:
            student, own = df.person_link.remote_id, facts.person.sis_id
            kept, fix = _not_their_sis_id(df, own, course.id, facts.person.id)
            # moved here from another student: what that one's record took stays there
            moved = next(
                (
                    f" {x.remote_message}"
                    for x in df.deliveries
                    if x.outcome == STUDENT_CHANGED
                    and (x.payload or {}).get("student") == student
                    and x.remote_message
                ),
                "",
            )
            return Check(
                CheckCode.MATCHED_IN_SIS,
                "The learner is matched to a student in the SIS",
                True,
                f"SIS id {student!r}.{kept}{moved}",
                fix.words(Reader.CLI) if fix else None,
                d.id,
                reason=fix.code if fix else None,
                fix=fix,
            )
        person = facts.person
        if person.sis_id:
            # given a SIS id after the course's students were mapped: the course's next sync
            # matches them by it (as map-students does), which has not run since
            evidence = (
                f"No SIS student matched to {person.id} yet: their SIS id {person.sis_id!r} "
                "matches them to the SIS's student of that sourcedId once the course's "
                "learners are matched again (the course's next sync does it)."
            )
            code = MATCH_SIS_STUDENTS
        else:
            evidence = f"No SIS student matched to {person.id}: they have no SIS id."
            code = GIVE_SIS_ID
        fix = Remedy(code, destination=d.id, course=course.id, person=person.id)
        return Check(
            CheckCode.MATCHED_IN_SIS,
            "The learner is matched to a student in the SIS",
            False,
            evidence,
            fix.words(Reader.CLI),
            d.id,
            reason=code,
            fix=fix,
        )
    here = [x for x in df.launches if x.course_id == course.id]
    if here:
        latest = max(here, key=lambda x: x.launched_at)
        return Check(
            CheckCode.LAUNCHED_FROM_COURSE,
            name,
            True,
            f"{plural(len(here), 'launch')}; the latest from {latest.where()}.",
            None,
            d.id,
        )
    roster = _roster_check(df, name)
    if roster is not None:
        return roster
    if df.ledger is not None and df.ledger.state is DeliveryState.DELIVERED:
        # The LMS knows the learner in this course (it took the grade): launching from
        # another link of the same LMS is enough there.
        return Check(
            CheckCode.LAUNCHED_FROM_COURSE,
            name,
            True,
            "No launch from this course recorded, but the LMS accepted the grade for this "
            "learner in it.",
            None,
            d.id,
        )
    elsewhere = [x for x in df.launches if x.course_id != course.id]
    other_lms = list(facts.other_launches)
    if elsewhere:
        latest = max(elsewhere, key=lambda x: x.launched_at)
        evidence = (
            f"Never from course {course.id!r}; {plural(len(elsewhere), 'launch')} from another "
            f"course, the latest from {latest.where()}."
        )
    elif other_lms:
        latest = max(other_lms, key=lambda x: x.launched_at)
        evidence = (
            f"Never from {d.name!r}; launched through another LMS connection "
            f"({latest.destination_id}) from {latest.where()}."
        )
    else:
        evidence = (
            f"{facts.person.id} has never launched gradesync from {d.name!r}: they entered "
            "another way (a direct login, or an account the LMS does not know)."
        )
    return Check(
        CheckCode.LAUNCHED_FROM_COURSE,
        name,
        False,
        evidence,
        "The learner must start by clicking a gradesync link in the LMS course where the "
        "grade should land; the waiting grade is sent automatically after that launch.",
        d.id,
    )


_MATCHED_BY = {"sis_id": "SIS id", "email": "email", "lms_user_id": "LMS user id"}


def _roster_check(df: DestinationFacts, name: str) -> Check | None:
    """What the LMS roster (NRPS) says of a learner who never launched: matched to an LMS
    member (grades go out without a launch), or not in the LMS course at all."""
    link, course_link = df.person_link, df.course_link
    if link is not None and link.remote_id and link.data.get("matched_by"):
        key = _MATCHED_BY.get(str(link.data["matched_by"]), str(link.data["matched_by"]))
        return Check(
            CheckCode.LAUNCHED_FROM_COURSE,
            name,
            True,
            f"Enrolled in the LMS, never launched, matched by {key} (LMS user "
            f"{link.remote_id!r}) through the course roster.",
            None,
            df.destination.id,
        )
    roster = (course_link.data.get("roster") or {}) if course_link is not None else {}
    if roster.get("read_at") and (link is None or not link.remote_id):
        return Check(
            CheckCode.LAUNCHED_FROM_COURSE,
            name,
            False,
            f"Not in the LMS course: the course roster read at {roster['read_at']} lists no "
            "member matching this learner, and they never launched.",
            "Enroll the learner in the LMS course (or give them the SIS id or email the LMS "
            "knows them by); the next roster read links them and their grades go out.",
            df.destination.id,
        )
    return None


def course_link_check(df: DestinationFacts, course: Course) -> Check:
    d, link = df.destination, df.course_link
    name = "The course is connected at the destination"
    if link is None or not link.remote_id:
        missing = not_connected(course, d, link)
        return Check(
            CheckCode.COURSE_CONNECTED,
            name,
            False,
            missing.evidence,
            missing.remedy,
            d.id,
            reason=missing.code,
        )
    if d.kind in SIS_KINDS:
        return _sis_class_check(link, name, d.id)
    ctx = link.data.get("context") if isinstance(link.data.get("context"), dict) else {}
    title = (ctx or {}).get("title") or (ctx or {}).get("id")
    dep = link.data.get("deployment_id")
    extra = "".join(
        part
        for part in (
            f" (LMS course {title!r})" if title else "",
            f", deployment {dep}" if dep else "",
        )
    )
    return Check(CheckCode.COURSE_CONNECTED, name, True, f"{link.remote_id}{extra}.", None, d.id)


def _sis_class_check(link: CourseLink, name: str, destination_id: str) -> Check:
    """At a SIS the course is connected by being mapped to one of its classes."""
    school = link.data.get("school")
    return Check(
        CheckCode.COURSE_CONNECTED,
        name,
        True,
        f"Mapped to the SIS class {link.remote_id!r}"
        + (f" (school {school!r})." if school else "."),
        None,
        destination_id,
    )


def column_check(
    df: DestinationFacts,
    activity: Activity,
    refused: tuple[str, int] | None = None,
    *,
    policy: ResolvedPolicy | Reason | None = None,
) -> Check:
    """`refused`: (reason code, learners) when the destination refused the column's results
    (locked, gone, unpublished in the LMS). `policy`: the activity's, to say when no column
    is ever made for it (a practice item, under the minimum points)."""
    d, link = df.destination, df.item_link
    name = "The activity is linked to a gradebook column"
    never = no_column(activity, policy, df.capabilities) if policy is not None else None
    if never is not None and not column_written(d.kind, link):
        # left out by the policy or a person: nothing is broken, and nothing to do here
        return Check(
            CheckCode.COLUMN_LINKED,
            name,
            False,
            f"Not created: no column for {activity.title!r} is made at {d.name!r}, and none "
            f"of its grades is sent. {never.text}",
            None,
            d.id,
            excluded=True,
            reason=never.code,
        )
    if refused is None and df.ledger is not None and df.ledger.reason_code in COLUMN_CODES:
        refused = (df.ledger.reason_code, 1)
    caps = df.capabilities
    unlinked = (
        isinstance(caps, Capabilities)
        and caps.needs_resource_link
        and not (link is not None and link.data.get("resourceLinkId"))
    )
    if unlinked and (link is None or not link.remote_id):
        return Check(
            CheckCode.COLUMN_LINKED,
            name,
            False,
            f"No column for {activity.title!r} at {d.name!r}: it counts grades only on a "
            "column tied to the activity's LTI link, and no launch from that link has been "
            "received.",
            REMOTE_CAUSES["no_resource_link"][1],
            d.id,
        )
    left_out = df.ledger.reason_code if df.ledger is not None else None
    if left_out in BY_DESIGN and not column_written(d.kind, link):
        # left out on purpose (not ticked for the SIS, held for Post grades): its column is
        # written with its first grade sent, and none is missing meanwhile
        return Check(
            CheckCode.COLUMN_LINKED,
            name,
            False,
            f"Not created yet: no column for {activity.title!r} at {d.name!r} until its "
            f"grades are sent, and they are left out on purpose ({left_out}).",
            TO_INCLUDE.get(left_out or ""),
            d.id,
            excluded=True,
            reason=left_out,
        )
    if left_out == PassbackRule.OTHER_INSTALLATION.value and not column_written(d.kind, link):
        # Post grades would not make it: the item under its sourcedId is another's
        return Check(
            CheckCode.COLUMN_LINKED,
            name,
            False,
            f"No column for {activity.title!r} at {d.name!r}: the SIS line item under its "
            "sourcedId is another gradesync installation's, and this one does not write to it.",
            "See the delivery check below for what to do.",
            d.id,
        )
    if link is None or not column_written(d.kind, link):
        # a SIS's link names its line item ahead, before it is written
        return Check(
            CheckCode.COLUMN_LINKED,
            name,
            False,
            f"No column for {activity.title!r} at {d.name!r} yet"
            + (f" (the LMS refused it: {refused[0]})." if refused else "."),
            REMOTE_CAUSES[refused[0]][1]
            if refused
            else "Post grades: gradesync creates the line item in the SIS class."
            if d.kind not in LTI_KINDS
            else lti11_column_remedy(activity.id)
            if d.kind is DestinationKind.LTI11_OUTCOMES
            else "If the LMS link was not created as 'Graded', rebuild it with gradesync's "
            "Deep Linking; otherwise Sync now creates the column.",
            d.id,
        )
    label = link.data.get("label")
    shown = f"{link.remote_id}" + (f" ({label!r})" if label else "")
    if unlinked:
        return Check(
            CheckCode.COLUMN_LINKED,
            name,
            False,
            f"Column {shown} is not tied to the activity's LTI link, so {d.name!r} counts no "
            "grade sent to it.",
            REMOTE_CAUSES["no_resource_link"][1],
            d.id,
        )
    if refused:
        code, n = refused
        return Check(
            CheckCode.COLUMN_LINKED,
            name,
            False,
            f"Column {shown} refuses grades ({code}, {plural(n, 'learner')}): "
            f"{REMOTE_CAUSES[code][0]}.",
            # gradesync makes no column at an LTI 1.1 LMS: its graded link makes one
            lti11_column_remedy(activity.id)
            if code == "line_item_gone" and d.kind is DestinationKind.LTI11_OUTCOMES
            else REMOTE_CAUSES[code][1],
            d.id,
        )
    return Check(CheckCode.COLUMN_LINKED, name, True, f"{shown}.", None, d.id)


COLUMN_CODES = ("line_item_foreign", "line_item_gone", "unpublished", "no_resource_link")


def _score_of(desired: Mapping[str, Any] | None, kind: DestinationKind | str) -> str:
    if not desired:
        return "nothing"
    if learner_excused(desired):
        return excused_text(desired, kind)  # not a bare "no score": the learner is excused
    given = desired.get("score_given")
    top = desired.get("score_maximum")
    if given is None:
        return f"no score ({desired.get('grading_progress')})"
    return f"{float(given):g}/{float(top or 0):g}"


# A grade leaves within seconds of becoming pending. One that waited longer with nothing
# holding it back (no pause, no send due later) and nothing moving at its destination (no
# send there, no run under way, for as long) is not being sent.
STALLED_AFTER = timedelta(minutes=5)


def _moving(queue: DestinationQueue, now: datetime) -> str | None:
    """What shows gradesync sending the destination's grades lately, or None."""
    if queue.run_beat is not None and now - queue.run_beat < STALLED_AFTER:
        return "a sync run is under way"
    if queue.last_send is not None and now - queue.last_send < STALLED_AFTER:
        return f"it last sent one at {when(queue.last_send)}"
    return None


# a rate limit is named as what holds a grade when it alone makes the grades waiting take
# this long to send
RATE_HOLDS_AFTER = timedelta(minutes=1)


def _rate_limit(d: Destination) -> float | None:
    """The destination's rate limit in requests per second (None: none, or unreadable)."""
    try:
        rate = float(d.config.get("rate_per_second") or 0)
    except (TypeError, ValueError):
        return None
    return rate if rate > 0 else None


def _span(seconds: float) -> str:
    if seconds < 120:
        return plural(round(seconds), "second")
    if seconds < 7200:
        return plural(round(seconds / 60), "minute")
    if seconds < 172800:
        return plural(round(seconds / 3600), "hour")
    return plural(round(seconds / 86400), "day")


def _spoken(span: timedelta) -> str:
    """`span` in words: "a minute", "an hour", or a count ("90 seconds", "2 hours")."""
    seconds = span.total_seconds()
    for size, one in ((86400, "a day"), (3600, "an hour"), (60, "a minute"), (1, "a second")):
        if seconds == size:
            return one
    return _span(seconds)


def rate_limit_holds(d: Destination, waiting: int) -> tuple[str, str] | None:
    """When `d`'s rate limit alone makes the `waiting` grades take `RATE_HOLDS_AFTER` or
    more to send: (what it does to them, what to do), in the words both a grade's and the
    destination's diagnosis say. None otherwise."""
    rate = _rate_limit(d)
    if rate is None or waiting / rate < RATE_HOLDS_AFTER.total_seconds():
        return None
    return (
        f"{d.name!r} has a rate limit of {rate:g} requests per second, so sending "
        f"{'them' if waiting > 1 else 'it'} takes about {_span(waiting / rate)}.",
        "Nothing to do if that pace is meant. Otherwise raise or clear the rate limit of "
        f"{d.name!r} (`gradesync destinations limits {shlex.quote(d.id)} --rate-per-second N`, "
        "or `--no-rate-limit`): the grades waiting then go at the new pace at once.",
    )


def rate_limit_check(d: Destination, waiting: int) -> Check | None:
    """A destination with a rate limit: whether it alone holds the `waiting` grades (pending
    or retrying) for `RATE_HOLDS_AFTER` or more."""
    rate = _rate_limit(d)
    if rate is None:
        return None
    name = "The rate limit keeps up with the grades waiting"
    held = rate_limit_holds(d, waiting)
    if held is None:
        return Check(
            CheckCode.RATE_LIMIT,
            name,
            True,
            f"{plural(waiting, 'grade')} waiting to be sent to {d.name!r}, within "
            f"{_spoken(RATE_HOLDS_AFTER)} at its rate limit of {rate:g} requests per second.",
            None,
            d.id,
        )
    said, remedy = held
    verb = "waits" if waiting == 1 else "wait"
    return Check(
        CheckCode.RATE_LIMIT,
        name,
        False,
        f"{plural(waiting, 'grade')} {verb} to be sent to {d.name!r}: {said}",
        remedy,
        d.id,
    )


def pending_said(
    d: Destination, row: LedgerRow, want: str, now: datetime, queue: DestinationQueue
) -> tuple[str, str, str | None]:
    """A grade waiting to be sent: (what holds it, when it is expected to go, the reason
    code behind that remedy when it names a command), from what the records say (a paused
    destination and until when, a send due later, how long it has waited, and what moves at
    the destination: the grades waiting there, its latest send, a run under way). `want`
    names the grade ("7/10", "This grade")."""
    started = waiting_since(row)
    since = f" since {when(started)}" if started else ""
    why = f" ({d.pause_reason})" if d.pause_reason else ""
    if not d.enabled:
        return (
            f"{want} waits to be sent{since}: {d.name!r} is paused{why}, so gradesync sends it "
            "nothing until it is resumed.",
            f"It is sent as soon as an administrator resumes {d.name!r}, with every grade "
            "that waited; nothing is lost meanwhile.",
            None,
        )
    if d.paused_until is not None and d.paused_until > now:
        return (
            f"{want} waits to be sent{since}: {d.name!r} is paused until "
            f"{when(d.paused_until)}{why}.",
            f"Nothing to do: it is sent by itself once the pause ends, at {when(d.paused_until)}.",
            None,
        )
    if row.next_attempt_at is not None and row.next_attempt_at > now:
        return (
            f"{want} waits to be sent{since}; its send is due at {when(row.next_attempt_at)}.",
            f"Nothing to do: it is sent by itself at {when(row.next_attempt_at)}.",
            None,
        )
    others = max(queue.waiting - 1, 0)
    with_others = (
        f", with {plural(others, 'other grade')} waiting to be sent to {d.name!r}" if others else ""
    )
    held = rate_limit_holds(d, queue.waiting)
    if held is not None:
        said, remedy = held
        return (
            f"{want} waits to be sent{since}{with_others}: {said}",
            remedy,
            CheckCode.RATE_LIMIT.value,
        )
    if started is None or now - started < STALLED_AFTER:
        if others:
            return (
                f"{want} is waiting to be sent{since}{with_others}: gradesync sends them in turn.",
                "Nothing to do: it goes in its turn (many grades waiting, as a sync run makes, "
                "take minutes to send). Check again in a few minutes to see it sent.",
                None,
            )
        return (
            f"{want} is waiting to be sent{since}.",
            "Nothing to do: a grade is normally in the gradebook within seconds (a sync run "
            "of many grades sends this one with the others). Check again in a minute to see "
            "it sent.",
            None,
        )
    moving = _moving(queue, now)
    if moving is not None:
        return (
            f"{want} has waited to be sent{since}{with_others}; gradesync is sending "
            f"{'them' if others else repr(d.name) + ' its grades'} ({moving}), and it goes in "
            "its turn.",
            "Nothing to do: a backlog (a sync run of many grades, a gradebook that takes "
            "grades slowly) is sent in turn. Check again in a few minutes to see it sent.",
            None,
        )
    last = (
        f"since {when(queue.last_send)}"
        if queue.last_send is not None
        else f"for {STALLED_AFTER.seconds // 60} minutes"
    )
    return (
        f"{want} has waited to be sent{since}, far longer than the seconds a grade takes, and "
        f"nothing holds it back ({d.name!r} is not paused){with_others}; gradesync has sent "
        f"{d.name!r} nothing {last}, and no sync run is under way: gradesync is not sending it.",
        "Check that a gradesync worker is running (in `gradesync serve`, or `gradesync worker`) "
        "and what its log says; the grade goes once one sends again.",
        PENDING_STALLED,
    )


def delivery_check(df: DestinationFacts, now: datetime) -> Check:
    d, row = df.destination, df.ledger
    name = "The grade is delivered"
    if row is None:
        return Check(
            CheckCode.DELIVERY,
            name,
            False,
            "Not worked out for this destination yet (no ledger row).",
            "Run Sync now for the course; if it stays empty, the course is not connected to "
            "this destination.",
            d.id,
        )
    want = _score_of(row.desired, d.kind)
    if row.state is DeliveryState.DELIVERED:
        return Check(
            CheckCode.DELIVERY,
            name,
            True,
            f"{want} delivered {when(row.delivered_at)}.",
            None,
            d.id,
        )
    if row.state is DeliveryState.PENDING:
        evidence, remedy, reason = pending_said(d, row, want, now, df.queue)
        return Check(CheckCode.DELIVERY, name, False, evidence, remedy, d.id, reason=reason)
    cause = remote_cause(row.reason_code)

    def answered(said: str | None) -> str:
        if row.remote_status is None and not said:
            return ""
        status = f" HTTP {row.remote_status}" if row.remote_status is not None else ""
        return f" The destination answered{status}" + (f": {said}" if said else ".")

    remote = answered(row.remote_message)
    if unknown_student(df) is not None and df.person_link is not None:
        # the matching check above quotes the SIS; this one says what follows from it
        return Check(
            CheckCode.DELIVERY,
            name,
            False,
            f"{want} was refused ({row.reason_code}): the SIS has no student "
            f"{df.person_link.remote_id!r}.",
            map_student_remedy(d, df.person_link.person_id),
            d.id,
            reason=CheckCode.MATCHED_IN_SIS,
        )
    # the row's reason as evidence says what happened, and its remedy is the check's, worded
    # for whoever reads the diagnosis (`Diagnosis.read_over`): never the command line's words
    # quoted to a reader of the API or the console
    reason = said_of(row.reason_text or "")
    words, fix = remedy_of(row.reason_text, d.id)
    if words is None and row.reason_code == "bad_credentials" and (own := credentials_fix(d)):
        words, fix = own.words(Reader.CLI), own  # not the LTI 1.3 registration's words
    if row.state is DeliveryState.RETRYING:
        return Check(
            CheckCode.DELIVERY,
            name,
            False,
            # a destination's asking to wait (a 429) is not a failed try: said as waiting
            f"{want} {'failed ' + plural(row.tries, 'time') if row.tries else 'waits'} "
            f"({code_said(row.reason_code or '')}); next try {when(row.next_attempt_at)}."
            f"{remote}",
            words or (cause[1] if cause else "gradesync retries by itself; see the reason."),
            d.id,
            reason=row.reason_code and current_code(row.reason_code),
            fix=fix,
        )
    if row.state is DeliveryState.REJECTED:
        title = f"{cause[0]}. " if cause else ""
        # the reason is usually the remote's own words: say them once
        said = row.remote_message
        if said and said in reason:
            said = None
        return Check(
            CheckCode.DELIVERY,
            name,
            False,
            f"{title}{want} was refused ({row.reason_code}): {reason}{answered(said)}",
            words
            or (cause[1] if cause else "Fix what the destination's message says, then resync."),
            d.id,
            reason=row.reason_code,
            fix=fix,
        )
    # SKIPPED
    if row.reason_code in BY_DESIGN:
        # left out on purpose (not ticked for the SIS, held for Post grades): said with how
        # to include it, never a failure
        return Check(
            CheckCode.DELIVERY,
            name,
            False,
            f"Left out on purpose ({row.reason_code}): {reason}",
            words or TO_INCLUDE.get(row.reason_code or ""),
            d.id,
            reason=row.reason_code,
            excluded=True,
            fix=fix,
        )
    return Check(
        CheckCode.DELIVERY,
        name,
        False,
        f"Nothing is sent ({row.reason_code}): {reason}",
        words or (cause[1] if cause else None),
        d.id,
        reason=row.reason_code,
        fix=fix,
    )


# delivery log lines that record an event, not a send
_NOT_SENDS = ("overridden", "repair", COLUMN_RESCALED, POINTS_KEPT, STUDENT_CHANGED)


def last_delivery_check(df: DestinationFacts) -> Check:
    d, row = df.destination, df.ledger
    name = "Last delivery"
    sends = [x for x in df.deliveries if x.outcome not in _NOT_SENDS]
    if not sends:
        delivered = row is not None and row.state is DeliveryState.DELIVERED
        return Check(
            CheckCode.LAST_DELIVERY,
            name,
            row is None or delivered or row.state in (DeliveryState.SKIPPED, DeliveryState.PENDING),
            f"Delivered {when(row.delivered_at)}; the delivery log keeps no older send."
            if delivered and row is not None
            else "Nothing has been sent for this learner and activity yet.",
            None,
            d.id,
        )
    last = sends[0]
    sent = ""
    if last.payload:
        given = last.payload.get("scoreGiven", last.payload.get("score_given"))
        top = last.payload.get("scoreMaximum", last.payload.get("score_maximum"))
        stamp = last.payload.get("timestamp")
        if given is not None or top is not None:
            # a result with no score (an excused learner at an LMS) read "sent None/10.0"
            score = f"{given}/{top}" if given is not None else "with no score"
            sent = f" sent {score}" + (f" with timestamp {stamp}" if stamp else "")
    said = [f"HTTP {last.remote_status}"] if last.remote_status is not None else []
    if clause := as_clause(last.remote_message or ""):
        said.append(clause)
    answer = "; the destination answered " + ": ".join(said) if said else ""
    run = f" (run {last.run_id})" if last.run_id else " (auto sync)"
    retry = ""
    if row is not None and row.state is DeliveryState.RETRYING:
        retry = f"; next retry {when(row.next_attempt_at)}"
    ok = last.outcome == "delivered"
    event = df.deliveries[0]
    if event is not last:
        clause = as_clause(event.remote_message or "")
        since = f" ({clause})" if clause else ""
        retry += f"; since then: {event.outcome} on {when(event.sent_at)}{since}"
    return Check(
        CheckCode.LAST_DELIVERY,
        name,
        ok,
        f"{when(last.sent_at)}{run}: {last.outcome}{sent}{answer}{retry}.",
        None if ok else "See the delivery check above for what to do.",
        d.id,
    )


def lms_agrees_check(df: DestinationFacts) -> Check | None:
    row = df.ledger
    if row is None or row.reason_code not in (OVERRIDDEN, POINTS_KEPT):
        return None
    return Check(
        CheckCode.LMS_AGREES,
        "The LMS still holds gradesync's grade",
        False,
        f"{row.reason_text or 'Changed in the LMS.'} {row.remote_message or ''}".strip(),
        REMOTE_CAUSES[row.reason_code][1],
        df.destination.id,
    )
