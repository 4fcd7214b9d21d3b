"""Course, item and person links: how a destination knows our courses, columns and people."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from gradesync.domain.model import CourseLink, ItemLink, PersonLink


class LinkRepo(Protocol):
    def course(
        self, tenant_id: str, destination_id: str, course_id: str, *, for_update: bool = False
    ) -> CourseLink | None:
        """for_update: the row stays locked until the transaction ends. A course link's data
        holds what several changes write (a SIS class's sections and categories, the last
        export, the LMS context, the roster): each reads it for update to write it back."""

    def hold_course(self, tenant_id: str, destination_id: str, course_id: str) -> CourseLink:
        """The course's link read for update, made first when there is none (no remote id,
        no data: what a change finds when there is no link): a link another transaction is
        making meanwhile is waited for, and read as it committed it."""

    def courses_for_destination(self, tenant_id: str, destination_id: str) -> list[CourseLink]: ...

    def destinations_for_course(self, tenant_id: str, course_id: str) -> list[CourseLink]: ...

    def destinations_for_courses(
        self, tenant_id: str, course_ids: Iterable[str]
    ) -> list[CourseLink]:
        """The links of several courses at once (a batch of live grades spans courses)."""

    def save_course(self, link: CourseLink) -> None: ...

    def item(
        self, tenant_id: str, destination_id: str, activity_id: str, *, for_update: bool = False
    ) -> ItemLink | None:
        """for_update: the row stays locked until the transaction ends (a change that writes
        the link back whole: its data holds the SIS tick and hold, and what was written)."""

    def items(
        self, tenant_id: str, destination_id: str, activity_ids: Iterable[str]
    ) -> dict[str, ItemLink]:
        """Item links of these activities, by activity id, in one statement (none for none)."""

    def save_item(self, link: ItemLink) -> None: ...

    def add_item(self, link: ItemLink) -> bool:
        """Store a new column link; False (nothing written) when the activity has one, one
        committed before or being made by a transaction this one then waits for."""

    def save_written_item(
        self, link: ItemLink, began: Iterable[ItemLink], *, read: ItemLink | None
    ) -> bool:
        """The link a write of the column made from the link `read` (None: none was
        stored), saved over the stored one under its row lock. Of its data, only the keys
        the write changed from `read` are the write's: every other key stays as stored, so
        that a person's change saved since the write read the column (a SIS selection, an
        LTI 1.1 launch's result ids, verify's own key) is never saved over, whichever way
        the write ends (`domain.columns.written_link`). Its details hash is saved only
        while the stored one is the hash of one of `began` (the links the writer read or
        wrote for it), or none is stored: a mark put on the column after the write read it
        (a run's `mark_items_to_check`, a person's change) stays, so that the next send
        checks the column as the mark asks, and a write made from what was there before
        does not pass for that check; what the write learned of the column is saved still.
        Whether it was saved as written."""

    def update_item_data(
        self,
        tenant_id: str,
        destination_id: str,
        activity_id: str,
        changes: Mapping[str, Any],
    ) -> None:
        """Set these keys of the column link's data (a None value removes the key), the row
        locked, the rest as stored; nothing when there is no link."""

    def mark_items_to_check(
        self, tenant_id: str, destination_id: str, activity_ids: Iterable[str], mark: str
    ) -> None:
        """The details last written to these columns are no longer taken to be there: their
        hash becomes `mark` (no column's hash, and another each time it is marked, so that
        no cache of what was written takes it for one seen before); the next send to each
        compares the column with what is wanted first, and rewrites it where it differs
        (the link itself is kept)."""

    def delete_item(self, tenant_id: str, destination_id: str, activity_id: str) -> None: ...

    def person(
        self, tenant_id: str, destination_id: str, person_id: str, course_id: str | None = None
    ) -> PersonLink | None:
        """The course-specific link when there is one, else the course-independent one."""

    def people(self, tenant_id: str, destination_id: str, course_id: str) -> dict[str, PersonLink]:
        """Every person's link in a course, by person id; a course-specific link wins over
        a course-independent one."""

    def save_person(self, link: PersonLink) -> None: ...

    def person_links(self, tenant_id: str, destination_id: str, person_id: str) -> list[PersonLink]:
        """Every link of one person to the destination: the course-independent one and each
        course's own."""

    def people_for(
        self, tenant_id: str, destination_id: str, course_id: str, person_ids: Iterable[str]
    ) -> dict[str, PersonLink]:
        """`people` restricted to some persons (a batch, or a whole column), same
        precedence, whatever their number."""

    def people_in_courses(
        self, tenant_id: str, destination_id: str, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], PersonLink]:
        """`people_for` for (course, person) pairs of several courses, by pair."""
