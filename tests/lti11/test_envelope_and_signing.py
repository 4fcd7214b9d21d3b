"""POX envelopes, OAuth 1.0a signing with oauth_body_hash (checked with oauthlib's server-side
endpoint and an independent hash), and how every kind of answer is classified."""

from __future__ import annotations

import base64
import hashlib
import time
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest
from oauthlib.oauth1 import RequestValidator, SignatureOnlyEndpoint
from oauthlib.oauth1.rfc5849.utils import parse_authorization_header, unescape

from gradesync.adapters.destinations.lti11 import classify_http, sign_request
from gradesync.adapters.destinations.pox import (
    NS,
    Operation,
    PoxError,
    build_request,
    format_score,
    parse_response,
)
from gradesync.services.destination import FailureClass, RemoteFailure

URL = "https://lms.example.edu/api/lti/v1/tools/7/grade_passback?x=1"


def _response_xml(major: str, description: str, body: str = "", *, ns: bool = True) -> bytes:
    xmlns = f' xmlns="{NS}"' if ns else ""
    return (
        f'<?xml version="1.0"?><imsx_POXEnvelopeResponse{xmlns}><imsx_POXHeader>'
        "<imsx_POXResponseHeaderInfo><imsx_version>V1.0</imsx_version>"
        "<imsx_messageIdentifier>r1</imsx_messageIdentifier><imsx_statusInfo>"
        f"<imsx_codeMajor> {major} </imsx_codeMajor><imsx_severity>status</imsx_severity>"
        f"<imsx_description>{description}</imsx_description>"
        "<imsx_messageRefIdentifier>m1</imsx_messageRefIdentifier>"
        "<imsx_operationRefIdentifier>replaceResult</imsx_operationRefIdentifier>"
        "</imsx_statusInfo></imsx_POXResponseHeaderInfo></imsx_POXHeader>"
        f"<imsx_POXBody>{body}</imsx_POXBody></imsx_POXEnvelopeResponse>"
    ).encode()


# --- envelopes -----------------------------------------------------------------------------


def test_replace_request_has_the_spec_shape_and_escapes_text() -> None:
    xml = build_request(
        Operation.REPLACE, "c1:4:<u&1>", "msg-9", score=format_score(0.8), comment="A & B"
    )
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(xml)
    q = f"{{{NS}}}"
    assert root.tag == f"{q}imsx_POXEnvelopeRequest"
    info = root.find(f"{q}imsx_POXHeader/{q}imsx_POXRequestHeaderInfo")
    assert info is not None
    assert info.findtext(f"{q}imsx_version") == "V1.0"
    assert info.findtext(f"{q}imsx_messageIdentifier") == "msg-9"
    record = root.find(f"{q}imsx_POXBody/{q}replaceResultRequest/{q}resultRecord")
    assert record is not None
    assert record.findtext(f"{q}sourcedGUID/{q}sourcedId") == "c1:4:<u&1>"
    assert record.findtext(f"{q}result/{q}resultScore/{q}language") == "en"
    assert record.findtext(f"{q}result/{q}resultScore/{q}textString") == "0.8"
    assert record.findtext(f"{q}result/{q}resultData/{q}text") == "A & B"


def test_read_and_delete_requests_carry_no_score() -> None:
    for op in (Operation.READ, Operation.DELETE):
        root = ET.fromstring(build_request(op, "sid", "m"))
        assert root.find(f".//{{{NS}}}{op.value}Request") is not None
        assert root.find(f".//{{{NS}}}resultScore") is None
    with pytest.raises(ValueError):
        build_request(Operation.READ, "sid", "m", score="0.5")
    with pytest.raises(ValueError):
        build_request(Operation.REPLACE, "sid", "m")
    with pytest.raises(ValueError):
        build_request(Operation.DELETE, "", "m")


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0.0"), (1.0, "1.0"), (0.1 + 0.2, "0.3"), (2 / 3, "0.66666667"), (0.05, "0.05")],
)
def test_scores_are_plain_decimals(value: float, text: str) -> None:
    assert format_score(value) == text


@pytest.mark.parametrize("bad", [1.0000001, -0.0001, float("nan"), float("inf")])
def test_scores_outside_the_range_cannot_be_formatted(bad: float) -> None:
    with pytest.raises(ValueError):
        format_score(bad)


def test_parse_success_failure_and_read_result() -> None:
    ok = parse_response(_response_xml("success", "Score replaced"))
    assert ok.ok and ok.code_major == "success" and ok.message_ref == "m1"
    failed = parse_response(_response_xml("failure", "nope", ns=False))
    assert not failed.ok and failed.description == "nope"
    read = parse_response(
        _response_xml(
            "success",
            "",
            "<readResultResponse><result><resultScore><language>en</language>"
            "<textString>0.91</textString></resultScore></result></readResultResponse>",
        )
    )
    assert read.score_text == "0.91"
    minor = parse_response(
        _response_xml(
            "failure",
            "",
            "",
        ).replace(
            b"</imsx_statusInfo>",
            b"<imsx_codeMinor><imsx_codeMinorField><imsx_codeMinorFieldName>x"
            b"</imsx_codeMinorFieldName><imsx_codeMinorFieldValue>invalidsourcedid"
            b"</imsx_codeMinorFieldValue></imsx_codeMinorField></imsx_codeMinor>"
            b"</imsx_statusInfo>",
        )
    )
    assert minor.code_minor == ("invalidsourcedid",)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<html><body>502 Bad Gateway</body></html>",
        b"<imsx_POXEnvelopeResponse><unclosed>",
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
        b"<imsx_POXEnvelopeResponse>&lol2;</imsx_POXEnvelopeResponse>",
        _response_xml("", "no major"),
        b"<a>" + b"x" * 300_000 + b"</a>",
    ],
)
def test_unreadable_or_hostile_responses_are_refused(data: bytes) -> None:
    with pytest.raises(PoxError):
        parse_response(data)


# --- signing -------------------------------------------------------------------------------


class _ServerValidator(RequestValidator):  # type: ignore[misc]
    """What an LMS's outcome service would know: one consumer and its secret."""

    enforce_ssl = False
    dummy_client = "dummy"

    def __init__(self, key: str, secret: str) -> None:
        super().__init__()
        self.key, self.secret = key, secret

    def check_client_key(self, client_key: str) -> bool:
        return bool(client_key)

    def check_nonce(self, nonce: str) -> bool:
        return bool(nonce)

    def validate_client_key(self, client_key: str, request: Any) -> bool:
        return client_key == self.key

    def get_client_secret(self, client_key: str, request: Any) -> str:
        return self.secret if client_key == self.key else "dummy"

    def validate_timestamp_and_nonce(self, *args: Any, **kwargs: Any) -> bool:
        return True


def _verifies(url: str, body: bytes, headers: dict[str, str], key: str, secret: str) -> bool:
    endpoint = SignatureOnlyEndpoint(_ServerValidator(key, secret))
    valid, _ = endpoint.validate_request(url, "POST", body.decode(), headers)
    return bool(valid)


def test_signature_verifies_server_side_and_covers_the_body_hash() -> None:
    body = build_request(Operation.REPLACE, "sid-1", "m1", score="0.5")
    headers = sign_request(URL, body, "key-1", "secret-1")

    oauth = {k: unescape(v) for k, v in parse_authorization_header(headers["Authorization"])}
    assert oauth["oauth_signature_method"] == "HMAC-SHA1"
    assert oauth["oauth_consumer_key"] == "key-1"
    assert abs(int(oauth["oauth_timestamp"]) - time.time()) < 60
    expected_hash = base64.b64encode(hashlib.sha1(body).digest()).decode()
    assert oauth["oauth_body_hash"] == expected_hash
    assert headers["Content-Type"] == "application/xml"

    assert _verifies(URL, body, headers, "key-1", "secret-1")
    assert not _verifies(URL, body, headers, "key-1", "another-secret")
    assert not _verifies(URL.replace("x=1", "x=2"), body, headers, "key-1", "secret-1")
    # a different body no longer matches the signed body hash
    other = build_request(Operation.REPLACE, "sid-1", "m1", score="1.0")
    assert base64.b64encode(hashlib.sha1(other).digest()).decode() != oauth["oauth_body_hash"]


def test_each_request_gets_a_fresh_nonce() -> None:
    body = build_request(Operation.READ, "sid", "m")
    nonces = {
        dict(parse_authorization_header(sign_request(URL, body, "k", "s")["Authorization"]))[
            "oauth_nonce"
        ]
        for _ in range(5)
    }
    assert len(nonces) == 5


# --- classification ------------------------------------------------------------------------


def _classify(status: int, content: bytes, headers: dict[str, str] | None = None) -> Any:
    response = httpx.Response(status, content=content, headers=headers or {})
    try:
        return classify_http(response)
    except RemoteFailure as failure:
        return failure


@pytest.mark.parametrize(
    ("status", "content", "headers", "failure", "code"),
    [
        (200, _response_xml("failure", "Invalid OAuth signature"), None,
         FailureClass.MISCONFIGURED, "bad_credentials"),
        (200, _response_xml("failure", "oauth_body_hash: does not match"), None,
         FailureClass.MISCONFIGURED, "bad_credentials"),
        (200, _response_xml("failure", "oauth_nonce: already used"), None,
         FailureClass.RETRY_LATER, "nonce_refused"),
        (200, _response_xml("failure", "oauth_timestamp: too old"), None,
         FailureClass.MISCONFIGURED, "clock_skew"),
        (422, _response_xml("failure", "User not found in course or is not a student"), None,
         FailureClass.REJECTED, "unknown_user"),
        (200, _response_xml("failure", "the course has concluded"), None,
         FailureClass.REJECTED, "course_concluded"),
        (200, _response_xml("failure", "the assignment for this sourcedId was deleted"), None,
         FailureClass.REJECTED, "line_item_gone"),
        (200, _response_xml("failure", "sourcedId: 'x' is not recognised"), None,
         FailureClass.REJECTED, "unknown_sourcedid"),
        (200, _response_xml("failure", "resultScore: '2' must be from 0.0 to 1.0"), None,
         FailureClass.REJECTED, "score_out_of_range"),
        (200, _response_xml("unsupported", "deleteResult is not supported"), None,
         FailureClass.REJECTED, "unsupported_operation"),
        (200, _response_xml("failure", "something odd happened"), None,
         FailureClass.REJECTED, "remote_failure"),
        (200, _response_xml("failure", "Rate limit exceeded, try later"), None,
         FailureClass.SLOW_DOWN, "rate_limited"),
        (500, b"<html>Internal Server Error</html>", None,
         FailureClass.RETRY_LATER, "server_error"),
        (502, _response_xml("failure", "upstream"), None,
         FailureClass.RETRY_LATER, "server_error"),
        (503, b"busy", {"Retry-After": "7"}, FailureClass.SLOW_DOWN, "rate_limited"),
        (429, b"", {"Retry-After": "3"}, FailureClass.SLOW_DOWN, "rate_limited"),
        (403, b"403 Forbidden (Rate Limit Exceeded)", None,
         FailureClass.SLOW_DOWN, "rate_limited"),
        (401, b"Unauthorized", None, FailureClass.MISCONFIGURED, "bad_credentials"),
        (403, b"Forbidden", None, FailureClass.MISCONFIGURED, "bad_credentials"),
        (404, b"Not Found", None, FailureClass.REJECTED, "outcome_service_gone"),
        (400, b"Bad Request", None, FailureClass.REJECTED, "http_400"),
        (200, b"<html>Login</html>", None, FailureClass.RETRY_LATER, "unreadable_response"),
        (500, _response_xml("success", "ok?"), None,
         FailureClass.RETRY_LATER, "inconsistent_response"),
    ],
)  # fmt: skip
def test_answers_are_classified(
    status: int,
    content: bytes,
    headers: dict[str, str] | None,
    failure: FailureClass,
    code: str,
) -> None:
    got = _classify(status, content, headers)
    assert isinstance(got, RemoteFailure), got
    assert (got.failure, got.code, got.status) == (failure, code, status)
    assert got.message  # the remote's words or the status, never empty


def test_success_and_processing_are_accepted_and_retry_after_is_read() -> None:
    assert _classify(200, _response_xml("success", "done")).ok
    assert _classify(200, _response_xml("processing", "queued")).ok
    throttled = _classify(429, b"", {"Retry-After": "12"})
    assert throttled.retry_after == 12.0
    dated = _classify(503, b"", {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert dated.failure is FailureClass.SLOW_DOWN and dated.retry_after == 0.0
