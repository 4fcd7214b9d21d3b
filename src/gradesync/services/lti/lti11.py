"""Recording a verified LTI 1.1 launch (POST /lti11/launch) as facts and links.

- Person `user_id`, Course `context_id`, Enrollment with the LTI roles mapped to a Role, all
  through the ingest core (`services.ingest.record_facts`);
- CourseLink (remote_id = context_id, data.outcome_service_url) for the consumer;
- ItemLink for the activity (remote_id = resource_link_id);
- PersonLink (learner, course) with data.sourcedids[activity_id] = lis_result_sourcedid.

Results the launch unblocks (no launch yet, no result id) are put back to pending. The
nonce store (one for LTI 1.1 and LTI 1.3) refuses a replayed launch. Reading and checking the
signed form is `gradesync.lti.lti11_launch`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from gradesync.domain.errors import InvalidInput
from gradesync.domain.identifiers import MAX_ID, is_sis_id
from gradesync.domain.ledger import reopened
from gradesync.domain.model import (
    Course,
    CourseLink,
    DeliveryState,
    Enrollment,
    EnrollmentStatus,
    ItemLink,
    Person,
    PersonLink,
    Role,
)
from gradesync.services.column_marks import new_look_mark
from gradesync.services.ingest import DirtyRow, IngestBatch, record_facts
from gradesync.services.lti.errors import Lti11Refused
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory
from gradesync.services.ports.lti import LaunchRecord
from gradesync.services.wakeup import Waker

NONCE_PURPOSE = "lti11_nonce"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Consumer:
    tenant_id: str
    destination_id: str
    consumer_key: str
    consumer_secret: str
    allowed_hosts: tuple[str, ...]


def find_consumer(uow: UnitOfWork, consumer_key: str) -> Consumer | None:
    """The LTI 1.1 consumer with this key, in whichever tenant registered it. Only the matching
    destination's secret is decrypted."""
    matches = uow.lti_links.consumers_with_key(consumer_key)
    if not matches:
        return None
    if len(matches) > 1:
        # the launching user is told no tenant's or consumer's ids; the operator's log is
        where = ", ".join(f"{tenant}/{dest}" for tenant, dest in sorted(matches))
        log.warning("LTI 1.1 consumer key %r is registered more than once: %s", consumer_key, where)
        raise Lti11Refused(
            409,
            "oauth_consumer_key",
            "ambiguous",
            f"{consumer_key!r} is registered more than once; an admin must give each consumer "
            "its own key (`gradesync lti11 list` shows a tenant's consumers)",
        )
    dest = uow.destinations.get(*matches[0])
    if dest is None:
        return None
    return Consumer(
        tenant_id=dest.tenant_id,
        destination_id=dest.id,
        consumer_key=consumer_key,
        consumer_secret=str(dest.secret.get("consumer_secret") or ""),
        allowed_hosts=tuple(str(h).lower() for h in dest.config.get("allowed_hosts") or ()),
    )


def consumer_of(uow: UnitOfWorkFactory, consumer_key: str) -> Consumer | None:
    with uow() as u:
        return find_consumer(u, consumer_key)


def _nonce_value(consumer_key: str, nonce: str) -> str:
    # Hashed: bounded length whatever the LMS sends, and keys are not readable in the table.
    digest = hashlib.sha256(f"{consumer_key}\n{nonce}".encode()).hexdigest()
    return f"lti11:{digest}"


def nonce_used(uow: UnitOfWorkFactory, consumer_key: str, nonce: str, now: datetime) -> bool:
    with uow() as u:
        return u.nonces.seen(_nonce_value(consumer_key, nonce), now)


def remember_nonce(
    u: UnitOfWork, consumer_key: str, nonce: str, timestamp: int, window: int, now: datetime
) -> bool:
    """Record a nonce until its timestamp leaves the window (seconds either side); False if
    it was already there (two copies of one launch racing each other: the second is a
    replay)."""
    expires = max(datetime.fromtimestamp(timestamp, UTC), now) + timedelta(seconds=window * 2)
    return u.nonces.add(_nonce_value(consumer_key, nonce), NONCE_PURPOSE, expires, now)


@dataclass(frozen=True, slots=True)
class Lti11Launch:
    """A verified LTI 1.1 launch in gradesync's terms (`gradesync.lti.lti11_launch` reads it
    from the form)."""

    user_id: str
    context_id: str
    resource_link_id: str
    activity_id: str  # custom_activity_id, else the resource link id
    sourcedid: str | None
    outcome_url: str | None
    role: Role
    roles: list[str]
    course_title: str
    name: str
    email: str | None
    sis_id: str | None
    resource_link_title: str | None
    claims: dict[str, Any]  # the form without its signature, kept with the launch record
    # why the result id the LMS sent is not kept (`sourcedid` is then None), for the learner
    sourcedid_problem: str | None = None


@dataclass(frozen=True, slots=True)
class Lti11Recorded:
    tenant_id: str
    destination_id: str
    course_id: str
    course_title: str
    person_id: str
    activity_id: str
    resource_link_id: str
    role: Role
    graded: bool  # the LMS sent a result id: grades for this learner can be sent
    sourcedid_problem: str | None = None  # the one it sent cannot be used (`Lti11Launch`)
    # the link's activity is one gradesync has: without it, no attempt names it (yet) and
    # the courseware's grades go nowhere through this link
    activity_known: bool = True


# Rejections a launch cures: the LMS has now said where this activity's (or learner's) grade
# goes, so those results are tried again without waiting for new facts.
_ACTIVITY_CURED = frozenset({"no_launch"})
_LEARNER_CURED = frozenset({"no_sourcedid", "unknown_sourcedid", "no_launch"})


def _reopen(
    u: UnitOfWork,
    tenant: str,
    dest: str,
    course_id: str,
    activity_id: str,
    learner: str | None,
    now: datetime,
    *,
    whole_course: bool = False,
) -> list[DirtyRow]:
    """Put back to pending the results this launch unblocks: the activity's (and on the
    course's first launch, the whole course's) "no launch yet" results, and the learner's
    "no result id" ones. Returns the key to recompute: a first launch can be what was missing
    (no person link yet)."""
    rows = u.ledger.get_many(tenant, dest, course_id, None if whole_course else [activity_id])
    again = [
        (
            reopened(row, now),
            course_id,
        )
        for (_, person), row in rows.items()
        if row.state in (DeliveryState.REJECTED, DeliveryState.RETRYING)
        and row.desired_hash is not None
        and (
            row.reason_code in _ACTIVITY_CURED
            or (person == learner and row.reason_code in _LEARNER_CURED)
        )
    ]
    u.ledger.save_many(again)
    return [(tenant, course_id, activity_id, learner)] if learner is not None else []


def _facts(u: UnitOfWork, tenant: str, launch: Lti11Launch) -> tuple[Course, IngestBatch]:
    """The course (made on its first launch), person and enrollment, as far as they change."""
    context_id, user_id, role = launch.context_id, launch.user_id, launch.role
    courses: list[Course] = []
    course = u.courses.get(tenant, context_id)
    if course is None:
        course = Course(tenant_id=tenant, id=context_id, title=launch.course_title)
        courses.append(course)

    # what the launch says of the person, for the fields it gives that are not known yet;
    # ingest writes only those (`IngestBatch.sent`), and only where still blank when it
    # writes (`IngestBatch.fills_blanks`): an import may set one after this read
    email = launch.email if launch.email and len(launch.email) <= MAX_ID else None
    sis_id = launch.sis_id if is_sis_id(launch.sis_id) else None
    said = Person(tenant, user_id, launch.name, email, sis_id)
    person = u.people.get(tenant, user_id)
    filled = {
        k for k in ("name", "email", "sis_id") if getattr(said, k) and not getattr(person, k, None)
    }
    people = [said] if person is None or filled else []

    enrollments: list[Enrollment] = []
    enrollment = u.enrollments.get(tenant, context_id, user_id)
    if enrollment is None:
        enrollments.append(Enrollment(tenant, context_id, user_id, role, EnrollmentStatus.ACTIVE))
    elif enrollment.role is not role:
        enrollments.append(replace(enrollment, role=role))
    # a course made here sets no field of one made meanwhile (a launch of the same course,
    # an import): it was made on the first launch
    sent = {("courses", context_id): frozenset[str](), ("people", user_id): frozenset(filled)}
    return course, IngestBatch(
        courses=courses,
        people=people,
        enrollments=enrollments,
        sent=sent,
        fills_blanks=frozenset({user_id}),
    )


# The launch's facts are checked as ingest checks them; a problem is told by the form field
# the value came from, not by the ingest batch's path.
_FORM_FIELDS = {
    "people.id": "user_id",
    "people.name": "lis_person_name_full",
    "people.email": "lis_person_contact_email_primary",
    "people.sis_id": "lis_person_sourcedid",
    "courses.id": "context_id",
    "courses.title": "context_title",
    "enrollments.person_id": "user_id",
    "enrollments.course_id": "context_id",
}


def _form_field(path: str) -> str:
    """`people[0].name` -> `lis_person_name_full`; a path of no known field stays as is."""
    plain = re.sub(r"\[\d+\]", "", path)
    return _FORM_FIELDS.get(plain, path)


def record_launch(
    u: UnitOfWork, consumer: Consumer, launch: Lti11Launch, now: datetime
) -> Lti11Recorded:
    """Write a verified launch's facts and links (no commit: the caller commits)."""
    tenant, dest = consumer.tenant_id, consumer.destination_id
    context_id, user_id = launch.context_id, launch.user_id
    link_id, activity_id = launch.resource_link_id, launch.activity_id
    sourcedid, outcome_url = launch.sourcedid, launch.outcome_url

    bound = u.activities.get(tenant, activity_id)
    if bound is not None and bound.course_id != context_id:
        # its grades would go to the other course's column, never to this course's gradebook
        named_by = "custom_activity_id" if launch.activity_id != link_id else "resource_link_id"
        raise Lti11Refused(
            400,
            named_by,
            "other_course",
            f"{activity_id!r} is an activity of course {bound.course_id!r}, not of this "
            f"course {context_id!r}: in the LMS, set the link's activity_id custom parameter "
            "to an activity of this course",
        )
    course, batch = _facts(u, tenant, launch)
    first_of_course = u.links.course(tenant, dest, context_id) is None
    unblocked = _reopen(
        u,
        tenant,
        dest,
        context_id,
        activity_id,
        user_id if sourcedid else None,
        now,
        whole_course=first_of_course,
    )
    try:
        record_facts(u, tenant, batch, now, also_dirty=unblocked)
    except InvalidInput as exc:
        raise Lti11Refused.of(
            400, [(_form_field(p.field), p.rule, p.message) for p in exc.problems]
        ) from None

    # Course link: where this consumer's outcomes service is.
    u.lti_links.hold_course(tenant, dest, context_id)
    link = u.links.course(tenant, dest, context_id)
    data = dict(link.data) if link else {}
    data["context_title"] = launch.course_title
    if outcome_url:
        data["outcome_service_url"] = outcome_url
    u.links.save_course(CourseLink(tenant, dest, context_id, context_id, data))

    # Item link: the activity's column, made by the LMS with the graded link.
    u.lti_links.hold_item(tenant, dest, activity_id, link_id)
    item = u.links.item(tenant, dest, activity_id)
    item_data = dict(item.data) if item else {}
    item_data["resource_link_id"] = link_id
    item_data["course_id"] = context_id
    if launch.resource_link_title:
        item_data["resource_link_title"] = launch.resource_link_title
    if sourcedid and outcome_url:
        item_data["outcome_service_url"] = outcome_url
        item_data["sourcedids"] = {**(item_data.get("sourcedids") or {}), user_id: sourcedid}
        item_data["outcome_urls"] = {**(item_data.get("outcome_urls") or {}), user_id: outcome_url}
    u.links.save_item(
        ItemLink(
            tenant,
            dest,
            activity_id,
            link_id,
            details_hash=(
                item.details_hash if item and item.remote_id == link_id else new_look_mark()
            ),
            data=item_data,
        )
    )

    # Person link: this learner's result id per activity in this course.
    if sourcedid and outcome_url:
        u.lti_links.hold_person(tenant, dest, user_id, context_id)
        plink = u.links.person(tenant, dest, user_id, context_id)
        pdata = dict(plink.data) if plink and plink.course_id == context_id else {}
        pdata["sourcedids"] = {**(pdata.get("sourcedids") or {}), activity_id: sourcedid}
        pdata["outcome_urls"] = {**(pdata.get("outcome_urls") or {}), activity_id: outcome_url}
        u.links.save_person(PersonLink(tenant, dest, user_id, user_id, context_id, pdata))

    # What the launch said, for diagnostics ("never launched from this course").
    u.launches.add(
        LaunchRecord(
            tenant_id=tenant,
            destination_id=dest,
            course_id=context_id,
            person_id=user_id,
            resource_link_id=link_id,
            roles=launch.roles,
            claims={"lti_version": "1.1", "activity_id": activity_id, **launch.claims},
            launched_at=now,
        )
    )
    return Lti11Recorded(
        tenant_id=tenant,
        destination_id=dest,
        course_id=context_id,
        course_title=course.title,
        person_id=user_id,
        activity_id=activity_id,
        resource_link_id=link_id,
        role=launch.role,
        graded=bool(sourcedid),
        sourcedid_problem=launch.sourcedid_problem,
        activity_known=bound is not None,
    )


def record_lti11_launch(
    uow: UnitOfWorkFactory,
    waker: Waker | None,
    consumer: Consumer,
    launch: Lti11Launch,
    *,
    oauth_nonce: str,
    oauth_timestamp: int,
    window: int,
    now: datetime,
) -> Lti11Recorded:
    """Use the launch's nonce and record it, in one transaction; then wake the workers.
    A paused or disabled consumer still records launches: pausing stops sending grades, and
    refusing learners the tool would not help anyone."""
    with uow() as u:
        if not remember_nonce(u, consumer.consumer_key, oauth_nonce, oauth_timestamp, window, now):
            raise Lti11Refused(
                401, "oauth_nonce", "replayed", "was already used: a replayed launch"
            )
        recorded = record_launch(u, consumer, launch, now)
        u.nonces.purge(now)  # small table: expired nonces go as we pass
        u.commit()
    if waker is not None:
        waker.wake_keys()  # committed: results waiting for this launch can go now
    return recorded
