"""The LTI 1.1 launch endpoint: POST /lti11/launch.

An LMS posts a signed form when someone opens a gradesync link. After the OAuth 1.0a
signature, timestamp and nonce check, the launch is recorded as facts:

- Person `user_id`, Course `context_id`, Enrollment with the LTI roles mapped to a Role;
- CourseLink (remote_id = context_id, data.outcome_service_url) for the consumer;
- ItemLink for the activity (remote_id = resource_link_id);
- PersonLink (learner, course) with data.sourcedids[activity_id] = lis_result_sourcedid.

The activity id is `custom_activity_id` when the link carries that custom parameter (set it
in the LMS link as `activity_id=...`), else the resource_link_id itself.

The signature is checked against the URL as received. Behind a TLS-terminating proxy, tell
uvicorn to trust the proxy (`FORWARDED_ALLOW_IPS`), so X-Forwarded-Proto is honoured only then.
"""

from __future__ import annotations

import hashlib
import html
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

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
from gradesync.lti.lti11_verify import TIMESTAMP_WINDOW, LaunchRefused, verify_signed_request
from gradesync.services.lti11_consumers import host_allowed
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory
from gradesync.services.ports.lti import LaunchRecord as StoredLaunch

log = logging.getLogger(__name__)

router = APIRouter(tags=["lti11"])

LAUNCH_PATH = "/lti11/launch"
MAX_FORM_BYTES = 64 * 1024
ID_MAX = 255
NONCE_PURPOSE = "lti11_nonce"

# --- roles ---------------------------------------------------------------------------------

# LTI 1.1 roles come as short names ("Instructor") or URNs ("urn:lti:role:ims/lis/Learner",
# "urn:lti:instrole:ims/lis/Administrator", sub-roles "…/TeachingAssistant/Grader").
# The most privileged wins: a person who is both Learner and Instructor is not graded.
_ROLE_ORDER: tuple[tuple[str, Role], ...] = (
    ("instructor", Role.INSTRUCTOR),
    ("contentdeveloper", Role.INSTRUCTOR),
    ("teachingassistant", Role.TEACHING_ASSISTANT),
    ("administrator", Role.ADMINISTRATOR),
    ("learner", Role.LEARNER),
    ("student", Role.LEARNER),
    ("mentor", Role.OBSERVER),
    ("observer", Role.OBSERVER),
)


def role_from_lti11(roles: str, *, graded: bool) -> Role:
    """Map an LTI 1.1 `roles` value to one Role. Institution roles (urn:lti:instrole:) count
    only when no context role is given. With no recognisable role, a launch that carries a
    result id (the LMS expects a grade) is a learner's; otherwise an observer's."""
    context: list[str] = []
    institution: list[str] = []
    for raw in roles.split(","):
        value = raw.strip()
        if not value:
            continue
        lowered = value.lower()
        bucket = institution if lowered.startswith("urn:lti:instrole:") else context
        # "urn:lti:role:ims/lis/TeachingAssistant/Grader" -> "teachingassistant"
        name = lowered.rsplit(":", 1)[-1].removeprefix("ims/lis/").split("/")[0]
        bucket.append(name)
    for names in (context, institution):
        for token, role in _ROLE_ORDER:
            if token in names:
                return role
    return Role.LEARNER if graded else Role.OBSERVER


# --- consumers and nonces ------------------------------------------------------------------


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
        where = ", ".join(f"{tenant}/{dest}" for tenant, dest in matches)
        raise LaunchRefused(
            409,
            "oauth_consumer_key",
            "ambiguous",
            f"{consumer_key!r} is registered more than once ({where}); an admin must remove "
            "all but one",
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


def _nonce_value(consumer_key: str, nonce: str) -> str:
    # Hashed: bounded length whatever the LMS sends, and keys are not readable in the table.
    digest = hashlib.sha256(f"{consumer_key}\n{nonce}".encode()).hexdigest()
    return f"lti11:{digest}"


def nonce_used(uow: UnitOfWork, consumer_key: str, nonce: str, now: datetime) -> bool:
    return uow.nonces.seen(_nonce_value(consumer_key, nonce), now)


def remember_nonce(
    uow: UnitOfWork, consumer_key: str, nonce: str, timestamp: int, now: datetime
) -> bool:
    """Record a nonce until its timestamp leaves the window; False if it was already there
    (two copies of one launch racing each other: the second is a replay)."""
    expires = max(datetime.fromtimestamp(timestamp, UTC), now) + timedelta(
        seconds=TIMESTAMP_WINDOW * 2
    )
    return uow.nonces.add(_nonce_value(consumer_key, nonce), NONCE_PURPOSE, expires, now)


# --- recording the launch ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LaunchRecord:
    tenant_id: str
    destination_id: str
    course_id: str
    course_title: str
    person_id: str
    activity_id: str
    resource_link_id: str
    role: Role
    graded: bool  # the LMS sent a result id: grades for this learner can be sent


def _param(params: Mapping[str, str], name: str, *, required: bool = True) -> str | None:
    value = (params.get(name) or "").strip()
    if not value:
        if required:
            raise LaunchRefused(400, name, "required", "is required in an LTI 1.1 launch")
        return None
    if len(value) > ID_MAX and name in (
        "user_id",
        "context_id",
        "resource_link_id",
        "custom_activity_id",
    ):
        raise LaunchRefused(400, name, "too_long", f"is longer than {ID_MAX} characters")
    return value


# Rejections a launch cures: the LMS has now said where this activity's (or learner's) grade
# goes, so those results are tried again without waiting for new facts.
_ACTIVITY_CURED = frozenset({"no_launch"})
_LEARNER_CURED = frozenset({"no_sourcedid", "unknown_sourcedid", "no_launch"})


def _reopen(
    uow: UnitOfWork,
    tenant: str,
    dest: str,
    course_id: str,
    activity_id: str,
    learner: str | None,
    now: datetime,
    *,
    whole_course: bool = False,
) -> None:
    """Put back to pending the results this launch unblocks: the activity's (and on the
    course's first launch, the whole course's) "no launch yet" results, and the learner's
    "no result id" ones."""
    rows = uow.ledger.get_many(tenant, dest, course_id, None if whole_course else [activity_id])
    again = [
        (
            replace(
                row,
                state=DeliveryState.PENDING,
                tries=0,
                next_attempt_at=None,
                reason_code=None,
                reason_text=None,
                updated_at=now,
            ),
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
    uow.ledger.save_many(again)
    if learner is not None:
        # A first launch can be what was missing (no person link yet): recompute this key.
        uow.dirty.mark(tenant, course_id, activity_id, learner, now)


def record_launch(
    uow: UnitOfWork, consumer: Consumer, params: Mapping[str, str], now: datetime
) -> LaunchRecord:
    """Write a verified launch's facts and links (no commit: the caller commits)."""
    message_type = _param(params, "lti_message_type")
    if message_type != "basic-lti-launch-request":
        raise LaunchRefused(
            400, "lti_message_type", "unsupported", "must be basic-lti-launch-request"
        )
    user_id = _param(params, "user_id")
    context_id = _param(params, "context_id")
    link_id = _param(params, "resource_link_id")
    assert user_id and context_id and link_id
    activity_id = _param(params, "custom_activity_id", required=False) or link_id
    sourcedid = _param(params, "lis_result_sourcedid", required=False)
    outcome_url = _param(params, "lis_outcome_service_url", required=False)
    if sourcedid and not outcome_url:
        raise LaunchRefused(
            400,
            "lis_outcome_service_url",
            "required",
            "is required with lis_result_sourcedid (grade passback must be enabled for the tool)",
        )
    if outcome_url and not host_allowed(outcome_url, consumer.allowed_hosts):
        raise LaunchRefused(
            400,
            "lis_outcome_service_url",
            "host_not_allowed",
            f"{outcome_url!r} is not on this consumer's allowed hosts "
            f"({', '.join(consumer.allowed_hosts) or 'none'})",
        )
    tenant, dest = consumer.tenant_id, consumer.destination_id
    role = role_from_lti11(params.get("roles", ""), graded=bool(sourcedid))
    title = (params.get("context_title") or params.get("context_label") or context_id).strip()

    course = uow.courses.get(tenant, context_id)
    if course is None:
        course = Course(tenant_id=tenant, id=context_id, title=title[:1024])
        uow.courses.upsert(course)

    name = (params.get("lis_person_name_full") or "").strip()
    email = (params.get("lis_person_contact_email_primary") or "").strip() or None
    sis_id = (params.get("lis_person_sourcedid") or "").strip() or None
    person = uow.people.get(tenant, user_id)
    if person is None:
        uow.people.upsert(Person(tenant, user_id, name[:1024], email, sis_id))
    elif (
        (not person.name and name) or (not person.email and email) or (not person.sis_id and sis_id)
    ):
        uow.people.upsert(
            replace(
                person,
                name=person.name or name[:1024],
                email=person.email or email,
                sis_id=person.sis_id or sis_id,
            )
        )

    enrollment = uow.enrollments.get(tenant, context_id, user_id)
    if enrollment is None:
        uow.enrollments.upsert(
            Enrollment(tenant, context_id, user_id, role, EnrollmentStatus.ACTIVE)
        )
    elif enrollment.role is not role:
        uow.enrollments.upsert(replace(enrollment, role=role))

    first_of_course = uow.links.course(tenant, dest, context_id) is None
    # Course link: where this consumer's outcomes service is.
    uow.lti_links.hold_course(tenant, dest, context_id)
    link = uow.links.course(tenant, dest, context_id)
    data = dict(link.data) if link else {}
    data["context_title"] = title
    if outcome_url:
        data["outcome_service_url"] = outcome_url
    uow.links.save_course(CourseLink(tenant, dest, context_id, context_id, data))

    # Item link: the activity's column, made by the LMS with the graded link.
    uow.lti_links.hold_item(tenant, dest, activity_id, link_id)
    item = uow.links.item(tenant, dest, activity_id)
    item_data = dict(item.data) if item else {}
    item_data["resource_link_id"] = link_id
    item_data["course_id"] = context_id
    if params.get("resource_link_title"):
        item_data["resource_link_title"] = params["resource_link_title"].strip()[:1024]
    if sourcedid and outcome_url:
        item_data["outcome_service_url"] = outcome_url
        item_data["sourcedids"] = {**(item_data.get("sourcedids") or {}), user_id: sourcedid}
        item_data["outcome_urls"] = {**(item_data.get("outcome_urls") or {}), user_id: outcome_url}
    uow.links.save_item(
        ItemLink(
            tenant,
            dest,
            activity_id,
            link_id,
            details_hash=item.details_hash if item and item.remote_id == link_id else None,
            data=item_data,
        )
    )

    # Person link: this learner's result id per activity in this course.
    if sourcedid and outcome_url:
        uow.lti_links.hold_person(tenant, dest, user_id, context_id)
        plink = uow.links.person(tenant, dest, user_id, context_id)
        pdata = dict(plink.data) if plink and plink.course_id == context_id else {}
        pdata["sourcedids"] = {**(pdata.get("sourcedids") or {}), activity_id: sourcedid}
        pdata["outcome_urls"] = {**(pdata.get("outcome_urls") or {}), activity_id: outcome_url}
        uow.links.save_person(PersonLink(tenant, dest, user_id, user_id, context_id, pdata))

    _reopen(
        uow,
        tenant,
        dest,
        context_id,
        activity_id,
        user_id if sourcedid else None,
        now,
        whole_course=first_of_course,
    )

    # What the launch said, for diagnostics ("never launched from this course").
    claims = {
        k: v for k, v in params.items() if not k.startswith("oauth_") or k == "oauth_consumer_key"
    }
    uow.launches.add(
        StoredLaunch(
            tenant_id=tenant,
            destination_id=dest,
            course_id=context_id,
            person_id=user_id,
            resource_link_id=link_id,
            roles=[r.strip() for r in params.get("roles", "").split(",") if r.strip()],
            claims={"lti_version": "1.1", "activity_id": activity_id, **claims},
            launched_at=now,
        ),
    )
    return LaunchRecord(
        tenant_id=tenant,
        destination_id=dest,
        course_id=context_id,
        course_title=course.title,
        person_id=user_id,
        activity_id=activity_id,
        resource_link_id=link_id,
        role=role,
        graded=bool(sourcedid),
    )


def parse_form(body: bytes) -> dict[str, str]:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise LaunchRefused(400, "body", "utf8", "the launch form is not UTF-8") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise LaunchRefused(400, key, "duplicate", "appears more than once in the form")
        params[key] = value
    return params


def handle_launch(
    uow_factory: UnitOfWorkFactory,
    now: Callable[[], datetime],
    url: str,
    body: bytes,
    headers: Mapping[str, str],
) -> LaunchRecord:
    """Verify and record one launch in one transaction; raises LaunchRefused."""
    params = parse_form(body)
    key = params.get("oauth_consumer_key", "")
    moment = now()
    with uow_factory() as uow:
        consumer = find_consumer(uow, key) if key else None
        if consumer is not None and not consumer.consumer_secret:
            raise LaunchRefused(
                403, "oauth_consumer_key", "no_secret", "this consumer has no secret set"
            )
        secrets = {consumer.consumer_key: consumer.consumer_secret} if consumer else {}
        oauth = verify_signed_request(
            url,
            body.decode("utf-8"),
            headers,
            secrets,
            now=moment.timestamp(),
            nonce_used=lambda k, n: nonce_used(uow, k, n, moment),
        )
        if consumer is None:  # cannot happen: verification refuses unknown keys
            raise LaunchRefused(401, "oauth_consumer_key", "unknown", "is not registered here")
        # A paused or disabled consumer still records launches: pausing stops sending grades,
        # and refusing learners the tool would not help anyone.
        if not remember_nonce(
            uow, key, oauth["oauth_nonce"], int(oauth["oauth_timestamp"]), moment
        ):
            raise LaunchRefused(
                401, "oauth_nonce", "replayed", "was already used: a replayed launch"
            )
        record = record_launch(uow, consumer, params, moment)
        uow.nonces.purge(moment)  # small table: expired nonces go as we pass
        uow.commit()
    return record


def _page(status: int, title: str, text: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang=en><meta charset=utf-8>"
        f"<title>gradesync: {html.escape(title)}</title>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></html>",
        status_code=status,
    )


@router.post(LAUNCH_PATH)
async def lti11_launch(request: Request) -> Response:
    """Receive an LTI 1.1 basic launch (OAuth 1.0a signed form post)."""
    content_type = request.headers.get("content-type", "")
    if "application/x-www-form-urlencoded" not in content_type:
        return _page(
            415,
            "Launch refused",
            "Content-Type: must be an HTML form post "
            "(application/x-www-form-urlencoded) [form_post]",
        )
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return _page(413, "Launch refused", f"body: larger than {MAX_FORM_BYTES} bytes [too_large]")
    runtime = request.app.state.runtime
    try:
        record = await run_in_threadpool(
            handle_launch,
            runtime.db.uow,
            runtime.clock.now,
            str(request.url),
            body,
            dict(request.headers),
        )
    except LaunchRefused as exc:
        # The reason names the field; secrets and signatures are never in it.
        log.info("LTI 1.1 launch refused: %s", exc)
        return _page(exc.status, "Launch refused", str(exc))
    if runtime.waker is not None:
        runtime.waker.wake_keys()  # committed: results waiting for this launch can go now
    if record.role is Role.LEARNER and not record.graded:
        text = (
            "The LMS did not send a result id with this launch, so it does not expect a grade: "
            "make the link a graded assignment in the LMS for grades to sync."
        )
    elif record.role is Role.LEARNER:
        text = "Your grades for this activity will be sent to the course gradebook."
    else:
        text = (
            f"Signed in as {record.role.value}. Grades of learners who open this activity "
            "will be sent to the course gradebook."
        )
    return _page(200, f"{record.course_title}: launch recorded", text)
