"""`gradesync doctor`, `overrides`, `repair` and `destinations check`, run as an admin would
(a subprocess on a temporary SQLite file)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from gradesync.adapters.db.database import Database
from gradesync.config import Settings
from gradesync.domain.model import (
    Activity,
    CourseLink,
    DeliveryState,
    Destination,
    DestinationKind,
    Enrollment,
    ItemLink,
    LedgerKey,
    LedgerRow,
    Person,
    Role,
)
from gradesync.domain.overrides import OVERRIDDEN
from gradesync.domain.pauses import PauseCause, pause_text
from gradesync.runtime import Runtime
from gradesync.services import auth
from gradesync.services.clock import SystemClock
from gradesync.services.ports.lti import Rejection
from gradesync.testing import TEST_SECRET
from gradesync.web.app import create_app
from tests.diagnostics.test_facts import NOW, C, D, T, _delivered, seed
from tests.support.cli import Run


def _add_rejection(db: Database, rejection: Rejection) -> None:
    with db.uow() as uow:
        uow.launches.add_rejection(rejection)
        uow.commit()


def test_doctor_explains_a_grade_a_course_and_a_destination(
    cli_db: Database,
    gradesync: Run,
) -> None:
    seed(cli_db)
    # a refused launch today (the CLI runs on the real clock; the scenario's is months old)
    _add_rejection(
        cli_db,
        Rejection(
            "unknown_deployment",
            "deployment_id: 'd9' is not registered",
            datetime.now(UTC),
            issuer="https://lms",
            client_id="cid",
            deployment_id="d9",
        ),
    )
    out = gradesync("doctor", "-t", T, "--learner", "ada2", "--activity", "a1", ok=False)
    assert out.returncode == 1, out.stderr
    assert "✗ failed  No duplicate accounts" in out.stdout and "what to do:" in out.stdout
    assert "never launched" in out.stdout
    data = json.loads(
        gradesync("doctor", "-t", T, "-l", "ada2", "-a", "a1", "--json", ok=False).stdout
    )
    assert {c["code"] for c in data["checks"] if not c["passed"]} >= {
        "duplicate_accounts",
        "launched_from_course",
    }
    triage = gradesync("doctor", "-t", T, "--course", C, ok=False)
    assert triage.returncode == 1
    assert "Nothing syncing at all" in triage.stdout and "Deployment scope" in triage.stdout
    dest = gradesync("doctor", "-t", T, "--destination", D, "--offline", ok=False)
    assert "unknown_deployment" in dest.stdout
    act = gradesync("doctor", "-t", T, "--activity", "a1", ok=True)
    assert "Learners' grades delivered" in act.stdout
    missing = gradesync("doctor", "-t", T, "--learner", "ghost", "--activity", "a1", ok=False)
    assert missing.returncode == 3 and "ghost" in missing.stderr
    # a course beside an activity could only contradict the activity's own: refused
    for more in (["--activity", "a1"], ["--learner", "ada2", "--activity", "a1"]):
        both = gradesync("doctor", "-t", T, "--course", "other", *more, ok=False)
        assert both.returncode == 2 and "--course" in both.stderr
        assert "exclusive" in both.stderr and not both.stdout


def test_doctor_names_what_is_not_found_by_the_option_typed(
    cli_db: Database,
    gradesync: Run,
) -> None:
    """Exit 3 and the option it was typed in, as every command says it: an unknown learner
    was named `person`, the use case's word, which is no option of `doctor`."""
    seed(cli_db)
    for args, said in [
        (("-l", "ghost", "-a", "a1"), "--learner: person 'ghost' not found [unknown_person]"),
        (("-a", "nope"), "--activity: activity 'nope' not found [unknown_activity]"),
        (("-c", "nope"), "--course: course 'nope' not found [unknown_course]"),
        (("-d", "gone", "--offline"), "--destination: destination 'gone' not found "),
        (("-l", "ada", "-a", "a1", "-d", "gone"), "--destination: destination 'gone' not found "),
    ]:
        r = gradesync("doctor", "-t", T, *args, ok=False)
        assert r.returncode == 3 and r.stderr.startswith(f"error: {said}"), (args, r.stderr)
        assert len(r.stderr.splitlines()) == 1, r.stderr
    r = gradesync("doctor", "-t", T, "-l", "ghost", "-a", "a1", "--json", ok=False)
    error = json.loads(r.stdout)["error"]
    assert (error["code"], error["exit_code"]) == ("not_found", 3)
    assert [(p["field"], p["rule"]) for p in error["problems"]] == [("--learner", "unknown_person")]


def test_course_triage_does_not_count_the_courses_teacher(
    cli_db: Database,
    gradesync: Run,
) -> None:
    """Every course has a teacher, whose results are skipped as `not_a_learner`: triage
    counted them as problems ("Give them the Student/Learner role"), once per destination.
    They are said apart, as not a problem."""
    seed(cli_db)
    before = json.loads(gradesync("doctor", "-t", T, "-c", C, "--json", ok=False).stdout)
    with cli_db.uow() as uow:
        uow.people.upsert(Person(T, "t-prof", "Prof", "prof@x.edu"))
        uow.enrollments.upsert(Enrollment(T, C, "t-prof", Role.INSTRUCTOR))
        skipped = LedgerRow(
            LedgerKey(T, D, "a1", "t-prof"),
            DeliveryState.SKIPPED,
            reason_code="not_a_learner",
            reason_text="This person's role in the course is 'instructor'.",
            updated_at=NOW,
        )
        uow.ledger.save_many([(skipped, C)])
        uow.commit()
    after = json.loads(gradesync("doctor", "-t", T, "-c", C, "--json", ok=False).stdout)
    assert after["counts"]["problems"] == before["counts"]["problems"]
    assert (after["symptom"], after["causes"]) == (before["symptom"], before["causes"])
    [said] = [c for c in after["excluded"] if c["code"] == "wrong_role"]
    assert said["learners"] == ["t-prof"]
    text = gradesync("doctor", "-t", T, "-c", C, ok=False).stdout
    problems, _, apart = text.partition("Left out on purpose")
    assert "t-prof" not in problems and "t-prof" in apart


def test_repair_and_destination_check_from_the_cli(
    cli_db: Database,
    gradesync: Run,
) -> None:
    seed(cli_db)
    assert "no overridden grades" in gradesync("overrides", "-t", T, "--course", C).stdout
    out = json.loads(
        gradesync("repair", "-t", T, "-c", C, "-a", "a1", "-l", "ada", "--json").stdout
    )
    # as POST /courses/C/repair answers
    assert out["marked"] == 1 and out["run"] is None
    # the LMS's timestamps could not be read (this destination has no token URL): said, with
    # the transport's words, and the repair went ahead anyway
    [unread] = out["unread"]
    assert (unread["destination_id"], unread["activity_id"]) == (D, "a1")
    assert "auth_token_url" in unread["error"]
    assert "gradesync's clock" in out["warning"] and unread["error"] in out["warning"]
    text = gradesync("repair", "-t", T, "-c", C, "-a", "a1", "-l", "ada").stdout
    assert "1 grade(s) will be resent" in text
    assert "warning: Could not read the gradebook's timestamps for 1 column(s)" in text
    assert "auth_token_url" in text and "may ignore them" in text
    assert out["keys"] == [{"destination_id": D, "activity_id": "a1", "person_id": "ada"}]
    with cli_db.uow() as uow:
        row = uow.ledger.get(LedgerKey(T, D, "a1", "ada"))
    assert row is not None and row.state is DeliveryState.PENDING
    # a whole activity goes through a run, shown as `runs show` shows it, stages included
    whole = json.loads(gradesync("repair", "-t", T, "-c", C, "-a", "a1", "--json").stdout)
    shown = json.loads(gradesync("runs", "show", whole["run"]["id"], "-t", T, "--json").stdout)
    assert whole["run"]["stages"] and whole["run"]["stages"] == shown["stages"]
    # a course, destination, activity or learner it names that does not exist is not found,
    # as for `sync` (an activity or a learner was said as bad input, exit 2)
    for args, said in [
        (("-a", "nope"), "error: --activity: No activity 'nope'. [unknown_activity]\n"),
        (("-l", "nobody"), "error: --learner: No person 'nobody'. [unknown_person]\n"),
    ]:
        bad = gradesync("repair", "-t", T, "-c", C, *args, ok=False)
        assert bad.returncode == 3 and bad.stderr == said, bad.stderr
    bad = gradesync("repair", "-t", T, "-c", C, "-l", "nobody", "--json", ok=False)
    assert json.loads(bad.stdout)["error"]["problems"] == [
        {"field": "--learner", "rule": "unknown_person", "message": "No person 'nobody'."}
    ]
    # beside another mistake it is bad input, as everywhere
    bad = gradesync("repair", "-t", T, "-c", C, "-a", "nope", "-a", "nope", ok=False)
    assert bad.returncode == 2 and "[unique]" in bad.stderr, bad.stderr
    ghost = gradesync("repair", "-t", T, "-c", "ghost", ok=False)
    assert ghost.returncode == 3 and ghost.stderr.startswith("error: --course: "), ghost.stderr
    ghost = gradesync("repair", "-t", T, "-c", C, "-d", "ghost", ok=False)
    assert ghost.returncode == 3 and "error: --destination: " in ghost.stderr, ghost.stderr
    check = gradesync("destinations", "check", D, "-t", T, ok=False)
    assert check.returncode == 1 and "registration" in check.stdout
    # --json is the API's answer, each step's code too (the registration lacks a token URL)
    check = gradesync("destinations", "check", D, "-t", T, "--json", ok=False)
    steps = json.loads(check.stdout)["steps"]
    assert [s["code"] for s in steps][:1] == ["registration_incomplete"], steps
    assert all(s["code"] for s in steps), steps


def test_destination_check_and_sync_name_an_unknown_course_not_found(
    cli_db: Database,
    gradesync: Run,
) -> None:
    """Exit 3, as `doctor` and `overrides` for an unknown course; a learner without the
    course it is a learner of is refused, not ignored."""
    seed(cli_db)
    check = ("destinations", "check", D, "-t", T)
    r = gradesync(*check, "--course", "ghost", "--learner", "nobody", "--json", ok=False)
    assert r.returncode == 3, r.stderr
    error = json.loads(r.stdout)["error"]
    assert error["code"] == "not_found"
    assert [(p["field"], p["rule"]) for p in error["problems"]] == [
        ("--course", "unknown_course"),
        ("--learner", "unknown_person"),
    ]
    assert gradesync("overrides", "-t", T, "--course", "ghost", ok=False).returncode == 3
    # a destination filter naming none: said, not "no overridden grades found"
    r = gradesync("overrides", "-t", T, "--course", C, "--destination", "gone", ok=False)
    assert r.returncode == 3, r.stderr
    assert "--destination: No destination 'gone'. [unknown_destination]" in r.stderr, r.stderr
    r = gradesync("sync", "-t", T, "-c", "ghost", ok=False)
    assert r.returncode == 3 and "--course: No course 'ghost'. [unknown_course]" in r.stderr
    r = gradesync(*check, "--learner", "ada", ok=False)
    assert r.returncode == 2 and "--course: --learner needs --course" in r.stderr, r.stderr


def _with_sis_sparing_pol(cli_db: Database) -> None:
    """Biology at the LMS (a1 delivered to ada and bo) and at a SIS, where a1 is delivered and
    "Policy quiz" (pol) is not ticked for SIS passback."""
    seed(cli_db)  # Biology at the LMS: a1 delivered to ada and bo
    with cli_db.uow() as uow:
        uow.activities.upsert(Activity(T, "pol", C, "Policy quiz", 10.0))
        uow.destinations.upsert(
            Destination(
                T,
                "sis",
                DestinationKind.ONEROSTER_REST,
                "District SIS",
                config={"base_url": "https://sis.example.edu", "client_id": "gradesync"},
            ),
            NOW,
        )
        uow.links.save_course(CourseLink(T, "sis", C, "cls-1", {"school": "sch-1"}))
        uow.links.save_item(ItemLink(T, "sis", "a1", "li-1", data={"sync_to_sis": True}))
        sis_rows = [
            LedgerRow(
                LedgerKey(T, "sis", "pol", p),
                DeliveryState.SKIPPED,
                reason_code="not_selected_for_sis",
                reason_text="The activity 'Policy quiz' is not selected for SIS passback.",
                updated_at=NOW,
            )
            for p in ("ada", "bo")
        ]
        delivered = [_delivered(p, 7.0) for p in ("ada", "bo")]
        sis_rows += [replace(r, key=replace(r.key, destination_id="sis")) for r in delivered]
        uow.ledger.save_many([(r, C) for r in sis_rows])
        uow.commit()


def test_doctor_course_judges_each_destination_and_spares_what_is_left_out(
    cli_db: Database,
    gradesync: Run,
) -> None:
    _with_sis_sparing_pol(cli_db)

    # every grade delivered, the SIS spared "pol" on purpose: nothing to fix
    ok = gradesync("doctor", "-t", T, "--course", C)
    assert "Grades are syncing" in ok.stdout
    # the counts in words, the results as a grade goes (delivered first), then the problems
    assert "  3 activities; results: 4 delivered, 2 skipped; no problems\n" in ok.stdout
    assert "Left out on purpose" in ok.stdout and "not selected for SIS" in ok.stdout
    assert "no gradebook column" not in ok.stdout

    gradesync("destinations", "pause", D, "-t", T, "--reason", "LMS upgrade")
    paused = gradesync("doctor", "-t", T, "--course", C, ok=False)
    assert paused.returncode == 1
    assert "Grades sync to some destinations, but none reach the others" in paused.stdout
    assert "No grades are syncing in the course at all" not in paused.stdout
    assert f"{D}: No grades are syncing to this destination" in paused.stdout
    assert "sis: Grades are syncing" in paused.stdout
    assert "The destination is paused" in paused.stdout
    data = json.loads(gradesync("doctor", "-t", T, "--course", C, "--json", ok=False).stdout)
    assert data["symptom"] == "some_destinations"
    assert data["destinations"]["sis"]["symptom"] == "all_syncing"
    assert [c["code"] for c in data["causes"]["course"]] == ["destination_paused"]
    assert [c["code"] for c in data["excluded"]] == ["not_selected_for_sis"]
    # read on the command line, a remedy keeps its command (the API and the console name
    # their route and button instead)
    dest = gradesync("doctor", "-t", T, "--destination", D, "--offline", "--json", ok=False)
    [ready] = [c for c in json.loads(dest.stdout)["checks"] if c["code"] == "destination_ready"]
    resume = f"`gradesync destinations resume {D}`"
    assert ready["remedy"] == f"Fix the cause, then resume it ({resume})."


def test_doctor_course_says_a_course_mapped_to_no_sis_class_reaches_no_sis(
    cli_db: Database,
    gradesync: Run,
) -> None:
    """Chemistry (c2) is linked nowhere and one of its activities is unpublished: the SIS was
    said to have "Some grades sync, but the problem affects specific activities", with no
    cause at the SIS. Nothing can reach the SIS until the course is mapped to a class."""
    _with_sis_sparing_pol(cli_db)
    with cli_db.uow() as uow:
        uow.activities.upsert(Activity(T, "c2-a", "c2", "Titration", 10.0))
        uow.activities.upsert(Activity(T, "c2-b", "c2", "Safety", 10.0, published=False))
        uow.commit()
    data = json.loads(gradesync("doctor", "-t", T, "--course", "c2", "--json", ok=False).stdout)
    assert data["symptom"] == "nothing_syncing"
    assert data["destinations"]["sis"]["symptom"] == "nothing_syncing"
    wide = {c["destination_id"]: c for c in data["causes"]["course"]}
    assert wide["sis"]["code"] == wide[D]["code"] == "course_not_connected"
    out = gradesync("doctor", "-t", T, "--course", "c2", ok=False)
    assert out.returncode == 1
    assert "Some grades sync" not in out.stdout
    assert "The course is not mapped to a class in the SIS (sis)" in out.stdout
    assert (
        f"gradesync sis map-class sis c2 CLASS_SOURCEDID --school SCHOOL_SOURCEDID --tenant {T}"
        in out.stdout
    )
    assert f"The LMS course is not connected to gradesync ({D})" in out.stdout


def test_doctor_activity_spares_what_is_left_out_on_purpose(
    cli_db: Database,
    gradesync: Run,
) -> None:
    _with_sis_sparing_pol(cli_db)
    out = json.loads(gradesync("doctor", "-t", T, "--activity", "pol", "--json", ok=False).stdout)
    at_sis = {c["code"]: c for c in out["checks"] if c["destination_id"] == "sis"}
    # not ticked for the SIS: said as left out on purpose, never as a problem to diagnose
    for code in ("column_linked", "learners_delivered"):
        assert at_sis[code]["excluded"], at_sis[code]
    evidence = at_sis["learners_delivered"]["evidence"]
    assert "Left out on purpose: The activity 'Policy quiz' is not selected" in evidence
    assert "Problems" not in evidence
    text = gradesync("doctor", "-t", T, "--activity", "pol", ok=False).stdout
    assert "not_selected_for_sis: 2" not in text
    assert "to include it: Tick 'Sync to SIS' for the activity." in text


def test_overrides_json_is_what_the_api_answers(
    cli_db: Database, gradesync: Run, tmp_path: Path
) -> None:
    """Its times were Python's (`+00:00`); the API's are `Z` (docs/operations.md: a command's
    --json prints the API's keys, nesting and value formats)."""
    seed(cli_db)
    with cli_db.uow() as uow:
        row = uow.ledger.get_many(T, D, C)[("a1", "ada")]
        at = datetime(2026, 3, 10, 11, 0, 0, 144376, tzinfo=UTC)
        uow.ledger.save(
            replace(row, reason_code=OVERRIDDEN, reason_text="kept", delivered_at=at), C
        )
        uow.commit()
    token = auth.create_key(cli_db.uow, SystemClock(), T, "reader", ["sync"]).token
    settings = Settings(database_url=cli_db.url, secret_key=TEST_SECRET, data_dir=tmp_path / "d")
    with TestClient(create_app(Runtime(settings=settings, db=cli_db))) as client:
        r = client.get(
            f"/api/v1/courses/{C}/overrides", headers={"Authorization": f"Bearer {token}"}
        )
    assert r.status_code == 200, r.text
    shown = json.loads(gradesync("overrides", "-t", T, "--course", C, "--json").stdout)
    assert shown == r.json() and len(shown) == 1
    assert shown[0]["delivered_at"] == "2026-03-10T11:00:00.144376Z"


def test_a_repair_does_not_read_back_from_a_paused_destination(
    cli_db: Database,
    gradesync: Run,
) -> None:
    """A repair's read-back of the LMS's timestamps is a request to the LMS like any other:
    while the destination is paused it is not asked (the repair still marks the grades, and
    says why their timestamps were not read). It was asked whatever the pause."""
    seed(cli_db)
    gradesync("destinations", "pause", D, "-t", T, "--reason", "exam week")
    out = json.loads(
        gradesync("repair", "-t", T, "-c", C, "-a", "a1", "-l", "ada", "--json").stdout
    )
    assert out["marked"] == 1
    [unread] = out["unread"]
    assert "is paused: exam week" in unread["error"], unread
    assert "auth_token_url" not in unread["error"]  # the client was not even made


def test_doctor_course_lists_a_grade_the_lms_fails_then_says_the_breaker_s_pause_lifts(
    cli_db: Database,
    gradesync: Run,
) -> None:
    """The LMS failing every score: before the breaker opened, "Grades are syncing ... 1
    problem" listed no cause and exited 0; once open, its pause said "No grades are syncing
    to this destination" and "Fix the cause named in the pause, then resume the
    destination", against the pause's own "gradesync probes the destination again by
    itself"."""
    _with_sis_sparing_pol(cli_db)
    soon = datetime.now(UTC) + timedelta(minutes=3)  # the CLI runs on the real clock
    failing = replace(
        _delivered("ada2", 9.0),
        state=DeliveryState.RETRYING,
        delivered_hash=None,
        tries=4,
        next_attempt_at=soon,
        reason_code="server_error",
        reason_text="injected server error — The LMS had a temporary failure; gradesync "
        "retries automatically.",
        remote_status=503,
        remote_message="injected server error",
    )
    with cli_db.uow() as uow:
        uow.ledger.save_many([(failing, C)])
        uow.commit()
    out = gradesync("doctor", "-t", T, "--course", C, ok=False)
    assert out.returncode == 1, out.stdout  # a problem counted is one listed, and fails
    assert "1 retrying, 2 skipped; 1 problem" in out.stdout
    assert "Only some grades (failed or refused at a destination)" in out.stdout
    flat = " ".join(out.stdout.split())
    assert "The LMS failed to take these grades; gradesync tries them again by itself" in flat
    assert "failed 4 times (server_error); the LMS answered HTTP 503: injected server" in flat
    data = json.loads(gradesync("doctor", "-t", T, "--course", C, "--json", ok=False).stdout)
    assert data["counts"]["problems"] == 1 and data["symptom"] == "some_grades"
    [retrying] = data["causes"]["grades"]
    assert (retrying["code"], retrying["learners"]) == ("retrying", ["ada2"])

    # the breaker opens: a pause gradesync lifts by itself at its end
    reason = pause_text(
        PauseCause.CIRCUIT_OPEN,
        " after repeated failures (last: injected server error); gradesync probes the "
        "destination again by itself.",
    )
    with cli_db.uow() as uow:
        uow.destinations.set_pause(T, D, soon, reason, PauseCause.CIRCUIT_OPEN)
        uow.commit()
    paused = gradesync("doctor", "-t", T, "--course", C, ok=False)
    assert paused.returncode == 1
    flat = " ".join(paused.stdout.split())
    assert f"{D}: Sending to this destination is paused for a while; gradesync tries" in flat
    assert "No grades are syncing" not in flat and "then resume" not in flat
    assert "The LMS failed repeatedly: gradesync paused sending to it for a while" in flat
    at = soon.strftime("%Y-%m-%d %H:%M UTC")
    assert f"what to do: Nothing is needed for sending to resume: at {at} gradesync" in flat
    assert "Resuming the destination sooner is optional" in flat
    data = json.loads(gradesync("doctor", "-t", T, "--course", C, "--json", ok=False).stdout)
    assert data["destinations"][D]["symptom"] == "sending_paused"
    [pause] = data["causes"]["course"]
    assert (pause["code"], pause["tries_again_by_itself"]) == ("destination_paused", True)
