"""OneRoster 1.2 CSV export (categories, lineItems, results) for SIS that import files.

The rows are the *desired* state, computed by the grade policy from the stored facts, for the
activities selected for the SIS that pass validation, in every course mapped to a SIS class.
The same sourcedIds as the REST passback are used, so a school can switch between the two.

Bulk: every current row. Delta: rows added, changed or removed (as `tobedeleted`) since a
moment, by default since the previous export. To know what changed, the hash and change time
of each exported row are kept per destination (`ExportState`, table oneroster_csv_rows); the
time a row last changed is its dateLastModified.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Protocol

from gradesync.domain.canonical import digest, number
from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import CourseLink, Destination, Role
from gradesync.domain.passback import (
    CategoryMatch,
    Term,
    capabilities_for,
    category_sourced_id,
    line_item_sourced_id,
    profile_from_config,
    result_flags,
    result_sourced_id,
    score_date,
    score_status,
)
from gradesync.domain.policy import (
    Column,
    DesiredResult,
    PolicyInput,
    column_for,
    desired_result,
    resolve_settings,
)
from gradesync.services.clock import Clock
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory
from gradesync.services.sis import _check, _sis

# Column order of each file as the 1EdTech "OneRoster CSV Binding 1.2.1" (Final Release,
# 22 August 2023) lays out its gradebook tables. 1.2 differs from 1.1 here: lineItems.csv has
# academicSessionSourcedId (1.1: gradingPeriodSourcedId) and schoolSourcedId; results.csv
# adds textScore, classSourcedId and the four flags after comment.
HEADERS: dict[str, tuple[str, ...]] = {
    "categories": ("sourcedId", "status", "dateLastModified", "title", "weight"),
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
LAST_EXPORT = ("export", "last")  # the state row that remembers when the last export ran


class ExportMode(StrEnum):
    BULK = "bulk"
    DELTA = "delta"


@dataclass(frozen=True, slots=True)
class Tracked:
    row_hash: str
    status: str  # active | tobedeleted
    changed_at: datetime


class ExportState(Protocol):
    """Per destination: each exported row's hash, status and change time."""

    def load(self, tenant_id: str, destination_id: str) -> dict[tuple[str, str], Tracked]: ...

    def save(
        self, tenant_id: str, destination_id: str, changes: Mapping[tuple[str, str], Tracked]
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class CsvRow:
    file: str  # categories | lineItems | results
    sourced_id: str
    values: dict[str, str]  # every header but status and dateLastModified


@dataclass(frozen=True, slots=True)
class CsvExport:
    mode: ExportMode
    since: datetime | None
    exported_at: datetime
    rows: dict[str, list[dict[str, str]]]  # file -> rows in header order, ready to write
    refused: list[str]  # "activity: problem" for selected activities left out


def _fmt(value: float | None) -> str:
    return "" if value is None else repr(number(value))


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _category(dest: Destination, course: CourseLink, group: str | None) -> tuple[str, str] | None:
    """(sourcedId, title) for a group, offline: the alignment maps, else the group itself as
    the id (match by id), else our own id for a category the SIS creates on import."""
    profile = profile_from_config(dest.config)
    group = group or profile.default_category
    if group is None:
        return None
    mapping = {**(dest.config.get("category_map") or {}), **(course.data.get("category_map") or {})}
    if group in mapping:
        return str(mapping[group]), group
    if profile.category_match is CategoryMatch.ID:
        return group, group
    return category_sourced_id(dest.tenant_id, dest.id, group), group


def _due(column: Column, term: Term) -> datetime | None:
    if column.due_at is not None:
        return column.due_at
    if term.end is not None:
        return datetime.combine(term.end, time(23, 59, 59), tzinfo=UTC)
    return None


def _assign(due: datetime, start: date | None) -> datetime:
    if start is not None:
        first = datetime.combine(start, time(0, 0), tzinfo=UTC)
        if first <= due:
            return first
    return due


def _course_rows(
    uow: UnitOfWork, dest: Destination, course: CourseLink, now: datetime, refused: list[str]
) -> Iterator[CsvRow]:
    tenant_id = dest.tenant_id
    profile = profile_from_config(dest.config)
    caps = capabilities_for(profile)
    tenant = uow.tenants.get(tenant_id)
    facts = uow.courses.get(tenant_id, course.course_id)
    if facts is None:
        return
    term = Term.from_link_data(course.data)
    activities = uow.activities.for_course(tenant_id, course.course_id)
    items = uow.links.items(tenant_id, dest.id, [a.id for a in activities])
    chosen = []
    for a in activities:
        item = items.get(a.id)
        if item is None or not item.data.get("sync_to_sis"):
            continue
        check = _check(uow, dest, a, course)
        if not check.ok:
            refused.extend(f"{a.id}: {p.message}" for p in check.problems)
            continue
        chosen.append(a)
    if not chosen:
        return
    enrollments = {
        e.person_id: e
        for e in uow.enrollments.for_course(tenant_id, course.course_id)
        if e.role is Role.LEARNER
    }
    people = uow.links.people(tenant_id, dest.id, course.course_id)
    sections: dict[str, str] = course.data.get("sections") or {}
    classes = [
        course.remote_id,
        *dict.fromkeys(c for c in sections.values() if c != course.remote_id),
    ]
    school = str(course.data.get("school") or "")
    attempts = uow.attempts.for_activities(tenant_id, [a.id for a in chosen])
    for activity in chosen:
        policy = resolve_settings(
            *[x.policy for x in (tenant, facts) if x is not None], activity.policy
        )
        column = column_for(activity, policy, caps)
        if not isinstance(column, Column):
            refused.append(f"{activity.id}: {column.reason.text}")
            continue
        category = _category(dest, course, column.category)
        due = _due(column, term)
        if category is None or due is None:
            refused.append(f"{activity.id}: needs a category and a due date")
            continue
        yield CsvRow("categories", category[0], {"title": category[1], "weight": ""})
        line_items = {c: line_item_sourced_id(tenant_id, dest.id, activity.id, c) for c in classes}
        for class_id, li in line_items.items():
            yield CsvRow(
                "lineItems",
                li,
                {
                    "title": column.title,
                    "description": "",
                    "assignDate": _z(_assign(due, term.start)),
                    "dueDate": _z(due),
                    "classSourcedId": class_id,
                    "categorySourcedId": category[0],
                    "academicSessionSourcedId": "",  # the term is not known by id
                    "resultValueMin": "0.0",
                    "resultValueMax": _fmt(column.score_maximum),
                    "schoolSourcedId": school,
                },
            )
        overrides = uow.overrides.for_activity(tenant_id, activity.id)
        for person_id, enrollment in enrollments.items():
            person = people.get(person_id)
            if person is None:
                continue
            outcome = desired_result(
                PolicyInput(
                    policy=policy,
                    course=facts,
                    activity=activity,
                    enrollment=enrollment,
                    attempts=attempts.get((activity.id, person_id), []),
                    due_override=overrides.get(person_id),
                    capabilities=caps,
                    now=now,
                )
            )
            if not isinstance(outcome, DesiredResult):
                continue
            class_id = str(person.data.get("class") or course.remote_id)
            li = line_items.get(class_id, line_items[course.remote_id])
            yield CsvRow(
                "results",
                result_sourced_id(li, person.remote_id),
                _result_values(outcome, li, person.remote_id, class_id, now),
            )


def _result_values(
    r: DesiredResult, line_item: str, student: str, class_id: str, now: datetime
) -> dict[str, str]:
    flags = result_flags(r)
    return {
        "lineItemSourcedId": line_item,
        "studentSourcedId": student,
        "scoreStatus": score_status(r),
        "score": "" if r.excused else _fmt(r.score_given),
        "scoreDate": score_date(r, now),
        "comment": r.comment or "",
        "classSourcedId": class_id,
        "textScore": "",
        **flags,
    }


def export_csv(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    state: ExportState,
    *,
    tenant_id: str,
    destination_id: str,
    mode: ExportMode = ExportMode.BULK,
    since: datetime | None = None,
    course_ids: Sequence[str] = (),
) -> CsvExport:
    """Build the rows of a CSV export and remember what was exported (for later deltas).

    Rows are keyed by file and sourcedId; a row that is no longer produced (activity
    unselected, learner dropped) is recorded as `tobedeleted` and appears in the next delta."""
    now = clock.now()
    if since is not None and since.tzinfo is None:
        raise InvalidInput.one("since", "timezone_required", "since needs a time zone (e.g. Z).")
    refused: list[str] = []
    current: dict[tuple[str, str], CsvRow] = {}
    with uow_factory() as uow:
        dest = _sis(uow, tenant_id, destination_id)
        links = uow.links.courses_for_destination(tenant_id, destination_id)
        if course_ids:
            unknown = sorted(set(course_ids) - {link.course_id for link in links})
            if unknown:
                raise InvalidInput.one(
                    "course_ids", "class_not_mapped", f"Not mapped to a SIS class: {unknown}."
                )
            links = [link for link in links if link.course_id in course_ids]
        for link in links:
            for row in _course_rows(uow, dest, link, now, refused):
                current[(row.file, row.sourced_id)] = row
    tracked = state.load(tenant_id, destination_id)
    last = tracked.pop(LAST_EXPORT, None)
    after_last = mode is ExportMode.DELTA and since is None
    if after_last:
        if last is None:
            raise InvalidInput.one(
                "since",
                "required",
                "No earlier export to start a delta from: give --since or export bulk.",
            )
        since = last.changed_at
    changes: dict[tuple[str, str], Tracked] = {}
    for key, row in current.items():
        h = digest(dict(row.values))
        old = tracked.get(key)
        if old is None or old.row_hash != h or old.status != "active":
            changes[key] = Tracked(h, "active", now)
    gone = {
        key: Tracked(old.row_hash, "tobedeleted", now)
        for key, old in tracked.items()
        if key not in current and old.status == "active"
    }
    changes.update(gone)
    changes[LAST_EXPORT] = Tracked("", "active", now)
    state.save(tenant_id, destination_id, changes)
    merged = {**tracked, **changes}
    rows: dict[str, list[dict[str, str]]] = {f: [] for f in FILES}
    for (file, sid), info in sorted(merged.items()):
        if (file, sid) == LAST_EXPORT:
            continue
        if mode is ExportMode.BULK:
            # Bulk: every current row; status and dateLastModified left empty as the binding
            # allows (the file replaces what the SIS holds).
            present = current.get((file, sid))
            if present is not None:
                rows[file].append(_ordered(file, sid, "", "", present.values))
            continue
        assert since is not None
        # since the last export: what changed after it; an explicit since: from that moment
        if info.changed_at < since or (after_last and info.changed_at == since):
            continue
        changed = current.get((file, sid))
        values = changed.values if changed is not None else {}
        rows[file].append(_ordered(file, sid, info.status, _z(info.changed_at), values))
    return CsvExport(mode, since, now, rows, refused)


def _ordered(
    file: str, sid: str, status: str, modified: str, values: Mapping[str, str]
) -> dict[str, str]:
    fixed = {"sourcedId": sid, "status": status, "dateLastModified": modified}
    return {h: fixed.get(h, values.get(h, "")) for h in HEADERS[file]}
