"""OneRoster 1.2 CSV export for a file-based SIS, written from the ledger.

An export is a trigger like "Sync now": it queues a run over the connection's courses (or the
ones named), has it carried out to its end (`finish`: the engine, through the one
reconciliation path), and then writes the files from what the ledger and the links hold. The
engine's "send" to a file-based SIS (`adapters/destinations/oneroster_csv.py`) is what makes
a row part of the export: a delivered ledger row is a results row, a provisioned column keeps
its lineItems rows on its link. Nothing here runs the grade policy.

- Bulk: every row the SIS should hold now (results delivered for activities still ticked),
  status and dateLastModified left empty as the binding allows.
- Delta: rows written after a moment, by default the course's previous export (kept on its
  class link as `csv_exported_at`), with status `active` and dateLastModified the time the
  engine wrote them; rows gone since (an activity unticked, a learner no longer passed back)
  as `tobedeleted`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from gradesync.domain.canonical import parse_iso
from gradesync.domain.errors import FieldProblem, InvalidInput
from gradesync.domain.ledger import desired_from_json
from gradesync.domain.model import (
    CourseLink,
    DeliveryState,
    DestinationKind,
    ItemLink,
    LedgerKey,
    LedgerRow,
    PersonLink,
    RunScope,
    SyncRun,
    Trigger,
)
from gradesync.domain.oneroster_csv import (
    FILES,
    ExportMode,
    ordered,
    render,
    result_values,
    zulu,
)
from gradesync.domain.passback import result_sourced_id
from gradesync.domain.remedies import Reader, for_reader
from gradesync.services.clock import Clock
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory
from gradesync.services.runs import request_run
from gradesync.services.sis import COLUMN_RULES, check_activity, sis_destination
from gradesync.services.wakeup import Waker

__all__ = ["CsvExport", "ExportMode", "RunFinisher", "export_csv"]

EXPORTED_AT = "csv_exported_at"  # on the course's class link: when it was last exported

# Carries a queued or joined run to its end and returns it finished (the runtime's engine).
RunFinisher = Callable[[SyncRun], Awaitable[SyncRun]]


@dataclass(frozen=True, slots=True)
class CsvExport:
    mode: ExportMode
    since: datetime | None  # the explicit moment of a delta; None: each course's last export
    exported_at: datetime
    rows: dict[str, list[dict[str, str]]]  # file -> rows in header order, ready to write
    refused: list[str]  # "activity: problem" for ticked activities left out
    runs: list[SyncRun]  # the runs that brought the ledger up to date

    def files(self) -> dict[str, str]:
        """File name -> CSV text: manifest.csv, lineItems.csv, results.csv."""
        return render(self.mode, self.rows)


@dataclass(frozen=True, slots=True)
class _Row:
    file: str
    sourced_id: str
    active: bool
    modified: datetime
    values: dict[str, str]


def _scope(
    uow_factory: UnitOfWorkFactory,
    tenant_id: str,
    destination_id: str,
    mode: ExportMode,
    since: datetime | None,
    course_ids: Sequence[str],
) -> list[str]:
    """The courses to export, after every check of the request."""
    with uow_factory() as uow:
        dest = sis_destination(uow, tenant_id, destination_id)
        if dest.kind is not DestinationKind.ONEROSTER_CSV:
            raise InvalidInput.one(
                "destination_id",
                "file_based",
                f"{destination_id!r} passes grades back over the OneRoster REST API; only a "
                "file-based SIS connection (sis add --file-based) exports CSV files.",
            )
        links = uow.links.courses_for_destination(tenant_id, destination_id)
        if course_ids:
            # a course the tenant does not have is unknown, not merely unmapped; each named
            # at its place in the list
            problems = [
                FieldProblem(f"course_ids[{n}]", "required", "A course id is required (blank).")
                if not c.strip()
                else FieldProblem(f"course_ids[{n}]", "unknown_course", f"No course {c!r}.")
                for n, c in enumerate(course_ids)
                if not c.strip() or uow.courses.get(tenant_id, c) is None
            ]
            if problems:
                raise InvalidInput(problems)
            unknown = sorted(set(course_ids) - {link.course_id for link in links})
            if unknown:
                raise InvalidInput.one(
                    "course_ids", "class_not_mapped", f"Not mapped to a SIS class: {unknown}."
                )
            links = [link for link in links if link.course_id in course_ids]
        if mode is ExportMode.DELTA and since is None:
            never = sorted(link.course_id for link in links if not link.data.get(EXPORTED_AT))
            if never:
                raise InvalidInput.one(
                    "since",
                    "required",
                    f"No earlier export of {never} to start a delta from: give --since or "
                    "export bulk.",
                )
        return sorted(link.course_id for link in links)


async def export_csv(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    waker: Waker | None,
    finish: RunFinisher,
    *,
    tenant_id: str,
    destination_id: str,
    actor: str,
    mode: ExportMode = ExportMode.BULK,
    since: datetime | None = None,
    course_ids: Sequence[str] = (),
    deliver: Callable[[dict[str, str]], None] | None = None,
) -> CsvExport:
    """Bring the ledger up to date for the connection (one run, or one per named course),
    then gather the rows of the export and remember its time on each course's link.
    `deliver` is given the files (name -> CSV text) before that time is committed: when it
    raises, nothing is remembered, so the next delta still holds every row."""
    if since is not None and since.tzinfo is None:
        raise InvalidInput.one("since", "timezone_required", "since needs a time zone (e.g. Z).")
    if since is not None and mode is ExportMode.BULK:
        # a bulk file holds every active row whatever changed when: refused, not ignored
        raise InvalidInput.one(
            "since",
            "delta_only",
            "since chooses where a delta export starts; a bulk export holds every row. "
            "Ask for a delta (--delta, mode delta) or leave since out.",
        )
    courses = await asyncio.to_thread(
        _scope, uow_factory, tenant_id, destination_id, mode, since, course_ids
    )
    scopes = (
        [RunScope(tenant_id, destination_id, c) for c in courses]
        if course_ids
        else [RunScope(tenant_id, destination_id)]
    )
    runs = []
    for scope in scopes:
        run, _joined = await asyncio.to_thread(
            request_run, uow_factory, waker, clock, scope, Trigger.MANUAL, actor
        )
        runs.append(await finish(run))
    rows, refused, exported_at = await asyncio.to_thread(
        _write, uow_factory, clock, tenant_id, destination_id, courses, mode, since, deliver
    )
    return CsvExport(mode, since, exported_at, rows, refused, runs)


def _write(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    tenant_id: str,
    destination_id: str,
    courses: Sequence[str],
    mode: ExportMode,
    since: datetime | None,
    deliver: Callable[[dict[str, str]], None] | None,
) -> tuple[dict[str, list[dict[str, str]]], list[str], datetime]:
    out: dict[str, list[dict[str, str]]] = {f: [] for f in FILES}
    refused: list[str] = []
    checked: set[str] = set()  # activities the checks already left out
    with uow_factory() as uow:
        now = clock.now()
        dest = sis_destination(uow, tenant_id, destination_id)
        for course_id in courses:
            link = uow.links.course(tenant_id, destination_id, course_id)
            if link is None:
                continue
            activities = uow.activities.for_course(tenant_id, course_id)
            items = uow.links.items(tenant_id, destination_id, [a.id for a in activities])
            for a in activities:
                item = items.get(a.id)
                if item is None or not item.data.get("sync_to_sis"):
                    continue
                check = check_activity(uow, dest, a, link)
                refused.extend(f"{a.id}: {p.message}" for p in check.problems)
                if check.problems:
                    checked.add(a.id)
            start, after_last = since, False
            if mode is ExportMode.DELTA and since is None:
                start, after_last = parse_iso(str(link.data[EXPORTED_AT])), True
            found = sorted(
                _course_rows(uow, link, items, refused, checked),
                key=lambda r: (r.file, r.sourced_id),
            )
            for row in found:
                if mode is ExportMode.BULK:
                    if row.active:
                        out[row.file].append(ordered(row.file, row.sourced_id, "", "", row.values))
                    continue
                assert start is not None
                if row.modified < start or (after_last and row.modified == start):
                    continue
                status = "active" if row.active else "tobedeleted"
                out[row.file].append(
                    ordered(row.file, row.sourced_id, status, zulu(row.modified), row.values)
                )
            # the link read again, held to the commit: a section mapped or a category aligned
            # since it was read (PostgreSQL's read committed) is kept beside the export's time
            held = uow.links.course(tenant_id, destination_id, course_id, for_update=True)
            if held is not None:
                data = {**held.data, EXPORTED_AT: now.isoformat()}
                uow.links.save_course(replace(held, data=data))
        if deliver is not None:
            deliver(render(mode, out))  # written before the export's time is remembered
        uow.commit()
    return out, list(dict.fromkeys(refused)), now


def _when(value: object) -> datetime | None:
    return parse_iso(str(value).replace("Z", "+00:00")) if value else None


def _course_rows(
    uow: UnitOfWork,
    course: CourseLink,
    items: dict[str, ItemLink],
    refused: list[str],
    checked: set[str],
) -> Iterator[_Row]:
    """Every row the engine wrote for the course, active or gone, with its change time."""
    tenant_id, destination_id = course.tenant_id, course.destination_id
    written: dict[str, ItemLink] = {}
    for activity_id, item in items.items():
        csv = item.data.get("csv") or {}
        modified = _when(csv.get("modified"))
        if modified is None:
            continue  # never provisioned: nothing of it was exported
        written[activity_id] = item
        selected = bool(item.data.get("sync_to_sis"))
        # unticking (or ticking again) changes the rows' status at that moment
        toggled = _when(item.data.get("selected_at"))
        changed = max(modified, toggled) if toggled is not None else modified
        for sourced_id, values in (csv.get("rows") or {}).items():
            yield _Row("lineItems", sourced_id, selected, changed, dict(values))
    people = uow.links.people(tenant_id, destination_id, course.course_id)
    ledger = uow.ledger.get_many(tenant_id, destination_id, course.course_id)
    left_out: dict[str, str] = {}
    for (activity_id, person_id), row in sorted(ledger.items()):
        rejected = row.state is DeliveryState.REJECTED and activity_id not in checked
        if rejected and (row.reason_code or "") in COLUMN_RULES:
            # said at the command line (the API gives their number only)
            left_out.setdefault(
                activity_id,
                for_reader(row.reason_code, row.reason_text, Reader.CLI, destination_id)
                if row.reason_text
                else row.reason_code or "",
            )
        column = written.get(activity_id)
        if column is None or row.delivered_hash is None:
            continue  # never written to the export
        found = _result_row(uow, course, column, people.get(person_id), row)
        if found is not None:
            yield found
    refused.extend(f"{aid}: {text}" for aid, text in sorted(left_out.items()))


def _result_row(
    uow: UnitOfWork,
    course: CourseLink,
    item: ItemLink,
    person: PersonLink | None,
    row: LedgerRow,
) -> _Row | None:
    selected = bool(item.data.get("sync_to_sis"))
    toggled = _when(item.data.get("selected_at"))
    if row.state is DeliveryState.DELIVERED and row.desired is not None and person is not None:
        class_id = str(person.data.get("class") or course.remote_id)
        line_item = str((item.data.get("line_items") or {}).get(class_id) or item.remote_id)
        at = row.delivered_at or row.updated_at
        assert at is not None
        values = result_values(
            desired_from_json(row.desired),
            line_item_id=line_item,
            student_id=person.remote_id,
            class_id=class_id,
            at=at,
        )
        changed = max(at, toggled) if toggled is not None else at
        return _Row(
            "results", result_sourced_id(line_item, person.remote_id), selected, changed, values
        )
    # Written before, not now: the SIS holds the last row the engine wrote. A row no longer
    # passed back (skipped) is gone; one waiting for a new send keeps its last version.
    last = _last_written(uow, row.key)
    if last is None:
        return None
    gone = row.state is DeliveryState.SKIPPED or not selected
    changed = row.updated_at if gone and row.updated_at is not None else last[1]
    if toggled is not None:
        changed = max(changed, toggled)
    values = {k: v for k, v in last[0].items() if k not in ("sourcedId", "status")}
    return _Row("results", last[0]["sourcedId"], not gone, changed, values)


def _last_written(uow: UnitOfWork, key: LedgerKey) -> tuple[dict[str, str], datetime] | None:
    """The results row of the key's last delivered send, and when it was sent."""
    for entry in uow.deliveries.for_key(key):
        payload = entry.get("payload")
        if (
            entry.get("outcome") == "delivered"
            and isinstance(payload, dict)
            and "sourcedId" in payload
        ):
            return {k: str(v) for k, v in payload.items()}, entry["sent_at"]
    return None
