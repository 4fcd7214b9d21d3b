"""OneRoster 1.2 CSV destination: grade passback to a SIS that imports files.

Delivery reaches it as it reaches the REST passback (`oneroster.py`): the same checks, the
same class, line item, student and result sourcedIds, the same NOT_SYNCED for an activity not
selected for the SIS. Sending writes the export instead of calling the SIS: a column's
lineItems rows are kept on its link, a result's results row is the delivery's payload, and
the ledger records it delivered. `services.sis_export` then writes the files from the ledger
and the links: what the engine delivered is what the files hold.

Categories are never invented: a group aligned to a category sourcedId, or (category_match id)
the group itself, names the SIS's category; anything else is refused as category_missing,
since a file-based SIS cannot be asked for its categories by title.

Data kept on links (JSON), besides what the REST passback keeps:
  ItemLink.data.csv = {rows: {line item sourcedId: lineItems values}, digest, modified}:
      the rows as last written and when they last changed (their dateLastModified).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from gradesync.adapters.destinations.oneroster_payloads import assign_date
from gradesync.adapters.destinations.oneroster_rules import (
    classes_of,
    due_date,
    mapped_class,
    selected_item,
)
from gradesync.adapters.destinations.registry import DestinationContext
from gradesync.domain.canonical import digest
from gradesync.domain.capabilities import Capabilities
from gradesync.domain.diagnosis import ProbeStep
from gradesync.domain.model import Course, CourseLink, Destination, ItemLink
from gradesync.domain.oneroster_csv import line_item_values, ordered, result_values, zulu
from gradesync.domain.passback import (
    CategoryMatch,
    PassbackRule,
    SisProfile,
    Term,
    capabilities_for,
    file_category,
    group_of,
    line_item_sourced_id,
    profile_from_config,
    result_sourced_id,
)
from gradesync.domain.policy import Column, DesiredResult, column_hash
from gradesync.domain.remedies import Reader, Remedy
from gradesync.services.destination import (
    FailureClass,
    ReadBack,
    Receipt,
    RemoteFailure,
    RequestGate,
    ResultTarget,
    ungated,
)

# Nothing leaves the process when a row is written: the SIS's own limits do not apply.
CONCURRENCY = 32


def _missing_category(destination_id: str, group: str | None, why: str) -> RemoteFailure:
    name = repr(group) if group is not None else "(none)"
    return RemoteFailure(
        FailureClass.REJECTED,
        PassbackRule.CATEGORY_MISSING.value,
        f"Activity group {name}: {why}.",
        fix=Remedy(
            PassbackRule.CATEGORY_MISSING.value,
            destination_id,
            group=group,
            category_word="CATEGORY_SOURCEDID",
        ),
    )


class OneRosterCsvClient:
    """One file-based SIS connection."""

    def __init__(self, destination: Destination, context: DestinationContext) -> None:
        self.destination = destination
        self.profile: SisProfile = profile_from_config(destination.config)
        self._clock = context.clock

    @property
    def capabilities(self) -> Capabilities:
        return capabilities_for(self.profile)

    @property
    def concurrency(self) -> int:
        return CONCURRENCY

    async def ensure_course(self, course: Course, link: CourseLink | None) -> CourseLink:
        return mapped_class(self.destination, course, link)

    def category_of(self, course: CourseLink, group: str | None) -> str:
        """The SIS category sourcedId of an activity group: its alignment (the course's, then
        the connection's), else with category_match id the group itself."""
        category_id, why = file_category(
            self.profile,
            self.destination.config.get("category_map"),
            course.data.get("category_map"),
            group,
        )
        if category_id is None:
            raise _missing_category(
                self.destination.id, group_of(group, self.profile.default_category), why or ""
            )
        return category_id

    async def ensure_column(
        self,
        course: CourseLink,
        column: Column,
        link: ItemLink | None,
        *,
        force: bool = False,
        each_request: RequestGate = ungated,
    ) -> ItemLink:
        link = selected_item(course, column, link)
        term = Term.from_link_data(course.data)
        due = due_date(self.profile, column, term)
        category_id = self.category_of(course, column.category)
        school = str(course.data["school"])
        assigned = assign_date(due, term.start)
        line_items = {
            class_id: line_item_sourced_id(
                link.tenant_id, link.destination_id, column.activity_id, class_id
            )
            for class_id in classes_of(course)
        }
        rows = {
            line_items[class_id]: line_item_values(
                column,
                due=due,
                assigned=assigned,
                class_id=class_id,
                school_id=school,
                category_id=category_id,
            )
            for class_id in line_items
        }
        written = link.data.get("csv") or {}
        rows_digest = digest(rows)
        modified = written.get("modified")
        if force or modified is None or written.get("digest") != rows_digest:
            modified = zulu(self._clock.now())
        return replace(
            link,
            remote_id=line_items[course.remote_id],
            details_hash=column_hash(column),
            data={
                **link.data,
                "line_items": line_items,
                "category": category_id,
                "csv": {"rows": rows, "digest": rows_digest, "modified": modified},
            },
        )

    async def put_result(
        self,
        target: ResultTarget,
        result: DesiredResult,
        timestamp: datetime,
        *,
        each_request: RequestGate = ungated,
    ) -> Receipt:
        class_id = str(target.person.data.get("class") or target.course.remote_id)
        line_items = target.item.data.get("line_items") or {}
        line_item_id = str(line_items.get(class_id) or target.item.remote_id)
        student = target.person.remote_id
        values = result_values(
            result, line_item_id=line_item_id, student_id=student, class_id=class_id, at=timestamp
        )
        row = ordered(
            "results",
            result_sourced_id(line_item_id, student),
            "active",
            zulu(timestamp),
            values,
        )
        return Receipt(payload=row, message="written to the CSV export")

    async def read_results(
        self, course: CourseLink, item: ItemLink, *, each_request: RequestGate = ungated
    ) -> Sequence[ReadBack]:
        return []  # the SIS's gradebook is not readable from here

    async def check(self) -> Sequence[ProbeStep]:
        # no command in the evidence: every reader reads it (the export is theirs to find)
        steps = [
            ProbeStep(
                "file-based SIS",
                True,
                "Grades are written as OneRoster 1.2 CSV files, exported on request; there is "
                "no SIS connection to test.",
                code="file_based",
            )
        ]
        unaligned = self.profile.category_match is CategoryMatch.NAME and not (
            self.destination.config.get("category_map")
        )
        steps.append(
            ProbeStep(
                "categories",
                not unaligned,
                "groups are aligned by name, which a file-based SIS cannot answer; no "
                "connection-wide alignment is set"
                if unaligned
                else "groups name the SIS's category sourcedIds "
                f"({self.profile.category_match.value} or alignment)",
                code="groups_unaligned" if unaligned else "groups_named",
                fix=Remedy("align_groups", self.destination.id, category_word="CATEGORY_SOURCEDID")
                if unaligned
                else None,
            ).read_over(Reader.CLI)
        )
        return steps

    async def aclose(self) -> None:
        """Nothing of ours to close."""


def build(destination: Destination, context: DestinationContext) -> OneRosterCsvClient:
    return OneRosterCsvClient(destination, context)


def write(files: Mapping[str, str], target: Path, *, as_zip: bool = False) -> list[Path]:
    """Write a rendered set into the directory `target` (created), or to the zip `target`."""
    if as_zip:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(zipped(files))
        return [target]
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = target / name
        path.write_text(text, encoding="utf-8", newline="")
        written.append(path)
    return written


def zipped(files: Mapping[str, str]) -> bytes:
    """The set as one zip (the usual way a SIS imports it), UTF-8."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text.encode("utf-8"))
    return buffer.getvalue()
