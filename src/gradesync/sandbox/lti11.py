"""LTI 1.1 consumer: signed basic launch forms and the Basic Outcomes service (OAuth 1.0a)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from oauthlib.oauth1 import SIGNATURE_TYPE_BODY, Client, RequestValidator, SignatureOnlyEndpoint
from oauthlib.oauth1.rfc5849.utils import parse_authorization_header, unescape
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .common import now
from .config import LineItemSeed, ResourceLinkSeed
from .context import LTI11_OUTCOMES_PATH, Sandbox
from .state import ScoreRecord, SeedError

NS = "http://www.imsglobal.org/services/ltiv1p1/xsd/imsoms_v1p0"
TIMESTAMP_WINDOW = 600
MAX_BODY = 64 * 1024


def sign_launch(sb: Sandbox, request: Request | None, spec: dict[str, Any]) -> dict[str, Any]:
    """A signed LTI 1.1 basic launch form for a user and a resource link (a line item is made
    for the link if the course has none, so outcomes have somewhere to land)."""
    state = sb.state
    key = str(spec.get("consumer_key", ""))
    secret = state.lti11_consumers.get(key)
    if secret is None:
        raise SeedError(f"consumer_key: no LTI 1.1 consumer registered as {key!r}")
    launch_url = spec.get("launch_url")
    if not isinstance(launch_url, str) or not launch_url.startswith(("http://", "https://")):
        raise SeedError("launch_url: required, an http(s) URL of the tool")
    course = state.course(str(spec.get("course", "")))
    user_id = str(spec.get("user", ""))
    if user_id not in course.learners and user_id not in course.instructors:
        raise SeedError(f"user: {user_id!r} is not enrolled in course {course.id!r}")
    link_id = str(spec.get("resource_link_id") or "")
    if not link_id:
        raise SeedError("resource_link_id: required")
    title = str(spec.get("title") or link_id)
    if link_id not in course.resource_links:
        state.add_resource_link(
            course.id, ResourceLinkSeed(id=link_id, title=title, url=launch_url)
        )
    item = next(
        (i for i in course.line_items.values() if i.resource_link_id == link_id), None
    ) or state.add_line_item(
        course.id,
        LineItemSeed(
            label=title,
            scoreMaximum=float(spec.get("score_maximum") or 100),
            resourceLinkId=link_id,
        ),
    )
    user = state.users[user_id]
    is_learner = user_id in course.learners
    params = {
        "lti_message_type": "basic-lti-launch-request",
        "lti_version": "LTI-1p0",
        "resource_link_id": link_id,
        "resource_link_title": title,
        "user_id": user_id,
        "roles": "Learner" if is_learner else "Instructor",
        "context_id": course.id,
        "context_title": course.title,
        "context_label": course.label,
        "lis_person_name_full": user.name,
        "lis_person_contact_email_primary": user.email,
        "lis_person_sourcedid": user.sis_id or "",
        "tool_consumer_info_product_family_code": state.mode,
        "tool_consumer_instance_guid": sb.base(request),
        "launch_presentation_document_target": "iframe",
    }
    if is_learner:
        sourcedid = f"{course.id}:{item.id}:{user_id}:{secrets.token_hex(4)}"
        state.lti11_sourcedids[sourcedid] = (key, item.id, user_id)
        params["lis_outcome_service_url"] = sb.base(request) + LTI11_OUTCOMES_PATH
        params["lis_result_sourcedid"] = sourcedid
    client = Client(key, client_secret=secret, signature_type=SIGNATURE_TYPE_BODY)
    _, _, body = client.sign(
        launch_url,
        http_method="POST",
        body=params,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    return {"url": launch_url, "params": dict(parse_qsl(body, keep_blank_values=True))}


class _Validator(RequestValidator):  # type: ignore[misc]
    """What oauthlib asks about consumers; replays are noted so we can say why we refused."""

    enforce_ssl = False
    dummy_client = "dummy-consumer"

    def __init__(self, sb: Sandbox) -> None:
        super().__init__()
        self.sb = sb

    @property
    def timestamp_lifetime(self) -> int:
        return TIMESTAMP_WINDOW

    def check_client_key(self, client_key: str) -> bool:
        return bool(client_key) and len(client_key) <= 255

    def check_nonce(self, nonce: str) -> bool:
        return bool(nonce) and len(nonce) <= 255

    def validate_client_key(self, client_key: str, request: Any) -> bool:
        return client_key in self.sb.state.lti11_consumers

    def get_client_secret(self, client_key: str, request: Any) -> str:
        return self.sb.state.lti11_consumers.get(client_key, "dummy-secret")

    def validate_timestamp_and_nonce(
        self, client_key: str, timestamp: str, nonce: str, request: Any, **_: Any
    ) -> bool:
        fresh = self.sb.lti11_nonces.add(
            f"{client_key}:{nonce}", float(timestamp) + TIMESTAMP_WINDOW
        )
        if not fresh:
            request.validator_log["replay"] = True
        return fresh


def _response(
    major: str, description: str, ref: str, operation: str, body: str = "", status: int = 200
) -> Response:
    severity = "status" if major == "success" else "error"
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<imsx_POXEnvelopeResponse xmlns="{NS}">'
        "<imsx_POXHeader><imsx_POXResponseHeaderInfo>"
        "<imsx_version>V1.0</imsx_version>"
        f"<imsx_messageIdentifier>{uuid.uuid4().hex}</imsx_messageIdentifier>"
        "<imsx_statusInfo>"
        f"<imsx_codeMajor>{major}</imsx_codeMajor>"
        f"<imsx_severity>{severity}</imsx_severity>"
        f"<imsx_description>{escape(description)}</imsx_description>"
        f"<imsx_messageRefIdentifier>{escape(ref)}</imsx_messageRefIdentifier>"
        f"<imsx_operationRefIdentifier>{escape(operation)}</imsx_operationRefIdentifier>"
        "</imsx_statusInfo>"
        "</imsx_POXResponseHeaderInfo></imsx_POXHeader>"
        f"<imsx_POXBody>{body}</imsx_POXBody>"
        "</imsx_POXEnvelopeResponse>"
    )
    return Response(xml, status_code=status, media_type="application/xml")


def _verify_oauth(sb: Sandbox, request: Request, body: bytes) -> str | None:
    """None if the OAuth 1.0a signature and body hash are good, else why not."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("oauth "):
        return "Authorization: an OAuth 1.0a header is required"
    try:
        oauth = {k: unescape(v) for k, v in parse_authorization_header(header)}
    except ValueError:
        return "Authorization: malformed OAuth header"
    key = oauth.get("oauth_consumer_key", "")
    if key not in sb.state.lti11_consumers:
        return f"oauth_consumer_key: {key!r} is not a registered consumer"
    if oauth.get("oauth_signature_method") != "HMAC-SHA1":
        return "oauth_signature_method: must be HMAC-SHA1"
    expected_hash = base64.b64encode(hashlib.sha1(body).digest()).decode()
    if oauth.get("oauth_body_hash") != expected_hash:
        return "oauth_body_hash: does not match base64(SHA-1(body))"
    try:
        skew = abs(time.time() - int(oauth.get("oauth_timestamp", "")))
    except ValueError:
        return "oauth_timestamp: must be an integer"
    if skew > TIMESTAMP_WINDOW:
        return f"oauth_timestamp: more than {TIMESTAMP_WINDOW} s from the server's clock"
    endpoint = SignatureOnlyEndpoint(_Validator(sb))
    valid, oauth_request = endpoint.validate_request(
        str(request.url),
        http_method="POST",
        body=body.decode("utf-8"),
        headers=dict(request.headers),
    )
    if valid:
        return None
    if oauth_request is not None and oauth_request.validator_log.get("replay"):
        return "oauth_nonce: already used (replayed request)"
    return "oauth_signature: does not verify with the consumer secret"


async def outcomes(request: Request) -> Response:
    sb: Sandbox = request.app.state.sandbox
    body = await request.body()
    if len(body) > MAX_BODY:
        return _response("failure", "body: too large", "", "")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        return _response("failure", f"body: not well-formed XML ({exc})", "", "")
    ref = root.findtext(f".//{{{NS}}}imsx_messageIdentifier") or ""
    pox_body = root.find(f"{{{NS}}}imsx_POXBody")
    operation_el = pox_body[0] if pox_body is not None and len(pox_body) else None
    tag = operation_el.tag.split("}")[-1] if operation_el is not None else ""
    operation = tag.removesuffix("Request")
    problem = _verify_oauth(sb, request, body)
    if problem is not None:
        return _response("failure", problem, ref, operation)
    if root.tag != f"{{{NS}}}imsx_POXEnvelopeRequest" or operation_el is None:
        return _response("failure", "body: expected an imsx_POXEnvelopeRequest", ref, operation)
    if operation not in ("replaceResult", "readResult", "deleteResult"):
        return _response("unsupported", f"{operation} is not supported", ref, operation)
    sourcedid = operation_el.findtext(f".//{{{NS}}}sourcedGUID/{{{NS}}}sourcedId") or ""
    target = sb.state.lti11_sourcedids.get(sourcedid.strip())
    key = dict(parse_authorization_header(request.headers["authorization"]))["oauth_consumer_key"]
    if target is None or target[0] != key:
        return _response("failure", f"sourcedId: {sourcedid!r} is not recognised", ref, operation)
    _, item_id, user = target
    item = sb.state.line_items.get(item_id)
    if item is None:
        return _response("failure", "the assignment for this sourcedId was deleted", ref, operation)
    course = sb.state.courses[item.course_id]
    if course.concluded:
        return _response("failure", "the course has concluded", ref, operation)
    if user not in course.learners:
        return _response("failure", "User not found in course or is not a student", ref, operation)
    record = item.scores.get(user)
    if operation == "readResult":
        text = ""
        if record is not None and record.score_given is not None and record.score_maximum:
            text = repr(record.score_given / record.score_maximum)
        result = (
            "<readResultResponse><result><resultScore><language>en</language>"
            f"<textString>{text}</textString></resultScore></result></readResultResponse>"
        )
        return _response("success", "Result read", ref, operation, result)
    fraction: float | None = None
    comment: str | None = None
    if operation == "replaceResult":
        raw = (operation_el.findtext(f".//{{{NS}}}resultScore/{{{NS}}}textString") or "").strip()
        try:
            fraction = float(raw)
        except ValueError:
            fraction = None
        if fraction is None or not 0.0 <= fraction <= 1.0:
            return _response(
                "failure", f"resultScore: {raw!r} must be a number from 0.0 to 1.0", ref, operation
            )
        comment = operation_el.findtext(f".//{{{NS}}}resultData/{{{NS}}}text")
    moment = now()
    item.scores[user] = ScoreRecord(
        timestamp=moment,
        score_given=None if fraction is None else fraction * item.score_maximum,
        score_maximum=None if fraction is None else item.score_maximum,
        comment=comment,
        activity_progress="Completed",
        grading_progress="FullyGraded",
        source="lti11",
        attempts=(record.attempts if record else 0),
        history=(record.history if record else 0) + 1,
        updated_at=moment,
        column_points=item.score_maximum,
    )
    done = "Score replaced" if operation == "replaceResult" else "Score deleted"
    return _response("success", done, ref, operation, f"<{operation}Response/>")


routes = [Route(LTI11_OUTCOMES_PATH, outcomes, methods=["POST"])]
