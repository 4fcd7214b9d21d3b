"""OneRoster passback end to end through the engine, against the sandbox SIS over real HTTP:
attempts ingested -> the worker delivers them; a resync with nothing changed sends nothing; a
status-only change resends that one result; remaster resends every result and line item;
"Post grades" for a selection runs with stages and counts and sends only the selection; an
activity not ticked for the SIS is skipped (not rejected), and ticking it later sends it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.destinations.oneroster import DEFAULT_SCOPES
from gradesync.config import Settings
from gradesync.domain.columns import to_look_at
from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import (
    Activity,
    Attempt,
    AttemptSelection,
    Course,
    DeliveryState,
    Enrollment,
    EnrollmentStatus,
    ItemLink,
    LedgerRow,
    Person,
    PolicySettings,
    RunOutcome,
    RunScope,
    SyncRun,
    Tenant,
    Trigger,
)
from gradesync.domain.remedies import Reader, Remedy, names_command, stored_reason
from gradesync.runtime import Runtime
from gradesync.sandbox.config import SandboxConfig
from gradesync.sandbox.testing import RunningSandbox, running_sandbox
from gradesync.services import console_queries, destination_admin, diagnostics, queries, sis
from gradesync.services.clock import SystemClock
from gradesync.services.delivery.provisioning import Provisioner
from gradesync.services.ingest import IngestBatch, ingest
from gradesync.services.runs import request_run
from gradesync.testing import TEST_SECRET
from tests.support.sis import CLIENT_ID, CLIENT_SECRET, TODAY, connect, map_to_class, sis_seed

T, COURSE, DEST = "t1", "alg", "sis"
DUE = datetime.combine(TODAY + timedelta(days=7), datetime.min.time(), tzinfo=UTC)
STUDENTS = {"p1": "stu-1", "p2": "stu-2", "p3": "stu-3"}
DEADLINE = 20.0


@dataclass
class Passback:
    """gradesync (runtime + in-process worker) wired to a sandbox SIS; counts every request
    gradesync sends to the SIS, by method and object kind."""

    db: Database
    runtime: Runtime
    sandbox: RunningSandbox
    sent: Counter[tuple[str, str]] = field(default_factory=Counter)
    written: asyncio.Event = field(default_factory=asyncio.Event)
    events: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def puts(self) -> Counter[str]:
        """PUTs by kind (lineItems, results, categories)."""
        return Counter({kind: n for (method, kind), n in self.sent.items() if method == "PUT"})

    def sis_requests(self) -> int:
        """The sandbox's own count of OneRoster requests (token endpoint excluded)."""
        return int(self.sandbox.admin.counters().get("oneroster", {}).get("requests", 0))

    def sis_results(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(line item sourcedId, student sourcedId) -> the result the SIS holds."""
        results = self.sandbox.admin.inspect()["sis"]["results"]
        return {(r["lineItem"]["sourcedId"], r["student"]["sourcedId"]): r for r in results}

    def sis_line_items(self) -> dict[str, dict[str, Any]]:
        return {li["sourcedId"]: li for li in self.sandbox.admin.inspect()["sis"]["lineItems"]}

    def attempt(self, activity: str, person: str, score: float | None, **kw: Any) -> None:
        n = next(self.events)
        at = datetime.now(UTC) - timedelta(hours=1) + timedelta(seconds=n)
        a = Attempt(T, f"ev-{n}", activity, person, score, 10.0, at, **kw)
        ingest(self.db.uow, self.runtime.clock, self.runtime.waker, T, IngestBatch(attempts=[a]))

    def ledger(self) -> dict[tuple[str, str], LedgerRow]:
        with self.db.uow() as uow:
            return uow.ledger.get_many(T, DEST, COURSE)

    async def until(self, check: Callable[[], Any], what: str) -> Any:
        """Re-check a condition after each batch the worker settles (at least every 0.2 s)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while True:
            value = await asyncio.to_thread(check)
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            self.written.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.written.wait(), 0.2)

    def delivered(self, *pairs: tuple[str, str]) -> Callable[[], bool]:
        def check() -> bool:
            rows = self.ledger()
            return all(
                (r := rows.get(p)) is not None and r.state is DeliveryState.DELIVERED for p in pairs
            )

        return check

    async def run(self, trigger: Trigger, activities: tuple[str, ...] = ()) -> SyncRun:
        scope = RunScope(T, DEST, COURSE, activities)
        run, _ = request_run(
            self.db.uow, self.runtime.waker, self.runtime.clock, scope, trigger, "admin"
        )
        return await self.runtime.wait_for_run_async(run.id, DEADLINE, tenant_id=T)


def _set_up(db: Database, base_url: str) -> None:
    now = datetime.now(UTC)
    with db.uow() as uow:
        uow.tenants.upsert(Tenant(T, "District 1"), now)
        uow.commit()
    ingest(
        db.uow,
        SystemClock(),
        None,
        T,
        IngestBatch(
            courses=[Course(T, COURSE, "Algebra")],
            activities=[
                Activity(T, "quiz1", COURSE, "Quiz 1", 10, due_at=DUE, category="Quizzes"),
                Activity(
                    T,
                    "hw1",
                    COURSE,
                    "Homework 1",
                    10,
                    due_at=DUE,
                    category="Homework",
                    # the newest attempt counts: a retake with the same score marked late
                    # changes the late flag only
                    policy=PolicySettings(attempt_selection=AttemptSelection.LATEST),
                ),
                Activity(T, "essay", COURSE, "Essay", 10, due_at=DUE, category="Homework"),
            ],
            people=[Person(T, p, p.upper(), sis_id=s) for p, s in STUDENTS.items()],
            enrollments=[Enrollment(T, COURSE, p) for p in STUDENTS],
        ),
    )
    connect(
        db.uow,
        SystemClock(),
        tenant_id=T,
        destination_id=DEST,
        name="Sandbox SIS",
        base_url=base_url,
        profile={"name_max_length": 30, "due_date_inside_term": True, "category_match": "name"},
    )
    map_to_class(db.uow, tenant_id=T, destination_id=DEST, course_id=COURSE)
    mapped = sis.map_course_students(db.uow, tenant_id=T, destination_id=DEST, course_id=COURSE)
    assert not mapped.unmapped and len(mapped.mapped) == 3
    # "essay" stays unticked: it must never reach the SIS
    sis.select_activities(db.uow, tenant_id=T, destination_id=DEST, activity_ids=["quiz1", "hw1"])


@pytest.fixture
async def passback(db: Database, tmp_path: Path) -> AsyncIterator[Passback]:
    config = SandboxConfig.model_validate({"seed": {"sis": sis_seed(STUDENTS.values())}})
    with running_sandbox(config) as sandbox:
        _set_up(db, sandbox.base_url)
        settings = Settings(
            database_url=db.url,
            secret_key=TEST_SECRET,
            data_dir=tmp_path / "data",
            worker_poll_seconds=0.2,
            run_retry_patience_seconds=2.0,
        )
        runtime = Runtime(settings=settings, db=db)
        sent: Counter[tuple[str, str]] = Counter()

        async def count(request: httpx.Request) -> None:
            path = request.url.path
            if "/ims/oneroster/gradebook/" in path:
                kind = path.split("/gradebook/v1p2/", 1)[-1].split("/", 1)[0]
                sent[(request.method, kind)] += 1

        runtime.destinations = runtime.adapter_context(
            httpx.AsyncClient(event_hooks={"request": [count]}, timeout=10.0)
        )
        worker = await runtime.start_worker()
        p = Passback(db, runtime, sandbox, sent)
        worker.engine.on_written(lambda _rows: p.written.set())
        try:
            yield p
        finally:
            await runtime.stop_worker()


def _li(passback: Passback, activity: str) -> str:
    with passback.db.uow() as uow:
        item = uow.links.item(T, DEST, activity)
    assert item is not None and item.remote_id
    return item.remote_id


async def test_passback_through_the_engine(passback: Passback) -> None:
    p = passback
    # 1. attempts are ingested; the worker delivers them on its own (no run)
    p.attempt("quiz1", "p1", 8.0)
    p.attempt("quiz1", "p2", 6.5)
    p.attempt("quiz1", "p3", 0.0)  # a real zero is a grade, and is sent
    p.attempt("hw1", "p1", 9.0)
    p.attempt("essay", "p1", 7.0)  # not ticked for the SIS
    graded = [("quiz1", "p1"), ("quiz1", "p2"), ("quiz1", "p3"), ("hw1", "p1")]
    await p.until(p.delivered(*graded), "the first grades to reach the SIS")
    quiz, hw = _li(p, "quiz1"), _li(p, "hw1")
    results = p.sis_results()
    assert {k: r["score"] for k, r in results.items()} == {
        (quiz, "stu-1"): 8.0,
        (quiz, "stu-2"): 6.5,
        (quiz, "stu-3"): 0.0,
        (hw, "stu-1"): 9.0,
    }
    assert all(r["scoreStatus"] == "fully graded" for r in results.values())
    items = p.sis_line_items()
    assert set(items) == {quiz, hw}  # nothing of the unticked essay
    assert items[quiz]["category"]["sourcedId"] == "cat-quiz"
    assert items[hw]["category"]["sourcedId"] == "cat-hw"
    essay = await p.until(
        lambda: (r := p.ledger()[("essay", "p1")]).state is not DeliveryState.PENDING and r,
        "the essay to be settled",
    )
    # not ticked: skipped by design, not a rejection
    assert essay.state is DeliveryState.SKIPPED and essay.reason_code == "not_selected_for_sis"
    assert p.puts() == Counter({"lineItems": 2, "results": 4})

    # 2. a resync with nothing changed sends nothing
    before_puts, before_sis, before_all = p.puts(), p.sis_requests(), p.sent.copy()
    run = await p.run(Trigger.RESYNC, ("quiz1", "hw1"))
    assert run.outcome is RunOutcome.SUCCEEDED, run.message
    assert run.counts["sent"] == 0 and run.counts["unchanged"] == 4
    assert run.counts["columns"]["written"] == 0
    assert p.puts() == before_puts
    # the verifying stage only reads results back (to notice grades edited in the SIS)
    reads = p.sent - before_all
    assert {method for method, _ in reads} <= {"GET"}, reads
    assert p.sis_requests() - before_sis == sum(reads.values())

    # 3. a status-only change (excused; then late with the same score) resends that result
    before = p.puts()
    modified = p.sis_results()[(quiz, "stu-1")]["dateLastModified"]
    p.attempt("quiz1", "p2", None, excused=True)
    await p.until(
        lambda: (
            p.sis_results()[(quiz, "stu-2")]["scoreStatus"] == "exempt"
            and p.delivered(("quiz1", "p2"))()
        ),
        "the excused status to reach the SIS",
    )
    assert p.puts() - before == Counter({"results": 1})
    assert "score" not in p.sis_results()[(quiz, "stu-2")]
    before = p.puts()
    p.attempt("hw1", "p1", 9.0, late=True)  # same score: only the flag changes
    await p.until(
        lambda: (
            p.sis_results()[(hw, "stu-1")].get("late") == "true" and p.delivered(("hw1", "p1"))()
        ),
        "the late flag to reach the SIS",
    )
    assert p.puts() - before == Counter({"results": 1})
    assert p.sis_results()[(hw, "stu-1")]["score"] == 9.0
    assert p.sis_results()[(quiz, "stu-1")]["dateLastModified"] == modified  # untouched

    # 4. remaster resends every result and rewrites every line item
    before = p.puts()
    result = await p.runtime.post_sis_grades(
        T,
        DEST,
        COURSE,
        actor="admin",
        remaster=True,
    )
    assert result.run is not None and result.posted == ["hw1", "quiz1"]
    run = await p.runtime.wait_for_run_async(result.run.id, DEADLINE, tenant_id=T)
    assert run.trigger is Trigger.REMASTER and run.outcome is RunOutcome.SUCCEEDED, run.message
    assert run.counts["sent"] == 4 and run.counts["columns"]["written"] == 2
    # each line item written once: by the run, or by a grade's send when it goes before the
    # run's provisioning (a remaster's grade writes its column first), never by both
    puts = p.puts() - before
    assert puts == Counter({"results": 4, "lineItems": 2}), puts

    # 5. "Post grades" for a selection: a run with stages and counts; only hw1 is sent
    before = p.puts()
    result = await p.runtime.post_sis_grades(
        T,
        DEST,
        COURSE,
        actor="admin",
        activity_ids=["hw1", "essay"],
        remaster=True,
    )
    assert result.posted == ["hw1"]
    assert [(c.activity_id, c.selected) for c in result.refused] == [("essay", False)]
    assert result.run is not None and result.run.scope.activity_ids == ("hw1",)
    run = await p.runtime.wait_for_run_async(result.run.id, DEADLINE, tenant_id=T)
    with p.db.uow() as uow:
        stages = [s["stage"] for s in uow.runs.stages(run.id)]
    assert stages == ["queued", "computing", "provisioning", "sending", "verifying", "finished"]
    assert run.outcome is RunOutcome.SUCCEEDED, run.message
    assert run.counts["keys"] == 3  # hw1 x three learners
    assert run.counts["sent"] == 1 and run.counts["skipped"] == {"no_attempt_yet": 2}
    assert run.counts["columns"] == {"written": 1, "unchanged": 0, "not_synced": 0, "failed": 0}
    puts = p.puts() - before
    assert puts == Counter({"results": 1, "lineItems": 1}), puts  # as in 4.
    assert p.sis_line_items()[hw]["title"] == "Homework 1"
    assert p.ledger()[("essay", "p1")].state is DeliveryState.SKIPPED  # still unticked

    # 6. ticking the essay later sends the result it skipped, with no run and no new attempt
    before = p.puts()
    sis.select_activities(
        p.db.uow,
        tenant_id=T,
        destination_id=DEST,
        activity_ids=["essay"],
        clock=p.runtime.clock,
        waker=p.runtime.waker,
    )
    await p.until(p.delivered(("essay", "p1")), "the ticked essay to reach the SIS")
    essay_li = _li(p, "essay")
    assert p.sis_results()[(essay_li, "stu-1")]["score"] == 7.0
    assert p.sis_line_items()[essay_li]["category"]["sourcedId"] == "cat-hw"
    assert p.puts() - before == Counter({"lineItems": 1, "results": 1})


async def test_a_course_alignment_takes_effect_at_the_next_post(passback: Passback) -> None:
    """A group aligned for this course only (which wins over the connection's) is what the
    next run's line items carry: the engine does not keep the course's SIS link from before
    the change (it once did, for five minutes, and the column failed `category_missing`)."""
    p = passback
    p.attempt("quiz1", "p1", 8.0)
    await p.until(p.delivered(("quiz1", "p1")), "the first grade to reach the SIS")
    quiz = _li(p, "quiz1")
    assert p.sis_line_items()[quiz]["category"]["sourcedId"] == "cat-quiz"
    sis.align_category(
        p.db.uow,
        p.runtime.clock,
        tenant_id=T,
        destination_id=DEST,
        group="Quizzes",
        category_id="cat-hw",
        course_id=COURSE,
    )
    run = await p.run(Trigger.RESYNC, ("quiz1",))
    assert run.outcome is RunOutcome.SUCCEEDED, run.message
    assert run.counts["columns"]["written"] == 1 and run.counts["columns"]["failed"] == 0
    assert p.sis_line_items()[quiz]["category"]["sourcedId"] == "cat-hw"


def _instructor_edit(p: Passback, line_item: str, student: str, score: float) -> None:
    """An instructor types `score` over a result in the SIS (its own API, a newer edit)."""
    root = p.sandbox.base_url.rstrip("/")
    base = f"{root}/ims/oneroster/gradebook/v1p2"
    with httpx.Client(timeout=10.0) as http:
        token = http.post(
            f"{root}/ims/oneroster/oauth2/token",
            auth=(CLIENT_ID, CLIENT_SECRET),
            data={"grant_type": "client_credentials", "scope": " ".join(DEFAULT_SCOPES)},
        )
        token.raise_for_status()
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        found = p.sis_results()[(line_item, student)]
        edited = {
            **found,
            "score": score,
            "dateLastModified": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        put = http.put(
            f"{base}/results/{found['sourcedId']}", json={"result": edited}, headers=auth
        )
        assert put.is_success, put.text


async def test_a_kept_sis_grade_reads_on_its_line_items_maximum_now(passback: Passback) -> None:
    """An 8 is sent on the 10-point quiz; the instructor types 9 over it in the SIS, and the
    run keeps the edit. P1 leaves the course (gradesync sends nothing more for them: *Kept
    in LMS*); the quiz is made worth 20 and the other learner's result sent again, which
    writes the line item with resultValueMax 20. The SIS holds 9 of 20, and the API's `held`
    and the console say so (not 9 / 10, the points when the grade was read)."""
    p = passback
    p.attempt("quiz1", "p1", 8.0)
    p.attempt("quiz1", "p2", 7.0)
    await p.until(p.delivered(("quiz1", "p1"), ("quiz1", "p2")), "the quiz in the SIS")
    quiz = _li(p, "quiz1")
    assert p.sis_line_items()[quiz]["resultValueMax"] == 10.0
    _instructor_edit(p, quiz, "stu-1", 9.0)
    run = await p.run(Trigger.MANUAL, ("quiz1",))
    assert run.counts.get("overridden") == 1, run.counts  # kept: keep_lms_edits by default
    left = Enrollment(T, COURSE, "p1", status=EnrollmentStatus.DROPPED)
    ingest(p.db.uow, p.runtime.clock, p.runtime.waker, T, IngestBatch(enrollments=[left]))
    await p.until(lambda: p.ledger()[("quiz1", "p1")].state is DeliveryState.SKIPPED, "p1 kept")
    worth_20 = Activity(T, "quiz1", COURSE, "Quiz 1", 20, due_at=DUE, category="Quizzes")
    ingest(p.db.uow, p.runtime.clock, p.runtime.waker, T, IngestBatch(activities=[worth_20]))
    await p.until(
        lambda: (
            (r := p.ledger()[("quiz1", "p2")]).state is DeliveryState.DELIVERED
            and r.delivered_hash is not None
            and (r.desired or {}).get("score_maximum") == 20.0
        ),
        "p2's 14 of 20 in the SIS",
    )
    assert p.sis_line_items()[quiz]["resultValueMax"] == 20.0
    results = p.sis_results()
    assert (results[(quiz, "stu-1")]["score"], results[(quiz, "stu-2")]["score"]) == (9.0, 14.0)

    grades = queries.learner_grades(p.db.uow, T, "p1", destination_id=DEST, reader=Reader.API)
    (cell,) = [c for c in grades.destinations[DEST] if c.activity_id == "quiz1"]
    assert cell.held is not None and cell.held.text() == "9 / 20", cell.held
    page = console_queries.course_page(
        p.db.uow, T, COURSE, capabilities=p.runtime.capabilities, destination_id=DEST
    )
    (row,) = [r for r in page.grid if r.person.id == "p1"]
    (kept,) = [c for c in row.cells if c.activity_id == "quiz1"]
    assert kept.status == "kept" and kept.held is not None and kept.held.text() == "9 / 20"


@pytest.mark.parametrize("owner", ["named", "former"])
async def test_a_connection_added_again_under_another_id_keeps_the_line_item(
    passback: Passback, owner: str
) -> None:
    """`former`: the item was written before gradesync named its installation in the item's
    metadata; its sourcedId is the one the deleted connection gave it, so it is this
    installation's."""
    p = passback
    p.attempt("quiz1", "p1", 8.0)
    await p.until(p.delivered(("quiz1", "p1")), "the first grade in the SIS")
    quiz = _li(p, "quiz1")
    stored = p.sandbox.state.sis_line_items[quiz].data
    assert stored["metadata"]["gradesync"] == {
        "installation": p.runtime.settings.base_url.rstrip("/"),
        "tenant": T,
        "activity": "quiz1",
    }
    if owner == "former":
        stored["metadata"] = {"gradesync": {"tenant": T, "activity": "quiz1"}}

    # the connection deleted with its links, and added again under another id
    destination_admin.delete(p.db.uow, SystemClock(), T, DEST)
    again = "sis-again"
    connect(
        p.db.uow,
        SystemClock(),
        tenant_id=T,
        destination_id=again,
        name="Sandbox SIS",
        base_url=p.sandbox.base_url,
        profile={"name_max_length": 30, "due_date_inside_term": True, "category_match": "name"},
    )
    map_to_class(p.db.uow, tenant_id=T, destination_id=again, course_id=COURSE)
    sis.map_course_students(p.db.uow, tenant_id=T, destination_id=again, course_id=COURSE)
    sis.select_activities(p.db.uow, tenant_id=T, destination_id=again, activity_ids=["quiz1"])
    p.attempt("quiz1", "p1", 9.0)

    def delivered_again() -> bool:
        with p.db.uow() as uow:
            row = uow.ledger.get_many(T, again, COURSE).get(("quiz1", "p1"))
        return row is not None and row.state is DeliveryState.DELIVERED

    await p.until(delivered_again, "the new grade through the connection added again")

    def saved_link() -> ItemLink | None:
        with p.db.uow() as uow:
            item = uow.links.item(T, again, "quiz1")
        return item if item is not None and not to_look_at(item) else None

    # the link is saved in the background (the grade needs only the SIS's answer)
    await p.until(lambda: saved_link() is not None, "the line item's link saved")
    item = saved_link()
    assert item is not None and item.remote_id == quiz  # the same line item
    assert list(p.sis_line_items()) == [quiz]  # one column in the SIS
    assert {k: r["score"] for k, r in p.sis_results().items()} == {(quiz, "stu-1"): 9.0}


async def test_a_group_with_no_sis_category_is_named_with_the_course_it_is_fixed_in(
    passback: Passback,
) -> None:
    """The SIS's refusal of a group does not know the course; the check's remedy names the
    course's own SIS page (it named /console/sis/sis/courses/COURSE_ID)."""
    p = passback
    with p.db.uow() as uow:
        essay = uow.activities.get(T, "essay")
        assert essay is not None
        uow.activities.upsert(replace(essay, category="Projects"))
        uow.commit()
    checks = sis.validate(p.db.uow, tenant_id=T, destination_id=DEST, activity_ids=["essay"])
    async with p.runtime.sis_directory(T, DEST) as directory:
        [check] = await sis.check_activity_categories(
            p.db.uow, directory, tenant_id=T, destination_id=DEST, checks=checks
        )
    [problem] = check.read_over(Reader.CONSOLE, DEST).problems
    assert problem.rule == "category_missing", problem
    assert f"/console/sis/{DEST}/courses/{COURSE})" in problem.message, problem.message
    assert "COURSE_ID" not in problem.message


async def test_a_renamed_activity_reaches_its_sis_line_item_by_automatic_sync(
    passback: Passback,
) -> None:
    """Title and due date changed after the line item was written change no result: the line
    item is rewritten on its own, with no post, run nor new score (docs/oneroster.md)."""
    p = passback
    p.attempt("quiz1", "p1", 8.0)
    await p.until(p.delivered(("quiz1", "p1")), "the first grade to reach the SIS")
    quiz = _li(p, "quiz1")
    before = p.puts()
    due = DUE + timedelta(days=3)
    renamed = Activity(T, "quiz1", COURSE, "Quiz One", 10, due_at=due, category="Quizzes")
    ingest(p.db.uow, p.runtime.clock, p.runtime.waker, T, IngestBatch(activities=[renamed]))
    item = await p.until(
        lambda: (li := p.sis_line_items()[quiz])["title"] == "Quiz One" and li,
        "the new title to reach the SIS line item",
    )
    assert item["dueDate"].startswith(due.date().isoformat())
    assert p.puts() - before == Counter({"lineItems": 1})  # no result sent again
    assert p.sis_results()[(quiz, "stu-1")]["score"] == 8.0


async def test_a_run_names_the_rule_of_a_column_it_could_not_provision(
    passback: Passback,
) -> None:
    """A ticked activity moved to a group the SIS has no category for: the run's column
    fails `category_missing`, and the run says so and what the SIS has (it said only "1
    column(s) could not be provisioned", the reason in the log alone). Not the remedy: the
    message is one text every reader reads, an instructor on the console too, and a command
    is no remedy of theirs (the SIS page and doctor word it for each)."""
    p = passback
    p.attempt("quiz1", "p1", 8.0)
    await p.until(p.delivered(("quiz1", "p1")), "the first grade to reach the SIS")
    with p.db.uow() as uow:
        quiz = uow.activities.get(T, "quiz1")
        assert quiz is not None
        uow.activities.upsert(replace(quiz, category="Projects"))
        uow.commit()
    run = await p.run(Trigger.RESYNC, ("quiz1",))
    assert run.outcome is not RunOutcome.SUCCEEDED, run.message
    assert run.counts["columns_failed"] == [f"{DEST}/quiz1"]
    assert run.counts["column_failures"] == {"category_missing": 1}
    assert run.message is not None
    assert f"({DEST}/quiz1, category_missing: Activity group 'Projects'" in run.message
    assert "'Quizzes' (id cat-quiz)" in run.message, run.message
    assert not names_command(run.message), run.message


async def test_an_activity_never_sent_is_said_to_have_no_line_item_and_not_to_be_synced(
    passback: Passback,
) -> None:
    """A ticked activity worth under the minimum points, or a practice item: no line item is
    ever written. The SIS page, the course page and doctor said the line item existed (its
    sourcedId, "Created", a passing check), and validation said OK."""
    p = passback
    sis.select_activities(p.db.uow, tenant_id=T, destination_id=DEST, activity_ids=["essay"])
    tiny = Activity(T, "essay", COURSE, "Essay", 0.5, due_at=DUE, category="Homework")
    ingest(p.db.uow, p.runtime.clock, p.runtime.waker, T, IngestBatch(activities=[tiny]))
    p.attempt("essay", "p1", 7.0)
    row = await p.until(
        lambda: (r := p.ledger().get(("essay", "p1"))) and r.state is DeliveryState.SKIPPED and r,
        "the essay's grade to be skipped",
    )
    assert row.reason_code == "below_minimum_points"
    assert "essay" not in {li["title"] for li in p.sis_line_items().values()}

    [check] = sis.validate(p.db.uow, tenant_id=T, destination_id=DEST, activity_ids=["essay"])
    assert [(x.field, x.rule) for x in check.problems] == [
        ("points_possible", "below_minimum_points")
    ]
    assert check.problems[0].message.startswith("Not synced: none of its grades is sent.")
    with pytest.raises(InvalidInput) as refused:
        sis.select_activities(p.db.uow, tenant_id=T, destination_id=DEST, activity_ids=["essay"])
    assert [x.rule for x in refused.value.problems] == ["below_minimum_points"]

    overview = sis.course_overview(p.db.uow, tenant_id=T, destination_id=DEST, course_id=COURSE)
    essay = next(s for s in overview.activities if s.activity.id == "essay")
    assert essay.selected and essay.line_item_id is None
    assert essay.no_line_item is not None and "under the minimum of 1" in essay.no_line_item
    page = console_queries.course_page(
        p.db.uow, T, COURSE, capabilities=p.runtime.capabilities, destination_id=DEST
    )
    row_of = {r.activity.id: r for r in page.activities}
    assert not row_of["essay"].written and "under the minimum" in (row_of["essay"].no_column or "")
    assert row_of["quiz1"].written is False  # ticked, but no grade has written its line item

    found = diagnostics.diagnose_learner_activity(
        p.db.uow, p.runtime.clock, T, "p1", "essay", DEST, capabilities=p.runtime.capabilities
    )
    [column] = [c for c in found.checks if c.code == "column_linked"]
    assert not column.passed and column.excluded, column
    assert column.evidence.startswith("Not created: no column for 'Essay'"), column.evidence
    assert "gs-li-" not in column.evidence


async def test_a_skipped_grade_keeps_its_remedy_as_a_code(passback: Passback) -> None:
    """The row of a grade the SIS is not sent (an activity not ticked for it) stored its
    remedy in the command line's words, `gradesync sis select sis essay`, reworded from
    them later for each other reader. It stores what happened and the remedy's code and ids;
    each reader's words are made from them when it is read."""
    p = passback
    p.attempt("essay", "p1", 7.0)
    essay = await p.until(
        lambda: (
            (r := p.ledger().get(("essay", "p1"))) is not None
            and r.state is DeliveryState.SKIPPED
            and r
        ),
        "the essay to be skipped",
    )
    assert essay.reason_code == "not_selected_for_sis"
    assert essay.reason_text is not None and not names_command(essay.reason_text)
    assert stored_reason(essay.reason_text).fix == Remedy(
        "not_selected_for_sis", DEST, activity="essay"
    )
    said = "The activity 'Essay' is not selected for SIS passback. — "
    words = {
        Reader.CLI: f"{said}Tick 'Sync to SIS' for it (gradesync sis select sis essay).",
        Reader.API: f"{said}Tick 'Sync to SIS' for it (`PUT /api/v1/sis/connections/sis/"
        "selection` with its id in `activity_ids`).",
    }
    for reader, text in words.items():
        grades = queries.learner_grades(p.db.uow, T, "p1", destination_id=DEST, reader=reader)
        [cell] = [c for c in grades.destinations[DEST] if c.activity_id == "essay"]
        assert cell.reason_text == text


async def test_a_line_item_the_sis_lost_is_written_again_with_the_next_grade(
    passback: Passback,
) -> None:
    """A SIS restored from an older state no longer has a line item gradesync wrote: its next
    result was refused `invalid_data` ("lineItem ... does not exist"), and a resync failed the
    same way, until a remaster. The refusal is `line_item_gone`: the line item is written again
    (under its own sourcedId) and the grade goes after it, by itself."""
    p = passback
    p.attempt("quiz1", "p1", 8.0)
    await p.until(p.delivered(("quiz1", "p1")), "the first grade to reach the SIS")
    quiz = _li(p, "quiz1")
    # the SIS restored from a state before the line item was written
    p.sandbox.state.sis_results.clear()
    p.sandbox.state.sis_line_items.clear()
    before = p.puts()

    p.attempt("quiz1", "p2", 6.0)
    await p.until(p.delivered(("quiz1", "p2")), "the new grade to reach the SIS")
    assert set(p.sis_line_items()) == {quiz}  # the same line item, made again
    assert p.sis_line_items()[quiz]["title"] == "Quiz 1"
    assert p.sis_results()[(quiz, "stu-2")]["score"] == 6.0
    # the grade delivered to the line item the SIS lost goes to the one made again
    await p.until(lambda: (quiz, "stu-1") in p.sis_results(), "p1's grade to reach it again")
    await p.until(p.delivered(("quiz1", "p1")), "p1's grade to be delivered again")
    assert p.sis_results()[(quiz, "stu-1")]["score"] == 8.0
    puts = p.puts() - before
    # p2's refused once, then sent, and p1's sent again, after the line item
    assert puts == Counter({"results": 3, "lineItems": 1}), puts
    rows = p.ledger()
    assert rows[("quiz1", "p2")].state is DeliveryState.DELIVERED

    # a resync after it delivers: nothing is refused
    run = await p.run(Trigger.RESYNC, ("quiz1",))
    assert run.outcome is RunOutcome.SUCCEEDED, run.message


async def test_a_line_item_the_sis_loses_twice_is_written_again_each_time(
    passback: Passback,
) -> None:
    """The process's memory of a loss it marked is forgotten once the line item is written
    again: a second loss of the same line item (the SIS restored again) is marked and
    repaired as the first was, with its delivered grades sent again."""
    p = passback
    p.attempt("quiz1", "p1", 8.0)
    await p.until(p.delivered(("quiz1", "p1")), "the first grade to reach the SIS")
    quiz = _li(p, "quiz1")
    for n, (person, student, score) in enumerate((("p2", "stu-2", 6.0), ("p3", "stu-3", 7.0))):
        p.sandbox.state.sis_results.clear()
        p.sandbox.state.sis_line_items.clear()
        p.attempt("quiz1", person, score)
        await p.until(
            lambda s=student: (quiz, s) in p.sis_results() and (quiz, "stu-1") in p.sis_results(),
            f"loss {n + 1}: the new grade and p1's to reach the SIS",
        )
        assert set(p.sis_line_items()) == {quiz}
        assert p.sis_results()[(quiz, "stu-1")]["score"] == 8.0
        assert p.sis_results()[(quiz, student)]["score"] == score


async def test_a_failed_mark_of_a_lost_line_item_leaves_the_sis_s_answer_and_is_asked_again(
    passback: Passback, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database failing as a lost line item is marked: the refused grade keeps the SIS's
    answer (`line_item_gone`, retried), not the database's error, and its next refusal marks
    the line item, which is written again with the grade after it."""
    p = passback
    p.attempt("quiz1", "p1", 8.0)
    await p.until(p.delivered(("quiz1", "p1")), "the first grade to reach the SIS")
    quiz = _li(p, "quiz1")
    marked = Provisioner.mark_gone
    failed: list[str] = []

    def mark_once_failing(self: Provisioner, *args: Any) -> int:
        if not failed:
            failed.append("the database is gone")
            raise RuntimeError(failed[0])
        return marked(self, *args)

    monkeypatch.setattr(Provisioner, "mark_gone", mark_once_failing)
    p.sandbox.state.sis_results.clear()
    p.sandbox.state.sis_line_items.clear()
    p.attempt("quiz1", "p2", 6.0)
    await p.until(lambda: failed, "the mark to fail")
    await p.until(
        lambda: p.ledger()[("quiz1", "p2")].reason_code == "line_item_gone",
        "the SIS's answer on the refused grade",
    )
    await p.until(p.delivered(("quiz1", "p2")), "the grade after the line item, marked again")
    await p.until(lambda: (quiz, "stu-1") in p.sis_results(), "p1's grade to reach it again")
    assert set(p.sis_line_items()) == {quiz}
