"""Deep Linking 2.0: the instructor picks activities; the response creates graded links.

Each chosen activity becomes an `ltiResourceLink` whose custom parameters name the course
and activity (so later launches bind to them) and whose `lineItem` (label, scoreMaximum,
resourceId = activity id, tag) makes the LMS create the gradebook column at once. The
response is a JWT signed with the tool's key, posted by the browser to the platform's
deep_link_return_url.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gradesync.adapters.secretbox import SecretBox, SecretBoxError
from gradesync.lti import claims as c
from gradesync.services.lti.deep_linking import Choice
from gradesync.services.lti.errors import LaunchRefused
from gradesync.services.lti.keys import ToolKey
from gradesync.services.lti.launch import Lti13Launch

SESSION_TTL = timedelta(minutes=30)
RESPONSE_LIFETIME = 300


@dataclass(frozen=True, slots=True)
class DeepLinkSession:
    """What the picker form carries between the launch and the instructor's choice
    (encrypted, so the browser can neither read nor change it)."""

    tenant_id: str
    destination_id: str
    deployment_id: str
    return_url: str
    data: str | None
    context: dict[str, Any]
    endpoint: dict[str, Any] | None
    course_id: str | None
    person_id: str
    expires: float


def _asdict(s: DeepLinkSession) -> dict[str, Any]:
    return {name: getattr(s, name) for name in DeepLinkSession.__slots__}


def seal(session: DeepLinkSession, box: SecretBox) -> str:
    return box.encrypt(json.dumps(_asdict(session)).encode())


def open_session(box: SecretBox, token: str | None, now: datetime) -> DeepLinkSession:
    if not token:
        raise LaunchRefused("missing_session", "session: required (start from the LMS again)")
    try:
        session = DeepLinkSession(**json.loads(box.decrypt(token)))
    except (SecretBoxError, ValueError, TypeError, UnicodeError):
        raise LaunchRefused(
            "bad_session", "session: not a deep linking session gradesync issued"
        ) from None
    if session.expires <= now.timestamp():
        raise LaunchRefused(
            "session_expired", "session: expired; start deep linking again from the LMS"
        )
    return session


def new_session(
    launch: Lti13Launch, person_id: str, course_id: str | None, now: datetime
) -> DeepLinkSession:
    settings = launch.claims[c.DL_SETTINGS]
    return DeepLinkSession(
        tenant_id=launch.platform.tenant_id,
        destination_id=launch.platform.id,
        deployment_id=launch.deployment_id,
        return_url=str(settings["deep_link_return_url"]),
        data=str(settings["data"]) if settings.get("data") is not None else None,
        context=dict(launch.context),
        endpoint=launch.endpoint,
        course_id=course_id,
        person_id=person_id,
        expires=(now + SESSION_TTL).timestamp(),
    )


def content_items(choices: Sequence[Choice], launch_url: str, tag: str) -> list[dict[str, Any]]:
    items = []
    for ch in choices:
        line_item: dict[str, Any] = {
            "label": ch.column.title,
            "scoreMaximum": ch.column.score_maximum,
            "resourceId": ch.activity.id,
            "tag": tag,
        }
        item: dict[str, Any] = {
            "type": "ltiResourceLink",
            "title": ch.column.title,
            "url": launch_url,
            "custom": {c.CUSTOM_COURSE: ch.course.id, c.CUSTOM_ACTIVITY: ch.activity.id},
        }
        if ch.existing_column is None:
            # a lineItem makes the LMS create a column; an activity that has one keeps it
            item["lineItem"] = line_item
        if ch.column.due_at is not None:
            item["submission"] = {"endDateTime": ch.column.due_at.isoformat(timespec="seconds")}
        items.append(item)
    return items


def response_jwt(
    key: ToolKey,
    *,
    client_id: str,
    issuer: str,
    session: DeepLinkSession,
    items: list[dict[str, Any]],
    now: datetime,
    message: str | None = None,
) -> str:
    claims: dict[str, Any] = {
        "iss": client_id,
        "aud": issuer,
        "azp": client_id,
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + RESPONSE_LIFETIME,
        "nonce": secrets.token_urlsafe(24),
        c.MESSAGE_TYPE: c.DEEP_LINKING_RESPONSE,
        c.VERSION: "1.3.0",
        c.DEPLOYMENT_ID: session.deployment_id,
        c.DL_CONTENT_ITEMS: items,
    }
    if session.data is not None:
        claims[c.DL_DATA] = session.data
    if message:
        claims[c.DL_MSG] = message
    return key.sign(claims)
