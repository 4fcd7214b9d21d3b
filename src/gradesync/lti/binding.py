"""What a valid launch tells gradesync, written down.

The learner (`sub`) becomes a Person with a PersonLink; the LMS context is bound to the
source course (CourseLink: remote_id = the AGS line items URL, data = the endpoint claim and
the context); the roles become an Enrollment; a resource link with an AGS `lineitem` becomes
the activity's ItemLink. Which course: the link's custom `gradesync_course_id` (set by deep
linking), else the course already bound to this context, else a course whose id is the
context id. A launch from a context bound to another course binds nothing for that course
and says so: "launched from another course" is the first cause of missing grades.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from gradesync.adapters.destinations.ags_profiles import profile_for
from gradesync.adapters.destinations.ags_urls import ForeignUrl, allowed_origins, check_url
from gradesync.domain import ledger
from gradesync.domain.errors import InvalidInput, NotFound
from gradesync.domain.model import (
    CourseLink,
    DeliveryState,
    Enrollment,
    EnrollmentStatus,
    ItemLink,
    Person,
    PersonLink,
    Role,
)
from gradesync.lti import claims as c
from gradesync.lti import migration
from gradesync.lti.launch import ValidLaunch
from gradesync.services.destination import NO_RESOURCE_LINK
from gradesync.services.lti_migration import migrate_course_from_lti11
from gradesync.services.ports import UnitOfWork
from gradesync.services.ports.lti import LaunchRecord

_ROLE_ORDER: tuple[tuple[str, Role], ...] = (
    ("#Administrator", Role.ADMINISTRATOR),
    ("#Instructor", Role.INSTRUCTOR),
    ("#ContentDeveloper", Role.INSTRUCTOR),
    ("#TeachingAssistant", Role.TEACHING_ASSISTANT),
    ("#Learner", Role.LEARNER),
    ("#Mentor", Role.OBSERVER),
)
_CONTEXT_ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership"

log = logging.getLogger(__name__)


def role_from(roles: list[str]) -> Role:
    """The gradesync role of LTI role URIs. Context (membership) roles decide; institution
    or system roles only when there is none. Instructor beats learner (a teacher viewing as
    a student is still a teacher); TeachingAssistant sub-roles count as teaching assistant."""
    context = [r for r in roles if r.startswith(_CONTEXT_ROLE)]
    pool = context or roles
    # membership/Instructor#TeachingAssistant is a TA, not an instructor
    if any("#TeachingAssistant" in r for r in pool) and not any(
        r.endswith("membership#Instructor") or r.endswith("#Administrator") for r in pool
    ):
        return Role.TEACHING_ASSISTANT
    for suffix, role in _ROLE_ORDER:
        if any(r.endswith(suffix) or (suffix + "#") in r for r in pool):
            return role
    # Short forms from LTI 1.1 style ("Learner", "Instructor")
    for name, role in (("Instructor", Role.INSTRUCTOR), ("Learner", Role.LEARNER)):
        if name in pool:
            return role
    return Role.OBSERVER


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


def person_id_for(claims: dict[str, Any], source: str) -> str:
    if source == "email" and isinstance(claims.get("email"), str) and claims["email"]:
        return str(claims["email"]).strip().lower()
    if source == "lis_person_sourcedid":
        lis = claims.get(c.LIS) or {}
        if isinstance(lis, dict) and lis.get("person_sourcedid"):
            return str(lis["person_sourcedid"])
    return str(claims["sub"])


def checked_endpoint(launch: ValidLaunch) -> tuple[dict[str, Any] | None, str | None]:
    """The AGS endpoint claim if every URL in it is on the platform's origins; else (None,
    why)."""
    endpoint = launch.claims.get(c.AGS_ENDPOINT)
    if endpoint is None:
        return None, None
    if not isinstance(endpoint, dict):
        return None, "the AGS endpoint claim is not an object"
    origins = allowed_origins(launch.platform.config)
    try:
        for key in ("lineitems", "lineitem"):
            if endpoint.get(key) is not None:
                check_url(str(endpoint[key]), origins, f"endpoint.{key}")
    except ForeignUrl as exc:
        return None, str(exc)
    return endpoint, None


def _course_for(
    uow: UnitOfWork, launch: ValidLaunch, context_id: str | None, custom: dict[str, Any]
) -> tuple[str | None, str | None]:
    """(course id, note). Custom parameter, then the context's existing binding, then id."""
    tenant, dest = launch.platform.tenant_id, launch.platform.id
    wanted = custom.get(c.CUSTOM_COURSE)
    if isinstance(wanted, str) and wanted:
        if uow.courses.get(tenant, wanted) is None:
            return None, f"the link names course {wanted!r}, which gradesync does not know"
        return wanted, None
    if context_id is None:
        return None, "the launch has no context (course) claim"
    for link in uow.links.courses_for_destination(tenant, dest):
        if str((link.data.get("context") or {}).get("id")) == context_id:
            return link.course_id, None
    if uow.courses.get(tenant, context_id) is not None:
        return context_id, None
    return None, (
        f"the LMS course {context_id!r} is not connected to a gradesync course yet: an "
        "instructor connects it by adding gradesync activities with Deep Linking"
    )


def bind_launch(uow: UnitOfWork, launch: ValidLaunch, now: datetime) -> BoundLaunch:
    """Write what the launch says (not committed). Never raises for missing bindings: the
    notes say what could not be bound and why."""
    platform, claims = launch.platform, launch.claims
    tenant, dest = platform.tenant_id, platform.id
    roles = [str(r) for r in claims.get(c.ROLES) or []]
    role = role_from(roles)
    context = claims.get(c.CONTEXT) if isinstance(claims.get(c.CONTEXT), dict) else {}
    assert isinstance(context, dict)
    context_id = str(context["id"]) if context.get("id") else None
    custom = claims.get(c.CUSTOM) if isinstance(claims.get(c.CUSTOM), dict) else {}
    assert isinstance(custom, dict)
    endpoint, ignored = checked_endpoint(launch)

    person_id = person_id_for(claims, str(platform.config.get("person_id_from") or "sub"))
    legacy = migration.verified_lti1p1(uow, tenant, claims)
    if (
        legacy is not None
        and legacy.user_id
        and legacy.user_id != person_id
        and uow.people.get(tenant, legacy.user_id) is not None
    ):
        # LTI 1.1 launches created this learner under their LTI 1.1 user_id: same person
        person_id = legacy.user_id
    _save_person(uow, launch, person_id)

    course_id, note = _course_for(uow, launch, context_id, custom)
    bound = BoundLaunch(person_id, role, course_id, None, dict(context), ignored_endpoint=ignored)
    if note:
        bound.notes.append(note)
    if ignored:
        bound.notes.append(f"the grade service endpoint was ignored: {ignored}")
    link_id = (
        (claims.get(c.RESOURCE_LINK) or {}).get("id")
        if isinstance(claims.get(c.RESOURCE_LINK), dict)
        else None
    )

    if course_id is not None:
        existing = uow.links.course(tenant, dest, course_id)
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
    if course_id is not None:
        _bind_course(uow, launch, course_id, context, endpoint, now)
        old_enr = uow.enrollments.get(tenant, course_id, person_id)
        uow.enrollments.upsert(
            Enrollment(
                tenant_id=tenant,
                course_id=course_id,
                person_id=person_id,
                role=role,
                status=EnrollmentStatus.ACTIVE,
                section_id=old_enr.section_id if old_enr else None,
            )
        )
        activity_id = custom.get(c.CUSTOM_ACTIVITY)
        if not activity_id and legacy is not None and link_id:
            activity_id = migration.lti11_activity(uow, legacy, course_id, str(link_id))
        if isinstance(activity_id, str) and activity_id:
            act = uow.activities.get(tenant, activity_id)
            if act is None or act.course_id != course_id:
                bound.notes.append(
                    f"the link names activity {activity_id!r}, not in course {course_id!r}"
                )
            else:
                bound.activity_id = activity_id
                if _bind_item(uow, tenant, dest, activity_id, endpoint, link_id):
                    _requeue_unlinked(uow, tenant, dest, course_id, activity_id, now)
        if legacy is not None or migration.claim_of(claims) is not None:
            bound.migration = _migrate(uow, launch, course_id, now)
        _mark_dirty(uow, tenant, course_id, person_id, now)

    stored_claims = dict(claims)
    if bound.migration is not None:
        stored_claims["gradesync:migration"] = bound.migration
    if ignored:
        stored_claims["gradesync:ignored_endpoint"] = ignored
    uow.launches.add(
        LaunchRecord(
            tenant_id=tenant,
            destination_id=dest,
            course_id=course_id or "",
            person_id=person_id,
            resource_link_id=str(link_id) if link_id else None,
            roles=roles,
            claims=stored_claims,
            launched_at=now,
        ),
    )
    return bound


def _claimed(claims: dict[str, Any], name: str) -> str | None:
    """A string claim the launch actually carries: absent, null and "" are all "not said"
    (platforms with privacy settings send either)."""
    value = claims.get(name)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _save_person(uow: UnitOfWork, launch: ValidLaunch, person_id: str) -> None:
    """Write the person and their link to this platform, changing only what the launch says:
    a launch without a name or email (privacy settings) keeps the ones already known."""
    platform, claims = launch.platform, launch.claims
    tenant = platform.tenant_id
    lis = claims.get(c.LIS) if isinstance(claims.get(c.LIS), dict) else {}
    assert isinstance(lis, dict)
    name = _claimed(claims, "name") or " ".join(
        n for n in (_claimed(claims, "given_name"), _claimed(claims, "family_name")) if n
    )
    email = _claimed(claims, "email")
    sis_id = _claimed(lis, "person_sourcedid")
    old = uow.people.get(tenant, person_id)
    person = Person(
        tenant_id=tenant,
        id=person_id,
        name=name or (old.name if old else ""),
        email=email or (old.email if old else None),
        sis_id=sis_id or (old.sis_id if old else None),
    )
    if person != old:
        uow.people.upsert(person)
    old_link = uow.links.person(tenant, platform.id, person_id)
    data = dict(old_link.data) if old_link is not None and old_link.course_id is None else {}
    data.update({k: v for k, v in (("name", name or None), ("email", email)) if v})
    uow.links.save_person(
        PersonLink(
            tenant_id=tenant,
            destination_id=platform.id,
            person_id=person_id,
            remote_id=str(claims["sub"]),
            data=data,
        )
    )


def _migrate(uow: UnitOfWork, launch: ValidLaunch, course_id: str, now: datetime) -> dict[str, Any]:
    """Move the course's LTI 1.1 grade history to this platform (services.lti_migration),
    in the launch's transaction. Never refuses the launch: the result says what happened."""
    platform = launch.platform
    claim = migration.claim_of(launch.claims) or {}
    try:
        result = migrate_course_from_lti11(
            uow,
            tenant_id=platform.tenant_id,
            lti13_destination_id=platform.id,
            course_id=course_id,
            lti1p1_claim=claim,
            now=now,
            id_token=launch.claims,
            capabilities=profile_for(platform.profile).capabilities,
        )
    except (InvalidInput, NotFound) as exc:
        log.warning("LTI 1.1 migration claim not usable (course %s): %s", course_id, exc)
        return {"migrated": False, "course_id": course_id, "reason": str(exc)}
    return asdict(result)


def _bind_course(
    uow: UnitOfWork,
    launch: ValidLaunch,
    course_id: str,
    context: dict[str, Any],
    endpoint: dict[str, Any] | None,
    now: datetime,
) -> None:
    tool_platform = launch.claims.get(c.TOOL_PLATFORM)
    bind_context(
        uow,
        launch.platform.tenant_id,
        launch.platform.id,
        course_id,
        context=context,
        endpoint=endpoint,
        deployment_id=launch.deployment_id,
        now=now,
        tool_platform=tool_platform if isinstance(tool_platform, dict) else None,
    )


def bind_context(
    uow: UnitOfWork,
    tenant_id: str,
    destination_id: str,
    course_id: str,
    *,
    context: dict[str, Any],
    endpoint: dict[str, Any] | None,
    deployment_id: str,
    now: datetime,
    tool_platform: dict[str, Any] | None = None,
) -> CourseLink:
    """Bind an LMS context to a gradesync course (CourseLink). A launch without an AGS claim
    keeps the line items URL an earlier launch gave."""
    existing = uow.links.course(tenant_id, destination_id, course_id)
    data: dict[str, Any] = dict(existing.data) if existing else {}
    data["context"] = context
    data["deployment_id"] = deployment_id
    data["updated_at"] = now.isoformat()
    if tool_platform is not None:
        data["tool_platform"] = tool_platform
    remote = existing.remote_id if existing else ""
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
    uow.links.save_course(link)
    return link


def _bind_item(
    uow: UnitOfWork,
    tenant: str,
    dest: str,
    activity_id: str,
    endpoint: dict[str, Any] | None,
    link_id: Any,
) -> bool:
    """What a launch of an activity says about its column: the line item the LMS made for
    the link (`lineitem`), else the link itself and its line items container, so the column
    gradesync creates is tied to that link (the first link an activity is launched from
    keeps it). details_hash None: the column is checked (and fixed) on the next sync.
    True when the column learnt its resource link from this launch."""
    existing = uow.links.item(tenant, dest, activity_id)
    lineitem = str(endpoint["lineitem"]) if endpoint and endpoint.get("lineitem") else None
    if lineitem is not None:
        if existing is not None and existing.remote_id == lineitem:
            return False
        data = {"resourceLinkId": str(link_id)} if link_id else {}
        if endpoint and endpoint.get("lineitems"):
            data["lineitems"] = str(endpoint["lineitems"])
        uow.links.save_item(
            replace(existing, remote_id=lineitem, details_hash=None, data=data)
            if existing
            else ItemLink(tenant, dest, activity_id, lineitem, None, data)
        )
        return bool(link_id)
    if not link_id or (existing is not None and existing.data.get("resourceLinkId")):
        return False
    data = dict(existing.data) if existing is not None else {}
    data["resourceLinkId"] = str(link_id)
    if endpoint and endpoint.get("lineitems"):
        data["lineitems"] = str(endpoint["lineitems"])
    uow.links.save_item(
        replace(existing, details_hash=None, data=data)
        if existing
        else ItemLink(tenant, dest, activity_id, "", None, data)
    )
    return True


def _requeue_unlinked(
    uow: UnitOfWork, tenant: str, dest: str, course_id: str, activity_id: str, now: datetime
) -> None:
    """Grades refused because the activity's column had no resource link yet (an LMS that
    counts grades only on a column tied to its link) go out now that a launch gave one:
    every learner's, not only the launcher's."""
    for rows in uow.ledger.iter_scope(tenant, dest, course_id):
        for row in rows:
            if (
                row.key.activity_id == activity_id
                and row.state is DeliveryState.REJECTED
                and row.reason_code == NO_RESOURCE_LINK
                and row.desired is not None
            ):
                again = ledger.reconcile(
                    row, row.key, ledger.desired_from_json(row.desired), now, remaster=True
                )
                if again is not None:
                    uow.ledger.save(again, course_id)


def _mark_dirty(
    uow: UnitOfWork, tenant: str, course_id: str, person_id: str, now: datetime
) -> None:
    """Results this learner already has in the course were waiting for this launch (no LMS
    user id, or no course link): recompute them now."""
    keys = {
        (tenant, course_id, a.activity_id, person_id)
        for a in uow.attempts.for_person(tenant, person_id)
    }
    activities = uow.activities.get_many(tenant, [k[2] for k in keys])
    rows = [k for k in keys if k[2] in activities and activities[k[2]].course_id == course_id]
    if rows:
        uow.dirty.mark_many(sorted(rows), now)
