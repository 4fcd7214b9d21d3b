"""What a SIS admin looks at before posting grades of a course: the connection, the course's
SIS class, which learners have a SIS student and which do not, the activity groups with their
alignment, and which activities are ticked "Sync to SIS" (read only; nothing is asked of the
SIS here)."""

from __future__ import annotations

from dataclasses import dataclass

from gradesync.domain.columns import column_written, no_column
from gradesync.domain.errors import NotFound
from gradesync.domain.model import (
    SIS_KINDS,
    Activity,
    Course,
    CourseLink,
    Destination,
    LedgerRow,
    Person,
    Role,
    SyncRun,
)
from gradesync.domain.natural_order import natural_key
from gradesync.domain.passback import (
    BY_HAND,
    LINKED_BY,
    capabilities_for,
    profile_from_config,
)
from gradesync.domain.policy import activity_policy
from gradesync.services.ports import UnitOfWorkFactory
from gradesync.services.sis.common import sis_destination


@dataclass(frozen=True, slots=True)
class LearnerMapping:
    person: Person
    student_id: str | None  # the SIS student sourcedId the results go to; None: not mapped
    linked: bool  # a link is recorded (else only the person's sis_id, not linked yet)
    by_hand: bool = False  # the link's student was picked by hand (map-student)

    @property
    def sis_id_not_followed(self) -> str | None:
        """The learner's SIS id when their link is to another student, None otherwise: the
        student picked by hand (`by_hand`), which a new SIS id does not replace
        (`follow_sis_ids`), or one of an earlier SIS id, which map-students replaces."""
        own = self.person.sis_id
        return own if self.linked and own and own != self.student_id else None


@dataclass(frozen=True, slots=True)
class GroupAlignment:
    group: str | None  # None: activities without a group (the default category applies)
    activity_ids: list[str]
    category_id: str | None  # what the admin aligned it to (course wins over connection)
    for_course: bool  # the alignment is this course's own


@dataclass(frozen=True, slots=True)
class ActivitySelection:
    activity: Activity
    selected: bool  # ticked "Sync to SIS"
    line_item_id: str | None  # the line item's sourcedId, once written in the SIS
    held: bool = False  # ticked with a hold: its grades wait for Post grades
    # why no line item is ever written for it (a practice item, under the minimum points)
    no_line_item: str | None = None


@dataclass(frozen=True, slots=True)
class CourseOverview:
    destination: Destination
    course: Course
    class_link: CourseLink | None
    learners: list[LearnerMapping]
    groups: list[GroupAlignment]
    activities: list[ActivitySelection]

    @property
    def unmapped(self) -> list[LearnerMapping]:
        return [m for m in self.learners if not m.linked]


def sis_connections(uow_factory: UnitOfWorkFactory, tenant_id: str) -> list[Destination]:
    """The tenant's SIS connections, by name."""
    with uow_factory() as uow:
        found = [d for d in uow.destinations.all(tenant_id) if d.kind in SIS_KINDS]
    return sorted(found, key=lambda d: d.name.lower())


def course_overview(
    uow_factory: UnitOfWorkFactory, *, tenant_id: str, destination_id: str, course_id: str
) -> CourseOverview:
    with uow_factory() as uow:
        dest = sis_destination(uow, tenant_id, destination_id)
        course = uow.courses.get(tenant_id, course_id)
        if course is None:
            raise NotFound("course", course_id)
        link = uow.links.course(tenant_id, destination_id, course_id)
        ids = [
            e.person_id
            for e in uow.enrollments.for_course(tenant_id, course_id)
            if e.role is Role.LEARNER
        ]
        people = uow.people.get_many(tenant_id, ids)
        links = uow.links.people_for(tenant_id, destination_id, course_id, ids)
        # students picked by hand; of a link saved before links were marked, known by the
        # link of no course (which only map-student makes) beside it
        hand = {
            pid
            for pid, found in links.items()
            if found.data.get(LINKED_BY) == BY_HAND
            or (
                (person := people.get(pid)) is not None
                and person.sis_id not in (None, "", found.remote_id)
                and any(
                    x.course_id is None
                    for x in uow.links.person_links(tenant_id, destination_id, pid)
                )
            )
        }
        activities = sorted(
            uow.activities.for_course(tenant_id, course_id), key=lambda a: (a.title.lower(), a.id)
        )
        items = uow.links.items(tenant_id, destination_id, [a.id for a in activities])
        tenant = uow.tenants.get(tenant_id)
    caps = capabilities_for(profile_from_config(dest.config))
    layers = [x.policy for x in (tenant, course) if x is not None]
    learners = []
    for pid in ids:
        person = people.get(pid) or Person(tenant_id, pid)
        found = links.get(pid)
        student = found.remote_id if found is not None else person.sis_id
        learners.append(LearnerMapping(person, student or None, found is not None, pid in hand))
    learners.sort(key=lambda m: (m.linked, natural_key(m.person.name or m.person.id)))
    course_map = dict((link.data.get("category_map") if link else None) or {})
    connection_map = dict(dest.config.get("category_map") or {})
    groups: dict[str | None, list[str]] = {}
    for a in activities:
        groups.setdefault(a.category, []).append(a.id)
    aligned = [
        GroupAlignment(
            group,
            acts,
            course_map.get(group or "") or connection_map.get(group or ""),
            (group or "") in course_map,
        )
        for group, acts in sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    ]
    selection = []
    for a in activities:
        item = items.get(a.id)
        selected = bool(item is not None and item.data.get("sync_to_sis"))
        held = bool(selected and item is not None and item.data.get("held"))
        why = no_column(a, activity_policy(layers, a), caps)
        written = item.remote_id if item is not None and column_written(dest.kind, item) else None
        selection.append(
            ActivitySelection(a, selected, written, held, why.text if why is not None else None)
        )
    return CourseOverview(dest, course, link, learners, aligned, selection)


@dataclass(frozen=True, slots=True)
class PostedResult:
    """One learner's result of a posted activity, as the ledger holds it now."""

    activity: Activity
    person: Person
    student_id: str | None
    row: LedgerRow


def posted_results(uow_factory: UnitOfWorkFactory, run: SyncRun) -> list[PostedResult]:
    """The results in a Post grades run's scope (its course, SIS and activities), each with
    its state and reason: what the Grade Sync page lists under the run."""
    scope = run.scope
    if scope.destination_id is None or scope.course_id is None:
        return []
    t = scope.tenant_id
    with uow_factory() as uow:
        rows = uow.ledger.get_many(
            t, scope.destination_id, scope.course_id, list(scope.activity_ids) or None
        )
        acts = uow.activities.get_many(t, sorted({a for a, _ in rows}))
        pids = sorted({p for _, p in rows})
        people = uow.people.get_many(t, pids)
        links = uow.links.people_for(t, scope.destination_id, scope.course_id, pids)
    out = []
    for (aid, pid), row in rows.items():
        act = acts.get(aid)
        if act is None:
            continue
        link = links.get(pid)
        person = people.get(pid) or Person(t, pid)
        out.append(PostedResult(act, person, link.remote_id if link else None, row))
    out.sort(key=lambda r: (r.activity.title.lower(), natural_key(r.person.name or r.person.id)))
    return out
