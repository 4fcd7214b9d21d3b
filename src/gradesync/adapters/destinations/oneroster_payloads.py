"""OneRoster 1.2 gradebook bodies (REST binding) built from gradesync's records.

Only the fields the official OpenAPI document defines; times in UTC with a `Z`; references as
`{href, sourcedId, type}`. Tests validate every body against the document.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import quote

from gradesync.domain.canonical import number
from gradesync.domain.passback import result_flags, score_date, score_status
from gradesync.domain.policy import Column, DesiredResult

GRADEBOOK_PATH = "/ims/oneroster/gradebook/v1p2"
ROSTERING_PATH = "/ims/oneroster/rostering/v1p2"


def zulu(moment: datetime) -> str:
    """UTC ISO 8601 with a Z, whole seconds (every SIS parses that)."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def ref(base: str, collection: str, sourced_id: str, kind: str) -> dict[str, str]:
    # href is a URI (the document's `uri` format): a sourcedId may hold a space, `#` or `/`,
    # percent-encoded as in the request's own path, else it is no URI or names another object
    href = f"{base}/{collection}/{quote(sourced_id, safe='')}"
    return {"href": href, "sourcedId": sourced_id, "type": kind}


def rostering_base(gradebook_base: str) -> str:
    """Classes, schools and students live in the rostering service next to the gradebook."""
    if gradebook_base.endswith(GRADEBOOK_PATH):
        return gradebook_base[: -len(GRADEBOOK_PATH)] + ROSTERING_PATH
    return gradebook_base


def assign_date(due: datetime, term_start: date | None) -> datetime:
    """assignDate is required and must not be after dueDate: the term's first day when known
    and not later than the due date, else the due date itself. Deterministic, so an unchanged
    activity always produces the same line item."""
    if term_start is not None:
        start = datetime.combine(term_start, time(0, 0), tzinfo=UTC)
        if start <= due:
            return start
    return due


def line_item(
    base: str,
    *,
    sourced_id: str,
    column: Column,
    due: datetime,
    assigned: datetime,
    class_id: str,
    school_id: str,
    category_id: str,
    modified: datetime,
    owner: dict[str, str],
) -> dict[str, Any]:
    roster = rostering_base(base)
    return {
        "lineItem": {
            "sourcedId": sourced_id,
            "status": "active",
            "dateLastModified": zulu(modified),
            # whose item it is (`line_item_owner`), in OneRoster's extension object: how a
            # connection added again under another id knows its own item
            "metadata": {"gradesync": owner},
            "title": column.title,
            "assignDate": zulu(assigned),
            "dueDate": zulu(due),
            "class": ref(roster, "classes", class_id, "class"),
            "school": ref(roster, "orgs", school_id, "org"),
            "category": ref(base, "categories", category_id, "category"),
            "resultValueMin": 0.0,
            "resultValueMax": number(column.score_maximum),
        }
    }


def category(sourced_id: str, title: str, modified: datetime) -> dict[str, Any]:
    return {
        "category": {
            "sourcedId": sourced_id,
            "status": "active",
            "dateLastModified": zulu(modified),
            "title": title,
        }
    }


def result(
    base: str,
    *,
    sourced_id: str,
    line_item_id: str,
    student_id: str,
    class_id: str,
    desired: DesiredResult,
    modified: datetime,
) -> dict[str, Any]:
    """A full result: PUT replaces the SIS's copy, so a cleared comment is cleared there too."""
    roster = rostering_base(base)
    body: dict[str, Any] = {
        "sourcedId": sourced_id,
        "status": "active",
        "dateLastModified": zulu(modified),
        "lineItem": ref(base, "lineItems", line_item_id, "lineItem"),
        "student": ref(roster, "users", student_id, "user"),
        "class": ref(roster, "classes", class_id, "class"),
        "scoreStatus": score_status(desired),
        "scoreDate": score_date(desired, modified),
        **result_flags(desired),
    }
    if desired.score_given is not None and not desired.excused:
        body["score"] = number(desired.score_given)
    if desired.comment:
        body["comment"] = desired.comment
    return {"result": body}
