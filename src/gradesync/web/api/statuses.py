"""Every status code an operation can answer, in the OpenAPI document, with the body it carries.

FastAPI lists an operation's success and its 422 only. The rest follow from how the API is
built, so they are added here by rule rather than repeated on every route:

- every `/api/v1` operation needs an API key: 401 without a known key, 403 without the scope;
- an operation with a path parameter answers 404 for an id the tenant does not have (another
  tenant's id too: it never learns that the id exists);
- every operation answers 422 naming the field and the rule (one without parameters or a
  body too: it refuses a query parameter it does not take, `web/api/query.py`);
- a few answer 409 (the request contradicts stored state), 429 (a tool key rotation too soon
  after the previous one), 502 (the SIS or LMS answered with an error) or 503 (no worker
  runs), listed below by operation;
- the LTI endpoints answer the browser (or the LMS) with an HTML page, or JSON when asked.

`tests/security/test_fuzz_api.py` checks every answer against this document.
"""

from __future__ import annotations

from typing import Any

_DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string", "description": "What went wrong."}},
    "required": ["detail"],
}
_REMOTE = {
    "type": "object",
    "properties": {
        "detail": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "class": {"type": "string"},
                "message": {"type": "string"},
                "remedy": {"type": "string"},
            },
            "required": ["code", "message"],
        }
    },
    "required": ["detail"],
}
_PAGE = {"text/html": {"schema": {"type": "string"}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _page(description: str) -> dict[str, Any]:
    # refusals are pages for a browser, JSON for a client that asks for it (Accept)
    return {
        "description": description,
        "content": {**_PAGE, "application/json": {"schema": {"type": "object"}}},
    }


API: dict[int, dict[str, Any]] = {
    401: _json("No API key, or a key that is unknown or revoked.", _DETAIL),
    403: _json("The key does not carry the scope this operation needs.", _DETAIL),
    404: _json(
        "No such object in the key's tenant (another tenant's ids answer the same).", _DETAIL
    ),
}
CONFLICT = _json("The request contradicts what is stored (the detail says what).", _DETAIL)
REMOTE = _json("The SIS or LMS answered with an error or could not be reached.", _REMOTE)
STALE = _json(
    "`If-Match` names a version no longer stored: another change came first; nothing changed.",
    {"type": "object"},
)
NO_WORKER = _json("No worker process is running to carry the work out.", _DETAIL)
KEY_WAITING = _json(
    "A key waits to sign from an earlier rotation (the detail names it): send "
    '`{"replace": true}` to replace it; nothing changed.',
    _DETAIL,
)
TOO_SOON = {
    **_json(
        "Too soon after the previous rotation (the detail names the rule); nothing changed.",
        _DETAIL,
    ),
    "headers": {
        "Retry-After": {
            "description": "Seconds until the rotation is taken.",
            "schema": {"type": "integer"},
        }
    },
}

BAD_BODY = _json("The body is not JSON (or not UTF-8).", {"type": "object"})

# What a 422 can name beyond the schema above it: rules that depend on what is stored, or on
# several fields together, or that JSON Schema cannot say. Listed on every 422 (`x-rules`).
RULES: dict[str, str] = {
    "unknown_course": "the course named is not stored in this tenant (post it first, or in the "
    "same batch)",
    "unknown_activity": "the activity named is not stored in this tenant",
    "unknown_person": "the person named is not stored in this tenant",
    "unknown_destination": "the destination named is not registered in this tenant",
    "other_course": "the activity belongs to another course than the one named",
    "not_linked": "the course syncs to no destination yet",
    "immutable": "an activity cannot move to another course",
    "required": "a field another field's value makes required (e.g. `course_id` for "
    "`remaster`; a SIS connection's URLs and credentials unless it is file-based)",
    "unique": "an id listed twice in one list",
    "future": "a pause `until` that is not in the future",
    "after_start": "a term that ends before it starts",
    "order": "`started_at` after `completed_at`",
    "required_with_score": "`score_given` without `score_maximum` (no activity points to use)",
    "score_ratio": "`score_given` divided by `score_maximum` is not a finite number (a maximum "
    "far too small for the score, e.g. 1e10 of 1e-300)",
    "duplicate": "the same object twice in one batch",
    "event_id_reused": "a `source_event_id` already recorded, or given earlier in the batch, "
    "for a different attempt",
    "after_since": "`until` not later than `since`",
    "delta_only": "`since` with a bulk CSV export (it chooses where a delta starts)",
    "calendar": "a date-time of the right form that names no day (e.g. 31 February)",
    "range": "a date-time outside years 1-9999 once converted to UTC (a schedule's "
    "`first_run_at`: also one after which its rule has no run before year 10000); a "
    "destination limit outside its bounds (a SIS takes at most 64 requests at once)",
    "unknown_setting": "a grade policy setting that does not exist",
    "tenant_only": "a setting only the tenant holds (`roster_match`), given to a course or "
    "activity",
    "nothing_to_post": "Post grades when no named or ticked activity can go",
    "nul_character": "a NUL character in a text (no database stores one alike)",
    "control_character": "a control character in a SIS sourcedId (students, classes, "
    "schools, sections, categories) or a person's SIS id",
    "time_zone": "not an IANA time zone name (e.g. `America/Chicago`)",
    "cron_fields": "a `cron` schedule's spec: five valid fields",
    "interval_format": "an `interval` schedule's spec: a number and `m`, `h` or `d`",
    "time_format": "a `daily` schedule's spec: HH:MM",
    "weekly_format": "a `weekly` schedule's spec: days and HH:MM",
    "batch_too_large": "more than 1000 items in one request, all lists together",
    "url": "not an absolute http(s) URL without credentials",
    "address": "a URL the outbound guard refuses (docs/security.md)",
    "host": "an allowed host that is neither a host name nor an origin",
    "matches_path": "an id in the body that is not the id in the URL",
    "pattern": "a new SIS connection's id that is not 1-128 letters, digits, `.`, `_`, `:` or `-` "
    "(it is in the console's URLs); an LTI 1.1 consumer key with spaces before or after it",
    "identifier": "a new LTI 1.1 consumer's id that is not 1-255 letters, digits and `. _ ~ : @ -`",
    "too_long": "an id over 255 characters (SIS sourcedIds included); a SIS connection's name "
    "over 255 characters",
    "class_unknown": "a SIS class sourcedId the SIS (a REST connection) cannot locate",
    "etag": "an `If-Match` header that is neither `*` nor ETags in double quotes, or a tag "
    "that holds no version (a settings version is 64 lowercase hexadecimal characters)",
}

# operation -> extra statuses, beyond the rules above
EXTRA: dict[str, dict[int, dict[str, Any]]] = {
    "POST /api/v1/platforms": {409: CONFLICT},
    "PUT /api/v1/platforms/{platform_id}": {409: CONFLICT},
    "PUT /api/v1/lti11/consumers/{consumer_id}": {409: CONFLICT},
    "PUT /api/v1/sis/connections/{destination_id}": {412: STALE},
    "POST /api/v1/lti/tool-keys": {409: KEY_WAITING, 429: TOO_SOON},
    "POST /api/v1/sis/connections/{destination_id}/check": {502: REMOTE},
    "PUT /api/v1/sis/connections/{destination_id}/classes/{course_id}": {502: REMOTE},
    "PUT /api/v1/sis/connections/{destination_id}/students/{person_id}": {502: REMOTE},
    "POST /api/v1/sis/connections/{destination_id}/courses/{course_id}/students": {502: REMOTE},
    "GET /api/v1/sis/connections/{destination_id}/categories": {502: REMOTE},
    "POST /api/v1/sis/connections/{destination_id}/courses/{course_id}/post": {503: NO_WORKER},
}

_LOGIN: dict[int, dict[str, Any]] = {
    302: {"description": "To the platform's auth URL."},
    400: _page("The login initiation is refused (the page says why)."),
}
# (a 200 is the page that first stores the login in the platform's frame, when the login
# names one in `lti_storage_target`: docs/security.md)

# The LTI endpoints: what an LMS and a browser reach. Refusals are pages (see docs/lti13.md).
LTI: dict[str, dict[int, dict[str, Any]]] = {
    "GET /lti/login": _LOGIN,
    "POST /lti/login": _LOGIN,
    "POST /lti/launch": {
        302: {"description": "To the LMS's return URL or the console."},
        303: {"description": "To the instructor's console for the launched course."},
        400: _page("The launch is refused: a missing or malformed parameter."),
        401: _page("The launch is refused: its id_token does not prove who sent it."),
        403: _page("The launch is refused: the registration does not allow it."),
        415: _page("The launch is not an HTML form post."),
        503: _page("The platform's keys could not be fetched just now; try again."),
    },
    "POST /lti/deep_link/respond": {
        400: _page("The choice does not answer a Deep Linking request of this browser."),
        415: _page("Not an HTML form post."),
        422: _page("The choice is invalid (the answer names the field)."),
    },
    "POST /lti11/launch": {
        400: _page("The launch is refused: a missing or malformed parameter."),
        401: _page("The launch is refused: its OAuth signature does not verify."),
        403: _page("The launch is refused: the consumer does not allow it."),
        415: _page("The launch is not an HTML form post."),
    },
}


def declare(spec: dict[str, Any]) -> dict[str, Any]:
    """Add the status codes above to the generated document; return it."""
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict):
                continue
            key = f"{method.upper()} {path}"
            responses: dict[str, Any] = op.setdefault("responses", {})
            extra: dict[int, dict[str, Any]] = {}
            if path.startswith("/api/v1/"):
                extra.update({401: API[401], 403: API[403]})
                if "{" in path:
                    extra[404] = API[404]
                extra.update(EXTRA.get(key, {}))
            extra.update(LTI.get(key, {}))
            for status, response in extra.items():
                responses.setdefault(str(status), response)
            if not path.startswith("/api/v1/"):
                continue  # every operation refuses a query parameter it does not take
            if "requestBody" in op:
                responses.setdefault("400", BAD_BODY)
            invalid = responses.setdefault(
                "422",
                {
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/HTTPValidationError"}
                        }
                    }
                },
            )
            invalid["description"] = (
                "The request breaks a rule; `detail` names each field and rule. Beyond the "
                "schema, these rules: "
                + "; ".join(f"`{rule}`: {what}" for rule, what in RULES.items())
                + "."
            )
            invalid["x-rules"] = list(RULES)
    return spec
