"""How a OneRoster SIS's error answers are classified: by status code and body (its
imsx_description), never the reason phrase. The class decides what the engine does next."""

from __future__ import annotations

import email.utils
import json
from datetime import UTC, datetime

import httpx

from gradesync.domain.remedies import Remedy
from gradesync.services.destination import FailureClass, RemoteFailure


def imsx_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return response.text[:500] or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        for key in ("imsx_description", "error_description", "error", "message"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])
    return json.dumps(body)[:500]


def unknown_object(response: httpx.Response) -> bool:
    """Whether the SIS answered that the object asked for does not exist, in OneRoster's own
    words: 404 with imsx_codeMajor `failure` and the code minor `unknownobject`. A 404 of
    anything else (a route the SIS does not serve, a proxy's page) says nothing of it."""
    if response.status_code != 404:
        return False
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(body, dict) or body.get("imsx_codeMajor") != "failure":
        return False
    minor = body.get("imsx_CodeMinor")
    fields = minor.get("imsx_codeMinorField") if isinstance(minor, dict) else None
    return isinstance(fields, list) and any(
        isinstance(f, dict) and f.get("imsx_codeMinorFieldValue") == "unknownobject" for f in fields
    )


def retry_after_seconds(response: httpx.Response, default: float) -> float:
    value = response.headers.get("retry-after")
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def classify(response: httpx.Response, what: str) -> RemoteFailure:
    """The failure class of an error answer, by status code and body."""
    status = response.status_code
    message = imsx_message(response)
    text = f"{what}: {message}"
    if status == 429 or (status == 503 and "retry-after" in response.headers):
        return RemoteFailure(
            FailureClass.SLOW_DOWN,
            "rate_limited",
            text,
            status=status,
            retry_after=retry_after_seconds(response, 5.0),
        )
    if status >= 500:
        return RemoteFailure(FailureClass.RETRY_LATER, "server_error", text, status=status)
    if status == 401:
        return RemoteFailure(
            FailureClass.MISCONFIGURED,
            "bad_credentials",
            text,
            status=status,
            fix=Remedy("sis_credentials"),  # the destination: `RemoteFailure.remedy_for`
        )
    if status == 403:
        # PowerTeacher Pro answers a rate limit with 403; a missing scope is also 403.
        if "rate limit" in message.lower() or "throttl" in message.lower():
            return RemoteFailure(
                FailureClass.SLOW_DOWN,
                "rate_limited",
                text,
                status=status,
                retry_after=retry_after_seconds(response, 10.0),
            )
        return RemoteFailure(
            FailureClass.MISCONFIGURED,
            "no_grade_scope",
            text,
            status=status,
            remedy="Grant the client the gradebook.createput scope in the SIS.",
        )
    if status == 404:
        return RemoteFailure(FailureClass.REJECTED, "unknown_object", text, status=status)
    if status == 409:
        return RemoteFailure(
            FailureClass.REJECTED,
            "locked",
            text,
            status=status,
            remedy="The SIS locked this item (grading period closed?); unlock it, then remaster.",
        )
    return RemoteFailure(FailureClass.REJECTED, "invalid_data", text, status=status)
