"""The admin CLI driven as a person would: tenants, keys, destinations, runs, import."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from gradesync.adapters.db.database import Database
from gradesync.config import Settings
from gradesync.domain.model import (
    Activity,
    Course,
    Destination,
    DestinationKind,
    Enrollment,
    Person,
    RunOutcome,
    RunScope,
    RunStage,
    SyncRun,
    Trigger,
)
from gradesync.runtime import Runtime
from gradesync.services.clock import SystemClock
from gradesync.services.ingest import IngestBatch, ingest
from gradesync.services.tenants import create_tenant
from gradesync.testing import TEST_SECRET
from gradesync.web.app import create_app
from tests.support.api import ROSTER
from tests.support.cli import Run
from tests.support.console import sign_in


def _token(out: str) -> str:
    [tok] = [line for line in out.splitlines() if line.startswith("gs_")]
    return tok


def test_tenant_and_keys_work_against_the_api(
    gradesync: Run, cli_db: Database, tmp_path: Path
) -> None:
    created = gradesync("tenants", "create", "northwind", "--name", "Northwind University")
    admin_token = _token(created.stdout)
    dup = gradesync("tenants", "create", "northwind", ok=False)
    assert dup.returncode == 4 and "already exists" in dup.stderr
    bad = gradesync("tenants", "create", "Bad Id!", ok=False)
    assert bad.returncode == 2 and "slug" in bad.stderr
    listed = json.loads(gradesync("tenants", "list", "--json").stdout)
    assert [(t["id"], t["name"]) for t in listed] == [("northwind", "Northwind University")]

    ingest_token = _token(
        gradesync(
            "keys", "create", "-t", "northwind", "--name", "courseware", "-s", "ingest"
        ).stdout
    )
    wrong = gradesync("keys", "create", "-t", "northwind", "--name", "x", "-s", "root", ok=False)
    assert wrong.returncode == 2 and "unknown_scope" in wrong.stderr
    keys = json.loads(gradesync("keys", "list", "-t", "northwind", "--json").stdout)
    assert {k["name"]: k["scopes"] for k in keys} == {
        "first admin key": ["admin"],
        "courseware": ["ingest"],
    }
    assert admin_token not in json.dumps(keys) and ingest_token not in json.dumps(keys)

    settings = Settings(database_url=cli_db.url, secret_key=TEST_SECRET, data_dir=tmp_path / "d")
    with TestClient(create_app(Runtime(settings=settings, db=cli_db))) as client:

        def post(token: str) -> int:
            r = client.post(
                "/api/v1/ingest", json=ROSTER, headers={"Authorization": f"Bearer {token}"}
            )
            return r.status_code

        assert post(ingest_token) == 202
        assert post(admin_token) == 202
        key_id = next(k["id"] for k in keys if k["name"] == "courseware")
        gradesync("keys", "revoke", key_id, "-t", "northwind")
        assert post(ingest_token) == 401
        assert post(admin_token) == 202
    table = gradesync("keys", "list", "-t", "northwind").stdout
    assert "revoked" in table and "courseware" in table


def _tenant(db: Database, tenant_id: str) -> None:
    create_tenant(db.uow, SystemClock(), tenant_id, tenant_id)


def _seed(db: Database) -> None:
    now = datetime(2025, 3, 1, 12, tzinfo=UTC)
    with db.uow() as uow:
        uow.destinations.upsert(
            Destination(
                "northwind",
                "canvas",
                DestinationKind.LTI13_AGS,
                "Canvas",
                config={"issuer": "https://canvas.example"},
                secret={"private": "do-not-print-me"},
            ),
            now,
        )
        scope = RunScope("northwind", None, "c1")
        uow.runs.add(SyncRun("run-1", scope, Trigger.RESYNC, "cli:ops", created_at=now))
        uow.runs.update(
            SyncRun(
                "run-1",
                scope,
                Trigger.RESYNC,
                "cli:ops",
                RunStage.FINISHED,
                RunOutcome.PARTLY_FAILED,
                {"delivered": 4, "rejected": 1},
                "1 result refused",
                now,
                now,
                now,
            )
        )
        uow.commit()


def test_destinations_and_runs(gradesync: Run, cli_db: Database) -> None:
    _tenant(cli_db, "northwind")
    _tenant(cli_db, "other")
    _seed(cli_db)
    listing = gradesync("destinations", "list", "-t", "northwind").stdout
    assert "canvas" in listing and "active" in listing
    shown = gradesync("destinations", "show", "canvas", "-t", "northwind").stdout
    assert "https://canvas.example" in shown and "do-not-print-me" not in shown
    gradesync("destinations", "pause", "canvas", "-t", "northwind", "--reason", "term rollover")
    view = json.loads(
        gradesync("destinations", "show", "canvas", "-t", "northwind", "--json").stdout
    )
    assert view["enabled"] is False and view["pause_reason"] == "term rollover"
    assert "secret" not in view
    # the list says why too, not "paused" alone
    listing = gradesync("destinations", "list", "-t", "northwind").stdout
    assert "paused - term rollover" in " ".join(listing.split()), listing
    gradesync("destinations", "resume", "canvas", "-t", "northwind")
    past = ("destinations", "pause", "canvas", "-t", "northwind", "--until", "2020-01-01T00:00")
    r = gradesync(*past, ok=False)
    assert r.returncode == 2 and r.stderr.startswith("error: --until: "), r.stderr  # not `until`
    # a word is no moment: refused with the documented rule (docs/api.md), nothing paused
    r = gradesync(
        "destinations", "pause", "canvas", "-t", "northwind", "--until", "tomorrow", ok=False
    )
    assert r.returncode == 2 and r.stderr.startswith("error: --until: "), r.stderr
    assert r.stderr.rstrip().endswith("[datetime]") and "'tomorrow'" in r.stderr, r.stderr
    view = json.loads(
        gradesync("destinations", "show", "canvas", "-t", "northwind", "--json").stdout
    )
    assert view["enabled"] is True and view["paused_until"] is None
    timed = (
        "destinations",
        "pause",
        "canvas",
        "-t",
        "northwind",
        "--until",
        "2999-01-01T08:00+02:00",
    )
    gradesync(*timed)
    view = json.loads(
        gradesync("destinations", "show", "canvas", "-t", "northwind", "--json").stdout
    )
    assert view["paused_until"].startswith("2999-01-01T06:00")
    gradesync("destinations", "resume", "canvas", "-t", "northwind")
    # another tenant cannot see or touch it
    assert gradesync("destinations", "show", "canvas", "-t", "other", ok=False).returncode == 3
    assert (
        gradesync("destinations", "delete", "canvas", "-t", "other", "--yes", ok=False).returncode
        == 3
    )

    runs = json.loads(gradesync("runs", "list", "-t", "northwind", "--json").stdout)
    assert [(r["id"], r["outcome"]) for r in runs] == [("run-1", "partly_failed")]
    shown_run = gradesync("runs", "show", "run-1", "-t", "northwind").stdout
    assert "queued" in shown_run and "finished" in shown_run and "rejected 1" in shown_run
    assert gradesync("runs", "show", "run-1", "-t", "other", ok=False).returncode == 3

    declined = gradesync(
        "destinations", "delete", "canvas", "-t", "northwind", ok=False, input="n\n"
    )
    assert declined.returncode == 1  # declined at the prompt, which goes to stderr
    assert "Delete destination canvas" in declined.stderr and "aborted" in declined.stderr
    # --json asks no question (docs/operations.md): without --yes it is refused, unasked
    refused = gradesync(
        "destinations", "delete", "canvas", "-t", "northwind", "--json", ok=False, input=""
    )
    assert refused.returncode == 2 and "[y/N]" not in refused.stderr, refused.stderr
    error = json.loads(refused.stdout)["error"]
    assert [(p["field"], p["rule"]) for p in error["problems"]] == [("--yes", "required")]
    # one that does not exist is said before anything is asked
    missing = gradesync("destinations", "delete", "nope", "-t", "northwind", ok=False, input="")
    assert missing.returncode == 3 and "Delete" not in missing.stderr + missing.stdout
    gradesync("destinations", "delete", "canvas", "-t", "northwind", "--yes")
    with cli_db.uow() as uow:
        assert uow.destinations.all("northwind") == []


def test_runs_show_says_who_stopped_a_run_and_who_took_it_over(
    gradesync: Run, cli_db: Database
) -> None:
    """The stage history's notes, as docs/operations.md promises them, in the text output
    as in --json."""
    _tenant(cli_db, "northwind")
    stopped_at = datetime(2025, 3, 1, 10, 2, 11, tzinfo=UTC)
    later = stopped_at + timedelta(minutes=5)
    with cli_db.uow() as uow:
        scope = RunScope("northwind", None, "c1")
        uow.runs.add(SyncRun("run-2", scope, Trigger.RESYNC, "cli:ops", created_at=stopped_at))
        # worker w-dead takes the run and stops heart-beating; w-live requeues and resumes it
        assert uow.runs.claim_next("w-dead", stopped_at, stopped_at) is not None
        assert uow.runs.requeue_stale(later, later, keep_worker="w-live") == ["run-2"]
        assert uow.runs.claim_next("w-live", later, later) is not None
        uow.commit()

    shown = gradesync("runs", "show", "run-2", "-t", "northwind").stdout

    lines = [line for line in shown.splitlines() if line.startswith("  ")]
    # after the time, the stage and its note, in columns two spaces or more apart
    history = [re.split(r"\s{2,}", line.split(None, 1)[1].strip()) for line in lines]
    assert history == [
        ["queued"],
        ["computing"],
        # the requeue and the claim that took it up: one line; stopped while computing, it
        # computes again, its second attempt
        [
            "resumed (attempt 2)",
            "worker w-dead stopped (last heard 10:02:11 UTC); requeued by w-live; "
            "resumed by w-live",
        ],
        ["computing (attempt 2)"],
    ]


def _roster(db: Database) -> None:
    batch = IngestBatch(
        courses=[Course("northwind", "c1", "Bio")],
        activities=[
            Activity("northwind", "q1", "c1", "Quiz 1", 10),
            Activity("northwind", "q2", "c1", "Quiz 2", 20),
        ],
        people=[Person("northwind", "p1", "Ada"), Person("northwind", "p2", "Grace")],
        enrollments=[Enrollment("northwind", "c1", "p1"), Enrollment("northwind", "c1", "p2")],
    )
    ingest(db.uow, SystemClock(), None, "northwind", batch)


def test_import_gradebook_and_long_csv(gradesync: Run, cli_db: Database, tmp_path: Path) -> None:
    _tenant(cli_db, "northwind")
    _roster(cli_db)
    wide = tmp_path / "gradebook.csv"
    wide.write_text("person_id,Student,Quiz 1 (q1),q2,Total\np1,Ada,8,15,23\np2,Grace,,19.5,19.5\n")
    out = gradesync(
        "import",
        "attempts",
        str(wide),
        "-t",
        "northwind",
        "--course",
        "c1",
        "--completed-at",
        "2025-03-01T10:00:00Z",
    )
    assert "imported 3 attempts (0 already stored)" in out.stdout
    assert "Student" in out.stdout and "Total" in out.stdout  # ignored columns are listed
    again = gradesync(
        "import",
        "attempts",
        str(wide),
        "-t",
        "northwind",
        "--course",
        "c1",
        "--completed-at",
        "2025-03-01T10:00:00Z",
    )
    assert "imported 0 attempts (3 already stored)" in again.stdout
    with cli_db.uow() as uow:
        assert [a.score_given for a in uow.attempts.for_key("northwind", "q1", "p1")] == [8]
        assert [a.score_maximum for a in uow.attempts.for_key("northwind", "q2", "p2")] == [20]
        assert uow.dirty.count() >= 3

    long = tmp_path / "attempts.csv"
    long.write_text(
        "source_event_id,person_id,activity_id,score_given,score_maximum,completed_at\n"
        "ev-1,p1,q1,9,10,2025-03-02T10:00:00+01:00\n"
        "ev-2,p2,q1,7,10,2025-03-02T10:00:00Z\n"
    )
    out = gradesync("import", "attempts", str(long), "-t", "northwind")
    assert "imported 2 attempts" in out.stdout


def test_import_bad_file_stores_nothing(gradesync: Run, cli_db: Database, tmp_path: Path) -> None:
    _tenant(cli_db, "northwind")
    _roster(cli_db)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "person_id,activity_id,score_given,completed_at\n"
        "p1,q1,8,2025-03-02T10:00:00Z\n"
        "p1,q1,abc,2025-03-02T10:00:00Z\n"
        "p2,q1,5,2025-03-02 10:00\n"
        "ghost,q1,5,2025-03-02T10:00:00Z\n"
        "p2,nope,5,2025-03-02T10:00:00Z\n"
    )
    r = gradesync("import", "attempts", str(bad), "-t", "northwind", ok=False)
    assert r.returncode == 2
    assert "line 3, score_given: 'abc' is not a number [number]" in r.stderr
    assert "line 4, completed_at" in r.stderr and "timezone_required" in r.stderr
    assert "line 6, activity_id: no activity 'nope' [unknown_activity]" in r.stderr
    # the unknown person in the same report, every problem at once, in the file's order
    assert [line[: len("error: line 3")] for line in r.stderr.splitlines()[:4]] == [
        "error: line 3",
        "error: line 4",
        "error: line 5",
        "error: line 6",
    ], r.stderr
    assert "line 5, person_id: no person 'ghost' [unknown_person]" in r.stderr
    assert "nothing was imported" in r.stderr
    with cli_db.uow() as uow:
        assert uow.attempts.for_person("northwind", "p1") == []
    bad.write_text("person_id,activity_id,score_given\nghost,q1,5\n")
    r = gradesync("import", "attempts", str(bad), "-t", "northwind", ok=False)
    assert r.returncode == 2 and "unknown_person" in r.stderr


def test_import_reports_every_problem_of_a_file_in_one_pass(
    gradesync: Run, cli_db: Database, tmp_path: Path
) -> None:
    """The problems of reading the file (an unknown person or activity, an unreadable number
    or date, a missing zone) and those of the ingest's rules (a negative score, a maximum of
    0) in one report, each under its own column: not the second kind once the first is
    fixed."""
    _tenant(cli_db, "northwind")
    _roster(cli_db)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "person_id,activity_id,score_given,score_maximum,completed_at\n"
        "p1,q1,-1,10,2025-03-02T10:00:00Z\n"  # line 2
        "ghost,q1,5,10,2025-03-02T10:00:00Z\n"
        "p2,nope,5,10,2025-03-02T10:00:00Z\n"
        "p2,q1,4,0,2025-03-02T10:00:00Z\n"  # line 5
        "p1,q2,abc,10,2025-03-02T10:00:00Z\n"
        "p1,q2,4,10,yesterday\n"
        "p2,q2,4,10,2025-03-02 10:00\n"
        "ghost,q2,-2,10,2025-03-02T10:00:00Z\n"  # line 9: two problems
    )
    r = gradesync("import", "attempts", str(bad), "-t", "northwind", "--dry-run", ok=False)
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: line")]
    assert [(e.split(":")[1].strip(), e.rsplit("[", 1)[1]) for e in errors] == [
        ("line 2, score_given", "not_negative]"),
        ("line 3, person_id", "unknown_person]"),
        ("line 4, activity_id", "unknown_activity]"),
        ("line 5, score_maximum", "positive]"),
        ("line 6, score_given", "number]"),
        ("line 7, completed_at", "datetime]"),
        ("line 8, completed_at", "timezone_required]"),
        ("line 9, person_id", "unknown_person]"),
        ("line 9, score_given", "not_negative]"),
    ], r.stderr
    # a gradebook's problems are named by its columns; a person once per line
    wide = tmp_path / "gradebook.csv"
    wide.write_text("person_id,Quiz 1 (q1),q2\nghost,-1,3\n")
    r = gradesync("import", "attempts", str(wide), "-t", "northwind", "--dry-run", ok=False)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: line")]
    assert [e.split(":")[1].strip() for e in errors] == [
        "line 2, person_id",
        "line 2, Quiz 1 (q1)",
    ], r.stderr


def test_import_reports_a_rows_own_problems_beside_an_unknown_activity_or_a_blank(
    gradesync: Run, cli_db: Database, tmp_path: Path
) -> None:
    """A row whose activity is unknown has no maximum to read its score against, and a row
    with a blank score or person was left at that: its other problems (a negative score, an
    unknown activity) were said only once the first was fixed. Every one of every row now,
    and nothing stored."""
    _tenant(cli_db, "northwind")
    _roster(cli_db)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "person_id,activity_id,score_given\n"
        "p1,q1,8\n"
        "p1,nope,-3\n"  # line 3
        "p2,nope,\n"
        ",nope,abc\n"  # line 5
    )
    for dry in ([], ["--dry-run"]):
        r = gradesync("import", "attempts", str(bad), "-t", "northwind", *dry, ok=False)
        assert r.returncode == 2
        errors = [line for line in r.stderr.splitlines() if line.startswith("error: line")]
        assert [(e.split(":")[1].strip(), e.rsplit("[", 1)[1]) for e in errors] == [
            ("line 3, activity_id", "unknown_activity]"),
            ("line 3, score_given", "not_negative]"),
            ("line 4, activity_id", "unknown_activity]"),
            ("line 4, score_given", "required]"),
            ("line 5, person_id", "required]"),
            ("line 5, activity_id", "unknown_activity]"),
            ("line 5, score_given", "number]"),
        ], r.stderr
        assert "nothing was imported" in r.stderr
    # a gradebook's row without its person: its scores are still checked
    wide = tmp_path / "gradebook.csv"
    wide.write_text("person_id,Quiz 1 (q1),q2\np1,4,5\n,-1,3\n")
    r = gradesync("import", "attempts", str(wide), "-t", "northwind", ok=False)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: line")]
    assert [(e.split(":")[1].strip(), e.rsplit("[", 1)[1]) for e in errors] == [
        ("line 3, person_id", "required]"),
        ("line 3, Quiz 1 (q1)", "not_negative]"),
    ], r.stderr
    with cli_db.uow() as uow:
        assert uow.attempts.for_person("northwind", "p1") == []
        assert uow.attempts.for_person("northwind", "p2") == []


def test_import_refuses_a_file_not_in_utf8_or_with_a_column_named_twice(
    gradesync: Run, cli_db: Database, tmp_path: Path
) -> None:
    """A file in another encoding was a traceback (and nothing on stdout with --json); a
    column named twice was read once, the last winning. Both: exit 2, named, nothing stored."""
    _tenant(cli_db, "northwind")
    _roster(cli_db)
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(b"person_id,activity_id,score_given\np1,q1,8\np2,q1,\xe9\n")
    for dry in ([], ["--dry-run"]):
        r = gradesync("import", "attempts", str(latin), "-t", "northwind", "--json", *dry, ok=False)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith("error: line 3: byte 0xe9 at column 7 is not UTF-8"), r.stderr
        assert json.loads(r.stdout)["error"]["problems"][0]["rule"] == "utf8"
    twice = tmp_path / "twice.csv"
    twice.write_text("person_id,activity_id,score_given,score_given\np1,q1,2,9\n")
    gradebook = tmp_path / "gradebook.csv"
    gradebook.write_text("person_id,q1,Quiz 2 (q2),q1\np1,2,3,9\n")
    for f, column, where in [(twice, "score_given", "3 and 4"), (gradebook, "q1", "2 and 4")]:
        r = gradesync("import", "attempts", str(f), "-t", "northwind", ok=False)
        assert r.returncode == 2 and r.stderr.startswith(
            f"error: line 1, {column}: {column!r} heads columns {where}"
        ), r.stderr
        assert "[duplicate_column]" in r.stderr
    with cli_db.uow() as uow:
        assert uow.attempts.for_person("northwind", "p1") == []
        assert uow.attempts.for_person("northwind", "p2") == []


def test_import_of_a_course_not_there_is_not_found(
    gradesync: Run, cli_db: Database, tmp_path: Path
) -> None:
    _tenant(cli_db, "northwind")
    _roster(cli_db)
    wide = tmp_path / "gradebook.csv"
    wide.write_text("person_id,q1\np1,8\n")
    r = gradesync(
        "import", "attempts", str(wide), "-t", "northwind", "--course", "nope", "--json", ok=False
    )
    assert r.returncode == 3, r.stderr
    assert r.stderr == "error: --course: No course 'nope'. [unknown_course]\n"
    error = json.loads(r.stdout)["error"]
    assert error["code"] == "not_found" and error["problems"][0]["field"] == "--course"


def test_import_checks_every_rule_before_storing_and_in_a_dry_run(
    gradesync: Run, cli_db: Database, tmp_path: Path
) -> None:
    """A row the ingest refuses (a negative score, a maximum of 0) is found before anything is
    stored, and a dry run says so too, naming the line: never half a file."""
    _tenant(cli_db, "northwind")
    _roster(cli_db)
    rows = ["p1,q1,8,10,2025-03-02T10:00:00Z"] * 1  # a good row first
    rows += [f"p2,q1,{i % 7},10,2025-03-0{1 + i % 9}T10:00:{i % 60:02d}Z" for i in range(600)]
    rows += ["p1,q2,-3,10,2025-03-02T10:00:00Z", "p2,q2,4,0,2025-03-02T10:00:00Z"]
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "person_id,activity_id,score_given,score_maximum,completed_at\n" + "\n".join(rows)
    )
    for dry in ([], ["--dry-run"]):
        r = gradesync("import", "attempts", str(bad), "-t", "northwind", *dry, ok=False)
        assert r.returncode == 2, r.stdout
        assert "line 603, score_given" in r.stderr and "not_negative" in r.stderr, r.stderr
        assert "line 604, score_maximum" in r.stderr and "[positive]" in r.stderr
        assert "nothing was imported" in r.stderr
        with cli_db.uow() as uow:
            assert uow.attempts.for_person("northwind", "p1") == []


def test_users_add_on_an_existing_account_keeps_what_it_is_not_given(
    gradesync: Run, cli_db: Database
) -> None:
    """`users add` is also how a password is reset: that must not demote an admin or take an
    instructor's courses away."""
    _tenant(cli_db, "northwind")
    pw = "a long enough password"
    add = ("users", "add", "-t", "northwind", "--password", pw)
    gradesync(*add, "ada", "--role", "admin", "--name", "Ada Byron")
    gradesync(*add, "ins", "--course", "c1", "--course", "c2")
    gradesync(*add, "new")  # a new account: an instructor of no courses
    # asked for: the prompts go to stderr, stdout stays one JSON document
    asked = gradesync("users", "add", "-t", "northwind", "asked", "--json", input=f"{pw}\n{pw}\n")
    assert json.loads(asked.stdout)["username"] == "asked" and "Password" in asked.stderr
    reset = ("users", "add", "-t", "northwind", "--password", "another long password")
    for username in ("ada", "ins"):  # a password reset
        gradesync(*reset, username)
    listed = {
        u["username"]: u
        for u in json.loads(gradesync("users", "list", "-t", "northwind", "--json").stdout)
    }
    assert (listed["ada"]["role"], listed["ada"]["name"]) == ("admin", "Ada Byron")
    assert (listed["ins"]["role"], listed["ins"]["course_ids"]) == ("instructor", ["c1", "c2"])
    assert (listed["new"]["role"], listed["new"]["course_ids"]) == ("instructor", [])
    table = gradesync("users", "list", "-t", "northwind").stdout
    new_row = next(line for line in table.splitlines() if "new" in line.split())
    assert "none" in new_row and "all" not in new_row  # an instructor of no courses sees none


def test_a_password_reset_or_a_deleted_account_ends_its_console_sessions(
    gradesync: Run, cli_db: Database, tmp_path: Path
) -> None:
    """`users add` on an existing name resets its password: a session opened with the old one
    is over (another account's stays). `users delete` asks first, as `destinations delete`
    does, and a deleted account's session is over too."""
    _tenant(cli_db, "northwind")
    _roster(cli_db)
    add = ("users", "add", "-t", "northwind", "--course", "c1")
    gradesync(*add, "ins", "--password", "the first password")
    gradesync(*add, "other", "--password", "the other password")
    settings = Settings(database_url=cli_db.url, secret_key=TEST_SECRET, data_dir=tmp_path / "d")
    app = create_app(Runtime(settings=settings, db=cli_db))
    with TestClient(app) as ins, TestClient(app) as other:
        assert sign_in(ins, "ins", "the first password").status_code == 200
        assert sign_in(other, "other", "the other password").status_code == 200

        def status(client: TestClient) -> int:
            return client.get("/console/courses/c1", follow_redirects=False).status_code

        assert status(ins) == 200
        gradesync(*add, "ins", "--password", "a brand new password")
        assert status(ins) == 303 and status(other) == 200
        assert sign_in(ins, "ins", "the first password").status_code == 401
        assert sign_in(ins, "ins", "a brand new password").status_code == 200
        assert status(ins) == 200

        delete = ("users", "delete", "ins", "-t", "northwind")
        declined = gradesync(*delete, ok=False, input="n\n")
        assert declined.returncode == 1 and "Delete account ins" in declined.stderr
        refused = gradesync(*delete, "--json", ok=False, input="")
        assert refused.returncode == 2 and "[y/N]" not in refused.stderr, refused.stderr
        error = json.loads(refused.stdout)["error"]
        assert [(p["field"], p["rule"]) for p in error["problems"]] == [("--yes", "required")]
        assert status(ins) == 200  # nothing changed
        done = json.loads(gradesync(*delete, "--yes", "--json").stdout)
        assert done == {"tenant": "northwind", "username": "ins", "deleted": True}
        assert status(ins) == 303 and status(other) == 200
        assert sign_in(ins, "ins", "a brand new password").status_code == 401
        missing = gradesync(*delete, ok=False, input="")
        assert missing.returncode == 3 and "account 'ins' not found" in missing.stderr
        assert "Delete" not in missing.stderr + missing.stdout
    listed = json.loads(gradesync("users", "list", "-t", "northwind", "--json").stdout)
    assert [u["username"] for u in listed] == ["other"]


def test_users_add_says_when_the_name_is_an_account_in_another_tenant(
    gradesync: Run, cli_db: Database
) -> None:
    """A name in two tenants must name the school at sign-in, whatever the passwords, and
    `users add` says so."""
    _tenant(cli_db, "northwind")
    _tenant(cli_db, "demo")
    gradesync("users", "add", "-t", "demo", "admin", "--password", "gradesync-demo")
    add = ("users", "add", "-t", "northwind", "admin", "--role", "admin")
    for password in ("northwind-admin", "gradesync-demo"):
        said = gradesync(*add, "--password", password).stdout
        assert "note: admin is also an account in tenant demo, so signing in must name " in said
        assert "the school (tenant id)" in said
    got = json.loads(gradesync(*add, "--password", "gradesync-demo", "--json").stdout)
    assert (got["also_in_tenants"], got["school_needed"]) == (["demo"], True)
    alone = json.loads(gradesync(*add[:-3], "ada", "--password", "x" * 10, "--json").stdout)
    assert (alone["also_in_tenants"], alone["school_needed"]) == ([], False)
    assert "note:" not in gradesync(*add[:-3], "ada", "--password", "x" * 10).stdout


def test_import_refuses_an_event_id_reused_across_batches_before_storing(
    gradesync: Run, cli_db: Database, tmp_path: Path
) -> None:
    """The file goes in batches of 500: an event id given in the first for one attempt and in
    a later one for another is found before any batch is stored."""
    _tenant(cli_db, "northwind")
    _roster(cli_db)
    rows = ["ev-0,p1,q1,8,2025-03-02T10:00:00Z"]
    rows += [f"ev-{i},p2,q1,{i % 7},2025-03-02T10:{i % 60:02d}:00Z" for i in range(1, 600)]
    rows += ["ev-0,p2,q2,4,2025-03-02T10:00:00Z"]  # line 602: ev-0 again, another attempt
    f = tmp_path / "events.csv"
    f.write_text(
        "source_event_id,person_id,activity_id,score_given,completed_at\n" + "\n".join(rows)
    )
    r = gradesync("import", "attempts", str(f), "-t", "northwind", "--dry-run", ok=False)
    assert r.returncode == 2 and "line 602, source_event_id" in r.stderr, r.stderr
    assert "event_id_reused" in r.stderr
    r = gradesync("import", "attempts", str(f), "-t", "northwind", ok=False)
    assert r.returncode == 2 and "nothing was imported" in r.stderr
    with cli_db.uow() as uow:
        assert uow.attempts.for_person("northwind", "p1") == []


def test_users_add_says_which_courses_are_not_known_yet(gradesync: Run, cli_db: Database) -> None:
    """An instructor may be given a course the courseware has not sent yet (accounts are
    often made first); the command says so, instead of nothing, for a typo to be seen."""
    _tenant(cli_db, "northwind")
    _roster(cli_db)
    add = ("users", "add", "-t", "northwind", "--password", "a long enough password")
    out = gradesync(*add, "ins", "--course", "c1", "--course", "chem-999").stdout
    assert "note: no course 'chem-999' yet; ins sees it once it is sent to gradesync" in out
    assert "'c1'" not in out
    got = json.loads(gradesync(*add, "ins", "--course", "c1", "--json").stdout)
    assert got["unknown_course_ids"] == [] and got["course_ids"] == ["c1"]
