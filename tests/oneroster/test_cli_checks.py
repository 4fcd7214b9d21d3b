"""`gradesync sis add` and `sis validate` check what they can and say so in the exit code:
add is an upsert that keeps what was not given, validate asks the SIS for its categories."""

from __future__ import annotations

import json
import socket
from dataclasses import replace

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Course, DestinationKind
from gradesync.sandbox.testing import RunningSandbox
from gradesync.testing import ManualClock
from tests.support.cli import Run

from .conftest import CLIENT_ID, CLIENT_SECRET
from .facts import NOW, seed_school

T = ("--tenant", "t1")


def _add(gradesync: Run, sis: RunningSandbox, *extra: str, ok: bool = True) -> object:
    return gradesync(
        "sis", "add", "sis", *T,
        "--base-url", sis.base_url, "--client-id", CLIENT_ID, *extra, ok=ok,
    )  # fmt: skip


def test_add_keeps_what_was_not_given_and_fails_when_its_check_fails(
    gradesync: Run, cli_db: Database, sis: RunningSandbox
) -> None:
    seed_school(cli_db, ManualClock(NOW))
    _add(gradesync, sis, "--name", "District SIS", "--client-secret", CLIENT_SECRET)
    _add(gradesync, sis, "--concurrency", "4")  # run again with other values only
    with cli_db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
    assert dest is not None
    assert dest.name == "District SIS" and dest.kind is DestinationKind.ONEROSTER_REST
    assert dest.config["concurrency"] == 4

    failed = _add(gradesync, sis, "--client-secret", "not-the-secret", ok=False)
    assert getattr(failed, "returncode", None) == 1
    assert "failed" in getattr(failed, "stdout", "")


def test_validate_reports_a_group_with_no_sis_category(
    gradesync: Run, cli_db: Database, sis: RunningSandbox
) -> None:
    seed_school(cli_db, ManualClock(NOW))
    _add(gradesync, sis, "--client-secret", CLIENT_SECRET, "--category-match", "name")
    gradesync(
        "sis", "map-class", "sis", "c1", "cls-1", *T,
        "--school", "sch-1", "--term-start", "2025-01-06", "--term-end", "2025-06-20",
    )  # fmt: skip
    gradesync("sis", "select", "sis", "quiz1", *T)
    ok = gradesync("sis", "validate", "sis", "quiz1", *T)
    assert "[category_missing]" not in ok.stdout

    with cli_db.uow() as uow:  # the group no SIS category is called
        quiz = uow.activities.get("t1", "quiz1")
        assert quiz is not None
        uow.activities.upsert(replace(quiz, category="Labs"))
        uow.commit()
    bad = gradesync("sis", "validate", "sis", "quiz1", *T, ok=False)
    assert bad.returncode == 1
    assert "[category_missing]" in bad.stdout and "Labs" in bad.stdout
    offline = gradesync("sis", "validate", "sis", "quiz1", *T, "--offline")
    assert "[category_missing]" not in offline.stdout


def test_validate_checks_categories_for_a_file_based_sis_too(
    gradesync: Run, cli_db: Database
) -> None:
    seed_school(cli_db, ManualClock(NOW))
    gradesync(
        "sis", "add", "sis", *T, "--name", "District files", "--file-based",
        "--category-match", "name",
    )  # fmt: skip
    gradesync(
        "sis", "map-class", "sis", "c1", "cls-1", *T,
        "--school", "sch-1", "--term-start", "2025-01-06", "--term-end", "2025-06-20",
    )  # fmt: skip
    # a file-based SIS cannot be asked by name: ticking an activity of an unaligned group is
    # refused with it (nothing is ticked), and validation reports it (exit 1 once ticked)
    refused = gradesync("sis", "select", "sis", "quiz1", *T, ok=False)
    assert refused.returncode == 2 and "[category_missing]" in refused.stderr, refused.stderr
    bad = gradesync("sis", "validate", "sis", "quiz1", *T)
    assert "[category_missing]" in bad.stdout and "Quizzes" in bad.stdout
    # aligned to the SIS's category sourcedId: valid, and ticked
    gradesync("sis", "categories", "sis", *T, "--align", "Quizzes=cat-quiz")
    ok = gradesync("sis", "validate", "sis", "quiz1", *T)
    assert "[category_missing]" not in ok.stdout
    gradesync("sis", "select", "sis", "quiz1", *T)
    # an activity with no group, and no default category
    with cli_db.uow() as uow:
        quiz = uow.activities.get("t1", "quiz1")
        assert quiz is not None
        uow.activities.upsert(replace(quiz, category=None))
        uow.commit()
    none = gradesync("sis", "validate", "sis", "quiz1", *T, ok=False)
    assert "[category_missing]" in none.stdout and "default_category" in none.stdout


def test_map_class_asks_the_sis_whether_it_has_the_class(
    gradesync: Run, cli_db: Database, sis: RunningSandbox
) -> None:
    """A mistyped class sourcedId is refused when it is mapped (the SIS answers 404 for it),
    not found by the first post; a SIS that cannot be asked is no reason to refuse."""
    seed_school(cli_db, ManualClock(NOW))
    _add(gradesync, sis, "--client-secret", CLIENT_SECRET)
    typo = gradesync("sis", "map-class", "sis", "c1", "cls-typo", *T, "--school", "sch-1", ok=False)
    assert typo.returncode == 2 and "[class_unknown]" in typo.stderr, typo.stderr
    assert "'cls-typo'" in typo.stderr
    with cli_db.uow() as uow:
        assert uow.links.course("t1", "sis", "c1") is None  # nothing saved
    gradesync("sis", "map-class", "sis", "c1", "cls-1", *T, "--school", "sch-1")
    with cli_db.uow() as uow:
        link = uow.links.course("t1", "sis", "c1")
        assert link is not None and link.remote_id == "cls-1"
        # the SIS down (a port nothing listens on): the mapping is saved, the post finds out
        dest = uow.destinations.get("t1", "sis")
        assert dest is not None
        uow.destinations.upsert(
            replace(dest, config={**dest.config, "base_url": _closed_url()}), NOW
        )
        uow.commit()
    gradesync("sis", "map-class", "sis", "c1", "cls-2", *T, "--school", "sch-1")
    with cli_db.uow() as uow:
        link = uow.links.course("t1", "sis", "c1")
        assert link is not None and link.remote_id == "cls-2"


def _closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/ims/oneroster/gradebook/v1p2"


def test_an_alignment_to_a_category_the_sis_has_not_is_refused(
    gradesync: Run, cli_db: Database, sis: RunningSandbox
) -> None:
    seed_school(cli_db, ManualClock(NOW))
    _add(gradesync, sis, "--client-secret", CLIENT_SECRET)
    gradesync("sis", "map-class", "sis", "c1", "cls-1", *T, "--school", "sch-1")
    r = gradesync(
        "sis", "categories", "sis", *T, "--course", "c1",
        "--align", "Homework=cat-hw", "--align", "Quizzes=cat-nope", ok=False,
    )  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    assert "aligned" not in r.stdout
    assert "--align: The SIS has no category 'cat-nope'" in r.stderr, r.stderr
    assert "[category_unknown]" in r.stderr
    with cli_db.uow() as uow:  # neither saved
        link = uow.links.course("t1", "sis", "c1")
    assert link is not None and "category_map" not in link.data


def test_aligning_several_groups_saves_all_or_nothing_and_names_every_problem(
    gradesync: Run, cli_db: Database, sis: RunningSandbox
) -> None:
    """`--align` given several times is one change: a value the service refuses (here the
    third, its group blank) left the first two saved, and only the first problem was named.
    Now nothing is saved and every problem is listed, each naming its value."""
    seed_school(cli_db, ManualClock(NOW))
    _add(gradesync, sis, "--client-secret", CLIENT_SECRET)
    gradesync("sis", "map-class", "sis", "c1", "cls-1", *T, "--school", "sch-1")

    def alignment() -> dict[str, str] | None:
        with cli_db.uow() as uow:
            link = uow.links.course("t1", "sis", "c1")
        assert link is not None
        return link.data.get("category_map")

    r = gradesync(
        "sis", "categories", "sis", *T, "--course", "c1",
        "--align", "Homework=cat-hw", "--align", "Quizzes=cat-quiz", "--align", " =cat-hw",
        ok=False,
    )  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    assert "aligned" not in r.stdout
    assert alignment() is None  # neither Homework nor Quizzes saved
    assert "error: --align: Name the activity group to align to category 'cat-hw'. [required]" in (
        r.stderr
    ), r.stderr

    # every problem at once, the SIS's own refusal among them
    r = gradesync(
        "sis", "categories", "sis", *T, "--course", "c1", "--json",
        "--align", "Homework= ", "--align", " =cat-quiz", "--align", "Labs=cat-nope",
        "--align", "Quizzes=cat-quiz", ok=False,
    )  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    problems = json.loads(r.stdout)["error"]["problems"]
    assert [(p["field"], p["rule"]) for p in problems] == [
        ("--align", "required"),
        ("--align", "required"),
        ("--align", "category_unknown"),
    ], problems
    assert "group 'Homework'" in problems[0]["message"]
    assert "'cat-quiz'" in problems[1]["message"]
    assert "'cat-nope'" in problems[2]["message"]
    assert alignment() is None

    # the command's own checks: the same group twice, or aligned and unaligned at once
    r = gradesync(
        "sis", "categories", "sis", *T, "--course", "c1", "--align", "Quizzes=cat-quiz",
        "--align", "Quizzes=cat-hw", "--align", "Homework=cat-hw", "--unalign", "Homework",
        ok=False,
    )  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    assert "error: --align: Group 'Quizzes' is aligned twice" in r.stderr, r.stderr
    assert "error: --unalign: Group 'Homework' is given to --align too" in r.stderr, r.stderr
    assert alignment() is None

    gradesync(
        "sis", "categories", "sis", *T, "--course", "c1",
        "--align", "Homework=cat-hw", "--align", "Quizzes= cat-quiz",
    )  # fmt: skip
    assert alignment() == {"Homework": "cat-hw", "Quizzes": "cat-quiz"}


def test_an_alignment_made_before_ticking_is_not_said_to_be_none(
    gradesync: Run, cli_db: Database, sis: RunningSandbox
) -> None:
    """`--align Quizzes=cat-quiz --course c1` with nothing ticked printed `aligned Quizzes ->
    cat-quiz`, then `alignment of c1: none`: read together, the alignment had not taken."""
    seed_school(cli_db, ManualClock(NOW))
    _add(gradesync, sis, "--client-secret", CLIENT_SECRET, "--category-match", "name")
    gradesync(
        "sis", "map-class", "sis", "c1", "cls-1", *T,
        "--school", "sch-1", "--term-start", "2025-01-06", "--term-end", "2025-06-20",
    )  # fmt: skip
    r = gradesync("sis", "categories", "sis", *T, "--course", "c1", "--align", "Quizzes=cat-quiz")
    assert "aligned Quizzes -> cat-quiz" in r.stdout
    assert "alignment of c1: none" not in r.stdout, r.stdout
    assert "alignment of c1: no activity is ticked for the SIS yet" in r.stdout, r.stdout
    assert "Quizzes -> cat-quiz: no activity ticked for the SIS is in this group yet" in r.stdout

    # once an activity of another group is ticked: its row, and the same word for Quizzes
    gradesync("sis", "select", "sis", "hw1", *T, "--hold")
    r = gradesync("sis", "categories", "sis", *T, "--course", "c1", "--align", "Quizzes=cat-quiz")
    assert "alignment of c1" in r.stdout and "hw1" in r.stdout, r.stdout
    assert "no activity is ticked" not in r.stdout
    assert "Quizzes -> cat-quiz: no activity ticked for the SIS is in this group yet" in r.stdout
    gradesync("sis", "select", "sis", "quiz1", *T, "--hold")
    r = gradesync("sis", "categories", "sis", *T, "--course", "c1", "--align", "Quizzes=cat-quiz")
    assert "quiz1" in r.stdout and "no activity ticked" not in r.stdout, r.stdout


def test_validate_with_the_sis_down_shows_what_it_checked_without_it(
    gradesync: Run, cli_db: Database, sis: RunningSandbox
) -> None:
    """With the SIS failing, `sis validate` stopped at `error: retry_later/server_error:
    token: ...`: none of the rules it checks on its own, no word of --offline."""
    seed_school(cli_db, ManualClock(NOW))
    _add(gradesync, sis, "--client-secret", CLIENT_SECRET, "--category-match", "name")
    gradesync(
        "sis", "map-class", "sis", "c1", "cls-1", *T,
        "--school", "sch-1", "--term-start", "2025-01-06", "--term-end", "2025-06-20",
    )  # fmt: skip
    sis.admin.set_faults({"oneroster": {"error_rate": 1.0}})
    r = gradesync("sis", "validate", "sis", *T, "--course", "c1", ok=False)
    assert r.returncode == 1, r.stdout + r.stderr
    # the rules checked without the SIS: the essay has no due date
    assert "nodue" in r.stdout and "[due_date_required]" in r.stdout, r.stdout
    assert "the SIS could not be asked whether each activity's group has a category" in r.stderr
    assert "server_error" in r.stderr and "the checks above were made without it" in r.stderr
    assert "--offline" in r.stderr, r.stderr

    r = gradesync("sis", "validate", "sis", *T, "--course", "c1", "--json", ok=False)
    assert r.returncode == 1, r.stdout + r.stderr
    error = json.loads(r.stdout)["error"]
    assert "could not be asked" in error["message"] and "--offline" in error["remedy"], error

    offline = gradesync("sis", "validate", "sis", *T, "--course", "c1", "--offline", ok=False)
    assert "could not be asked" not in offline.stderr and "[due_date_required]" in offline.stdout


def test_aligning_says_it_saved_when_the_sis_then_cannot_be_asked(
    gradesync: Run, cli_db: Database, sis: RunningSandbox
) -> None:
    seed_school(cli_db, ManualClock(NOW))
    _add(gradesync, sis, "--client-secret", CLIENT_SECRET)
    with cli_db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
        assert dest is not None
        down = {**dest.config, "base_url": _closed_url(), "token_url": _closed_url()}
        uow.destinations.upsert(replace(dest, config=down), NOW)
        uow.commit()
    r = gradesync("sis", "categories", "sis", *T, "--align", "Tests=cat-99", "--json", ok=False)
    assert r.returncode == 1
    error = json.loads(r.stdout)["error"]
    message = error["message"]
    assert message.startswith("saved (Tests -> cat-99), but asking the SIS"), message
    # the transport's own words, not Python's repr, and what to do
    assert "Error(" not in message and "Check the SIS's base and token URLs" in error["remedy"]
    with cli_db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
        assert dest is not None and dest.config["category_map"] == {"Tests": "cat-99"}


def test_problems_are_named_by_the_options_typed(
    gradesync: Run, cli_db: Database, sis: RunningSandbox, tmp_path: object
) -> None:
    """Not by the API's fields (`config.concurrency`, `course_ids`): by what the user typed."""
    seed_school(cli_db, ManualClock(NOW))

    def refused(*args: str, code: int = 2) -> str:
        r = gradesync("sis", *args, *T, ok=False)
        assert r.returncode == code, r.stdout + r.stderr
        return r.stderr

    assert "error: DESTINATION_ID: " in refused("add", "bad id!", "--file-based")
    bad = refused("add", "files", "--file-based", "--name-max-length", "0", "--concurrency", "99")
    assert "error: --name-max-length: " in bad and "error: --concurrency: " in bad, bad
    with cli_db.uow() as uow:
        assert uow.destinations.get("t1", "files") is None
    gradesync("sis", "add", "files", *T, "--file-based")
    assert "error: --term-start: " in refused(
        "map-class", "files", "c1", "cls-1", "--school", "sch-1", "--term-start", "soon"
    )
    out = str(tmp_path)
    assert "error: --since: " in refused("export-csv", "files", "--out", out, "--since", "then")
    # a moment without its zone is refused as the API refuses it, not read as UTC
    no_zone = refused("export-csv", "files", "--out", out, "--delta", "--since", "2026-11-01")
    assert "error: --since: " in no_zone and "[timezone_required]" in no_zone, no_zone
    _add(gradesync, sis, "--client-secret", CLIENT_SECRET, "--no-check")
    assert "error: DESTINATION_ID: " in refused("export-csv", "sis", "--out", out)
    # a course the tenant does not have is not found, named by --course; one not mapped is
    # bad input
    assert "error: --course: No course 'nope'" in refused(
        "export-csv", "files", "--out", out, "--course", "nope", code=3
    )
    assert "[class_not_mapped]" in refused("export-csv", "files", "--out", out, "--course", "c1")


def test_map_class_says_which_other_course_passes_back_to_the_class(
    gradesync: Run, cli_db: Database, sis: RunningSandbox
) -> None:
    seed_school(cli_db, ManualClock(NOW))
    with cli_db.uow() as uow:
        uow.courses.upsert(Course("t1", "c2", "Algebra, evening"))
        uow.commit()
    _add(gradesync, sis, "--client-secret", CLIENT_SECRET)
    first = gradesync("sis", "map-class", "sis", "c1", "cls-1", *T, "--school", "sch-1")
    assert "warning" not in first.stderr
    second = gradesync(
        "sis", "map-class", "sis", "c2", "cls-1", *T, "--school", "sch-1", "--json"
    )  # fmt: skip
    # mapped all the same (a class may be taught as several courses), with a word on stderr
    assert json.loads(second.stdout)["class_id"] == "cls-1"
    assert "warning:" in second.stderr and "'c1'" in second.stderr
    with cli_db.uow() as uow:
        link = uow.links.course("t1", "sis", "c2")
    assert link is not None and link.remote_id == "cls-1"


def test_doctor_counts_a_connection_on_the_default_token_url_complete(
    gradesync: Run, cli_db: Database, sis: RunningSandbox
) -> None:
    """A connection added without --token-url, as docs/oneroster.md allows (the token URL
    defaults to /ims/oneroster/oauth2/token on the same server), failed `doctor -d` with
    "Missing: token_url." every time, and so exited 1 while its tokens were granted."""
    seed_school(cli_db, ManualClock(NOW))
    _add(gradesync, sis, "--client-secret", CLIENT_SECRET)
    out = gradesync("doctor", *T, "-d", "sis")
    assert "Missing" not in out.stdout, out.stdout
    assert "✓ passed  The registration is complete" in out.stdout, out.stdout
