"""The LTI 1.1 launch endpoint: POST /lti11/launch.

An LMS posts a signed form when someone opens a gradesync link. After the OAuth 1.0a
signature and timestamp check, the form is read into what the launch says
(`Lti11Launch`), and `gradesync.services.lti.lti11` records it (the nonce used once, the
facts, the links).

The activity id is `custom_activity_id` when the link carries that custom parameter (set it
in the LMS link as `activity_id=...`), else the resource_link_id itself.

The signature is checked against the URL as received. Behind a TLS-terminating proxy, tell
uvicorn to trust the proxy (`FORWARDED_ALLOW_IPS`), so X-Forwarded-Proto is honoured only then.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from gradesync.domain.identifiers import MAX_ID, control_character
from gradesync.domain.model import Role
from gradesync.lti.lti11_verify import TIMESTAMP_WINDOW, LaunchRefused, verify_signed_request
from gradesync.services.ingest import MAX_TITLE
from gradesync.services.lti.errors import record_lti11_refusal
from gradesync.services.lti.lti11 import (
    Consumer,
    Lti11Launch,
    Lti11Recorded,
    consumer_of,
    nonce_used,
    record_lti11_launch,
)
from gradesync.services.lti11_consumers import host_allowed
from gradesync.services.outbound import OutboundGuard
from gradesync.services.ports import UnitOfWorkFactory
from gradesync.services.wakeup import Waker

log = logging.getLogger(__name__)

router = APIRouter(tags=["lti11"])

LAUNCH_PATH = "/lti11/launch"
MAX_FORM_BYTES = 64 * 1024
ID_MAX = MAX_ID

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


# --- reading the launch --------------------------------------------------------------------


_IDS = ("user_id", "context_id", "resource_link_id", "custom_activity_id")
_REQUIRED_IDS = _IDS[:3]


def _param(params: Mapping[str, str], name: str, *, required: bool = True) -> str | None:
    value = (params.get(name) or "").strip()
    if not value:
        if required:
            raise LaunchRefused(400, name, "required", "is required in an LTI 1.1 launch")
        return None
    return value


# The other values the launch keeps, with the limits the API puts on the same facts (a
# person's name, a course's title: 1024; an email or SIS id: 255). Over the limit the launch
# is refused, never cut: a name or title cut short would be stored and shown as if sent so.
_TEXTS: tuple[tuple[str, int], ...] = (
    ("lis_person_name_full", MAX_TITLE),
    ("context_title", MAX_TITLE),
    ("context_label", MAX_TITLE),
    ("resource_link_title", MAX_TITLE),
    ("lis_person_contact_email_primary", MAX_ID),
    ("lis_person_sourcedid", MAX_ID),
)


def _id_problems(params: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """Every problem of the form's identifiers and the texts it keeps, each named by its form
    field, told at once."""
    problems: list[tuple[str, str, str]] = []
    limits = [(name, ID_MAX) for name in _IDS] + list(_TEXTS)
    for name, limit in limits:
        value = (params.get(name) or "").strip()
        if not value:
            if name in _REQUIRED_IDS:
                problems.append((name, "required", "is required in an LTI 1.1 launch"))
        elif len(value) > limit:
            problems.append(
                (name, "too_long", f"is {len(value)} characters long; at most {limit} are kept")
            )
        elif "\x00" in value:  # no database stores it alike: refused as ingest refuses it
            problems.append((name, "nul_character", "must not contain a NUL character"))
    return problems


def read_launch(
    params: Mapping[str, str], consumer: Consumer, guard: OutboundGuard | None = None
) -> Lti11Launch:
    """What a verified launch form says; refuses a form that is not a basic launch, lacks a
    required field, or names an outcomes service off the consumer's allowed hosts."""
    message_type = _param(params, "lti_message_type")
    if message_type != "basic-lti-launch-request":
        raise LaunchRefused(
            400, "lti_message_type", "unsupported", "must be basic-lti-launch-request"
        )
    problems = _id_problems(params)
    if problems:
        raise LaunchRefused.of(400, problems)
    user_id = _param(params, "user_id")
    context_id = _param(params, "context_id")
    link_id = _param(params, "resource_link_id")
    assert user_id and context_id and link_id
    activity_id = _param(params, "custom_activity_id", required=False) or link_id
    sent_sourcedid = _param(params, "lis_result_sourcedid", required=False)
    # a result id no grade request can carry is not kept: the launch goes on as one without
    # any and says so (refusing it would keep the learner out of the activity)
    bad = control_character(sent_sourcedid) if sent_sourcedid else None
    sourcedid = None if bad else sent_sourcedid
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
    refused = guard.static_problem(outcome_url) if guard and outcome_url else None
    if refused is not None:
        # no grade would ever reach it: refused now rather than at every send
        raise LaunchRefused(400, "lis_outcome_service_url", "address_refused", refused)
    link_title = (params.get("resource_link_title") or "").strip()
    return Lti11Launch(
        user_id=user_id,
        context_id=context_id,
        resource_link_id=link_id,
        activity_id=activity_id,
        sourcedid=sourcedid,
        outcome_url=outcome_url,
        # the LMS expects a grade all the same: with no role given, a learner's launch
        role=role_from_lti11(params.get("roles", ""), graded=bool(sent_sourcedid)),
        roles=[r.strip() for r in params.get("roles", "").split(",") if r.strip()],
        course_title=(
            params.get("context_title") or params.get("context_label") or context_id
        ).strip(),
        name=(params.get("lis_person_name_full") or "").strip(),
        email=(params.get("lis_person_contact_email_primary") or "").strip() or None,
        sis_id=(params.get("lis_person_sourcedid") or "").strip() or None,
        resource_link_title=link_title or None,
        claims={
            k: v
            for k, v in params.items()
            if (not k.startswith("oauth_") or k == "oauth_consumer_key")
            and not (bad and k == "lis_result_sourcedid")
        },
        sourcedid_problem=(
            f"lis_result_sourcedid: holds a control character ({bad}) [control_character]"
            if bad
            else None
        ),
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
    uow: UnitOfWorkFactory,
    waker: Waker | None,
    now: Callable[[], datetime],
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    guard: OutboundGuard | None = None,
) -> Lti11Recorded:
    """Verify and record one launch; raises LaunchRefused, after keeping the refusal (for
    the consumer it names, when that consumer is known)."""
    moment = now()
    consumer: Consumer | None = None
    key = ""
    try:
        params = parse_form(body)
        key = params.get("oauth_consumer_key", "")
        consumer = consumer_of(uow, key) if key else None
        return _verify_and_record(uow, waker, moment, url, body, headers, guard, params, consumer)
    except LaunchRefused as refused:
        record_lti11_refusal(
            uow,
            refused,
            moment,
            consumer_key=key,
            tenant_id=consumer.tenant_id if consumer else None,
            destination_id=consumer.destination_id if consumer else None,
        )
        raise


def _verify_and_record(
    uow: UnitOfWorkFactory,
    waker: Waker | None,
    moment: datetime,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    guard: OutboundGuard | None,
    params: Mapping[str, str],
    consumer: Consumer | None,
) -> Lti11Recorded:
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
    return record_lti11_launch(
        uow,
        waker,
        consumer,
        read_launch(params, consumer, guard),
        oauth_nonce=oauth["oauth_nonce"],
        oauth_timestamp=int(oauth["oauth_timestamp"]),
        window=TIMESTAMP_WINDOW,
        now=moment,
    )


def _page(status: int, title: str, text: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang=en><meta charset=utf-8>"
        f"<title>gradesync: {html.escape(title)}</title>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></html>",
        status_code=status,
    )


def _unknown_activity(record: Lti11Recorded) -> str:
    """A link naming an activity gradesync does not have: no grade is promised, and what the
    teacher sets up is said (as an LTI 1.3 link naming an unknown course is told)."""
    named = (
        "its activity_id custom parameter"
        if record.activity_id != record.resource_link_id
        else "its resource_link_id (it has no activity_id custom parameter)"
    )
    said = (
        f"This link names activity {record.activity_id!r} by {named}, which gradesync does "
        f"not know in course {record.course_id!r}, so no grade is sent through it yet. "
    )
    setup = (
        "In the LMS, set the link's activity_id custom parameter to the courseware's id "
        "of this activity; grades go once it is set and the link opened again, or once the "
        "courseware sends an activity of this id."
    )
    if record.role is Role.LEARNER:
        return said + "Tell your teacher: " + setup[0].lower() + setup[1:]
    return f"Signed in as {record.role.value}. " + said + setup


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
            runtime.uow,
            runtime.waker,
            runtime.clock.now,
            str(request.url),
            body,
            dict(request.headers),
            runtime.outbound,
        )
    except LaunchRefused as exc:
        # The reason names the field; secrets and signatures are never in it.
        log.info("LTI 1.1 launch refused: %s", exc)
        return _page(exc.status, "Launch refused", str(exc))
    if record.role is Role.LEARNER and record.sourcedid_problem:
        text = (
            f"The LMS sent a result id gradesync cannot use ({record.sourcedid_problem}), so "
            "no grade can be returned for this launch: report it to the LMS's administrator."
        )
    elif record.role is Role.LEARNER and not record.graded:
        text = (
            "The LMS did not send a result id with this launch, so it does not expect a grade: "
            "make the link a graded assignment in the LMS for grades to sync."
        )
    elif not record.activity_known:
        text = _unknown_activity(record)
    elif record.role is Role.LEARNER:
        text = "Your grades for this activity will be sent to the course gradebook."
    else:
        text = (
            f"Signed in as {record.role.value}. Grades of learners who open this activity "
            "will be sent to the course gradebook."
        )
    return _page(200, f"{record.course_title}: launch recorded", text)
