"""OneRoster 1.2 CSV rows for grade passback: the gradebook tables lineItems and results.

The values are those the REST passback sends (same sourcedIds, same scoreStatus, flags and
dates), laid out as the 1EdTech "OneRoster CSV Binding 1.2.1" (Final Release, 22 August 2023)
lays out its gradebook tables. 1.2 differs from 1.1 here: lineItems.csv has
academicSessionSourcedId (1.1: gradingPeriodSourcedId) and schoolSourcedId; results.csv adds
textScore, classSourcedId and the four flags after comment.

Categories are the SIS's own: a line item names the category sourcedId the SIS already has,
and no categories.csv is written (a bulk categories file would replace the SIS's list).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum

from gradesync.domain.canonical import number
from gradesync.domain.passback import result_flags, score_date, score_status
from gradesync.domain.policy import Column, DesiredResult

HEADERS: dict[str, tuple[str, ...]] = {
    "lineItems": (
        "sourcedId",
        "status",
        "dateLastModified",
        "title",
        "description",
        "assignDate",
        "dueDate",
        "classSourcedId",
        "categorySourcedId",
        "academicSessionSourcedId",
        "resultValueMin",
        "resultValueMax",
        "schoolSourcedId",
    ),
    "results": (
        "sourcedId",
        "status",
        "dateLastModified",
        "lineItemSourcedId",
        "studentSourcedId",
        "scoreStatus",
        "score",
        "scoreDate",
        "comment",
        "textScore",
        "classSourcedId",
        "inProgress",
        "incomplete",
        "late",
        "missing",
    ),
}
FILES = tuple(HEADERS)


class ExportMode(StrEnum):
    BULK = "bulk"  # every row the SIS should hold; the file replaces what it holds
    DELTA = "delta"  # rows added, changed or gone (tobedeleted) since a moment


def zulu(moment: datetime) -> str:
    """UTC ISO 8601 with a Z, whole seconds."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _fmt(value: float | None) -> str:
    return "" if value is None else repr(number(value))


def line_item_values(
    column: Column,
    *,
    due: datetime,
    assigned: datetime,
    class_id: str,
    school_id: str,
    category_id: str,
) -> dict[str, str]:
    """A lineItems.csv row without sourcedId, status and dateLastModified."""
    return {
        "title": column.title,
        "description": "",
        "assignDate": zulu(assigned),
        "dueDate": zulu(due),
        "classSourcedId": class_id,
        "categorySourcedId": category_id,
        "academicSessionSourcedId": "",  # a class mapping holds the term's dates, not its id
        "resultValueMin": "0.0",
        "resultValueMax": _fmt(column.score_maximum),
        "schoolSourcedId": school_id,
    }


def result_values(
    result: DesiredResult, *, line_item_id: str, student_id: str, class_id: str, at: datetime
) -> dict[str, str]:
    """A results.csv row without sourcedId, status and dateLastModified; `at` stands in for
    the scoring time when the result has none (as the REST passback's send time does)."""
    return {
        "lineItemSourcedId": line_item_id,
        "studentSourcedId": student_id,
        "scoreStatus": score_status(result),
        "score": "" if result.excused else _fmt(result.score_given),
        "scoreDate": score_date(result, at),
        "comment": result.comment or "",
        "textScore": "",
        "classSourcedId": class_id,
        **result_flags(result),
    }


def ordered(
    file: str, sourced_id: str, status: str, modified: str, values: Mapping[str, str]
) -> dict[str, str]:
    """A full row in the file's header order."""
    fixed = {"sourcedId": sourced_id, "status": status, "dateLastModified": modified}
    return {h: fixed.get(h, values.get(h, "")) for h in HEADERS[file]}


# Every file the 1.2 binding names; ours are bulk|delta, the others absent.
MANIFEST_FILES = (
    "academicSessions",
    "categories",
    "classes",
    "classResources",
    "courses",
    "courseResources",
    "demographics",
    "enrollments",
    "lineItemLearningObjectiveIds",
    "lineItems",
    "lineItemScoreScales",
    "orgs",
    "resources",
    "resultLearningObjectiveIds",
    "results",
    "resultScoreScales",
    "roles",
    "scoreScales",
    "userProfiles",
    "userResources",
    "users",
)


def _csv(header: tuple[str, ...], rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def render(
    mode: ExportMode, rows: Mapping[str, list[dict[str, str]]], *, system_name: str = "gradesync"
) -> dict[str, str]:
    """File name -> CSV text (RFC 4180, CRLF): manifest.csv, lineItems.csv, results.csv."""
    manifest = [
        {"propertyName": "manifest.version", "value": "1.0"},
        {"propertyName": "oneroster.version", "value": "1.2"},
        *(
            {
                "propertyName": f"file.{name}",
                "value": mode.value if name in FILES else "absent",
            }
            for name in MANIFEST_FILES
        ),
        {"propertyName": "source.systemName", "value": system_name},
        {"propertyName": "source.systemCode", "value": "gradesync"},
    ]
    files = {"manifest.csv": _csv(("propertyName", "value"), manifest)}
    for name in FILES:
        files[f"{name}.csv"] = _csv(HEADERS[name], list(rows.get(name, [])))
    return files
