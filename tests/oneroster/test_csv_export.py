"""OneRoster 1.2 CSV export: bulk and delta, checked against the binding's rules and the
official OpenAPI schemas (each row read back as the object it describes)."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.db.oneroster_csv_state import SqlExportState
from gradesync.adapters.destinations import oneroster_csv
from gradesync.domain.errors import InvalidInput
from gradesync.services import sis
from gradesync.services.sis_export import HEADERS, ExportMode, export_csv
from gradesync.testing import ManualClock

from .conftest import Spec
from .facts import NOW, attempt, seed_school

BASE = "https://sis.example/ims/oneroster/gradebook/v1p2"


@pytest.fixture
def school(db: Database) -> tuple[Database, ManualClock]:
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
    sis.map_class(
        db.uow,
        tenant_id="t1",
        destination_id="files",
        course_id="c1",
        class_id="cls-1",
        school_id="sch-1",
        term_start="2025-01-06",
        term_end="2025-06-20",
    )
    sis.map_class(
        db.uow,
        tenant_id="t1",
        destination_id="files",
        course_id="c1",
        class_id="cls-2",
        section_id="sec-b",
    )
    sis.align_category(
        db.uow,
        clock,
        tenant_id="t1",
        destination_id="files",
        group="Quizzes",
        category_id="cat-quiz",
    )
    sis.map_course_students(db.uow, tenant_id="t1", destination_id="files", course_id="c1")
    sis.select_activities(
        db.uow, tenant_id="t1", destination_id="files", activity_ids=["quiz1", "hw1"]
    )
    attempt(db, "e1", "quiz1", "p1", 8.0, comment="Nice", late=True)
    attempt(db, "e2", "quiz1", "p3", 6.0)
    attempt(db, "e3", "hw1", "p2", None, excused=True)
    return db, clock


def _read(files: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    return {name: list(csv.DictReader(io.StringIO(text))) for name, text in files.items()}


def _ref(kind: str, sid: str) -> dict[str, str]:
    return {"href": f"{BASE}/{kind}s/{sid}", "sourcedId": sid, "type": kind}


def as_object(file: str, row: dict[str, str]) -> dict[str, Any]:
    """A CSV row as the REST object it stands for (empty cells left out)."""
    v = {k: x for k, x in row.items() if x != ""}
    obj: dict[str, Any] = {k: v[k] for k in ("sourcedId", "status", "dateLastModified") if k in v}
    if file == "categories":
        obj["title"] = v["title"]
        if "weight" in v:
            obj["weight"] = float(v["weight"])
    elif file == "lineItems":
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


SCHEMAS = {"categories": "CategoryDType", "lineItems": "LineItemDType", "results": "ResultDType"}


def test_bulk_export_is_a_valid_oneroster_set(
    school: tuple[Database, ManualClock], spec: Spec, tmp_path: Path
) -> None:
    db, clock = school
    export = export_csv(
        db.uow, clock, SqlExportState(db.engine), tenant_id="t1", destination_id="files"
    )
    [zip_path] = oneroster_csv.write(export, tmp_path / "passback.zip", as_zip=True)
    with zipfile.ZipFile(zip_path) as archive:
        files = {n: archive.read(n).decode("utf-8") for n in archive.namelist()}
    assert set(files) == {"manifest.csv", "categories.csv", "lineItems.csv", "results.csv"}
    tables = _read(files)
    manifest = {r["propertyName"]: r["value"] for r in tables["manifest.csv"]}
    assert manifest["manifest.version"] == "1.0" and manifest["oneroster.version"] == "1.2"
    assert (
        manifest["file.lineItems"]
        == manifest["file.results"]
        == manifest["file.categories"]
        == "bulk"
    )
    assert manifest["file.users"] == manifest["file.classes"] == "absent"
    for name, header in HEADERS.items():
        assert files[f"{name}.csv"].splitlines()[0] == ",".join(header)
    # pinned to the column order of the OneRoster CSV Binding 1.2.1 gradebook tables
    assert files["categories.csv"].splitlines()[0] == (
        "sourcedId,status,dateLastModified,title,weight"
    )
    assert files["lineItems.csv"].splitlines()[0] == (
        "sourcedId,status,dateLastModified,title,description,assignDate,dueDate,"
        "classSourcedId,categorySourcedId,academicSessionSourcedId,resultValueMin,"
        "resultValueMax,schoolSourcedId"
    )
    assert files["results.csv"].splitlines()[0] == (
        "sourcedId,status,dateLastModified,lineItemSourcedId,studentSourcedId,scoreStatus,"
        "score,scoreDate,comment,textScore,classSourcedId,inProgress,incomplete,late,missing"
    )
    cats = {r["sourcedId"]: r["title"] for r in tables["categories.csv"]}
    assert cats["cat-quiz"] == "Quizzes"  # aligned by id map
    assert any(
        sid.startswith("gs-cat-") and t == "Homework" for sid, t in cats.items()
    )  # by name, ours
    items = tables["lineItems.csv"]
    assert sorted(r["classSourcedId"] for r in items) == ["cls-1", "cls-1", "cls-2", "cls-2"]
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


def test_delta_holds_only_what_changed_and_deletions(
    school: tuple[Database, ManualClock], spec: Spec, tmp_path: Path
) -> None:
    db, clock = school
    state = SqlExportState(db.engine)
    with pytest.raises(InvalidInput) as info:
        export_csv(
            db.uow, clock, state, tenant_id="t1", destination_id="files", mode=ExportMode.DELTA
        )
    assert info.value.problems[0].field == "since"
    first = export_csv(db.uow, clock, state, tenant_id="t1", destination_id="files")
    assert len(first.rows["results"]) == 3
    clock.advance(timedelta(hours=1))
    nothing = export_csv(
        db.uow, clock, state, tenant_id="t1", destination_id="files", mode=ExportMode.DELTA
    )
    assert all(rows == [] for rows in nothing.rows.values())
    clock.advance(timedelta(hours=1))
    attempt(db, "e4", "quiz1", "p1", 9.5)  # a better score
    sis.select_activities(
        db.uow, tenant_id="t1", destination_id="files", activity_ids=["hw1"], selected=False
    )
    delta = export_csv(
        db.uow, clock, state, tenant_id="t1", destination_id="files", mode=ExportMode.DELTA
    )
    results = delta.rows["results"]
    changed = [r for r in results if r["status"] == "active"]
    deleted = [r for r in results if r["status"] == "tobedeleted"]
    assert [(r["studentSourcedId"], r["score"]) for r in changed] == [("stu-1", "9.5")]
    assert len(deleted) == 1  # hw1 is no longer passed back: its result goes away...
    assert [r["status"] for r in delta.rows["lineItems"]] == ["tobedeleted"] * 2  # ...and its items
    assert all(r["dateLastModified"] == "2025-03-20T14:00:00Z" for r in results)
    for row in changed:
        assert spec.problems("ResultDType", as_object("results", row)) == []
    files = _read(oneroster_csv.render(delta))
    manifest = {r["propertyName"]: r["value"] for r in files["manifest.csv"]}
    assert manifest["file.results"] == "delta"
    # an explicit since reaches back further
    since = export_csv(
        db.uow,
        clock,
        state,
        tenant_id="t1",
        destination_id="files",
        mode=ExportMode.DELTA,
        since=clock.now() - timedelta(days=1),
    )
    assert len(since.rows["results"]) == 3
