"""The rules both OneRoster destinations apply before anything reaches the SIS, whether over
the REST API (`oneroster.py`) or in CSV files (`oneroster_csv.py`): the course is mapped to a
class with a school, the activity is selected for the SIS, the line item's classes and its
dueDate. Each refusal is a RemoteFailure named after the rule it breaks (PassbackRule)."""

from __future__ import annotations

from datetime import UTC, datetime

from gradesync.domain.model import Course, CourseLink, Destination, ItemLink
from gradesync.domain.passback import PassbackRule, SisProfile, Term
from gradesync.domain.policy import Column
from gradesync.domain.remedies import Remedy
from gradesync.services.destination import FailureClass, RemoteFailure


def rejected(
    rule: PassbackRule | str, message: str, remedy: str | None = None, *, fix: Remedy | None = None
) -> RemoteFailure:
    return RemoteFailure(FailureClass.REJECTED, str(rule), message, remedy=remedy, fix=fix)


def mapped_class(destination: Destination, course: Course, link: CourseLink | None) -> CourseLink:
    """The course's SIS class link, or REJECTED when the course is not mapped (line items
    need the class and its school)."""
    if link is None or not link.remote_id:
        raise RemoteFailure(
            FailureClass.REJECTED,
            PassbackRule.CLASS_NOT_MAPPED.value,
            f"The course {course.title!r} is not mapped to a SIS class.",
            fix=Remedy(PassbackRule.CLASS_NOT_MAPPED.value, destination.id, course.id),
        )
    if not link.data.get("school"):
        raise RemoteFailure(
            FailureClass.REJECTED,
            PassbackRule.CLASS_NOT_MAPPED.value,
            f"The class {link.remote_id!r} has no school sourcedId; line items need one.",
            fix=Remedy("class_without_school", destination.id, course.id, sis_class=link.remote_id),
        )
    return link


def selected_item(course: CourseLink, column: Column, link: ItemLink | None) -> ItemLink:
    """The activity's link when it is selected for the SIS (and not held for Post grades),
    else NOT_SYNCED: by design, not a failure; the engine skips the rows with this reason,
    and ticking the activity (services.sis.select_activities) or posting it
    (services.sis.post_grades) sends them."""
    if link is None or not link.data.get("sync_to_sis"):
        raise RemoteFailure(
            FailureClass.NOT_SYNCED,
            PassbackRule.NOT_SELECTED.value,
            f"The activity {column.title!r} is not selected for SIS passback.",
            fix=Remedy(
                PassbackRule.NOT_SELECTED.value, course.destination_id, activity=column.activity_id
            ),
        )
    if link.data.get("held"):
        # ticked, but the admin posts grades deliberately: held back, not refused
        raise RemoteFailure(
            FailureClass.NOT_SYNCED,
            PassbackRule.NOT_POSTED.value,
            f"The activity {column.title!r} is ticked for the SIS and waits for Post grades.",
            fix=Remedy(
                PassbackRule.NOT_POSTED.value,
                course.destination_id,
                course.course_id,
                column.activity_id,
            ),
        )
    return link


def classes_of(course: CourseLink) -> list[str]:
    """The course's class and its sections' classes, each once, the course's first."""
    sections = course.data.get("sections") or {}
    out = [course.remote_id]
    for class_id in sections.values():
        if class_id not in out:
            out.append(str(class_id))
    return out


def due_date(profile: SisProfile, column: Column, term: Term) -> datetime:
    """The line item's dueDate under the profile's rules, or REJECTED naming the rule."""
    if column.due_at is not None:
        due = column.due_at.astimezone(UTC)
        if profile.due_date_inside_term and term.known:
            assert term.start is not None and term.end is not None
            if not term.start <= due.date() <= term.end:
                raise rejected(
                    PassbackRule.DUE_DATE_OUTSIDE_TERM,
                    f"The due date {due.date().isoformat()} of {column.title!r} is outside "
                    f"the term {term.start.isoformat()}..{term.end.isoformat()}.",
                    "Move the due date into the term.",
                )
        return due
    if not profile.due_date_required and term.end is not None:
        # OneRoster needs a dueDate; without one the term's last day stands in.
        return datetime.combine(term.end, datetime.max.time(), tzinfo=UTC).replace(microsecond=0)
    raise rejected(
        PassbackRule.DUE_DATE_REQUIRED,
        f"The activity {column.title!r} has no due date, and the SIS needs one.",
        "Set a due date for everyone (or the section).",
    )
