"""`gradesync sis ...` in a subprocess, as an admin would, against a running sandbox SIS:
add -> map-class -> map-students -> select/validate (errors name the field and the rule, exit
non-zero) -> post; then a worker carries the queued run out and the grades are in the SIS."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from gradesync.adapters.db.database import Database
from gradesync.domain.model import DeliveryState, Person, RunOutcome, RunStage
from gradesync.runtime import Runtime
from gradesync.sandbox.testing import RunningSandbox
from gradesync.testing import ManualClock, post_attempts, wait_for_async
from tests.support.cli import Run
from tests.support.worker import with_worker

from .conftest import CLIENT_ID, CLIENT_SECRET
from .facts import NOW, attempt, seed_school

T = ("--tenant", "t1")


def _out(proc: object) -> str:
    return f"{getattr(proc, 'stdout', '')}{getattr(proc, 'stderr', '')}"


def test_sis_cli_from_connection_to_posted_grades(
    gradesync: Run, cli_db: Database, sis: RunningSandbox, tmp_path: Path
) -> None:
    seed_school(cli_db, ManualClock(NOW))
    attempt(cli_db, "e1", "quiz1", "p1", 8.0)
    attempt(cli_db, "e2", "quiz1", "p3", 6.0)

    # add: bad input names the field and the rule and saves nothing
    bad = gradesync("sis", "add", "sis", *T, "--base-url", "ftp://nope", ok=False)
    assert bad.returncode == 2
    assert "--base-url:" in _out(bad) and "[url]" in _out(bad)
    with cli_db.uow() as uow:
        assert uow.destinations.get("t1", "sis") is None
    added = gradesync(
        "sis", "add", "sis", *T,
        "--name", "Sandbox SIS",
        "--base-url", sis.base_url,
        "--client-id", CLIENT_ID,
        "--client-secret", CLIENT_SECRET,
        "--name-max-length", "30",
        "--due-date-inside-term",
        "--category-match", "name",
    )  # fmt: skip
    assert "ok token" in added.stdout and "ok categories: 2 categories" in added.stdout
    assert CLIENT_SECRET not in _out(added)

    # map the course, its section, and the learners by their SIS ids
    gradesync(
        "sis", "map-class", "sis", "c1", "cls-1", *T,
        "--school", "sch-1", "--term-start", "2025-01-06", "--term-end", "2025-06-20",
    )  # fmt: skip
    gradesync("sis", "map-class", "sis", "c1", "cls-2", *T, "--section", "sec-b")
    # a section no learner is enrolled in yet: refused as a likely typo unless said new
    typo = gradesync("sis", "map-class", "sis", "c1", "cls-2", *T, "--section", "sec-z", ok=False)
    assert typo.returncode == 2 and "--section:" in _out(typo) and "[unknown_section]" in _out(typo)
    new = gradesync(
        "sis", "map-class", "sis", "c1", "cls-2", *T, "--section", "sec-z", "--new-section"
    )  # a section of its own later, taught with sec-b's class for now
    assert "section sec-z of c1 -> class cls-2" in new.stdout, new.stdout
    mapped = gradesync("sis", "map-students", "sis", "c1", *T)
    assert "3" in mapped.stdout, mapped.stdout

    # ticking an activity without a due date is refused, naming the field and the rule
    refused = gradesync("sis", "select", "sis", "quiz1", "nodue", *T, ok=False)
    assert refused.returncode == 2
    assert "activities[nodue]." in _out(refused) and "[due_date_required]" in _out(refused)
    with cli_db.uow() as uow:
        assert uow.links.item("t1", "sis", "quiz1") is None  # nothing changed, quiz1 included
    gradesync("sis", "select", "sis", "quiz1", "hw1", *T)

    # a ticked activity that breaks a rule later: validate says which field and rule, exit 1
    with cli_db.uow() as uow:
        hw = uow.activities.get("t1", "hw1")
        assert hw is not None
        uow.activities.upsert(replace(hw, due_at=datetime(2025, 8, 1, tzinfo=UTC)))
        uow.commit()
    invalid = gradesync("sis", "validate", "sis", *T, "--course", "c1", ok=False)
    assert invalid.returncode == 1
    assert "due_at:" in invalid.stdout and "[due_date_outside_term]" in invalid.stdout

    # post: hw1 is left out with the reason, quiz1 is queued as a run
    posted = gradesync("sis", "post", "sis", "c1", *T)
    assert "left out hw1" in posted.stdout and "outside" in posted.stdout
    queued = re.search(r"run (\S+) queued: 1 activity", posted.stdout)
    assert queued is not None, posted.stdout
    run_id = queued.group(1)
    with cli_db.uow() as uow:
        run = uow.runs.get(run_id, "t1")
    assert run is not None and run.stage is RunStage.QUEUED
    assert run.scope.activity_ids == ("quiz1",)
    # posted again: the queued run is joined, shown as `runs show` shows it, stages included
    again = json.loads(gradesync("sis", "post", "sis", "c1", *T, "--json").stdout)["run"]
    shown = json.loads(gradesync("runs", "show", run_id, *T, "--json").stdout)
    assert again["joined"] is True and again["id"] == run_id
    assert again["stages"] == shown["stages"] and again["stages"][0]["stage"] == "queued"

    # the workers of `gradesync serve` carry it out
    async def carried_out(runtime: Runtime) -> None:
        done = await runtime.wait_for_run_async(run_id, 20.0, tenant_id="t1")
        assert done.outcome is RunOutcome.SUCCEEDED, (done.message, done.counts)
        assert done.counts["sent"] >= 2

    with_worker(cli_db, tmp_path / "worker", carried_out, run_retry_patience_seconds=2.0)
    results = {
        (r["student"]["sourcedId"], r["lineItem"]["sourcedId"]): r
        for r in sis.admin.inspect()["sis"]["results"]
    }
    by_student = {s: r for (s, _), r in results.items()}
    assert by_student["stu-1"]["score"] == 8.0
    assert by_student["stu-3"]["score"] == 6.0
    # the section's learner went to the section's class
    classes = {
        li["sourcedId"]: li["class"]["sourcedId"] for li in sis.admin.inspect()["sis"]["lineItems"]
    }
    assert classes[by_student["stu-3"]["lineItem"]["sourcedId"]] == "cls-2"
    assert classes[by_student["stu-1"]["lineItem"]["sourcedId"]] == "cls-1"

    # the same connection switched to files: the CSV names exactly the objects the SIS holds
    # (line items, results, classes, students and the SIS's own category), nothing new
    gradesync("sis", "categories", "sis", *T, "--align", "Quizzes=cat-quiz")
    gradesync("sis", "add", "sis", *T, "--name", "Sandbox SIS", "--file-based")
    # a target it cannot write (a directory given as the zip): refused naming it, and the
    # export's time is not remembered (a delta still has nothing to start from)
    failed = gradesync("sis", "export-csv", "sis", *T, "--out", str(tmp_path), "--zip", ok=False)
    assert failed.returncode == 2 and "out: Cannot write the export" in _out(failed), _out(failed)
    delta = gradesync(
        "sis", "export-csv", "sis", *T, "--out", str(tmp_path / "d"), "--delta", ok=False
    )
    assert delta.returncode == 2 and "No earlier export" in _out(delta), _out(delta)
    zip_path = tmp_path / "passback.zip"
    exported = gradesync("sis", "export-csv", "sis", *T, "--out", str(zip_path), "--zip")
    assert "bulk export written" in exported.stdout, _out(exported)
    # through the engine: a run that sends nothing again (the SIS holds those results already)
    # and names hw1, still ticked with a due date outside the term
    assert re.search(r"run \S+ partly_failed: 0 sent; 2 unchanged", exported.stdout), _out(exported)
    assert "left out hw1" in exported.stdout
    with zipfile.ZipFile(zip_path) as archive:
        tables = {
            name: list(csv.DictReader(io.StringIO(archive.read(f"{name}.csv").decode())))
            for name in ("lineItems", "results")
        }
    held = sis.admin.inspect()["sis"]
    assert {
        (r["sourcedId"], r["classSourcedId"], r["categorySourcedId"]) for r in tables["lineItems"]
    } == {
        (li["sourcedId"], li["class"]["sourcedId"], li["category"]["sourcedId"])
        for li in held["lineItems"]
    }
    assert {
        (r["sourcedId"], r["lineItemSourcedId"], r["studentSourcedId"], float(r["score"]))
        for r in tables["results"]
    } == {
        (r["sourcedId"], r["lineItem"]["sourcedId"], r["student"]["sourcedId"], r["score"])
        for r in held["results"]
    }


def _p2_without_student(gradesync: Run, cli_db: Database, sis: RunningSandbox) -> None:
    """The school with a SIS connection, c1 mapped to cls-1 and quiz1 ticked; learner p2 has
    no SIS id, so `map-students` leaves them unlinked."""
    seed_school(cli_db, ManualClock(NOW))
    with cli_db.uow() as uow:
        uow.people.upsert(Person("t1", "p2", "P2"))
        uow.commit()
    gradesync(
        "sis", "add", "sis", *T, "--base-url", sis.base_url, "--client-id", CLIENT_ID,
        "--client-secret", CLIENT_SECRET, "--category-match", "name",
    )  # fmt: skip
    gradesync(
        "sis", "map-class", "sis", "c1", "cls-1", *T,
        "--school", "sch-1", "--term-start", "2025-01-06", "--term-end", "2025-06-20",
    )  # fmt: skip
    mapped = gradesync("sis", "map-students", "sis", "c1", *T)
    assert "no SIS id for: p2" in mapped.stdout, mapped.stdout
    gradesync("sis", "select", "sis", "quiz1", *T)


def _p2_quiz1(cli_db: Database) -> tuple[DeliveryState, str | None] | None:
    with cli_db.uow() as uow:
        rows = uow.ledger.get_many("t1", "sis", "c1", ["quiz1"])
    found = rows.get(("quiz1", "p2"))
    return (found.state, found.reason_code) if found else None


async def _p2_until(cli_db: Database, done: Callable[[], bool], what: str) -> None:
    await wait_for_async(done, what, blocking=True, explain=lambda: str(_p2_quiz1(cli_db)))


def _held_for(sis: RunningSandbox, student: str) -> float | None:
    results = sis.admin.inspect()["sis"]["results"]
    return next((r["score"] for r in results if r["student"]["sourcedId"] == student), None)


def test_map_student_sends_the_grades_the_learner_already_has(
    gradesync: Run, cli_db: Database, sis: RunningSandbox, tmp_path: Path
) -> None:
    """A learner graded in a ticked activity before they had a SIS student: mapping them
    with `map-student` (one person) has their grade computed and sent by the running worker,
    as `map-students` does for a course. It stayed `no_person_link` until a manual sync."""
    _p2_without_student(gradesync, cli_db, sis)

    async def steps(runtime: Runtime) -> None:
        post_attempts(cli_db.uow, runtime.waker, "t1", [("quiz1", "p2", 7.0)])
        await _p2_until(
            cli_db,
            lambda: _p2_quiz1(cli_db) == (DeliveryState.SKIPPED, "no_person_link"),
            "p2's grade computed with no SIS student",
        )
        await asyncio.to_thread(gradesync, "sis", "map-student", "sis", "p2", "stu-2", *T)
        await _p2_until(cli_db, lambda: _held_for(sis, "stu-2") == 7.0, "p2's grade in the SIS")

    with_worker(cli_db, tmp_path / "worker", steps)
    assert _p2_quiz1(cli_db) == (DeliveryState.DELIVERED, None)


def test_map_student_to_another_student_sends_what_the_sis_refused(
    gradesync: Run, cli_db: Database, sis: RunningSandbox, tmp_path: Path
) -> None:
    """A learner mapped to a student the SIS does not have: their grade is refused. Mapped
    again to the right student, the grade goes to the SIS at once, with no sync to start. It
    stayed refused for the old student (its desired result had not changed)."""
    _p2_without_student(gradesync, cli_db, sis)
    gradesync("sis", "map-student", "sis", "p2", "stu-ghost", *T)

    async def steps(runtime: Runtime) -> None:
        post_attempts(cli_db.uow, runtime.waker, "t1", [("quiz1", "p2", 7.0)])
        await _p2_until(
            cli_db,
            lambda: (_p2_quiz1(cli_db) or (None,))[0] is DeliveryState.REJECTED,
            "p2's grade refused for a student the SIS does not have",
        )
        # the same student again changes nothing: the refusal stands
        await asyncio.to_thread(gradesync, "sis", "map-student", "sis", "p2", "stu-ghost", *T)
        assert (_p2_quiz1(cli_db) or (None,))[0] is DeliveryState.REJECTED
        await asyncio.to_thread(gradesync, "sis", "map-student", "sis", "p2", "stu-2", *T)
        await _p2_until(
            cli_db,
            lambda: _held_for(sis, "stu-2") == 7.0,
            "p2's grade in the SIS for the new student",
        )

    with_worker(cli_db, tmp_path / "worker", steps)
    assert _p2_quiz1(cli_db) == (DeliveryState.DELIVERED, None)
