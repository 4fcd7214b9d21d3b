"""Recording a verified LTI 1.3 launch: what it tells gradesync, written down.

The learner becomes a Person with a PersonLink; the LMS context is bound to the source course
(CourseLink: remote_id = the AGS line items URL, data = the endpoint claim and the context);
the roles become an Enrollment; a resource link with an AGS `lineitem` becomes the activity's
ItemLink. Which course: the link's custom `gradesync_course_id` (set by deep linking), else the
course already bound to this context, else a course whose id is the context id. A launch from
a context bound to another course binds nothing for that course and says so: "launched from
another course" is the first cause of missing grades.

People and enrollments go through the ingest core (`services.ingest.record_facts`), with the
results the launch unblocks (the learner's results in the course, which were waiting for a
person link or a course link) marked for recompute in the same transaction. The platform's
keys are fetched and the token verified before this is called: no network call is made inside
the transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from gradesync.domain import ledger
from gradesync.domain.capabilities import Capabilities
from gradesync.domain.errors import InvalidInput
from gradesync.domain.identifiers import MAX_ID, is_sis_id
from gradesync.domain.model import (
    ActivityKind,
    CourseLink,
    DeliveryState,
    Destination,
    DestinationKind,
    Enrollment,
    EnrollmentStatus,
    ItemLink,
    Person,
    PersonLink,
    Role,
)
from gradesync.services.column_marks import new_look_mark
from gradesync.services.destination import NO_RESOURCE_LINK
from gradesync.services.ingest import DirtyRow, IngestBatch, record_facts
from gradesync.services.lti.errors import LaunchRefused
from gradesync.services.lti.login import NONCE_PURPOSE, nonce_key
from gradesync.services.lti.migration import (
    claim_of,
    lti11_activity,
    migrate_on_launch,
    verified_lti1p1,
)
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory
from gradesync.services.ports.lti import LaunchRecord
from gradesync.services.roster import nrps_of
from gradesync.services.wakeup import Waker

TEACHING_ROLES = (Role.INSTRUCTOR, Role.ADMINISTRATOR, Role.TEACHING_ASSISTANT)


@dataclass(frozen=True, slots=True)
class Lti13Launch:
    """A verified LTI 1.3 launch in gradesync's terms (`gradesync.lti.launch` reads it from
    the id token)."""

    platform: Destination
    claims: dict[str, Any]  # the verified id token, kept with the launch record
    nonce: str
    nonce_expires: datetime  # when the login it came from expires
    deep_linking: bool
    deployment_id: str
    sub: str
    person_id: str  # as the platform's `person_id_from` setting says
    roles: list[str]
    role: Role
    name: str | None
    email: str | None
    sis_id: str | None
    context: dict[str, Any]
    custom_course_id: str | None
    custom_activity_id: str | None
    resource_link_id: str | None
    endpoint: dict[str, Any] | None  # the AGS endpoint claim, its URLs checked
    ignored_endpoint: str | None  # why the AGS claim was ignored (SSRF guard)
    tool_platform: dict[str, Any] | None

    @property
    def context_id(self) -> str | None:
        return str(self.context["id"]) if self.context.get("id") else None

    def who(self) -> dict[str, Any]:
        config = self.platform.config
        return {
            "tenant_id": self.platform.tenant_id,
            "destination_id": self.platform.id,
            "issuer": str(config["issuer"]),
            "client_id": str(config["client_id"]),
            "deployment_id": self.deployment_id or None,
        }


@dataclass
class BoundLaunch:
    person_id: str
    role: Role
    course_id: str | None  # None: the context is bound to no course
    activity_id: str | None
    context: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # reasons something was not bound
    ignored_endpoint: str | None = None  # why the AGS claim was ignored (SSRF guard)
    migration: dict[str, Any] | None = None  # what the LTI 1.1 -> 1.3 move did (lti1p1 claim)
    roster: bool = False  # the platform offered the course's roster (NRPS): read it next
    # deep linking: the courses (and their activities) the instructor may choose from
    choices: list[dict[str, Any]] = field(default_factory=list)


def launch_platform(uow: UnitOfWorkFactory, tenant_id: str, destination_id: str) -> Destination:
    """The LTI 1.3 registration a launch's state names. Raises LaunchRefused."""
    with uow() as u:
        platform = u.destinations.get(tenant_id, destination_id)
    if platform is None or platform.kind is not DestinationKind.LTI13_AGS:
        raise LaunchRefused(
            "unknown_platform",
            "state: the platform registration no longer exists",
            tenant_id=tenant_id,
            destination_id=destination_id,
        )
    return platform


def record_launch(
    uow: UnitOfWorkFactory,
    waker: Waker | None,
    launch: Lti13Launch,
    now: datetime,
    *,
    capabilities_of: Callable[[str], Capabilities],
) -> BoundLaunch:
    """Use the launch's nonce and write what the launch says, in one transaction; then wake
    the workers. Never refuses for missing bindings (the notes say what could not be bound
    and why); refuses a replayed launch, and a deep linking request from a learner."""
    with uow() as u:
        # the nonce came sealed in the login's state (only gradesync issues one, and the
        # state's expiry is checked): used once, remembered until that expiry
        if not u.nonces.add(nonce_key(launch.nonce), NONCE_PURPOSE, launch.nonce_expires, now):
            raise LaunchRefused(
                "nonce_replayed",
                "nonce: already used (a replayed launch)",
                status=401,
                **launch.who(),
            )
        u.nonces.purge(now)
        bound = _bind(u, launch, now, capabilities_of(launch.platform.profile))
        if launch.deep_linking:
            if bound.role not in TEACHING_ROLES:
                raise LaunchRefused(
                    "not_instructor",
                    "roles: only an instructor can add gradesync activities (deep linking)",
                    status=403,
                    tenant_id=launch.platform.tenant_id,
                    destination_id=launch.platform.id,
                )
            bound.choices = _choices(u, launch.platform.tenant_id, bound.course_id)
        u.commit()
    if waker is not None:
        waker.wake_keys()
    return bound


def _course_for(u: UnitOfWork, launch: Lti13Launch) -> tuple[str | None, str | None]:
    """(course id, note). Custom parameter, then the context's existing binding, then id."""
    tenant, dest = launch.platform.tenant_id, launch.platform.id
    wanted = launch.custom_course_id
    if wanted:
        if u.courses.get(tenant, wanted) is None:
            return None, f"the link names course {wanted!r}, which gradesync does not know"
        return wanted, None
    context_id = launch.context_id
    if context_id is None:
        return None, "the launch has no context (course) claim"
    for link in u.links.courses_for_destination(tenant, dest):
        if str((link.data.get("context") or {}).get("id")) == context_id:
            return link.course_id, None
    if u.courses.get(tenant, context_id) is not None:
        return context_id, None
    return None, (
        f"the LMS course {context_id!r} is not connected to a gradesync course yet: an "
        "instructor connects it by adding gradesync activities with Deep Linking"
    )


def _bind(
    u: UnitOfWork, launch: Lti13Launch, now: datetime, capabilities: Capabilities
) -> BoundLaunch:
    platform = launch.platform
    tenant, dest = platform.tenant_id, platform.id
    context, context_id = launch.context, launch.context_id
    person_id = launch.person_id
    legacy = verified_lti1p1(u, tenant, launch.claims)
    if (
        legacy is not None
        and legacy.user_id
        and legacy.user_id != person_id
        and u.people.get(tenant, legacy.user_id) is not None
    ):
        # LTI 1.1 launches created this learner under their LTI 1.1 user_id: same person
        person_id = legacy.user_id
    person, said = _person(launch, person_id)

    course_id, note = _course_for(u, launch)
    bound = BoundLaunch(
        person_id,
        launch.role,
        course_id,
        None,
        dict(context),
        ignored_endpoint=launch.ignored_endpoint,
    )
    if note:
        bound.notes.append(note)
    if launch.ignored_endpoint:
        bound.notes.append(f"the grade service endpoint was ignored: {launch.ignored_endpoint}")
    link_id = launch.resource_link_id

    if course_id is not None:
        existing = u.links.course(tenant, dest, course_id)
        bound_context = (existing.data.get("context") or {}).get("id") if existing else None
        if (
            existing is not None
            and bound_context
            and context_id
            and str(bound_context) != context_id
        ):
            bound.notes.append(
                f"gradesync course {course_id!r} is connected to the LMS course "
                f"{(existing.data.get('context') or {}).get('title') or bound_context!r}; this "
                f"launch came from another LMS course ({context.get('title') or context_id!r}), "
                "so grades for it cannot go there"
            )
            bound.course_id = None
            course_id = None

    # the facts first (the person, their enrollment), through the ingest core, with the
    # results this launch unblocks; then the links that say where grades go
    enrollments: list[Enrollment] = []
    unblocked: list[DirtyRow] = []
    if course_id is not None:
        old_enr = u.enrollments.get(tenant, course_id, person_id)
        enrollments.append(
            Enrollment(
                tenant_id=tenant,
                course_id=course_id,
                person_id=person_id,
                role=launch.role,
                status=EnrollmentStatus.ACTIVE,
                section_id=old_enr.section_id if old_enr else None,
            )
        )
        unblocked = _waiting_results(u, tenant, course_id, person_id)
        if u.links.course(tenant, dest, course_id) is None:
            # the course's first link here: its activities' columns are created now (through
            # computing), not on each one's first grade
            unblocked += [
                (tenant, course_id, a.id, person_id)
                for a in u.activities.for_course(tenant, course_id)
            ]
    try:
        record_facts(
            u,
            tenant,
            IngestBatch(
                people=[person], enrollments=enrollments, sent={("people", person_id): said}
            ),
            now,
            also_dirty=unblocked,
        )
    except InvalidInput as exc:
        raise LaunchRefused(
            "bad_claim", "; ".join(p.message for p in exc.problems), **launch.who()
        ) from None
    _save_person_link(u, launch, person_id)

    if course_id is not None:
        bind_context(
            u,
            tenant,
            dest,
            course_id,
            context=context,
            endpoint=launch.endpoint,
            deployment_id=launch.deployment_id,
            now=now,
            tool_platform=launch.tool_platform,
            nrps=nrps_of(launch.claims),
        )
        bound.roster = nrps_of(launch.claims) is not None
        activity_id = launch.custom_activity_id
        if not activity_id and legacy is not None and link_id:
            activity_id = lti11_activity(u, legacy, course_id, link_id)
        if activity_id:
            act = u.activities.get(tenant, activity_id)
            if act is None or act.course_id != course_id:
                bound.notes.append(
                    f"the link names activity {activity_id!r}, not in course {course_id!r}"
                )
            else:
                bound.activity_id = activity_id
                if _bind_item(u, tenant, dest, activity_id, launch.endpoint, link_id):
                    _requeue_unlinked(u, tenant, dest, course_id, activity_id, now)
        if legacy is not None or claim_of(launch.claims) is not None:
            bound.migration = migrate_on_launch(
                u, platform, course_id, launch.claims, now, capabilities
            )

    stored_claims = dict(launch.claims)
    if bound.migration is not None:
        stored_claims["gradesync:migration"] = bound.migration
    if launch.ignored_endpoint:
        stored_claims["gradesync:ignored_endpoint"] = launch.ignored_endpoint
    u.launches.add(
        LaunchRecord(
            tenant_id=tenant,
            destination_id=dest,
            course_id=course_id or "",
            person_id=person_id,
            resource_link_id=link_id,
            roles=launch.roles,
            claims=stored_claims,
            launched_at=now,
        )
    )
    return bound


def _person(launch: Lti13Launch, person_id: str) -> tuple[Person, frozenset[str]]:
    """The person as the launch says, and the fields it says (`IngestBatch.sent`): ingest
    changes only those, so a launch without a name or email (privacy settings) keeps the
    ones already known."""
    name = launch.name or ""  # over MAX_TITLE, ingest refuses the launch: never cut
    email = launch.email if launch.email and len(launch.email) <= MAX_ID else None
    sis_id = launch.sis_id if is_sis_id(launch.sis_id) else None
    said = (("name", name), ("email", email), ("sis_id", sis_id))
    person = Person(launch.platform.tenant_id, person_id, name, email, sis_id)
    return person, frozenset(field for field, value in said if value)


def _save_person_link(u: UnitOfWork, launch: Lti13Launch, person_id: str) -> None:
    """The person's link to this platform: the LMS user id (`sub`), name and email."""
    platform = launch.platform
    tenant = platform.tenant_id
    old_link = u.links.person(tenant, platform.id, person_id)
    data = dict(old_link.data) if old_link is not None and old_link.course_id is None else {}
    data.update({k: v for k, v in (("name", launch.name), ("email", launch.email)) if v})
    u.links.save_person(
        PersonLink(
            tenant_id=tenant,
            destination_id=platform.id,
            person_id=person_id,
            remote_id=launch.sub,
            data=data,
        )
    )


def bind_context(
    u: UnitOfWork,
    tenant_id: str,
    destination_id: str,
    course_id: str,
    *,
    context: dict[str, Any],
    endpoint: dict[str, Any] | None,
    deployment_id: str,
    now: datetime,
    tool_platform: dict[str, Any] | None = None,
    nrps: dict[str, Any] | None = None,
) -> CourseLink:
    """Bind an LMS context to a gradesync course (CourseLink). A launch without an AGS claim
    keeps the line items URL an earlier launch gave; likewise the roster (NRPS) claim."""
    # held to the commit, made first if there is none: read unlocked, what another launch
    # (its line items URL) or a change of the link committed meanwhile (PostgreSQL's read
    # committed) would be written over
    existing = u.links.hold_course(tenant_id, destination_id, course_id)
    data: dict[str, Any] = dict(existing.data)
    data["context"] = context
    data["deployment_id"] = deployment_id
    data["updated_at"] = now.isoformat()
    if tool_platform is not None:
        data["tool_platform"] = tool_platform
    if nrps is not None:
        data["nrps"] = nrps
    remote = existing.remote_id
    if endpoint is not None and endpoint.get("lineitems"):
        data["endpoint"] = endpoint
        remote = str(endpoint["lineitems"])
    link = CourseLink(
        tenant_id=tenant_id,
        destination_id=destination_id,
        course_id=course_id,
        remote_id=remote,
        data=data,
    )
    u.links.save_course(link)
    return link


def _bind_item(
    u: UnitOfWork,
    tenant: str,
    dest: str,
    activity_id: str,
    endpoint: dict[str, Any] | None,
    link_id: str | None,
) -> bool:
    """What a launch of an activity says about its column: the line item the LMS made for
    the link (`lineitem`), else the link itself and its line items container, so the column
    gradesync creates is tied to that link (the first link an activity is launched from
    keeps it). details_hash a new look mark: the column is checked (and fixed) on the next
    sync.
    True when the column learnt its resource link from this launch.

    The link is read for update and written back whole: read unlocked, a column the engine
    made and saved meanwhile (PostgreSQL's read committed) was forgotten, and the next grade
    made a second one in the LMS. A link made meanwhile where there was none is read again
    (held) and decided from."""
    existing = u.links.item(tenant, dest, activity_id, for_update=True)
    link, learnt = _launched_item(existing, tenant, dest, activity_id, endpoint, link_id)
    if link is None:
        return learnt
    if existing is not None:
        u.links.save_item(link)
        return learnt
    if u.links.add_item(link):
        return learnt
    existing = u.links.item(tenant, dest, activity_id, for_update=True)
    link, learnt = _launched_item(existing, tenant, dest, activity_id, endpoint, link_id)
    if link is not None:
        u.links.save_item(link)
    return learnt


def _launched_item(
    existing: ItemLink | None,
    tenant: str,
    dest: str,
    activity_id: str,
    endpoint: dict[str, Any] | None,
    link_id: str | None,
) -> tuple[ItemLink | None, bool]:
    """`_bind_item`'s decision from the link stored: the link to store (None: none to
    write), and whether the column learnt its resource link."""
    lineitem = str(endpoint["lineitem"]) if endpoint and endpoint.get("lineitem") else None
    if lineitem is not None:
        # Open edX names its component's first line item here, tied to the link or not
        same = existing if existing is not None and existing.remote_id == lineitem else None
        if same is not None and (same.data.get("resourceLinkId") or not link_id):
            return None, False
        data = dict(same.data) if same is not None else {}
        if link_id:
            data["resourceLinkId"] = link_id
        if endpoint and endpoint.get("lineitems"):
            data["lineitems"] = str(endpoint["lineitems"])
        made = (
            replace(existing, remote_id=lineitem, details_hash=new_look_mark(), data=data)
            if existing
            else ItemLink(tenant, dest, activity_id, lineitem, None, data)
        )
        return made, bool(link_id)
    if not link_id or (existing is not None and existing.data.get("resourceLinkId")):
        return None, False
    data = dict(existing.data) if existing is not None else {}
    data["resourceLinkId"] = link_id
    if endpoint and endpoint.get("lineitems"):
        data["lineitems"] = str(endpoint["lineitems"])
    made = (
        replace(existing, details_hash=new_look_mark(), data=data)
        if existing
        else ItemLink(tenant, dest, activity_id, "", None, data)
    )
    return made, True


def _requeue_unlinked(
    u: UnitOfWork, tenant: str, dest: str, course_id: str, activity_id: str, now: datetime
) -> None:
    """Grades refused because the activity's column had no resource link yet (an LMS that
    counts grades only on a column tied to its link) go out now that a launch gave one:
    every learner's, not only the launcher's. Read under lock (in key order, as computing
    locks them): read unlocked, a grade computed meanwhile (a newer attempt) was written
    back over with the refused one, and never sent."""
    refused = u.ledger.get_many(
        tenant, dest, course_id, [activity_id], state=DeliveryState.REJECTED, lock=True
    )
    again = [
        ledger.reconcile(row, row.key, ledger.desired_from_json(row.desired), now, remaster=True)
        for row in refused.values()
        if row.reason_code == NO_RESOURCE_LINK and row.desired is not None
    ]
    u.ledger.save_many([(row, course_id) for row in again if row is not None])


def _waiting_results(u: UnitOfWork, tenant: str, course_id: str, person_id: str) -> list[DirtyRow]:
    """Results this learner already has in the course were waiting for this launch (no LMS
    user id, or no course link): they are recomputed now."""
    keys = {
        (tenant, course_id, a.activity_id, person_id)
        for a in u.attempts.for_person(tenant, person_id)
    }
    activities = u.activities.get_many(tenant, [k[2] for k in keys])
    return sorted(k for k in keys if k[2] in activities and activities[k[2]].course_id == course_id)


def _choices(u: UnitOfWork, tenant_id: str, course_id: str | None) -> list[dict[str, Any]]:
    """The courses an instructor may connect by deep linking, with their activities."""
    courses = [u.courses.get(tenant_id, course_id)] if course_id else u.courses.all(tenant_id)
    out = []
    for course in courses:
        if course is None:
            continue
        acts = u.activities.for_course(tenant_id, course.id)
        out.append(
            {
                "id": course.id,
                "title": course.title,
                "activities": [
                    {
                        "id": a.id,
                        "title": a.title,
                        "points": a.points_possible,
                        "kind": a.kind.value,
                    }
                    for a in acts
                    # only what can have a gradebook column: scored (not practice), published
                    if a.kind is not ActivityKind.PRACTICE and a.published
                ],
            }
        )
    return out
