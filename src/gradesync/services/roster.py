"""The LMS roster (LTI Names and Role Provisioning Services): who is in the course.

A launch carries the platform's context memberships URL when the platform granted gradesync
the roster scope; the launch binding keeps it in the course link (`data["nrps"]`). Reading
the roster (after a launch, before a run, on a schedule) then:

- links courseware learners who never launched to their LMS user id, matched by the
  tenant's `roster_match` key (LMS user id, SIS id or email; SIS id by default), so their
  grades go out without a launch;
- records each known person's role and status in the course through the ingest core:
  Active members are active enrollments; Inactive and Deleted members, and matched learners
  a full read no longer lists, have left the course, and nothing more is sent to them (the
  reason says when, instead of the LMS refusing the grade);
- keeps the platform's differences link, so the next read asks only for what changed.

The network read happens outside any transaction; what it found is written in one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from gradesync.domain.model import (
    CourseLink,
    Destination,
    DestinationKind,
    Enrollment,
    EnrollmentStatus,
    PersonLink,
    Role,
    RosterMatch,
)
from gradesync.services.clock import Clock
from gradesync.services.destination import RemoteFailure
from gradesync.services.ingest import DirtyRow, IngestBatch, record_facts
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory
from gradesync.services.wakeup import Waker

log = logging.getLogger(__name__)

NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
SOURCE = "nrps"
_STATUS = {
    "active": EnrollmentStatus.ACTIVE,
    "inactive": EnrollmentStatus.INACTIVE,
    "deleted": EnrollmentStatus.DROPPED,
}
_MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership#"
_ROLES = (  # the first that a member holds decides
    ("Instructor", Role.INSTRUCTOR),
    ("Administrator", Role.ADMINISTRATOR),
    ("ContentDeveloper", Role.INSTRUCTOR),
    ("Mentor", Role.OBSERVER),
    ("Learner", Role.LEARNER),
)


@dataclass(frozen=True, slots=True)
class Member:
    """One member as the platform lists them; the optional fields follow its privacy
    settings."""

    user_id: str
    status: str = "Active"  # Active | Inactive | Deleted
    roles: tuple[str, ...] = ()
    name: str | None = None
    email: str | None = None
    sis_id: str | None = None  # lis_person_sourcedid


@dataclass(frozen=True, slots=True)
class Membership:
    members: Sequence[Member]
    differences_url: str | None  # where to ask, next time, for what changed since
    partial: bool = False  # only the differences since an earlier read


class MembershipReader(Protocol):
    """Reads a context's members (`gradesync.adapters.destinations.nrps.NrpsClient`)."""

    async def read_members(self, url: str, *, differences: bool = False) -> Membership: ...

    async def aclose(self) -> None: ...


ReaderFactory = Callable[[Destination], MembershipReader]


@dataclass
class RosterResult:
    course_id: str
    destination_id: str
    members: int = 0
    matched: int = 0  # learners who never launched, linked by the tenant's key
    left: int = 0
    unmatched: int = 0  # members gradesync knows no learner for
    differences: bool = False
    failure: str | None = None
    notes: list[str] = field(default_factory=list)


def nrps_of(claims: dict[str, Any]) -> dict[str, Any] | None:
    """The names and roles service claim of a launch, when it names a memberships URL."""
    claim = claims.get(NRPS_CLAIM)
    if isinstance(claim, dict) and isinstance(claim.get("context_memberships_url"), str):
        return {
            "context_memberships_url": claim["context_memberships_url"],
            "service_versions": [str(v) for v in claim.get("service_versions") or []],
        }
    return None


def roster_links(
    uow: UnitOfWorkFactory, tenant_id: str, course_id: str | None = None
) -> list[CourseLink]:
    """The course links (of LTI 1.3 platforms) whose launches offered a roster."""
    with uow() as u:
        links = (
            u.links.destinations_for_course(tenant_id, course_id)
            if course_id is not None
            else [
                link
                for dest in u.destinations.all(tenant_id)
                if dest.kind is DestinationKind.LTI13_AGS
                for link in u.links.courses_for_destination(tenant_id, dest.id)
            ]
        )
    return [link for link in links if (link.data.get("nrps") or {}).get("context_memberships_url")]


async def refresh_roster(
    uow: UnitOfWorkFactory,
    clock: Clock,
    waker: Waker | None,
    reader_for: ReaderFactory,
    tenant_id: str,
    destination_id: str,
    course_id: str,
) -> RosterResult:
    """Read one course's roster from one platform and record it. Never raises for the
    platform's failures: the result says what happened (a run must not stop for a roster)."""
    result = RosterResult(course_id, destination_id)

    def load() -> tuple[Destination | None, CourseLink | None]:
        with uow() as u:
            return (
                u.destinations.get(tenant_id, destination_id),
                u.links.course(tenant_id, destination_id, course_id),
            )

    platform, link = await asyncio.to_thread(load)
    url = ((link.data.get("nrps") or {}) if link is not None else {}).get("context_memberships_url")
    if platform is None or link is None or not url:
        result.failure = "the LMS offered no roster (Names and Role Provisioning) for this course"
        return result
    reader = reader_for(platform)
    try:
        membership: Membership | None = None
        since = (link.data.get("roster") or {}).get("differences_url")
        if since:
            try:
                membership = await reader.read_members(str(since), differences=True)
            except RemoteFailure as failure:
                # an expired differences link: read the whole roster instead
                result.notes.append(f"differences not available ({failure.message})")
        if membership is None:
            membership = await reader.read_members(str(url))
    except RemoteFailure as failure:
        result.failure = f"{failure.code}: {failure.message}"
        log.warning("roster of %s/%s not read: %s", tenant_id, course_id, result.failure)
        return result
    finally:
        await reader.aclose()

    def save(found: Membership, p: Destination) -> bool:
        with uow() as u:
            woke = _record(u, p, course_id, found, clock.now(), result)
            u.commit()
        return woke

    if await asyncio.to_thread(save, membership, platform) and waker is not None:
        waker.wake_keys()
    return result


async def refresh_course(
    uow: UnitOfWorkFactory,
    clock: Clock,
    waker: Waker | None,
    reader_for: ReaderFactory,
    tenant_id: str,
    course_id: str | None = None,
    destination_id: str | None = None,
) -> list[RosterResult]:
    """Read the rosters of a course (every platform that offered one, or only
    `destination_id`), or of every course of the tenant; before a run and on a schedule."""
    links = await asyncio.to_thread(roster_links, uow, tenant_id, course_id)
    return [
        await refresh_roster(
            uow, clock, waker, reader_for, tenant_id, link.destination_id, link.course_id
        )
        for link in links
        if destination_id is None or link.destination_id == destination_id
    ]


def _role(roles: Sequence[str]) -> Role:
    for name, role in _ROLES:
        if any(r in (name, _MEMBERSHIP + name) for r in roles):
            return role
    return Role.OBSERVER


def _match_key(u: UnitOfWork, tenant_id: str) -> RosterMatch:
    tenant = u.tenants.get(tenant_id)
    chosen = tenant.policy.roster_match if tenant is not None else None
    return chosen or RosterMatch.SIS_ID


def _matched_person(u: UnitOfWork, tenant_id: str, key: RosterMatch, m: Member) -> str | None:
    """The one learner the member is by the tenant's key; None for none or several."""
    if key is RosterMatch.LMS_USER_ID:
        return m.user_id if u.people.get(tenant_id, m.user_id) is not None else None
    if key is RosterMatch.SIS_ID and m.sis_id:
        found = u.people.find(tenant_id, sis_id=m.sis_id)
    elif key is RosterMatch.EMAIL and m.email:
        found = u.people.find(tenant_id, email=m.email)
    else:
        return None
    return found[0].id if len(found) == 1 else None


def _record(
    u: UnitOfWork,
    platform: Destination,
    course_id: str,
    membership: Membership,
    now: datetime,
    result: RosterResult,
) -> bool:
    """Write what the read found; True when keys were marked for recompute."""
    tenant, dest = platform.tenant_id, platform.id
    links = u.links.people(tenant, dest, course_id)
    by_remote = {link.remote_id: pid for pid, link in links.items() if link.course_id is None}
    key = _match_key(u, tenant)
    # the course's enrollments in one read, not one per member
    enrolled = {e.person_id: e for e in u.enrollments.for_course(tenant, course_id)}
    enrollments: list[Enrollment] = []
    unblocked: list[DirtyRow] = []
    listed: set[str] = set()
    for m in membership.members:
        result.members += 1
        person_id = by_remote.get(m.user_id)
        if person_id is None:
            person_id = _matched_person(u, tenant, key, m)
            if person_id is None or person_id in links:
                result.unmatched += 1  # not a courseware learner, or linked to another id
                continue
            result.matched += 1
            link = PersonLink(
                tenant,
                dest,
                person_id,
                m.user_id,
                data={
                    k: v
                    for k, v in (("name", m.name), ("email", m.email), ("matched_by", key.value))
                    if v
                },
            )
            u.links.save_person(link)
            links[person_id], by_remote[m.user_id] = link, person_id
            unblocked += _waiting(u, tenant, course_id, person_id)
        listed.add(person_id)
        status = _STATUS.get(m.status.lower(), EnrollmentStatus.ACTIVE)
        enrollments.append(
            _enrollment(
                enrolled.get(person_id), tenant, course_id, person_id, _role(m.roles), status, now
            )
        )
    if not membership.partial:
        # a full read that no longer lists a learner it listed before: they left the course
        for old in enrolled.values():
            if (
                old.person_id not in listed
                and old.status_source == SOURCE
                and old.status is EnrollmentStatus.ACTIVE
            ):
                enrollments.append(replace(old, status=EnrollmentStatus.DROPPED, status_at=now))
    result.left = sum(e.status is not EnrollmentStatus.ACTIVE for e in enrollments)
    ingest = record_facts(
        u, tenant, IngestBatch(enrollments=enrollments), now, also_dirty=unblocked
    )
    course_link = u.links.course(tenant, dest, course_id, for_update=True)  # as bind_context
    if course_link is not None:
        data = dict(course_link.data)
        data["roster"] = {
            "read_at": now.isoformat(),
            "differences_url": membership.differences_url,
            "members": result.members,
            "unmatched": result.unmatched,
            "differences": membership.partial,
        }
        u.links.save_course(replace(course_link, data=data))
    result.differences = membership.partial
    return ingest.dirty_keys > 0


def _enrollment(
    old: Enrollment | None,
    tenant: str,
    course_id: str,
    person_id: str,
    role: Role,
    status: EnrollmentStatus,
    now: datetime,
) -> Enrollment:
    """The member's enrollment as the roster read gives it, beside the stored one (`old`)."""
    same = old is not None and old.status is status and old.status_source == SOURCE
    return Enrollment(
        tenant_id=tenant,
        course_id=course_id,
        person_id=person_id,
        role=role,
        status=status,
        section_id=old.section_id if old else None,
        status_source=SOURCE,
        status_at=old.status_at if same and old is not None else now,
    )


def _waiting(u: UnitOfWork, tenant: str, course_id: str, person_id: str) -> list[DirtyRow]:
    from gradesync.services.lti.launch import _waiting_results

    return _waiting_results(u, tenant, course_id, person_id)
