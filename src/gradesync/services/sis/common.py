"""What the SIS passback use cases share: the kinds of SIS, OneRoster scopes, the profile
knobs, and the live SIS as a port (`SisDirectory`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from gradesync.domain.diagnosis import ProbeStep
from gradesync.domain.errors import InvalidInput, NotFound
from gradesync.domain.model import (
    SIS_KINDS,
    CourseLink,
    DeliveryState,
    Destination,
    Role,
)
from gradesync.domain.passback import (
    PassbackRule,
)
from gradesync.services.column_marks import new_look_mark
from gradesync.services.ports import UnitOfWork

SCOPE_PREFIX = "https://purl.imsglobal.org/spec/or/v1p2/scope/"
DEFAULT_SCOPES = (SCOPE_PREFIX + "gradebook.readonly", SCOPE_PREFIX + "gradebook.createput")
# The profile's knobs: the console form's fields and the API's config keys are named after
# them; the CLI's options pass them to `given_profile`, whose keywords are these.
PROFILE_KEYS = (
    "name_max_length",
    "due_date_required",
    "due_date_inside_term",
    "may_create_categories",
    "category_match",
    "default_category",
    "concurrency",
)
# The settings a connection may go without, each back to its default when cleared
# (`add_connection`'s `clear`): the token URL next to the API, the default scopes, and the
# profile's knobs (docs/oneroster.md).
CLEARABLE = ("token_url", "scopes", *PROFILE_KEYS)
# Rows skipped while an activity was not selected (or held for Post grades).
HELD_BACK = frozenset({PassbackRule.NOT_SELECTED.value, PassbackRule.NOT_POSTED.value})
# Refusals of a whole column: once the admin fixes the cause, the learners' rows are sent again.
COLUMN_RULES = frozenset(r.value for r in PassbackRule)


def given_profile(
    *,
    name_max_length: int | None,
    due_date_required: bool | None,
    due_date_inside_term: bool | None,
    may_create_categories: bool | None,
    category_match: str | None,
    default_category: str | None,
    concurrency: int | None,
) -> dict[str, Any]:
    """The profile settings an entrypoint's options give (not None): `add_connection`'s
    `profile`. A keyword for each of PROFILE_KEYS and no defaults, so a call that leaves one
    out fails the type check (tests/oneroster/test_profile_keys.py keeps the two alike)."""
    given = {
        "name_max_length": name_max_length,
        "due_date_required": due_date_required,
        "due_date_inside_term": due_date_inside_term,
        "may_create_categories": may_create_categories,
        "category_match": category_match,
        "default_category": default_category,
        "concurrency": concurrency,
    }
    return {key: value for key, value in given.items() if value is not None}


class SisDirectory(Protocol):
    """What the services need from a live SIS (the OneRoster adapter implements it)."""

    async def check(self) -> Sequence[ProbeStep]: ...

    async def categories(self, *, refresh: bool = False) -> list[dict[str, Any]]: ...

    async def class_known(self, class_id: str) -> bool: ...

    async def resolve_category(
        self, course: CourseLink, group: str | None, *, create: bool = True
    ) -> str: ...


def sis_destination(
    uow: UnitOfWork, tenant_id: str, destination_id: str, *, for_update: bool = False
) -> Destination:
    """for_update: held to the commit, by a change that writes the connection back whole."""
    dest = uow.destinations.get(tenant_id, destination_id, for_update=for_update)
    if dest is None:
        raise NotFound("destination", destination_id)
    if dest.kind not in SIS_KINDS:
        raise InvalidInput.one(
            "destination_id",
            "kind",
            f"{destination_id!r} is a {dest.kind.value} destination, not a SIS.",
        )
    return dest


def touch_items(
    uow: UnitOfWork, tenant_id: str, destination_id: str, course_id: str | None = None
) -> None:
    """SIS-side details changed (alignment, classes): make the engine re-provision the line
    items of the course (or of every mapped course) before their next result."""
    courses = (
        [course_id]
        if course_id is not None
        else [c.course_id for c in uow.links.courses_for_destination(tenant_id, destination_id)]
    )
    for cid in courses:
        ids = [a.id for a in uow.activities.for_course(tenant_id, cid)]
        # one not written yet too: a write of it on its way read the course as it was. The
        # mark alone is written: a link written back whole put a change committed since its
        # read (PostgreSQL's read committed; an activity unticked, a column written) back
        uow.links.mark_items_to_check(tenant_id, destination_id, ids, new_look_mark())


DirtyKey = tuple[str, str, str, str]  # (tenant, course, activity, person), as mark_many takes


def release_keys(
    uow: UnitOfWork, tenant_id: str, destination_id: str, course_id: str, activity_id: str
) -> list[DirtyKey]:
    """Dirty keys of an activity whose grades may now go to the SIS (ticked, posted, its
    class mapped): its learners, everyone who attempted it, and its rows held back. Results
    that have no row here yet (computed before the course was mapped or the activity ticked)
    are computed for the first time; a held-back row keeps no desired result, so it is
    recomputed rather than reopened."""
    people = {
        e.person_id
        for e in uow.enrollments.for_course(tenant_id, course_id)
        if e.role is Role.LEARNER
    }
    people |= {p for _, p in uow.attempts.for_activities(tenant_id, [activity_id])}
    rows = uow.ledger.get_many(tenant_id, destination_id, course_id, [activity_id])
    people |= {
        p
        for (_, p), r in rows.items()
        if r.state is DeliveryState.SKIPPED and r.reason_code in HELD_BACK
    }
    return [(tenant_id, course_id, activity_id, p) for p in sorted(people)]
