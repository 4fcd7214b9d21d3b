"""The pure rules: override detection and policy, repair marking, check order, triage."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.routing import APIRoute

from gradesync.domain import remedies
from gradesync.domain.capabilities import Capabilities
from gradesync.domain.columns import RESCALE_KEY, written_link
from gradesync.domain.diagnosis import (
    REMOTE_CAUSES,
    Check,
    DeliveryFact,
    DestinationFacts,
    KeyState,
    LaunchFact,
    LearnerActivityFacts,
    OtherAccount,
    RejectionFact,
    diagnose_learner_activity,
    remote_cause,
)
from gradesync.domain.diagnosis.destination import (
    DestinationDiagnosisFacts,
    ProbeStep,
    diagnose_destination,
)
from gradesync.domain.diagnosis.destination_checks import destination_ready_check
from gradesync.domain.ledger import desired_to_json, next_score_timestamp, result_hash
from gradesync.domain.model import (
    Activity,
    ActivityKind,
    Attempt,
    Course,
    CourseLink,
    DeliveryState,
    Destination,
    DestinationKind,
    Enrollment,
    ItemLink,
    LedgerKey,
    LedgerRow,
    Person,
    PersonLink,
    Role,
)
from gradesync.domain.overrides import (
    LastRescale,
    RemoteResult,
    apply_kept,
    apply_override,
    detect_overrides,
    detect_rescaled,
    keeps_points,
    open_rescale,
    points_back,
    reads_on_points_sent,
    repaired,
    rescale_entry,
)
from gradesync.domain.pauses import PauseCause
from gradesync.domain.policy import DEFAULT_POLICY, DesiredResult
from gradesync.domain.triage import (
    CourseDestinationFacts,
    CourseFacts,
    CourseTriage,
    Scope,
    Symptom,
    triage_course,
)
from gradesync.web.api import courses as courses_api
from gradesync.web.api.router import PREFIX
from gradesync.web.api.schemas import EnrollmentBody

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
KEY = LedgerKey("t", "d", "a1", "p1")


def _row(given: float | None = 7.0, state: DeliveryState = DeliveryState.DELIVERED) -> LedgerRow:
    r = DesiredResult(
        given, 10.0, "FullyGraded", "Completed", None, False, False, False, None, "b", None
    )
    h = result_hash(r)
    return LedgerRow(
        KEY, state, h, desired_to_json(r), h, NOW - timedelta(hours=1), NOW - timedelta(hours=1)
    )


def test_same_grade_on_another_scale_is_not_an_override() -> None:
    # 7/10 sent, the LMS shows 70/100 (it scaled the column): the same grade
    assert detect_overrides({"p1": RemoteResult("p1", 70.0, 100.0)}, [_row()]) == []


def test_an_edit_and_a_cleared_grade_are_overrides() -> None:
    (edit,) = detect_overrides({"p1": RemoteResult("p1", 2.0, 10.0, None, NOW)}, [_row()])
    assert (edit.sent_given, edit.remote_given, edit.cleared) == (7.0, 2.0, False)
    (cleared,) = detect_overrides({"p1": RemoteResult("p1", None, 10.0)}, [_row()])
    assert cleared.cleared and "cleared" in cleared.describe()


def test_the_grade_sent_on_a_column_whose_points_changed_is_rescaled_not_overridden() -> None:
    """7/10 sent, the LMS holds 7 of 99: its column's points were changed there, nobody edited
    the grade (it was said as an override, and a course keeping LMS edits kept 7 %)."""
    moved = {"p1": RemoteResult("p1", 7.0, 99.0, None, NOW)}
    assert detect_overrides(moved, [_row()]) == []
    (r,) = detect_rescaled(moved, [_row()])
    assert (r.key, r.sent_given, r.sent_maximum, r.remote_maximum) == (KEY, 7.0, 10.0, 99.0)
    assert r.describe().startswith("The LMS column's points were changed to 99 (gradesync wrote")
    # an edit of the grade on top stays an override; the same grade scaled is neither
    edited = {"p1": RemoteResult("p1", 9.0, 99.0)}
    assert detect_rescaled(edited, [_row()]) == [] and len(detect_overrides(edited, [_row()])) == 1
    scaled = {"p1": RemoteResult("p1", 70.0, 100.0)}
    assert detect_rescaled(scaled, [_row()]) == [] == detect_overrides(scaled, [_row()])
    assert detect_rescaled(moved, [_row(state=DeliveryState.PENDING)]) == []
    # a maximum the LMS left out (AGS reads it as 1) says nothing of the column's points
    unsaid = {"p1": RemoteResult("p1", 7.0, 1.0, None, NOW, maximum_said=False)}
    assert detect_rescaled(unsaid, [_row()]) == []
    # nor does a zero, on whatever points
    assert detect_rescaled({"p1": RemoteResult("p1", 0.0, 99.0)}, [_row(given=0.0)]) == []


def test_a_column_still_on_the_lms_s_points_after_it_was_put_back_is_left_and_said_once() -> None:
    """A rescale found before (to the same points), the grade sent after it, and the LMS
    still reads it on its own points: it keeps them, and writing the column and resending
    again would repeat for ever. Left as the LMS holds it, recorded once, cleared once the
    LMS reads the grade as sent again."""
    moved = {"p1": RemoteResult("p1", 7.0, 99.0, None, NOW)}
    row = _row()  # delivered an hour ago
    (r,) = detect_rescaled(moved, [row])
    before = LastRescale(NOW - timedelta(hours=2), 99.0)
    assert keeps_points(r, row.delivered_at, before)
    assert not keeps_points(r, row.delivered_at, None)  # never put back: put back first
    assert not keeps_points(r, row.delivered_at, LastRescale(NOW - timedelta(hours=2), 50.0))
    # the grade has not gone since the column was put back: it is sent again first
    assert not keeps_points(r, row.delivered_at, LastRescale(NOW, 99.0))
    kept = apply_kept(row, r, NOW)
    assert kept is not None and kept.state is DeliveryState.DELIVERED
    assert kept.reason_code == "points_kept" and "keeps its own points (99)" in (
        kept.reason_text or ""
    )
    assert apply_kept(kept, r, NOW) is None  # already recorded
    assert points_back(moved, [kept]) == []
    assert points_back({"p1": RemoteResult("p1", 7.0, 10.0)}, [kept]) == [KEY]
    assert points_back({"p1": RemoteResult("p1", 7.0, 10.0)}, [row]) == []  # nothing to clear


def test_a_rescale_bounds_keeping_points_until_the_column_reads_on_points_sent() -> None:
    """The rescale put back is kept on the column's link, and is the one bound of
    `keeps_points`; a read-back that finds the grade as sent on the points sent ends it (so
    the same points set again later are a new rescale, not the LMS keeping its own)."""
    moved = {"p1": RemoteResult("p1", 7.0, 99.0, None, NOW)}
    (r,) = detect_rescaled(moved, [_row()])
    link = ItemLink("t", "d", "a1", "li", None, {RESCALE_KEY: rescale_entry(r, NOW)})
    assert open_rescale(link) == LastRescale(NOW, 99.0)
    assert open_rescale(replace(link, data={})) is None
    assert open_rescale(None) is None
    assert reads_on_points_sent({"p1": RemoteResult("p1", 7.0, 10.0)}, [_row()])
    assert not reads_on_points_sent(moved, [_row()])
    assert not reads_on_points_sent(
        {"p1": RemoteResult("p1", 7.0, 10.0)}, [_row(state=DeliveryState.PENDING)]
    )
    # the grade read back changed by hand is still on the points sent: the column is right
    assert reads_on_points_sent({"p1": RemoteResult("p1", 5.0, 10.0)}, [_row()])
    # a maximum the destination left out says nothing of the column's points
    assert not reads_on_points_sent(
        {"p1": RemoteResult("p1", 7.0, 10.0, maximum_said=False)}, [_row()]
    )


def test_a_column_write_refused_for_a_later_change_saves_what_it_found_beside_it() -> None:
    began = ItemLink("t", "d", "a1", "", "h0", {"sync_to_sis": True, "held": True})
    written = ItemLink(
        "t", "d", "a1", "li-new", "h1", {"sync_to_sis": True, "held": True, "line_items": {}}
    )
    assert written_link(None, written, [began], read=began) == (written, True)
    # as written: the write's link and what it changed; verify's key, and the keys it left
    # out, as stored
    stored = replace(began, data={**began.data, RESCALE_KEY: {"at": "x"}})
    saved, as_written = written_link(
        stored, replace(written, data={"label": "Q"}), [began], read=began
    )
    assert as_written
    assert saved.data == {"sync_to_sis": True, "held": True, "label": "Q", RESCALE_KEY: {"at": "x"}}
    assert (saved.remote_id, saved.details_hash) == ("li-new", "h1")
    # a person's change since: their hash and keys, the write's line item and findings
    changed = replace(began, details_hash="look:p", data={"sync_to_sis": True})
    saved, as_written = written_link(changed, written, [began], read=began)
    assert not as_written
    assert (saved.remote_id, saved.details_hash) == ("li-new", "look:p")
    assert saved.data == {"sync_to_sis": True, "line_items": {}}
    # a line item a person named meanwhile is theirs, its data whole (not the write's)
    launched = replace(changed, remote_id="li-lms")
    saved, _ = written_link(launched, written, [began], read=began)
    assert (saved.remote_id, saved.data) == ("li-lms", launched.data)
    # as on a column's first write: its label and points are not given to another line item
    first = replace(written, data={"label": "Q", "scoreMaximum": 10})
    other = ItemLink("t", "d", "a1", "li-edx", "look:l", {"resourceLinkId": "rl"})
    assert written_link(other, first, [first], read=None)[0].data == {"resourceLinkId": "rl"}


def test_a_column_write_stores_only_what_it_changed_over_what_is_stored() -> None:
    """Whichever way a column write ends, a key it did not change is stored as it is now
    (a person's change saved after the write read the column, whatever its key: no list
    names them), and a key it changed is its own unless another changed it meanwhile."""
    read = ItemLink("t", "d", "a1", "rl", "h0", {"sourcedids": {"p1": "s1"}, "label": "Old"})
    written = replace(read, details_hash="h1", data={**read.data, "label": "New", "tag": "t"})
    launched = {"sourcedids": {"p1": "s1", "p2": "s2"}, "label": "Old", "a_new_key": 1}
    for hash_now, accepted in (("h0", True), ("look:p", False)):
        stored = replace(read, details_hash=hash_now, data=launched)
        saved, as_written = written_link(stored, written, [read, written], read=read)
        assert as_written is accepted
        assert saved.details_hash == ("h1" if accepted else "look:p")
        assert saved.data == {**launched, "label": "New", "tag": "t"}
    # a key the write changed that another changed too since: theirs
    renamed = replace(read, data={**read.data, "label": "By hand"})
    saved, _ = written_link(renamed, written, [read, written], read=read)
    assert saved.data == {"sourcedids": {"p1": "s1"}, "label": "By hand", "tag": "t"}
    # the stored link is an earlier one the writer wrote (its saves run apart): the write's
    earlier = replace(read, data={"sourcedids": {"p1": "s1"}, "label": "Older"})
    saved, as_written = written_link(earlier, written, [earlier, read, written], read=read)
    assert as_written and saved.data == written.data
    # no link was read: the keys a link made meanwhile holds are its own
    made = replace(read, details_hash=None, data={"resourceLinkId": "rl-launch"})
    first = replace(written, data={"resourceLinkId": "rl-echo", "label": "New"})
    saved, as_written = written_link(made, first, [first], read=None)
    assert not as_written and saved.data == {"resourceLinkId": "rl-launch", "label": "New"}


def test_only_rows_believed_delivered_are_judged() -> None:
    remote = {"p1": RemoteResult("p1", 2.0, 10.0)}
    assert detect_overrides(remote, [_row(state=DeliveryState.PENDING)]) == []
    assert detect_overrides(remote, [_row(given=None)]) == []  # excused/pending: no score
    assert detect_overrides({}, [_row()]) == []  # not listed by the LMS: not judged


def test_keep_records_once_and_gradesync_wins_moves_the_timestamp() -> None:
    lms_time = NOW + timedelta(hours=2)  # the LMS's clock is ahead
    (o,) = detect_overrides({"p1": RemoteResult("p1", 2.0, 10.0, None, lms_time)}, [_row()])
    kept = apply_override(_row(), o, True, NOW)
    assert kept is not None and kept.state is DeliveryState.DELIVERED
    assert kept.reason_code == "overridden"
    assert apply_override(kept, o, True, NOW) is None  # already recorded
    wins = apply_override(_row(), o, False, NOW)
    assert wins is not None and wins.state is DeliveryState.PENDING
    assert next_score_timestamp(wins.last_timestamp, NOW) > lms_time


def test_repair_resends_unchanged_grades_but_never_invents_one() -> None:
    fixed = repaired(_row(), NOW + timedelta(minutes=5), NOW)
    assert fixed is not None and fixed.state is DeliveryState.PENDING
    assert next_score_timestamp(fixed.last_timestamp, NOW) > NOW + timedelta(minutes=5)
    skipped = LedgerRow(KEY, DeliveryState.SKIPPED, reason_code="not_a_learner")
    assert repaired(skipped, None, NOW) is None


def _facts(**kw: object) -> LearnerActivityFacts:
    course = Course("t", "c1", "Bio")
    d = Destination("t", "d", DestinationKind.LTI13_AGS, "Canvas")
    base: dict[str, object] = dict(
        now=NOW,
        course=course,
        activity=Activity("t", "a1", "c1", "Quiz", 10.0),
        person=Person("t", "p1", "Ada Lovelace", "ada@x"),
        enrollment=Enrollment("t", "c1", "p1", Role.LEARNER),
        attempts=(Attempt("t", "e1", "a1", "p1", 7.0, 10.0, NOW - timedelta(days=1)),),
        due_override=None,
        policy=DEFAULT_POLICY,
        destinations=(
            DestinationFacts(
                d,
                Capabilities(),
                CourseLink("t", "d", "c1", "https://lms/li"),
                ItemLink("t", "d", "a1", "https://lms/li/1"),
                None,
                (LaunchFact("d", "c1", NOW - timedelta(days=2)),),
                _row(),
            ),
        ),
    )
    base.update(kw)
    return LearnerActivityFacts(**base)  # type: ignore[arg-type]


def test_checks_come_in_the_support_engineers_order() -> None:
    d = diagnose_learner_activity(_facts())
    codes = [c.code for c in d.checks]
    assert codes[:9] == [
        "course_sync_on",
        "activity_published",
        "activity_graded",
        "activity_sync_enabled",
        "enrolled_as_learner",
        "attempt_recorded",
        "inside_course_dates",
        "counted_attempt",
        "duplicate_accounts",
    ]
    assert codes.index("launched_from_course") < codes.index("delivery")
    assert d.ok, d.failed


def test_the_summary_names_the_check_that_failed_not_what_passing_means() -> None:
    """A check's name says what passing means ("The grade is delivered"): the summary said
    it before the failed check's evidence ("The grade is delivered: 7/10 waits to be sent"),
    as though the grade were delivered. It says the check failed, and how many did."""
    base = _facts()
    waiting = replace(_row(), state=DeliveryState.PENDING, delivered_at=None, updated_at=NOW)
    at_lms = (replace(base.destinations[0], ledger=waiting),)
    one = diagnose_learner_activity(replace(base, destinations=at_lms))
    n = len(one.checks)
    [failed] = one.failed
    assert failed.code == "delivery" and failed.evidence.startswith("7/10 is waiting to be sent")
    assert one.summary == f"1 of {n} checks failed (The grade is delivered): {failed.evidence}"
    two = diagnose_learner_activity(replace(base, enrollment=None, destinations=at_lms))
    first = two.failed[0]
    assert first.code == "enrolled_as_learner" and len(two.failed) == 2
    assert two.summary == (
        f"2 of {len(two.checks)} checks failed, the first ({first.name}): {first.evidence}"
    )
    assert diagnose_learner_activity(base).summary == f"All {n} checks passed."


def test_a_wrong_scope_registration_and_a_duplicate_fail_with_remedies() -> None:
    base = _facts()
    d = Destination(
        "t",
        "d",
        DestinationKind.LTI13_AGS,
        "Canvas",
        config={"scopes": ["https://purl.imsglobal.org/spec/lti-ags/scope/score"]},
    )
    facts = replace(
        base,
        duplicates=(OtherAccount(Person("t", "p9", "Ada Lovelace", "ada@x"), "email", 2),),
        destinations=(replace(base.destinations[0], destination=d),),
    )
    diag = diagnose_learner_activity(facts)
    dup = diag.check("duplicate_accounts")
    assert dup is not None and not dup.passed and "p9" in dup.evidence and dup.remedy
    scope = diag.check("grade_scope", "d")
    assert scope is not None and not scope.passed and "lineitem" in scope.evidence
    assert "Assignment and Grade Services" in (scope.remedy or "")


def test_triage_puts_course_wide_causes_first() -> None:
    course = Course("t", "c1", "Bio")
    d = Destination(
        "t",
        "d",
        DestinationKind.LTI13_AGS,
        "Canvas",
        enabled=False,
        pause_reason="misconfigured: no grade scope",
    )
    rows = (
        KeyState("d", "a1", "p1", DeliveryState.DELIVERED),
        KeyState("d", "a1", "p2", DeliveryState.SKIPPED, "no_person_link"),
    )
    caps = Capabilities()
    paused = CourseFacts(
        NOW,
        course,
        (Activity("t", "a1", "c1", "Quiz", 10.0),),
        {"a1": DEFAULT_POLICY},
        (CourseDestinationFacts(d, caps, CourseLink("t", "d", "c1", "u"), {}),),
        rows,
    )
    t = triage_course(paused)
    assert t.symptom is Symptom.NOTHING_SYNCING
    assert [c.code for c in t.causes][:1] == ["destination_paused"]
    ok = CourseFacts(
        NOW,
        course,
        paused.activities,
        paused.policy,
        (
            CourseDestinationFacts(
                Destination("t", "d", DestinationKind.LTI13_AGS, "Canvas"),
                caps,
                CourseLink("t", "d", "c1", "u"),
                {"a1": ItemLink("t", "d", "a1", "u/1")},
            ),
        ),
        rows,
    )
    t2 = triage_course(ok)
    assert t2.symptom is Symptom.SOME_LEARNERS
    assert t2.cause("not_launched") is not None and t2.cause("not_launched").learners == ("p2",)  # type: ignore[union-attr]


def test_an_activity_left_out_on_purpose_is_excluded_not_failed() -> None:
    base = _facts()
    diag = diagnose_learner_activity(
        replace(base, activity=replace(base.activity, sync_enabled=False))
    )
    opted_out = diag.check("activity_sync_enabled")
    assert opted_out is not None and not opted_out.passed and opted_out.excluded
    counted = diag.check("counted_attempt")
    assert counted is not None and counted.excluded
    assert diag.summary.startswith(f"Excluded on purpose ({opted_out.name}): ")
    assert opted_out.as_json()["excluded"] is True
    # something broken is still a failure, not an exclusion
    broken = diagnose_learner_activity(
        replace(base, activity=replace(base.activity, published=False))
    )
    unpublished = broken.check("activity_published")
    assert unpublished is not None and not unpublished.passed and not unpublished.excluded


def test_an_lti11_column_is_made_by_a_graded_link_not_by_deep_linking() -> None:
    """LTI 1.1 has no Deep Linking and gradesync cannot create its columns: a missing one is
    made by a graded link naming the activity, opened once."""
    base = _facts()
    lms11 = Destination("t", "d", DestinationKind.LTI11_OUTCOMES, "Moodle")
    facts = replace(
        base,
        destinations=(replace(base.destinations[0], destination=lms11, item_link=None),),
    )
    column = diagnose_learner_activity(facts).check("column_linked", "d")
    assert column is not None and not column.passed
    remedy = column.remedy or ""
    assert "Deep Linking" not in remedy and "Sync now" not in remedy, remedy
    assert "activity_id custom parameter is 'a1'" in remedy and "open it once" in remedy


def test_a_sis_gets_sis_advice_not_deep_linking() -> None:
    course = Course("t", "c1", "Bio")
    small = Activity("t", "a1", "c1", "Reading check", 0.5)
    rows = (KeyState("d", "a1", "p1", DeliveryState.SKIPPED, "below_minimum_points"),)

    def triage(kind: DestinationKind) -> str:
        facts = CourseFacts(
            NOW,
            course,
            (small,),
            {"a1": DEFAULT_POLICY},
            (
                CourseDestinationFacts(
                    Destination("t", "d", kind, "District SIS"),
                    Capabilities(),
                    CourseLink("t", "d", "c1", "cls-1"),
                    {},
                ),
            ),
            rows,
        )
        cause = triage_course(facts).cause("not_graded")
        assert cause is not None
        return cause.remedy

    assert "Deep Linking" in triage(DestinationKind.LTI13_AGS)
    sis = triage(DestinationKind.ONEROSTER_REST)
    assert "Deep Linking" not in sis and "post grades" in sis


def test_course_triage_gives_an_lti11_lms_the_graded_link_remedy_not_deep_linking() -> None:
    """LTI 1.1 has no Deep Linking and gradesync cannot create its columns: the course's
    triage says, as `doctor` does, to add a graded link naming the activity and open it."""
    course = Course("t", "c1", "Physics")
    small = Activity("t", "a1", "c1", "Reading check", 0.5)
    quiz = Activity("t", "q1", "c1", "Quiz 1", 10)
    rows = (
        KeyState("d", "a1", "p1", DeliveryState.SKIPPED, "below_minimum_points"),
        KeyState("d", "q1", "p1", DeliveryState.REJECTED, "no_launch"),
        KeyState("d", "q0", "p1", DeliveryState.DELIVERED),
    )

    def triage(kind: DestinationKind, code: str) -> str:
        facts = CourseFacts(
            NOW,
            course,
            (small, quiz),
            {"a1": DEFAULT_POLICY, "q1": DEFAULT_POLICY},
            (
                CourseDestinationFacts(
                    Destination("t", "d", kind, "Moodle"),
                    Capabilities(),
                    CourseLink("t", "d", "c1", "ctx-1"),
                    {},
                ),
            ),
            rows,
        )
        cause = triage_course(facts).cause(code)
        assert cause is not None, code
        return cause.remedy

    for code, activity in (("not_graded", "a1"), ("no_column", "q1")):
        assert "Deep Linking" in triage(DestinationKind.LTI13_AGS, code)
        lti11 = triage(DestinationKind.LTI11_OUTCOMES, code)
        assert "Deep Linking" not in lti11 and "Sync now" not in lti11, lti11
        assert f"activity_id custom parameter is {activity!r}" in lti11, lti11
        assert "open it once" in lti11, lti11


def test_a_column_gone_at_an_lti11_lms_is_made_again_by_its_graded_link_not_by_a_sync() -> None:
    """gradesync makes no column at an LTI 1.1 LMS: a column gone there is the LMS's graded
    link to add again, not a Sync now that "creates the column again" (as at LTI 1.3)."""
    course = Course("t", "c1", "Physics")
    quiz = Activity("t", "q1", "c1", "Quiz 1", 10)
    rows = (KeyState("d", "q1", "p1", DeliveryState.REJECTED, "line_item_gone"),)

    def triage(kind: DestinationKind) -> str:
        d = Destination("t", "d", kind, "Moodle")
        link = CourseLink("t", "d", "c1", "ctx-1")
        facts = CourseFacts(
            NOW,
            course,
            (quiz,),
            {"q1": DEFAULT_POLICY},
            (CourseDestinationFacts(d, Capabilities(), link, {}),),
            rows,
        )
        cause = triage_course(facts).cause("column_gone")
        assert cause is not None
        return cause.remedy

    assert "Sync now" in triage(DestinationKind.LTI13_AGS)
    lti11 = triage(DestinationKind.LTI11_OUTCOMES)
    assert "Sync now" not in lti11 and "activity_id custom parameter is 'q1'" in lti11, lti11


def test_a_sis_course_is_connected_by_its_class_not_by_a_launch() -> None:
    base = _facts()
    sis = Destination("t", "sis", DestinationKind.ONEROSTER_CSV, "District SIS")
    at_sis = replace(base.destinations[0], destination=sis, launches=())

    def connected(link: CourseLink | None) -> tuple[bool, str, str | None]:
        facts = replace(base, destinations=(replace(at_sis, course_link=link),))
        check = diagnose_learner_activity(facts).check("course_connected", "sis")
        assert check is not None
        return check.passed, check.evidence, check.remedy

    mapped = CourseLink("t", "sis", "c1", "cls-1", {"school": "sch-1"})
    assert connected(mapped) == (
        True,
        "Mapped to the SIS class 'cls-1' (school 'sch-1').",
        None,
    )
    passed, evidence, remedy = connected(None)
    assert not passed
    assert "not connected to District SIS: it is not mapped to a SIS class" in evidence
    assert remedy is not None and "gradesync sis map-class sis c1 CLASS_SOURCEDID" in remedy
    assert "launch" not in evidence + remedy


def test_a_practice_item_with_points_is_not_said_to_be_worth_0_points() -> None:
    base = _facts()
    practice = replace(base.activity, title="D", kind=ActivityKind.PRACTICE)
    diag = diagnose_learner_activity(replace(base, activity=practice))
    graded, counted = diag.check("activity_graded"), diag.check("counted_attempt")
    assert graded is not None and "(practice, 10 points)" in graded.evidence
    assert counted is not None and counted.excluded
    assert "0 points" not in counted.evidence
    assert "'D' is a practice item (its kind is 'practice')" in counted.evidence


def test_counts_are_said_in_plain_english() -> None:
    from gradesync.domain.diagnosis.checks import plural

    assert [plural(n, "launch") for n in (1, 6)] == ["1 launch", "6 launches"]
    assert [plural(n, "result") for n in (0, 1)] == ["0 results", "1 result"]
    assert plural(2, "class") == "2 classes"


def _two_destinations(
    lms_rows: tuple[KeyState, ...], sis_rows: tuple[KeyState, ...], *, lms_paused: bool
) -> CourseFacts:
    """Bio at an LMS and a SIS; a2 ("pol") is on purpose not ticked for the SIS."""
    course = Course("t", "c1", "Bio")
    lms = Destination(
        "t",
        "lms",
        DestinationKind.LTI13_AGS,
        "Canvas",
        enabled=not lms_paused,
        pause_reason="paused by an admin" if lms_paused else None,
    )
    sis = Destination("t", "sis", DestinationKind.ONEROSTER_REST, "District SIS")
    return CourseFacts(
        NOW,
        course,
        (Activity("t", "a1", "c1", "Quiz", 10.0), Activity("t", "a2", "c1", "Policy", 10.0)),
        {"a1": DEFAULT_POLICY, "a2": DEFAULT_POLICY},
        (
            CourseDestinationFacts(
                lms,
                Capabilities(),
                CourseLink("t", "lms", "c1", "u"),
                {a: ItemLink("t", "lms", a, f"u/{a}") for a in ("a1", "a2")},
            ),
            CourseDestinationFacts(
                sis,
                Capabilities(),
                CourseLink("t", "sis", "c1", "cls-1"),
                {"a1": ItemLink("t", "sis", "a1", "li-1", data={"sync_to_sis": True})},
            ),
        ),
        lms_rows + sis_rows,
    )


_NOT_SELECTED = tuple(
    KeyState("sis", "a2", p, DeliveryState.SKIPPED, "not_selected_for_sis") for p in ("p1", "p2")
)


def test_an_activity_not_ticked_for_the_sis_is_left_out_not_a_problem() -> None:
    delivered = tuple(
        KeyState(d, a, p, DeliveryState.DELIVERED)
        for d, a in (("lms", "a1"), ("lms", "a2"), ("sis", "a1"))
        for p in ("p1", "p2")
    )
    t = triage_course(_two_destinations(delivered, _NOT_SELECTED, lms_paused=False))
    assert t.symptom is Symptom.ALL_SYNCING
    assert t.problems == () and t.counts["problems"] == 0
    assert t.cause("no_column") is None  # the SIS needs no line item for it
    left_out = t.cause("not_selected_for_sis")
    assert left_out is not None and left_out.excluded
    assert (left_out.destination_id, left_out.activities) == ("sis", ("a2",))
    assert t.as_json()["excluded"][0]["code"] == "not_selected_for_sis"
    assert all(not causes for causes in t.as_json()["causes"].values())


def test_an_activity_excluded_from_sync_is_said_but_is_not_a_problem() -> None:
    facts = _two_destinations(
        (KeyState("lms", "a1", "p1", DeliveryState.DELIVERED),),
        (KeyState("sis", "a1", "p1", DeliveryState.DELIVERED),),
        lms_paused=False,
    )
    opted_out = replace(facts.activities[1], sync_enabled=False)
    rows = (*facts.rows, KeyState("lms", "a2", "p1", DeliveryState.SKIPPED, "sync_disabled"))
    t = triage_course(replace(facts, activities=(facts.activities[0], opted_out), rows=rows))
    assert t.symptom is Symptom.ALL_SYNCING and t.problems == ()
    assert [(c.code, c.excluded) for c in t.excluded] == [("sync_disabled", True)]


def test_a_paused_lms_does_not_say_nothing_syncs_while_the_sis_delivers() -> None:
    waiting = tuple(KeyState("lms", "a1", p, DeliveryState.PENDING) for p in ("p1", "p2"))
    sent = tuple(KeyState("sis", "a1", p, DeliveryState.DELIVERED) for p in ("p1", "p2"))
    t = triage_course(_two_destinations(waiting, sent + _NOT_SELECTED, lms_paused=True))
    assert t.symptom is Symptom.SOME_DESTINATIONS
    assert t.destinations == {"lms": Symptom.NOTHING_SYNCING, "sis": Symptom.ALL_SYNCING}
    assert [(c.code, c.destination_id) for c in t.problems] == [("destination_paused", "lms")]
    assert t.as_json()["destinations"]["sis"]["symptom"] == "all_syncing"
    # with nothing delivered at the SIS either, nothing syncs at all
    nothing = triage_course(_two_destinations(waiting, _NOT_SELECTED, lms_paused=True))
    assert nothing.symptom is Symptom.NOTHING_SYNCING


def test_a_concluded_lms_course_is_judged_at_the_lms_alone() -> None:
    refused = (
        KeyState("lms", "a1", "p1", DeliveryState.REJECTED, "course_concluded", "Concluded."),
    )
    sent = (KeyState("sis", "a1", "p1", DeliveryState.DELIVERED),)
    t = triage_course(_two_destinations(refused, sent, lms_paused=False))
    assert t.symptom is Symptom.SOME_DESTINATIONS
    assert t.destinations["lms"] is Symptom.NOTHING_SYNCING
    concluded = t.cause("course_concluded")
    assert concluded is not None and concluded.destination_id == "lms"


def _refused_at_sis(student: str, said: str) -> DestinationFacts:
    """The learner's result at a OneRoster SIS, linked to `student` and refused with the
    SIS's words `said`."""
    refused = replace(
        _row(),
        state=DeliveryState.REJECTED,
        reason_code="invalid_data",
        reason_text=said,
        remote_status=422,
        remote_message=said,
    )
    return DestinationFacts(
        Destination("t", "sis", DestinationKind.ONEROSTER_REST, "District SIS"),
        Capabilities(),
        CourseLink("t", "sis", "c1", "cls-1", {"school": "sch-1"}),
        ItemLink("t", "sis", "a1", "li-1", data={"sync_to_sis": True}),
        PersonLink("t", "sis", "p1", student),
        (),
        refused,
    )


def test_a_student_the_sis_does_not_have_fails_the_matching_check_once() -> None:
    base = _facts()
    said = "PUT result gs-r-1: result.student.sourcedId: student 'w5-ghost' does not exist"

    def diagnose(student: str) -> tuple[Check, Check, str]:
        at_sis = _refused_at_sis(student, said)
        diag = diagnose_learner_activity(replace(base, destinations=(at_sis,)))
        matched, delivered = diag.check("matched_in_sis"), diag.check("delivery")
        assert matched is not None and delivered is not None
        return matched, delivered, diag.summary

    matched, delivered, summary = diagnose("w5-ghost")
    assert not matched.passed and "w5-ghost" in matched.evidence
    assert matched.evidence.count("does not exist") == 1
    assert matched.remedy == (
        "Link the learner to the student sourcedId the SIS has: "
        "`gradesync sis map-student sis p1 SOURCEDID`."
    )
    assert not delivered.passed and "does not exist" not in delivered.evidence
    assert "no student 'w5-ghost'" in delivered.evidence
    assert delivered.remedy == matched.remedy
    assert summary.count("does not exist") == 1
    # an instructor, who cannot run the command, reads what to ask for, on both checks
    for check in (matched, delivered):
        assert check.remedy is not None
        assert remedies.for_instructor(check.remedy_code, check.remedy) == (
            "Ask a gradesync administrator to link the learner to their student in the SIS."
        )
    # once linked to another student, the old refusal is no longer this learner's matching
    matched, delivered, _ = diagnose("w5-s3")
    assert matched.passed and "w5-s3" in matched.evidence
    assert delivered.evidence.count("does not exist") == 1  # said once, not twice


def test_a_refusal_of_another_student_whose_id_contains_the_learners_is_not_theirs() -> None:
    base = _facts()

    def matched(student: str, said: str) -> Check:
        at_sis = _refused_at_sis(student, said)
        check = diagnose_learner_activity(replace(base, destinations=(at_sis,))).check(
            "matched_in_sis"
        )
        assert check is not None
        return check

    said = "result.student.sourcedId: student 'w5-s12' does not exist"
    for student in ("w5-s1", "s12", "W5-S12", "w5-s12.b"):
        assert matched(student, said).passed, student  # another student's refusal
    assert not matched("w5-s12", said).passed
    # an id is whole up to a full stop, a colon or a quote, and may hold them inside
    assert not matched("w5-s12", "no such student w5-s12.").passed
    assert not matched("urn:sis:7", "student urn:sis:7: unknown").passed
    assert matched("urn:sis:7", "student urn:sis:77: unknown").passed
    # a SIS that names the student only by the request's URL: whole path segments
    url = "404 Not Found: /ims/oneroster/rostering/v1p2/students/s1"
    assert not matched("s1", url).passed
    assert not matched("s1", f"GET https://sis.example{url[15:]}?fields=x: unknown").passed
    assert not matched("x/s1", "not found: https://sis.example/students/x%2Fs1.").passed
    for student in ("s12", "S1", "v1p2/s1", "x/s1"):
        assert matched(student, url).passed, student
    assert matched("s1", "404 Not Found: /students/x%2Fs1").passed
    assert matched("s1", "student_s1 unknown").passed  # not the id whole


def test_a_sis_line_item_of_another_installation_is_not_said_to_be_made_by_post_grades() -> None:
    """An activity refused its line item because the item under its sourcedId names another
    installation has no column, and Post grades would not make one: the column check says
    whose it is and points to the delivery check's remedy."""
    said = remedies.stored_text(
        "The SIS line item 'gs-li-1' of class 'cls-1' is another gradesync installation's "
        "(https://grades-a.example), ...",
        remedies.Remedy("line_item_of_another_installation", "sis", "c1", "a1"),
    )
    refused = _refused_at_sis("stu-1", said)
    assert refused.ledger is not None
    row = replace(
        refused.ledger,
        reason_code="line_item_of_another_installation",
        remote_status=None,
        remote_message=None,
    )
    at_sis = replace(refused, ledger=row)
    found = diagnose_learner_activity(_facts(destinations=(at_sis,)))
    column = found.check("column_linked", "sis")
    assert column is not None and not column.passed
    assert "another gradesync installation's" in column.evidence, column.evidence
    assert column.remedy == "See the delivery check below for what to do."
    delivered = found.check("delivery", "sis")
    assert delivered is not None and not delivered.passed
    assert "gradesync sis select sis a1" in (delivered.remedy or ""), delivered.remedy


def test_the_last_delivery_line_ends_once_when_the_destinations_words_end_with_a_stop() -> None:
    """The LMS's message and a later event's message are set inside the line: their own full
    stops are dropped, so the line never ends ".." nor says "answered" with nothing after."""
    (base,) = _facts().destinations
    stopped = DeliveryFact(
        NOW - timedelta(minutes=5), "rejected", 400, "Score maximum must be positive."
    )
    found = diagnose_learner_activity(_facts(destinations=(replace(base, deliveries=(stopped,)),)))
    last = found.check("last_delivery", "d")
    assert last is not None
    assert last.evidence.endswith("answered HTTP 400: Score maximum must be positive."), (
        last.evidence
    )
    assert ".." not in last.evidence

    silent = DeliveryFact(NOW - timedelta(minutes=5), "delivered")
    later = DeliveryFact(NOW, "overridden", None, "Changed in the LMS to 2/10.")
    found = diagnose_learner_activity(
        _facts(destinations=(replace(base, deliveries=(later, silent)),))
    )
    last = found.check("last_delivery", "d")
    assert last is not None
    assert "answered" not in last.evidence, last.evidence
    assert last.evidence.endswith("(Changed in the LMS to 2/10)."), last.evidence


def test_course_triage_names_a_sis_line_item_of_another_installation() -> None:
    """Results refused because the SIS line item under the activity's id is another
    installation's are an activity problem with its own cause, not a course with no cause."""
    said = remedies.stored_text(
        "The SIS line item 'gs-li-1' of class 'cls-1' is another gradesync installation's "
        "(https://grades-a.example), ...",
        remedies.Remedy("line_item_of_another_installation", "sis", "c1", "a1"),
    )
    code = "line_item_of_another_installation"
    rows = tuple(KeyState("sis", "a1", p, DeliveryState.REJECTED, code, said) for p in ("p1", "p2"))
    facts = CourseFacts(
        NOW,
        Course("t", "c1", "Bio"),
        (Activity("t", "a1", "c1", "Quiz", 10.0),),
        {"a1": DEFAULT_POLICY},
        (
            CourseDestinationFacts(
                Destination("t", "sis", DestinationKind.ONEROSTER_REST, "District SIS"),
                Capabilities(),
                CourseLink("t", "sis", "c1", "cls-1", {"school": "sch-1"}),
                {"a1": ItemLink("t", "sis", "a1", "gs-li-1", data={"sync_to_sis": True})},
            ),
        ),
        rows,
    )
    triage = triage_course(facts)
    cause = triage.cause("column_of_another_installation")
    assert cause is not None, triage.causes
    assert (cause.scope, cause.activities, cause.excluded) == (Scope.ACTIVITIES, ("a1",), False)
    assert "2 results for a1" in cause.evidence and "grades-a.example" in cause.evidence
    assert "GRADESYNC_BASE_URL" in cause.remedy and "Two installations, one SIS" in cause.remedy
    assert triage.symptom is Symptom.SOME_ACTIVITIES
    console = triage.read_over(remedies.Reader.CONSOLE).cause("column_of_another_installation")
    assert console is not None and "gradesync sis" not in console.remedy, console.remedy


def test_a_pause_s_own_sentence_is_set_inside_the_check_s_without_a_double_stop() -> None:
    """The breaker's pause reason ends with its own full stop; the check's sentence around it
    said "itself.." in the doctor's and the console's evidence."""
    reason = "Circuit breaker open after repeated failures; gradesync probes it again by itself."
    d = Destination("t", "d", DestinationKind.LTI13_AGS, "Canvas", pause_reason=reason)
    timed = destination_ready_check(
        replace(d, paused_until=NOW + timedelta(seconds=30)), Capabilities(), NOW
    )
    held = destination_ready_check(replace(d, enabled=False), Capabilities(), NOW)
    for check in (timed, held):
        assert not check.passed
        assert check.evidence.endswith("by itself."), check.evidence


def test_a_grade_held_by_a_429_waits_it_has_not_failed() -> None:
    """A destination's 429 counts no failed try: the delivery check said "failed 0 times"."""
    (base,) = _facts().destinations
    held = replace(
        _row(state=DeliveryState.RETRYING),
        reason_code="rate_limited",
        next_attempt_at=NOW + timedelta(minutes=2),
        remote_status=429,
        remote_message="too many requests",
    )
    found = diagnose_learner_activity(_facts(destinations=(replace(base, ledger=held),)))
    check = found.check("delivery", "d")
    assert check is not None and not check.passed
    assert "failed" not in check.evidence, check.evidence
    assert " waits (rate_limited); next try " in check.evidence, check.evidence
    failed = diagnose_learner_activity(
        _facts(destinations=(replace(base, ledger=replace(held, tries=2)),))
    ).check("delivery", "d")
    assert failed is not None and " failed 2 times (rate_limited)" in failed.evidence


def test_a_destination_s_registration_is_checked_once_with_its_probe() -> None:
    """`doctor -d` listed "The registration is complete" and, from the probe, "registration"
    again: the same settings read twice."""
    d = Destination("t", "d", DestinationKind.LTI13_AGS, "Canvas", config={"issuer": "x"})
    probe = (
        ProbeStep("registration", False, "missing: client_id", code="registration_incomplete"),
        ProbeStep("token", True, "granted", code="token_granted"),
    )
    facts = DestinationDiagnosisFacts(NOW, d, Capabilities(), 0, 0, None, (), {}, 0, None, probe)
    names = [c.name for c in diagnose_destination(facts).checks]
    assert [n for n in names if "registration" in n.lower()] == ["The registration is complete"]
    assert "token" in names


def test_the_last_delivery_line_says_a_result_with_no_score_was_sent_with_none() -> None:
    """An excused learner's result at an LMS carries no score: the line read "sent
    None/10.0"."""
    (base,) = _facts().destinations
    sent = DeliveryFact(
        NOW - timedelta(minutes=5),
        "delivered",
        200,
        payload={"scoreMaximum": 10.0, "gradingProgress": "FullyGraded", "timestamp": "t"},
    )
    found = diagnose_learner_activity(_facts(destinations=(replace(base, deliveries=(sent,)),)))
    last = found.check("last_delivery", "d")
    assert last is not None
    assert "sent with no score with timestamp t" in last.evidence, last.evidence
    assert "None" not in last.evidence


_BREAKER = (
    "Circuit breaker open after repeated failures (last: injected server error); gradesync "
    "probes the destination again by itself."
)


def _failing_lms(
    lms_rows: tuple[KeyState, ...], *, cause: PauseCause | None, manual: bool = False
) -> CourseFacts:
    """Bio with its LMS failing (paused by `cause` until NOW + 5 min, an administrator's
    pause until resumed when `manual`; not paused for None) and its SIS delivering."""
    sent = tuple(KeyState("sis", "a1", p, DeliveryState.DELIVERED) for p in ("p1", "p2"))
    facts = _two_destinations(lms_rows, sent + _NOT_SELECTED, lms_paused=False)
    (lms, sis) = facts.destinations
    if cause is not None:
        paused = replace(
            lms.destination,
            enabled=not manual,
            paused_until=None if manual else NOW + timedelta(minutes=5),
            pause_reason=_BREAKER if cause is PauseCause.CIRCUIT_OPEN else "said by the pause",
            pause_cause=cause,
        )
        lms = replace(lms, destination=paused)
    return replace(facts, destinations=(lms, sis))


def _failed(person: str, tries: int = 5) -> KeyState:
    """The LMS failed this grade `tries` times (a 503), its next try in 2 minutes."""
    return KeyState(
        "lms",
        "a1",
        person,
        DeliveryState.RETRYING,
        "server_error",
        "injected server error — The LMS had a temporary failure; gradesync retries automatically.",
        tries=tries,
        next_attempt_at=NOW + timedelta(minutes=2),
        remote_status=503,
        remote_message="injected server error",
    )


@pytest.mark.parametrize(
    ("cause", "title"),
    [
        (PauseCause.CIRCUIT_OPEN, "The LMS failed repeatedly"),
        (PauseCause.SLOW_DOWN, "The LMS asked gradesync to slow down"),
        (PauseCause.ADMIN, "paused by an administrator until a set time"),
    ],
)
def test_a_pause_gradesync_lifts_by_itself_is_said_so_not_as_one_to_resume(
    cause: PauseCause, title: str
) -> None:
    """The breaker's pause (the LMS failing every score) was "No grades are syncing to this
    destination: fix the cause named in the pause, then resume the destination", against the
    pause's own "gradesync probes the destination again by itself"."""
    t = triage_course(_failing_lms((_failed("p1"),), cause=cause))
    assert t.destinations == {"lms": Symptom.SENDING_PAUSED, "sis": Symptom.ALL_SYNCING}
    assert t.symptom is Symptom.SOME_DESTINATIONS
    paused = t.cause("destination_paused")
    assert paused is not None and paused.destination_id == "lms"
    assert paused.tries_again_by_itself and title in paused.title, paused.title
    # what happens, when gradesync tries again by itself, and that resuming is not needed
    assert "2026-03-10 12:05 UTC" in paused.remedy, paused.remedy
    assert paused.remedy.startswith("Nothing is needed"), paused.remedy
    assert "then resume" not in paused.remedy
    if cause is PauseCause.CIRCUIT_OPEN:
        assert "failure the pause names on the LMS's side" in paused.remedy
        assert "optional" in paused.remedy
        assert "probes the destination again by itself" in paused.evidence
    # the grade it holds is listed too, tried again when the pause ends (not before)
    retrying = t.cause("retrying")
    assert retrying is not None and retrying.learners == ("p1",), t.causes
    assert "next try 2026-03-10 12:05 UTC" in retrying.evidence, retrying.evidence
    data = t.as_json()
    assert data["destinations"]["lms"]["summary"] == (
        "Sending to this destination is paused for a while; gradesync tries again by itself"
    )
    assert data["causes"]["course"][0]["tries_again_by_itself"] is True
    # with nothing delivered anywhere, the course as a whole waits
    waiting = triage_course(
        replace(
            _failing_lms((_failed("p1"),), cause=cause),
            rows=(_failed("p1"), *_NOT_SELECTED),
        )
    )
    assert waiting.symptom is Symptom.SENDING_PAUSED
    assert waiting.summary == "Sending is paused for a while; gradesync tries again by itself"


@pytest.mark.parametrize("manual", [True, False])
def test_an_admin_s_or_a_misconfiguration_s_pause_still_asks_for_a_resume(manual: bool) -> None:
    cause = PauseCause.ADMIN if manual else PauseCause.MISCONFIGURED
    t = triage_course(_failing_lms((_failed("p1"),), cause=cause, manual=manual))
    assert t.destinations["lms"] is Symptom.NOTHING_SYNCING
    paused = t.cause("destination_paused")
    assert paused is not None and not paused.tries_again_by_itself
    assert "then resume" in paused.remedy, paused.remedy
    retrying = t.cause("retrying")
    assert retrying is not None
    if manual:  # nothing goes to it until then
        assert "next try once the destination is resumed" in retrying.evidence
        assert not retrying.tries_again_by_itself
    else:
        assert "without a resume gradesync tries again by itself at" in paused.remedy.lower()


def test_a_retrying_grade_is_a_problem_listed_with_the_lms_s_words_and_next_try() -> None:
    """Before the breaker opens: "Grades are syncing", `problems: 1`, no cause listed, exit 0.
    A grade the LMS fails is a problem: counted, listed with its cause, and the course is
    not "all syncing"."""
    sent = tuple(KeyState("lms", "a2", p, DeliveryState.DELIVERED) for p in ("p1", "p2"))
    t = triage_course(_failing_lms((*sent, _failed("p1", tries=3)), cause=None))
    assert t.counts["problems"] == 1 and t.counts["retrying"] == 1
    [listed] = t.problems
    assert (listed.code, listed.scope, listed.destination_id) == ("retrying", Scope.GRADES, "lms")
    assert (listed.activities, listed.learners) == (("a1",), ("p1",))
    assert listed.tries_again_by_itself
    assert "failed 3 times (server_error)" in listed.evidence, listed.evidence
    assert "the LMS answered HTTP 503: injected server error" in listed.evidence
    assert "next try 2026-03-10 12:02 UTC" in listed.evidence
    assert "gradesync tries again by itself at 2026-03-10 12:02 UTC" in listed.remedy
    assert t.destinations["lms"] is Symptom.SOME_GRADES
    assert t.symptom is Symptom.SOME_GRADES
    assert [c["code"] for c in t.as_json()["causes"]["grades"]] == ["retrying"]


def test_every_problem_counted_is_listed_with_its_cause() -> None:
    """Reasons no cause named (a give-up, an internal error, a send refused in the SIS's
    words) were counted under `problems` and listed nowhere."""
    rows = (
        KeyState("lms", "a1", "p1", DeliveryState.DELIVERED),
        _failed("p2"),
        KeyState(
            "lms",
            "a2",
            "p1",
            DeliveryState.REJECTED,
            "retries_exhausted",
            "Gave up after 12 failed attempts to deliver (injected server error).",
        ),
        KeyState("lms", "a2", "p2", DeliveryState.RETRYING, "internal_error", "gradesync failed."),
        KeyState(
            "sis",
            "a1",
            "p1",
            DeliveryState.REJECTED,
            "invalid_data",
            "score is not valid",
            remote_status=422,
            remote_message="score is not valid",
        ),
        KeyState("sis", "a1", "p2", DeliveryState.SKIPPED, "compute_failed", "could not."),
    )
    facts = _two_destinations(rows[:4], (*rows[4:], *_NOT_SELECTED), lms_paused=False)
    t = triage_course(facts)
    listed = {
        (c.destination_id, a, p) for c in t.problems for a in c.activities for p in c.learners
    }
    counted = [r for r in rows if r.state is not DeliveryState.DELIVERED]
    assert t.counts["problems"] == len(counted)
    assert {(r.destination_id, r.activity_id, r.person_id) for r in counted} <= listed
    gave_up = next(c for c in t.problems if "(retries_exhausted)" in c.evidence)
    assert (gave_up.code, gave_up.destination_id, gave_up.title) == (
        "not_delivered",
        "lms",
        "gradesync gave up sending these grades: the LMS failed every try",
    )
    refused = next(c for c in t.problems if c.destination_id == "sis" and "422" in c.evidence)
    assert refused.title == "The SIS refused these grades"
    assert "the SIS answered HTTP 422: score is not valid" in refused.evidence
    internal = next(c for c in t.problems if "internal_error" in c.evidence)
    assert internal.code == "retrying" and internal.title.startswith("gradesync itself failed")


def test_a_sis_learner_matched_to_no_student_is_not_said_to_have_skipped_a_launch() -> None:
    """A SIS has no launches: a learner with no student there was filed under "did not start
    from an LTI link in this course", told to click a gradesync link in the LMS. It is said
    as not matched to the SIS's student yet (their SIS id named), with what matches them in
    each reader's words; a learner with no SIS id is told to get one."""
    course = Course("t", "c1", "Bio")
    sis = Destination("t", "sis", DestinationKind.ONEROSTER_REST, "SIS")
    rows = (
        KeyState("sis", "a1", "p1", DeliveryState.DELIVERED),
        KeyState("sis", "a1", "p2", DeliveryState.SKIPPED, "no_person_link"),
        KeyState("sis", "a1", "p3", DeliveryState.SKIPPED, "no_person_link"),
    )
    facts = CourseFacts(
        NOW,
        course,
        (Activity("t", "a1", "c1", "Quiz", 10.0),),
        {"a1": DEFAULT_POLICY},
        (
            CourseDestinationFacts(
                sis,
                Capabilities(),
                CourseLink("t", "sis", "c1", "cls-1", {"school": "sch-1"}),
                {"a1": ItemLink("t", "sis", "a1", "li-1")},
            ),
        ),
        rows,
        sis_ids={"p2": "stu-2", "p3": None},
    )
    t = triage_course(facts)
    assert t.cause("not_launched") is None
    unmatched, no_id = t.cause("not_matched_in_sis"), t.cause("no_sis_id")
    assert unmatched is not None and unmatched.learners == ("p2",)
    assert no_id is not None and no_id.learners == ("p3",)
    assert "LTI" not in unmatched.remedy and "'stu-2'" in unmatched.evidence
    assert "gradesync sis map-students sis c1" in unmatched.remedy
    assert "gradesync sis map-student sis p3 SOURCEDID" in no_id.remedy
    api = t.read_over(remedies.Reader.API)
    assert "POST /api/v1/sis/connections/sis/courses/c1/students" in (
        api.cause("not_matched_in_sis").remedy  # type: ignore[union-attr]
    )
    console = t.read_over(remedies.Reader.CONSOLE).cause("not_matched_in_sis")
    assert console is not None and "Link learners by their SIS ids" in console.remedy
    assert not remedies.names_command(console.remedy)


@pytest.mark.parametrize(
    ("kind", "cli", "api"),
    [
        (
            DestinationKind.LTI11_OUTCOMES,
            "Fix the LTI 1.1 consumer's settings (`gradesync lti11 add-consumer --id d` with "
            "its --key and --allowed-host",
            "`PUT /api/v1/lti11/consumers/d`",
        ),
        (
            DestinationKind.ONEROSTER_REST,
            "Check the SIS client id and secret: gradesync sis add d --client-id ID "
            "--client-secret SECRET",
            "`PUT /api/v1/sis/connections/d` with `client_id` and `client_secret`",
        ),
    ],
    ids=["lti11", "sis"],
)
def test_refused_credentials_get_the_remedy_of_their_destination_s_kind(
    kind: DestinationKind, cli: str, api: str
) -> None:
    """The course triage told an LTI 1.1 consumer and a SIS to check "the client id, the
    deployment id and ... gradesync's JWKS URL", which neither has, and called a SIS "the
    LMS": each gets the remedy its adapter and `destinations check` give it, per reader; the
    learner's diagnosis and the destination's say the same."""
    course = Course("t", "c1", "Bio")
    refused = "token: client_id/client_secret: not valid"
    row = KeyState("d", "a1", "p1", DeliveryState.RETRYING, "bad_credentials", refused, tries=1)
    d = Destination("t", "d", kind, "Gradebook")
    facts = CourseFacts(
        NOW,
        course,
        (Activity("t", "a1", "c1", "Quiz", 10),),
        {"a1": DEFAULT_POLICY},
        (CourseDestinationFacts(d, Capabilities(), CourseLink("t", "d", "c1", "x-1"), {}),),
        (row,),
    )
    triage = triage_course(facts)
    cause = triage.cause("bad_credentials")
    assert cause is not None
    assert "JWKS" not in cause.remedy and cause.remedy.startswith(cli), cause.remedy
    sis = kind is DestinationKind.ONEROSTER_REST
    assert cause.title.startswith("The SIS" if sis else "The LMS"), cause.title
    over_api = triage.read_over(remedies.Reader.API).cause("bad_credentials")
    assert over_api is not None and api in over_api.remedy, over_api.remedy
    assert not remedies.names_command(over_api.remedy), over_api.remedy
    # the destination's diagnosis, its deliveries failing so
    found = diagnose_destination(
        DestinationDiagnosisFacts(
            NOW, d, Capabilities(), 1, 0, None, (), {"bad_credentials": 1}, 0, None
        )
    ).check("deliveries_accepted")
    assert found is not None and found.remedy is not None
    assert found.remedy.startswith(cli), found.remedy
    who = "The SIS refused" if sis else "The LMS refused"
    assert f"bad_credentials: 1 ({who} gradesync's credentials)" in found.evidence, found.evidence


def test_an_lti11_consumer_s_launches_refused_for_its_secret_fail_in_its_own_words() -> None:
    """`doctor -d` at an LTI 1.1 consumer said "Launches come from the registered platform
    and deployment" passed, with "1 other refusal", when that refusal was a signature that
    does not verify with the consumer's secret: it fails, naming the consumer's settings."""
    d = Destination("t", "d", DestinationKind.LTI11_OUTCOMES, "Canvas (LTI 1.1)")
    said = "oauth_signature: does not verify with the secret of consumer 'k' [mismatch]"

    def launches(*rejections: RejectionFact) -> Check:
        found = diagnose_destination(
            DestinationDiagnosisFacts(NOW, d, Capabilities(), 1, 2, NOW, rejections, {}, 0, None)
        ).check("launches_accepted")
        assert found is not None
        return found

    ok = launches(RejectionFact("replayed", "oauth_nonce: was already used [replayed]", NOW))
    assert ok.passed and "platform" not in ok.name and "deployment" not in ok.name, ok
    assert "1 other refusal" in ok.evidence, ok
    bad = launches(RejectionFact("mismatch", said, NOW))
    assert not bad.passed and said in bad.evidence, bad
    assert bad.remedy is not None and "gradesync lti11 add-consumer --id d" in bad.remedy, bad
    assert "deployment" not in bad.remedy + bad.name, bad


def test_a_non_learner_at_a_sis_is_not_told_to_launch() -> None:
    """The triage's "Not learners in the course" told a SIS's reader to give the Student/
    Learner role "in the LMS course, then a new launch": a SIS has no launches."""
    course = Course("t", "c1", "Bio")
    row = KeyState("d", "a1", "t1", DeliveryState.SKIPPED, "not_a_learner", "Role 'instructor'.")

    def remedy(kind: DestinationKind) -> str:
        d = Destination("t", "d", kind, "Gradebook")
        facts = CourseFacts(
            NOW,
            course,
            (Activity("t", "a1", "c1", "Quiz", 10),),
            {"a1": DEFAULT_POLICY},
            (CourseDestinationFacts(d, Capabilities(), CourseLink("t", "d", "c1", "x-1"), {}),),
            (row,),
        )
        cause = triage_course(facts).cause("wrong_role")
        assert cause is not None and cause.excluded
        return cause.remedy

    assert "new launch" in remedy(DestinationKind.LTI13_AGS)
    sis = remedy(DestinationKind.ONEROSTER_REST)
    assert "new launch" not in sis and "LMS course" not in sis, sis
    assert "learner role" in sis and "a SIS has no launches" in sis, sis


def test_a_non_learner_at_a_sis_is_told_the_api_route_that_sets_the_role() -> None:
    """The SIS's "Not learners in the course" said to set "the `role` of the enrollment
    ingested": only the HTTP API ingests, and no gradesync command sets a role. Every
    reader is given the route that does, with the course and (one listed) the learner, and
    that route is the API's."""
    course = Course("t", "bio 101", "Bio")
    sis = Destination("t", "d", DestinationKind.ONEROSTER_REST, "SIS")

    def triage(*people: str) -> CourseTriage:
        rows = tuple(
            KeyState("d", "a1", p, DeliveryState.SKIPPED, "not_a_learner", "Role 'instructor'.")
            for p in people
        )
        return triage_course(
            CourseFacts(
                NOW,
                course,
                (Activity("t", "a1", course.id, "Quiz", 10),),
                {"a1": DEFAULT_POLICY},
                (
                    CourseDestinationFacts(
                        sis, Capabilities(), CourseLink("t", "d", course.id, "cls-1"), {}
                    ),
                ),
                rows,
            )
        )

    one, several = triage("t1"), triage("t1", "t2")
    for reader in remedies.Reader:
        for t, person in ((one, "t1"), (several, "PERSON_ID")):
            cause = t.read_over(reader).cause("wrong_role")
            assert cause is not None, t.causes
            said = cause.remedy
            route = f"`PUT /api/v1/courses/bio%20101/enrollments/{person}`"
            assert f'{route} and `{{"role": "learner"}}`' in said, (reader, said)
            assert "`ingest` scope" in said and "no gradesync command sets a role" in said, said
            assert "send their `section_id` too" in said, said  # the PUT sets it, too
            assert "ingested" not in said and not remedies.names_command(said), said
    # the route named is the API's own, and takes the role
    routes = {
        (method, f"{PREFIX}{r.path}")
        for r in courses_api.router.routes
        if isinstance(r, APIRoute)
        for method in r.methods
    }
    assert ("PUT", "/api/v1/courses/{course_id}/enrollments/{person_id}") in routes
    assert "role" in EnrollmentBody.model_fields


def _unreachable(destination: str, person: str, code: str) -> KeyState:
    """A grade the destination could not be reached for, stored under `code`."""
    return KeyState(
        destination,
        "a1",
        person,
        DeliveryState.RETRYING,
        code,
        "could not reach the SIS (ConnectError: [Errno 111] Connection refused)",
        tries=2,
        next_attempt_at=NOW + timedelta(minutes=2),
    )


def test_a_row_stored_as_connection_error_reads_as_connection_failed() -> None:
    """An older gradesync stored an unreachable SIS or LTI 1.1 consumer as
    `connection_error` (since `connection_failed` at every destination); such a row keeps it
    until its next try. The triage, the destination's diagnosis and the learner's read it as
    `connection_failed`, with that code's cause and remedy, and still name the stored code."""
    sent = tuple(
        KeyState("lms", a, p, DeliveryState.DELIVERED) for a in ("a1", "a2") for p in ("p1", "p2")
    )
    rows = (
        _unreachable("sis", "p1", "connection_error"),
        _unreachable("sis", "p2", "connection_failed"),
    )
    t = triage_course(_two_destinations(sent, rows + _NOT_SELECTED, lms_paused=False))
    [listed] = t.problems  # one cause for both rows, not one for each code
    title, remedy = REMOTE_CAUSES["connection_failed"]
    assert (listed.code, listed.destination_id, listed.learners) == (
        "retrying",
        "sis",
        ("p1", "p2"),
    )
    assert listed.title == title, listed.title
    assert remedy in listed.remedy, listed.remedy
    assert (
        "(connection_failed; as connection_error where an older gradesync recorded it)"
        in listed.evidence
    ), listed.evidence

    d = Destination("t", "sis", DestinationKind.ONEROSTER_REST, "District SIS")
    found = diagnose_destination(
        DestinationDiagnosisFacts(
            NOW,
            d,
            Capabilities(),
            1,
            0,
            None,
            (),
            {"connection_error": 2, "connection_failed": 1},
            0,
            None,
        )
    ).check("deliveries_accepted")
    assert found is not None
    assert f"failing: connection_failed: 3 ({title})." in found.evidence, found.evidence
    assert "connection_error" not in found.evidence and found.remedy == remedy
    assert remote_cause("connection_error") == (title, remedy)

    (base,) = _facts().destinations
    old = replace(
        _row(state=DeliveryState.RETRYING),
        reason_code="connection_error",
        tries=2,
        next_attempt_at=NOW + timedelta(minutes=2),
    )
    learner = diagnose_learner_activity(_facts(destinations=(replace(base, ledger=old),)))
    check = learner.check("delivery", "d")
    assert check is not None and check.remedy == remedy and check.reason == "connection_failed"
    assert (
        "failed 2 times (connection_failed, recorded as connection_error by an older gradesync)"
    ) in check.evidence, check.evidence
