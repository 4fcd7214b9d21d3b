"""LTI 1.1: signed launch forms and the Basic Outcomes service with OAuth 1.0a body signing."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
import pytest
from oauthlib.oauth1 import Client
from oauthlib.oauth1.rfc5849 import signature

from gradesync.sandbox.testing import RunningSandbox

NS = "http://www.imsglobal.org/services/ltiv1p1/xsd/imsoms_v1p0"
LAUNCH_URL = "https://tool.example/lti11/launch"


def _envelope(operation: str, sourcedid: str, score: str | None = None) -> str:
    result = ""
    if score is not None:
        result = (
            "<result><resultScore><language>en</language>"
            f"<textString>{score}</textString></resultScore></result>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<imsx_POXEnvelopeRequest xmlns="{NS}">'
        "<imsx_POXHeader><imsx_POXRequestHeaderInfo><imsx_version>V1.0</imsx_version>"
        f"<imsx_messageIdentifier>{uuid.uuid4().hex}</imsx_messageIdentifier>"
        "</imsx_POXRequestHeaderInfo></imsx_POXHeader>"
        f"<imsx_POXBody><{operation}Request><resultRecord><sourcedGUID>"
        f"<sourcedId>{sourcedid}</sourcedId></sourcedGUID>{result}</resultRecord>"
        f"</{operation}Request></imsx_POXBody></imsx_POXEnvelopeRequest>"
    )


def _post(
    url: str,
    body: str,
    *,
    key: str = "consumer-1",
    secret: str = "s3cret",
    tamper: bool = False,
    timestamp: str | None = None,
    nonce: str | None = None,
) -> httpx.Response:
    client = Client(key, client_secret=secret, timestamp=timestamp, nonce=nonce)
    _, headers, _ = client.sign(
        url, http_method="POST", body=body, headers={"Content-Type": "application/xml"}
    )
    sent = body.replace("</sourcedId>", " </sourcedId>") if tamper else body
    return httpx.post(url, content=sent.encode(), headers=headers, timeout=10)


def _status(response: httpx.Response) -> tuple[str, str]:
    assert response.status_code == 200  # failures travel inside HTTP 200
    major = re.search(r"<imsx_codeMajor>(\w+)</imsx_codeMajor>", response.text)
    description = re.search(r"<imsx_description>(.*?)</imsx_description>", response.text)
    assert major and description
    return major.group(1), description.group(1)


def _launch(sandbox: RunningSandbox, user: str = "u1") -> dict[str, Any]:
    return sandbox.admin.lti11_launch(
        consumer_key="consumer-1",
        user=user,
        course="c1",
        resource_link_id="old-quiz",
        title="Old quiz",
        launch_url=LAUNCH_URL,
        score_maximum=50,
    )


def test_launch_form_is_signed_with_hmac_sha1(sandbox: RunningSandbox) -> None:
    launch = _launch(sandbox)
    params = launch["params"]
    assert params["oauth_signature_method"] == "HMAC-SHA1"
    assert params["lis_outcome_service_url"] == sandbox.base_url + "/lti11/outcomes"
    assert params["lis_result_sourcedid"] and params["roles"] == "Learner"
    assert params["lis_person_sourcedid"] == "s1"
    # Verify the signature the way a tool does, from the form parameters.
    items = [(k, v) for k, v in params.items() if k != "oauth_signature"]
    base = signature.signature_base_string(
        "POST",
        signature.base_string_uri(LAUNCH_URL),
        signature.normalize_parameters(items),
    )
    assert (
        signature.sign_hmac_sha1_with_client(base, Client("consumer-1", client_secret="s3cret"))
        == params["oauth_signature"]
    )
    instructor = _launch(sandbox, "t1")["params"]
    assert instructor["roles"] == "Instructor" and "lis_result_sourcedid" not in instructor


def test_replace_read_delete(sandbox: RunningSandbox) -> None:
    params = _launch(sandbox)["params"]
    url, sourcedid = params["lis_outcome_service_url"], params["lis_result_sourcedid"]
    assert _status(_post(url, _envelope("replaceResult", sourcedid, "0.92"))) == (
        "success",
        "Score replaced",
    )
    stored = sandbox.admin.inspect("c1")["lms"]["courses"][0]["line_items"][-1]
    assert stored["label"] == "Old quiz" and stored["scores"]["u1"]["resultScore"] == 46.0
    read = _post(url, _envelope("readResult", sourcedid))
    assert _status(read)[0] == "success" and "<textString>0.92</textString>" in read.text
    assert _status(_post(url, _envelope("deleteResult", sourcedid)))[0] == "success"
    read = _post(url, _envelope("readResult", sourcedid))
    assert "<textString></textString>" in read.text


@pytest.mark.parametrize("score", ["1.5", "-0.1", "abc"])
def test_scores_outside_zero_to_one_fail(sandbox: RunningSandbox, score: str) -> None:
    params = _launch(sandbox)["params"]
    response = _post(
        params["lis_outcome_service_url"],
        _envelope("replaceResult", params["lis_result_sourcedid"], score),
    )
    major, description = _status(response)
    assert major == "failure" and description.startswith("resultScore")


def test_oauth_failures(sandbox: RunningSandbox) -> None:
    params = _launch(sandbox)["params"]
    url, sourcedid = params["lis_outcome_service_url"], params["lis_result_sourcedid"]
    body = _envelope("replaceResult", sourcedid, "0.5")
    assert _status(_post(url, body, tamper=True))[1].startswith("oauth_body_hash")
    assert _status(_post(url, body, secret="wrong"))[1].startswith("oauth_signature")
    assert _status(_post(url, body, key="nobody"))[1].startswith("oauth_consumer_key")
    old = str(int(time.time()) - 3600)
    assert _status(_post(url, body, timestamp=old))[1].startswith("oauth_timestamp")
    nonce = uuid.uuid4().hex
    assert _status(_post(url, body, nonce=nonce))[0] == "success"
    assert _status(_post(url, body, nonce=nonce))[1].startswith("oauth_nonce")
    unsigned = httpx.post(url, content=body, headers={"Content-Type": "application/xml"})
    assert _status(unsigned)[1].startswith("Authorization")


def test_unknown_sourcedid_and_unsupported_operation(sandbox: RunningSandbox) -> None:
    url = sandbox.base_url + "/lti11/outcomes"
    assert _status(_post(url, _envelope("replaceResult", "forged", "0.5")))[0] == "failure"
    major, _ = _status(_post(url, _envelope("readMembership", "x")))
    assert major == "unsupported"
