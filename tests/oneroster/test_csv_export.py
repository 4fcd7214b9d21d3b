"""OneRoster 1.2 CSV export for a file-based SIS: bulk and delta, checked against the binding's
rules and the official OpenAPI schemas (each row read back as the object it describes).

The export goes through the engine like every other trigger: it runs a sync run whose "send"
to the file-based SIS writes the rows, and the files are read from the ledger and the links."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.destinations import oneroster_csv
from gradesync.adapters.destinations.registry import DestinationContext, build_client
from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import (
    DeliveryState,
    Enrollment,
    EnrollmentStatus,
    RunOutcome,
    RunScope,
    SyncRun,
    Trigger,
)
from gradesync.domain.oneroster_csv import HEADERS, ExportMode
from gradesync.domain.passback import line_item_sourced_id, result_sourced_id
from gradesync.services import sis
from gradesync.services.runs import request_run
from gradesync.services.sis_export import EXPORTED_AT, CsvExport, export_csv
from gradesync.services.worker import Engine
from gradesync.testing import ManualClock
from tests.support.races import AfterFirstRead

from .conftest import Spec
from .facts import NOW, attempt, map_to_class, seed_school

BASE = "https://sis.example/ims/oneroster/gradebook/v1p2"


class School:
    """The seeded school, a file-based SIS connection "files", and an engine to run runs."""

    def __init__(self, db: Database, clock: ManualClock, engine: Engine) -> None:
        self.db, self.clock, self.engine = db, clock, engine
        self.runs: list[SyncRun] = []

    async def finish(self, run: SyncRun) -> SyncRun:
        done = await self.engine.execute_run(run.id)
        assert done is not None
        self.runs.append(done)
        return done

    async def export(self, **kw: Any) -> CsvExport:
        return await export_csv(
            self.db.uow,
            self.clock,
            None,
            self.finish,
            tenant_id="t1",
            destination_id="files",
            actor="test",
            **kw,
        )

    def select(self, *activities: str, selected: bool = True) -> None:
        sis.select_activities(
            self.db.uow,
            tenant_id="t1",
            destination_id="files",
            activity_ids=list(activities),
            selected=selected,
            clock=self.clock,
        )


@pytest.fixture
async def school(db: Database) -> AsyncIterator[School]:
    clock = ManualClock(NOW)
    seed_school(db, clock)
    sis.add_connection(
        db.uow,
        clock,
        tenant_id="t1",
        destination_id="files",
        name="CSV SIS",
        base_url=None,
        file_based=True,
        profile={"category_match": "name"},
    )
    map_to_class(db, "files")
    sis.map_class(
        db.uow,
        tenant_id="t1",
        destination_id="files",
        course_id="c1",
        class_id="cls-2",
        section_id="sec-b",
    )
    for group, category in (("Quizzes", "cat-quiz"), ("Homework", "cat-hw")):
        sis.align_category(
            db.uow,
            clock,
            tenant_id="t1",
            destination_id="files",
            group=group,
            category_id=category,
        )
    sis.map_course_students(db.uow, tenant_id="t1", destination_id="files", course_id="c1")
    attempt(db, "e1", "quiz1", "p1", 8.0, comment="Nice", late=True)
    attempt(db, "e2", "quiz1", "p3", 6.0)
    attempt(db, "e3", "hw1", "p2", None, excused=True)
    async with httpx.AsyncClient() as http:
        context = DestinationContext(http=http, clock=clock)
        engine = Engine(db.uow, clock, lambda d: build_client(d, context))
        found = School(db, clock, engine)
        found.select("quiz1", "hw1")
        try:
            yield found
        finally:
            await engine.aclose()


def _read(files: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    return {name: list(csv.DictReader(io.StringIO(text))) for name, text in files.items()}


def _ref(kind: str, sid: str) -> dict[str, str]:
    return {"href": f"{BASE}/{kind}s/{sid}", "sourcedId": sid, "type": kind}


def as_object(file: str, row: dict[str, str]) -> dict[str, Any]:
    """A CSV row as the REST object it stands for (empty cells left out)."""
    v = {k: x for k, x in row.items() if x != ""}
    obj: dict[str, Any] = {k: v[k] for k in ("sourcedId", "status", "dateLastModified") if k in v}
    if file == "lineItems":
        obj.update(
            title=v["title"],
            assignDate=v["assignDate"],
            dueDate=v["dueDate"],
            resultValueMin=float(v["resultValueMin"]),
            resultValueMax=float(v["resultValueMax"]),
            **{"class": _ref("class", v["classSourcedId"])},
            school=_ref("org", v["schoolSourcedId"]),
            category=_ref("category", v["categorySourcedId"]),
        )
    else:
        obj.update(
            lineItem=_ref("lineItem", v["lineItemSourcedId"]),
            student=_ref("user", v["studentSourcedId"]),
            scoreStatus=v["scoreStatus"],
            scoreDate=v["scoreDate"],
            **{"class": _ref("class", v["classSourcedId"])},
            **{
                k: v[k]
                for k in ("comment", "inProgress", "incomplete", "late", "missing")
                if k in v
            },
        )
        if "score" in v:
            obj["score"] = float(v["score"])
    return obj


SCHEMAS = {"lineItems": "LineItemDType", "results": "ResultDType"}


async def test_bulk_export_is_a_valid_oneroster_set(
    school: School, spec: Spec, tmp_path: Path
) -> None:
    export = await school.export()
    [zip_path] = oneroster_csv.write(export.files(), tmp_path / "passback.zip", as_zip=True)
    with zipfile.ZipFile(zip_path) as archive:
        files = {n: archive.read(n).decode("utf-8") for n in archive.namelist()}
    assert set(files) == {"manifest.csv", "lineItems.csv", "results.csv"}
    tables = _read(files)
    manifest = {r["propertyName"]: r["value"] for r in tables["manifest.csv"]}
    assert manifest["manifest.version"] == "1.0" and manifest["oneroster.version"] == "1.2"
    assert manifest["file.lineItems"] == manifest["file.results"] == "bulk"
    # the SIS's own categories are named, never written: a bulk file would replace its list
    assert manifest["file.categories"] == "absent"
    assert manifest["file.users"] == manifest["file.classes"] == "absent"
    for name, header in HEADERS.items():
        assert files[f"{name}.csv"].splitlines()[0] == ",".join(header)
    # pinned to the column order of the OneRoster CSV Binding 1.2.1 gradebook tables
    assert files["lineItems.csv"].splitlines()[0] == (
        "sourcedId,status,dateLastModified,title,description,assignDate,dueDate,"
        "classSourcedId,categorySourcedId,academicSessionSourcedId,resultValueMin,"
        "resultValueMax,schoolSourcedId"
    )
    assert files["results.csv"].splitlines()[0] == (
        "sourcedId,status,dateLastModified,lineItemSourcedId,studentSourcedId,scoreStatus,"
        "score,scoreDate,comment,textScore,classSourcedId,inProgress,incomplete,late,missing"
    )
    items = tables["lineItems.csv"]
    assert sorted((r["title"], r["classSourcedId"], r["categorySourcedId"]) for r in items) == [
        ("Homework 1", "cls-1", "cat-hw"),
        ("Homework 1", "cls-2", "cat-hw"),
        ("Quiz 1", "cls-1", "cat-quiz"),
        ("Quiz 1", "cls-2", "cat-quiz"),
    ]
    results = {r["studentSourcedId"]: r for r in tables["results.csv"]}
    assert set(results) == {"stu-1", "stu-2", "stu-3"}
    assert results["stu-1"]["score"] == "8.0" and results["stu-1"]["late"] == "true"
    assert (
        results["stu-1"]["comment"] == "Nice" and results["stu-1"]["scoreStatus"] == "fully graded"
    )
    assert results["stu-2"]["scoreStatus"] == "exempt" and results["stu-2"]["score"] == ""
    cls2_items = {r["sourcedId"] for r in items if r["classSourcedId"] == "cls-2"}
    assert results["stu-3"]["lineItemSourcedId"] in cls2_items  # the section's own class
    for file in SCHEMAS:
        for row in tables[f"{file}.csv"]:
            assert row["status"] == "" and row["dateLastModified"] == ""  # bulk leaves them empty
            obj = as_object(
                file, {**row, "status": "active", "dateLastModified": "2025-03-20T12:00:00Z"}
            )
            assert spec.problems(SCHEMAS[file], obj) == [], (file, row)


async def test_the_export_uses_the_sourced_ids_of_the_rest_passback(school: School) -> None:
    export = await school.export()
    quiz = {
        c: line_item_sourced_id("t1", "files", "quiz1", c) for c in ("cls-1", "cls-2")
    }  # the REST passback's own ids for the same connection
    items = {r["sourcedId"]: r for r in export.rows["lineItems"]}
    assert {items[li]["classSourcedId"] for li in quiz.values()} == {"cls-1", "cls-2"}
    results = {r["sourcedId"]: r for r in export.rows["results"]}
    assert set(results) >= {
        result_sourced_id(quiz["cls-1"], "stu-1"),
        result_sourced_id(quiz["cls-2"], "stu-3"),
    }


async def test_an_unaligned_group_is_refused_never_invented(school: School) -> None:
    sis.align_category(
        school.db.uow,
        school.clock,
        tenant_id="t1",
        destination_id="files",
        group="Homework",
        category_id=None,
    )
    export = await school.export()
    assert {r["categorySourcedId"] for r in export.rows["lineItems"]} == {"cat-quiz"}
    assert {r["studentSourcedId"] for r in export.rows["results"]} == {"stu-1", "stu-3"}
    [refused] = export.refused
    assert refused.startswith("hw1: Activity group 'Homework'") and "not aligned" in refused
    with school.db.uow() as uow:
        rows = uow.ledger.get_many("t1", "files", "c1", ["hw1"])
    excused = rows[("hw1", "p2")]  # the one result of hw1, held back with the rule
    assert excused.state is DeliveryState.REJECTED and excused.reason_code == "category_missing"


async def test_delta_holds_only_what_changed_and_deletions(school: School, spec: Spec) -> None:
    with pytest.raises(InvalidInput) as info:
        await school.export(mode=ExportMode.DELTA)
    assert info.value.problems[0].field == "since"
    first = await school.export()
    assert len(first.rows["results"]) == 3 and first.runs[0].counts["sent"] == 3
    school.clock.advance(timedelta(hours=1))
    nothing = await school.export(mode=ExportMode.DELTA)
    assert all(rows == [] for rows in nothing.rows.values())
    assert nothing.runs[0].counts["sent"] == 0  # nothing was sent again
    school.clock.advance(timedelta(hours=1))
    attempt(school.db, "e4", "quiz1", "p1", 9.5)  # a better score
    school.select("hw1", selected=False)
    delta = await school.export(mode=ExportMode.DELTA)
    results = delta.rows["results"]
    changed = [r for r in results if r["status"] == "active"]
    deleted = [r for r in results if r["status"] == "tobedeleted"]
    assert [(r["studentSourcedId"], r["score"]) for r in changed] == [("stu-1", "9.5")]
    assert [r["studentSourcedId"] for r in deleted] == ["stu-2"]  # hw1 is no longer passed back
    assert [r["status"] for r in delta.rows["lineItems"]] == ["tobedeleted"] * 2  # ...nor its items
    assert all(r["dateLastModified"] == "2025-03-20T14:00:00Z" for r in results)
    for row in changed:
        assert spec.problems("ResultDType", as_object("results", row)) == []
    files = _read(delta.files())
    manifest = {r["propertyName"]: r["value"] for r in files["manifest.csv"]}
    assert manifest["file.results"] == "delta"
    # an explicit since reaches back further
    since = await school.export(mode=ExportMode.DELTA, since=school.clock.now() - timedelta(days=1))
    assert len(since.rows["results"]) == 3
    # a bulk export holds every row: a since with it is refused, not ignored
    with pytest.raises(InvalidInput) as info:
        await school.export(since=school.clock.now() - timedelta(days=1))
    assert [(p.field, p.rule) for p in info.value.problems] == [("since", "delta_only")]
    # and a bulk export holds what the SIS should hold now: hw1 is gone from it
    bulk = await school.export()
    assert {(r["studentSourcedId"], r["score"]) for r in bulk.rows["results"]} == {
        ("stu-1", "9.5"),
        ("stu-3", "6.0"),
    }


async def test_a_run_of_any_trigger_writes_the_rows_the_export_holds(school: School) -> None:
    await school.export()
    school.clock.advance(timedelta(hours=1))
    attempt(school.db, "e4", "quiz1", "p3", 7.0)
    run, _ = request_run(
        school.db.uow, None, school.clock, RunScope("t1", "files", "c1"), Trigger.MANUAL, "me"
    )
    done = await school.finish(run)  # "Sync now": the engine sends to the file-based SIS
    assert done.outcome is RunOutcome.SUCCEEDED
    with school.db.uow() as uow:
        row = uow.ledger.get_many("t1", "files", "c1", ["quiz1"])[("quiz1", "p3")]
        [sent] = uow.deliveries.for_key(row.key, limit=1)
    assert row.state is DeliveryState.DELIVERED
    assert sent["payload"]["score"] == "7.0" and sent["payload"]["studentSourcedId"] == "stu-3"
    school.clock.advance(timedelta(hours=1))
    delta = await school.export(mode=ExportMode.DELTA)
    # the row as the run wrote it, an hour before the export: the export sent nothing itself
    assert [
        (r["studentSourcedId"], r["score"], r["dateLastModified"]) for r in delta.rows["results"]
    ] == [("stu-3", "7.0", "2025-03-20T13:00:00Z")]
    assert delta.runs[0].counts["sent"] == 0


async def test_only_a_file_based_connection_exports(school: School) -> None:
    sis.add_connection(
        school.db.uow,
        school.clock,
        tenant_id="t1",
        destination_id="rest",
        name="REST SIS",
        base_url="https://sis.example",
        client_id="id",
        client_secret="secret",
    )
    with pytest.raises(InvalidInput) as info:
        await export_csv(
            school.db.uow,
            school.clock,
            None,
            school.finish,
            tenant_id="t1",
            destination_id="rest",
            actor="test",
        )
    assert [(p.field, p.rule) for p in info.value.problems] == [("destination_id", "file_based")]
    with pytest.raises(InvalidInput) as info:
        await school.export(course_ids=["nope", " "])
    # a course the tenant does not have is unknown, not merely unmapped; a blank id is
    # required; each named at its place
    assert [(p.field, p.rule) for p in info.value.problems] == [
        ("course_ids[0]", "unknown_course"),
        ("course_ids[1]", "required"),
    ]
    assert school.runs == []  # nothing was run for a refused request


async def test_a_dropped_learner_leaves_the_files(school: School) -> None:
    await school.export()
    school.clock.advance(timedelta(hours=1))
    with school.db.uow() as uow:
        uow.enrollments.upsert(
            Enrollment("t1", "c1", "p3", status=EnrollmentStatus.DROPPED, section_id="sec-b")
        )
        uow.commit()
    delta = await school.export(mode=ExportMode.DELTA)
    assert [(r["studentSourcedId"], r["status"]) for r in delta.rows["results"]] == [
        ("stu-3", "tobedeleted")
    ]
    assert delta.rows["results"][0]["dateLastModified"] == "2025-03-20T13:00:00Z"
    bulk = await school.export()
    assert {r["studentSourcedId"] for r in bulk.rows["results"]} == {"stu-1", "stu-2"}


async def test_a_section_mapped_during_an_export_stays(school: School) -> None:
    """The export read each course's link, gathered its rows and wrote the link back with
    the export's time: on PostgreSQL (read committed) a section mapped meanwhile was
    written over, its learners' grades going to the course's class again."""

    def map_section() -> object:
        return sis.map_class(
            school.db.uow, tenant_id="t1", destination_id="files", course_id="c1",
            class_id="cls-3", section_id="sec-c", new_section=True,
        )  # fmt: skip

    # the first listing of the course's items is the export's own, once its link is read
    racing = AfterFirstRead(school.db, "links", "items", map_section)
    await export_csv(
        racing, school.clock, None, school.finish, tenant_id="t1", destination_id="files",
        actor="test",
    )  # fmt: skip
    racing.finish()
    with school.db.uow() as uow:
        link = uow.links.course("t1", "files", "c1")
    assert link is not None and EXPORTED_AT in link.data
    assert link.data["sections"] == {"sec-b": "cls-2", "sec-c": "cls-3"}
