"""Which other courses of a tenant pass back to a SIS class (docs/oneroster.md, "Several
courses, one class").

Mapping two courses (or sections) to one class is allowed: a class can be taught as several
LMS courses, and each activity gets a line item of its own. It is still worth a word when it
happens by mistake, so `sis map-class` says which courses share the class."""

from __future__ import annotations

from gradesync.services.ports import UnitOfWorkFactory


def courses_sharing_class(
    uow_factory: UnitOfWorkFactory,
    tenant_id: str,
    destination_id: str,
    course_id: str,
    class_id: str,
) -> list[str]:
    """The tenant's other courses mapped (themselves or one of their sections) to `class_id`
    on this SIS connection, sorted."""
    with uow_factory() as uow:
        links = uow.links.courses_for_destination(tenant_id, destination_id)
    return sorted(
        link.course_id
        for link in links
        if link.course_id != course_id
        and (link.remote_id == class_id or class_id in (link.data.get("sections") or {}).values())
    )


def shared_class_warning(class_id: str, courses: list[str]) -> str | None:
    """The sentence `sis map-class` prints when other courses pass back to the class too."""
    if not courses:
        return None
    names = ", ".join(f"'{c}'" for c in courses)
    return (
        f"SIS class '{class_id}' is also mapped to course(s) {names}: each course gets its "
        "own line items there. If the class was meant for one course only, map the other "
        "course to its own class."
    )
