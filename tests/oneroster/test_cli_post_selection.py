"""`gradesync sis select --hold` then `sis post --activity X`: ticking and posting are two
steps; only the posted activity reaches the SIS, the other ticked one is held back (its
grades, even new ones, wait) until it is posted in turn."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

from gradesync.adapters.db.database import Database
from gradesync.domain.model import DeliveryState, RunOutcome
from gradesync.runtime import Runtime
from gradesync.sandbox.testing import RunningSandbox
from gradesync.testing import ManualClock, post_attempts, wait_for_async
from tests.support.cli import Run
from tests.support.worker import with_worker

from .conftest import CLIENT_ID, CLIENT_SECRET
from .facts import NOW, seed_school

T = ("--tenant", "t1")


def _run_id(out: str) -> str:
    found = re.search(r"run (\S+) queued", out)
    assert found is not None, out
    return found.group(1)


def _line_items(sis: RunningSandbox) -> dict[str, str]:
    """SIS line item sourcedId -> title."""
    return {li["sourcedId"]: li["title"] for li in sis.admin.inspect()["sis"]["lineItems"]}


def _results(sis: RunningSandbox) -> dict[tuple[str, str], float]:
    items = _line_items(sis)
    return {
        (items[r["lineItem"]["sourcedId"]], r["student"]["sourcedId"]): r["score"]
        for r in sis.admin.inspect()["sis"]["results"]
    }


def _rows(db: Database, activity: str) -> dict[str, tuple[DeliveryState, str | None]]:
    with db.uow() as uow:
        rows = uow.ledger.get_many("t1", "sis", "c1", [activity])
    return {p: (r.state, r.reason_code) for (_, p), r in rows.items()}


def test_post_with_activity_sends_only_that_one_and_holds_the_other_back(
    gradesync: Run, cli_db: Database, sis: RunningSandbox, tmp_path: Path
) -> None:
    seed_school(cli_db, ManualClock(NOW))
    gradesync(
        "sis", "add", "sis", *T, "--base-url", sis.base_url, "--client-id", CLIENT_ID,
        "--client-secret", CLIENT_SECRET, "--category-match", "name",
    )  # fmt: skip
    gradesync(
        "sis", "map-class", "sis", "c1", "cls-1", *T,
        "--school", "sch-1", "--term-start", "2025-01-06", "--term-end", "2025-06-20",
    )  # fmt: skip
    gradesync("sis", "map-class", "sis", "c1", "cls-2", *T, "--section", "sec-b")
    gradesync("sis", "map-students", "sis", "c1", *T)
    # the grades arrive as the courseware posts them (each marks its key for recompute)
    post_attempts(
        cli_db.uow, None, "t1", [("quiz1", "p1", 8.0), ("hw1", "p1", 4.0), ("hw1", "p2", 3.0)]
    )
    held = gradesync("sis", "select", "sis", "quiz1", "hw1", *T, "--hold")
    assert "held: the grades wait" in held.stdout

    posted = gradesync("sis", "post", "sis", "c1", *T, "--activity", "quiz1")
    assert "held back hw1: ticked, waits for its own post" in posted.stdout
    first = _run_id(posted.stdout)

    async def first_post(runtime: Runtime) -> None:
        done = await runtime.wait_for_run_async(first, 20.0, tenant_id="t1")
        assert done.outcome is RunOutcome.SUCCEEDED, (done.message, done.counts)
        # hw1's grades were computed and reached delivery, which held them back
        await wait_for_async(
            lambda: (
                set(_rows(cli_db, "hw1").values()) == {(DeliveryState.SKIPPED, "waiting_for_post")}
            ),
            "hw1 held back",
            blocking=True,
        )
        # a new grade of the held activity waits too
        post_attempts(cli_db.uow, runtime.waker, "t1", [("hw1", "p3", 5.0)])
        await wait_for_async(
            lambda: _rows(cli_db, "hw1").get("p3") == (DeliveryState.SKIPPED, "waiting_for_post"),
            "the new hw1 grade held back",
            blocking=True,
        )

    with_worker(cli_db, tmp_path / "worker", first_post, run_retry_patience_seconds=2.0)
    assert _results(sis) == {("Quiz 1", "stu-1"): 8.0}
    assert "Homework 1" not in _line_items(sis).values()

    # posting hw1 in turn sends its grades, the new one included
    again = gradesync("sis", "post", "sis", "c1", *T, "--activity", "hw1")
    assert "held back" not in again.stdout
    second = _run_id(again.stdout)

    async def second_post(runtime: Runtime) -> None:
        done = await runtime.wait_for_run_async(second, 20.0, tenant_id="t1")
        assert done.outcome is RunOutcome.SUCCEEDED, (done.message, done.counts)

    with_worker(cli_db, tmp_path / "worker", second_post, run_retry_patience_seconds=2.0)
    assert _results(sis) == {
        ("Quiz 1", "stu-1"): 8.0,
        # scored out of 10 on a 5-point homework
        ("Homework 1", "stu-1"): 2.0,
        ("Homework 1", "stu-2"): 1.5,
        ("Homework 1", "stu-3"): 2.5,
    }
    assert {s for s, _ in _rows(cli_db, "hw1").values()} == {DeliveryState.DELIVERED}


def test_a_post_with_nothing_to_post_is_refused_as_bad_input(
    gradesync: Run, cli_db: Database
) -> None:
    """As the API's 422: exit 2, the error object on stdout with --json, no run."""
    seed_school(cli_db, ManualClock(NOW))
    gradesync("sis", "add", "sis", *T, "--file-based")
    gradesync("sis", "map-class", "sis", "c1", "cls-1", *T, "--school", "sch-1")
    r = gradesync("sis", "post", "sis", "c1", *T, "--activity", "nodue", "--json", ok=False)
    assert r.returncode == 2, r.stdout + r.stderr
    error = json.loads(r.stdout)["error"]
    # every reason it is left out: not ticked, then what validation found
    assert [(p["field"], p["rule"]) for p in error["problems"]] == [
        ("--activity", "nothing_to_post"),
        ("activities[nodue].sync_to_sis", "not_selected_for_sis"),
        ("activities[nodue].due_at", "due_date_required"),
    ], error
    assert "--activity: No selected activity can be posted" in r.stderr
    assert "gradesync sis select sis nodue" in r.stderr
    with cli_db.uow() as uow:
        assert uow.runs.history("t1") == []


def test_a_whole_course_post_with_nothing_ticked_lists_every_activity_and_why(
    gradesync: Run, cli_db: Database
) -> None:
    """`sis post sis c1` with nothing ticked gave only `nothing_to_post`: none of the refused
    activities, though `--activity` lists each with every reason (docs/oneroster.md §5)."""
    seed_school(cli_db, ManualClock(NOW))
    gradesync("sis", "add", "sis", *T, "--file-based")
    gradesync("sis", "map-class", "sis", "c1", "cls-1", *T, "--school", "sch-1")
    r = gradesync("sis", "post", "sis", "c1", *T, "--json", ok=False)
    assert r.returncode == 2, r.stdout + r.stderr
    problems = [(p["field"], p["rule"]) for p in json.loads(r.stdout)["error"]["problems"]]
    assert problems[0] == ("--activity", "nothing_to_post"), problems
    for activity in ("quiz1", "hw1", "nodue", "long"):
        assert (f"activities[{activity}].sync_to_sis", "not_selected_for_sis") in problems
    assert ("activities[nodue].due_at", "due_date_required") in problems
    r = gradesync("sis", "post", "sis", "c1", *T, ok=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "gradesync sis select sis quiz1" in r.stderr, r.stderr
    with cli_db.uow() as uow:
        assert uow.runs.history("t1") == []


def test_a_post_leaves_out_a_ticked_activity_whose_group_has_no_sis_category(
    gradesync: Run, cli_db: Database, sis: RunningSandbox
) -> None:
    """Ticked while its group had a category, then moved to a group the SIS has no category
    for: the post asks the SIS as ticking does and leaves it out with `category_missing`
    (it used to queue a run whose column could not be provisioned, with no reason)."""
    seed_school(cli_db, ManualClock(NOW))
    gradesync(
        "sis", "add", "sis", *T, "--base-url", sis.base_url, "--client-id", CLIENT_ID,
        "--client-secret", CLIENT_SECRET, "--category-match", "name",
    )  # fmt: skip
    gradesync(
        "sis", "map-class", "sis", "c1", "cls-1", *T,
        "--school", "sch-1", "--term-start", "2025-01-06", "--term-end", "2025-06-20",
    )  # fmt: skip
    gradesync("sis", "select", "sis", "quiz1", "hw1", *T, "--hold")
    with cli_db.uow() as uow:
        hw1 = uow.activities.get("t1", "hw1")
        assert hw1 is not None
        uow.activities.upsert(replace(hw1, category="Projects"))
        uow.commit()

    r = gradesync("sis", "post", "sis", "c1", *T, "--activity", "hw1", "--json", ok=False)
    assert r.returncode == 2, r.stdout + r.stderr
    problems = json.loads(r.stdout)["error"]["problems"]
    assert [(p["field"], p["rule"]) for p in problems] == [
        ("--activity", "nothing_to_post"),
        ("activities[hw1].category", "category_missing"),
    ], problems
    with cli_db.uow() as uow:
        assert uow.runs.history("t1") == []

    both = gradesync("sis", "post", "sis", "c1", *T, "--activity", "hw1", "--activity", "quiz1")
    assert "left out hw1: " in both.stdout and "'Projects'" in both.stdout, both.stdout
    assert "1 activity(ies)" in both.stdout


def test_select_names_each_unknown_or_repeated_activity(gradesync: Run, cli_db: Database) -> None:
    """`sis select sis quiz1 nope` said `error: activity 'nope' not found`: no field, no rule,
    one problem at a time."""
    seed_school(cli_db, ManualClock(NOW))
    gradesync("sis", "add", "sis", *T, "--file-based")
    gradesync("sis", "map-class", "sis", "c1", "cls-1", *T, "--school", "sch-1")
    r = gradesync("sis", "select", "sis", "quiz1", "nope", "gone", *T, ok=False)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "error: ACTIVITY_IDS: No activity 'nope'. [unknown_activity]" in r.stderr
    assert "error: ACTIVITY_IDS: No activity 'gone'. [unknown_activity]" in r.stderr
    r = gradesync("sis", "select", "sis", "quiz1", "quiz1", "nope", *T, ok=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "[unique]" in r.stderr and "[unknown_activity]" in r.stderr
    with cli_db.uow() as uow:
        assert uow.links.items("t1", "sis", ["quiz1"]) == {}


def test_holding_grades_already_there_says_waiting_for_post_and_doctor_spares_them(
    gradesync: Run, cli_db: Database, sis: RunningSandbox, tmp_path: Path
) -> None:
    """After `sis select --hold`, grades computed before kept `not_selected_for_sis` ("Tick
    'Sync to SIS'"), though the activity was ticked; and `doctor` for a held grade (left out
    on purpose) failed the delivery check and exited 1."""
    seed_school(cli_db, ManualClock(NOW))
    gradesync(
        "sis", "add", "sis", *T, "--base-url", sis.base_url, "--client-id", CLIENT_ID,
        "--client-secret", CLIENT_SECRET, "--category-match", "name",
    )  # fmt: skip
    gradesync(
        "sis", "map-class", "sis", "c1", "cls-1", *T,
        "--school", "sch-1", "--term-start", "2025-01-06", "--term-end", "2025-06-20",
    )  # fmt: skip
    gradesync("sis", "map-students", "sis", "c1", *T)

    async def computed(runtime: Runtime) -> None:
        post_attempts(cli_db.uow, runtime.waker, "t1", [("hw1", "p1", 4.0)])
        await wait_for_async(
            lambda: (
                _rows(cli_db, "hw1").get("p1") == (DeliveryState.SKIPPED, "not_selected_for_sis")
            ),
            "hw1 left out, not ticked",
            blocking=True,
        )

    with_worker(cli_db, tmp_path / "worker", computed)
    gradesync("sis", "select", "sis", "hw1", *T, "--hold")

    async def held(runtime: Runtime) -> None:
        await wait_for_async(
            lambda: _rows(cli_db, "hw1").get("p1") == (DeliveryState.SKIPPED, "waiting_for_post"),
            "the grade already there held for Post grades",
            blocking=True,
        )

    with_worker(cli_db, tmp_path / "worker", held)
    assert "Homework 1" not in _line_items(sis).values()
    doctor = gradesync("doctor", *T, "-l", "p1", "-a", "hw1", "-d", "sis")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "excluded on purpose" in doctor.stdout
    assert "Post its grades" in doctor.stdout and "Tick 'Sync to SIS'" not in doctor.stdout
