"""Turning an HTTP answer (status, headers, body) or a transport error into a RemoteFailure.

Classified by status code and body, never by the reason phrase (HTTP/2 has none). The
remote's own words are kept in `message`; `remedy` tells a person what to do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from gradesync.services.destination import FailureClass, RemoteFailure

MAX_MESSAGE = 1000

REMEDIES: dict[str, str] = {
    "unknown_user": (
        "The LMS does not know this learner in the course (or not as a student). The learner "
        "must open the activity from this course's link in the LMS; check their enrollment "
        "and role there."
    ),
    "line_item_gone": (
        "The gradebook column was deleted in the LMS; gradesync recreates it on the next sync."
    ),
    "line_item_foreign": "The column belongs to another tool; create a new link for gradesync.",
    "learner_server_error": (
        "The LMS fails on this learner's grade while it takes the others' (Open edX does so "
        "for a learner it does not know: a retired account, or an LTI id that changed). "
        "gradesync tries a few times, then stops; have the learner open gradesync from the "
        "LMS course again, then resync."
    ),
    "no_resource_link": (
        "This LMS counts a grade only on a column tied to the LTI link it came from: open "
        "the activity once from its gradesync link in the LMS course (as a learner or as "
        "staff); the next sync ties the column to that link and sends the grades."
    ),
    "attempts_exceeded": (
        "The LMS assignment limits attempts; raise 'Allowed attempts' in the LMS or set it to "
        "unlimited, then resync."
    ),
    "timestamp_older": (
        "The LMS holds a newer grade for this learner (often typed by an instructor); resync "
        "sends the current grade with a newer timestamp, or keep the LMS edit."
    ),
    "course_concluded": (
        "The LMS course has concluded and accepts no grades; reopen it in the LMS (or extend "
        "its end date), then resync."
    ),
    "unpublished": "Publish the assignment in the LMS, then resync.",
    "invalid_request": "The LMS refused the data sent; see its message and fix the activity.",
    "no_grade_scope": (
        "The LMS did not grant the grade scopes: enable Assignment and Grade Services (all "
        "four scopes) for gradesync's registration in the LMS."
    ),
    "bad_credentials": (
        "The LMS refused gradesync's credentials: check the client id, the deployment and that "
        "the LMS uses gradesync's JWKS URL."
    ),
    "rate_limited": "The LMS asked gradesync to slow down; sending resumes automatically.",
    "server_error": "The LMS had a temporary failure; gradesync retries automatically.",
    "timeout": "The LMS did not answer in time; gradesync retries automatically.",
    "connection_failed": (
        "The LMS could not be reached: check that its URLs name the right host and port (a "
        "host name that does not resolve is a typo); once it is up, gradesync retries by "
        "itself."
    ),
    "forbidden": "The LMS refused the request; see its message.",
    "foreign_url": (
        "The LMS named a URL outside its registered addresses; add the host to the "
        "registration's allowed_hosts if it is genuine."
    ),
}


def remote_message(body: str | bytes | None) -> str:
    """The remote's own words, from the usual JSON error shapes or the raw text."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text.strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:MAX_MESSAGE]
    found = _message_in(data)
    return (found if found else text)[:MAX_MESSAGE]


def _message_in(data: Any) -> str | None:
    if isinstance(data, str):
        return data
    if isinstance(data, list):
        parts = [m for m in (_message_in(x) for x in data) if m]
        return "; ".join(parts) or None
    if isinstance(data, dict):
        for key in ("errors", "error_description", "message", "detail", "imsx_description"):
            if key in data and (found := _message_in(data[key])):
                if key == "error_description" and isinstance(data.get("error"), str):
                    return f"{data['error']}: {found}"
                return found
        if isinstance(data.get("error"), str | dict | list):
            return _message_in(data["error"])
    return None


def retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _failure(
    cls: FailureClass, code: str, message: str, status: int | None, **kw: Any
) -> RemoteFailure:
    return RemoteFailure(cls, code, message, status=status, remedy=REMEDIES.get(code), **kw)


_UNKNOWN_USER = re.compile(
    r"user.{0,40}(not found|unknown|not a student|not enrolled)|not a student|unknown user", re.I
)
_CONCLUDED = re.compile(r"conclude|course.{0,20}(closed|ended|inactive)", re.I)
_ATTEMPTS = re.compile(r"attempt", re.I)
_UNPUBLISHED = re.compile(r"unpublish|not published", re.I)
_TIMESTAMP = re.compile(r"timestamp", re.I)
_RATE = re.compile(r"rate limit", re.I)
_SCOPE = re.compile(r"scope", re.I)


def classify(
    status: int, headers: Mapping[str, str], body: str | bytes | None, *, what: str = "request"
) -> RemoteFailure:
    """A RemoteFailure for a non-2xx answer. `what` ("score", "line item", "token", ...)
    only shapes the message. 401 is classified MISCONFIGURED: the caller retries with a new
    token once before it gets here."""
    said = remote_message(body)
    message = said or f"HTTP {status} from the platform ({what})"
    if said and what == "token":
        # said of a grade, the token endpoint's words would read as the gradebook's own
        message = f"{said} (the token request)"
    auth = headers.get("www-authenticate", "")
    if status == 429 or (status == 503 and headers.get("retry-after") is not None):
        return _failure(
            FailureClass.SLOW_DOWN,
            "rate_limited",
            message,
            status,
            retry_after=retry_after(headers),
        )
    if status == 403 and _RATE.search(message):
        return _failure(
            FailureClass.SLOW_DOWN,
            "rate_limited",
            message,
            status,
            retry_after=retry_after(headers),
        )
    if status >= 500:
        return _failure(FailureClass.RETRY_LATER, "server_error", message, status)
    if what == "token":
        lowered = message.lower()
        if "invalid_scope" in lowered or (
            _SCOPE.search(message) and "invalid_client" not in lowered
        ):
            return _failure(FailureClass.MISCONFIGURED, "no_grade_scope", message, status)
        return _failure(FailureClass.MISCONFIGURED, "bad_credentials", message, status)
    if status == 401:
        return _failure(FailureClass.MISCONFIGURED, "bad_credentials", message, status)
    if status == 403:
        if "insufficient_scope" in auth or _SCOPE.search(message):
            return _failure(FailureClass.MISCONFIGURED, "no_grade_scope", message, status)
        return _failure(FailureClass.REJECTED, "forbidden", message, status)
    if status == 404:
        return _failure(FailureClass.REJECTED, "line_item_gone", message, status)
    if status == 412:
        return _failure(FailureClass.REJECTED, "line_item_foreign", message, status)
    if status in (400, 409, 422):
        for pattern, code in (
            (_UNKNOWN_USER, "unknown_user"),
            (_CONCLUDED, "course_concluded"),
            (_UNPUBLISHED, "unpublished"),
            (_ATTEMPTS, "attempts_exceeded"),
            (_TIMESTAMP, "timestamp_older"),
        ):
            if pattern.search(message):
                return _failure(FailureClass.REJECTED, code, message, status)
        if status == 409:
            return _failure(FailureClass.REJECTED, "conflict", message, status)
        return _failure(FailureClass.REJECTED, "invalid_request", message, status)
    return _failure(FailureClass.REJECTED, "unexpected_status", message, status)


def transport_failure(exc: httpx.HTTPError, what: str = "request") -> RemoteFailure:
    """Timeouts, resets and refused connections: all worth retrying later."""
    if isinstance(exc, httpx.TimeoutException):
        return _failure(FailureClass.RETRY_LATER, "timeout", f"{what}: timed out ({exc!r})", None)
    return _failure(
        FailureClass.RETRY_LATER,
        "connection_failed",
        f"{what}: {type(exc).__name__}: {exc}".rstrip(": "),
        None,
    )
