"""AGS line items, scores and results, and the rules real LMSs apply to them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gradesync.sandbox.config import AGS_LINEITEM_READONLY, AGS_SCORE
from gradesync.sandbox.testing import RunningSandbox

from .conftest import SandboxFactory, ToolKey, get_token

SCORE_TYPE = "application/vnd.ims.lis.v1.score+json"
LINEITEM_TYPE = "application/vnd.ims.lis.v2.lineitem+json"
T0 = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


class Lms:
    """A tiny AGS client for the tests (the real sender is not the sandbox's business)."""

    def __init__(self, running: RunningSandbox, key: ToolKey, scopes: list[str] | None = None):
        self.running = running
        self.http = httpx.Client(base_url=running.base_url, timeout=10)
        self.token = get_token(self.http, running, key, scopes)
        self.auth = {"Authorization": f"Bearer {self.token}"}
        self.container = running.base_url + "/api/lti/courses/c1/line_items"

    def create(self, **fields: Any) -> httpx.Response:
        body = {"label": "Quiz 1", "scoreMaximum": 10, **fields}
        return self.http.post(
            self.container, json=body, headers={**self.auth, "Content-Type": LINEITEM_TYPE}
        )

    def score(self, lineitem: str, **fields: Any) -> httpx.Response:
        body = {
            "userId": "u1",
            "scoreGiven": 7,
            "scoreMaximum": 10,
            "activityProgress": "Completed",
            "gradingProgress": "FullyGraded",
            "timestamp": T0.isoformat(),
            **fields,
        }
        body = {k: v for k, v in body.items() if v is not None}
        path, _, query = lineitem.partition("?")
        url = path + "/scores" + ("?" + query if query else "")
        return self.http.post(url, json=body, headers={**self.auth, "Content-Type": SCORE_TYPE})


@contextmanager
def lms(running: RunningSandbox, key: ToolKey, scopes: list[str] | None = None) -> Iterator[Lms]:
    client = Lms(running, key, scopes)
    try:
        yield client
    finally:
        client.http.close()


@pytest.fixture
def ags(sandbox: RunningSandbox, tool_key: ToolKey) -> Iterator[Lms]:
    with lms(sandbox, tool_key) as client:
        yield client


def _user_score(running: RunningSandbox, user: str = "u1") -> dict[str, Any]:
    course = running.admin.inspect("c1")["lms"]["courses"][0]
    return course["line_items"][-1]["scores"][user]  # type: ignore[no-any-return]


def test_token_is_required_and_checked(sandbox: RunningSandbox, tool_key: ToolKey) -> None:
    with lms(sandbox, tool_key, [AGS_LINEITEM_READONLY]) as client:
        missing = client.http.get(client.container)
        assert missing.status_code == 401
        assert "Bearer" in missing.headers["www-authenticate"]
        bogus = client.http.get(client.container, headers={"Authorization": "Bearer nope"})
        assert bogus.status_code == 401
        assert client.http.get(client.container, headers=client.auth).status_code == 200
        # read-only scope: creating a line item is forbidden
        created = client.create()
        assert created.status_code == 403
        assert "scope" in created.json()["errors"][0]["message"]
        sandbox.admin.expire_tokens()
        expired = client.http.get(client.container, headers=client.auth)
        assert expired.status_code == 401
        assert "expired" in expired.json()["errors"][0]["message"]


def test_create_get_update_delete_line_item(ags: Lms) -> None:
    created = ags.create(resourceId="quiz-1", tag="grade", resourceLinkId="rl1")
    assert created.status_code == 201
    assert created.headers["content-type"].startswith(LINEITEM_TYPE)
    item = created.json()
    assert item["label"] == "Quiz 1" and item["resourceLinkId"] == "rl1"
    url = item["id"]
    got = ags.http.get(url, headers=ags.auth)
    assert got.json() == item
    updated = ags.http.put(
        url,
        json={"label": "Quiz 1 (v2)", "scoreMaximum": 20},
        headers={**ags.auth, "Content-Type": LINEITEM_TYPE},
    )
    assert updated.status_code == 200 and updated.json()["scoreMaximum"] == 20
    assert ags.http.delete(url, headers=ags.auth).status_code == 204
    assert ags.http.get(url, headers=ags.auth).status_code == 404


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"label": "  "}, "label"),
        ({"scoreMaximum": 0}, "scoreMaximum"),
        ({"resourceLinkId": "nope"}, "resourceLinkId"),
        ({"startDateTime": "yesterday"}, "startDateTime"),
    ],
)
def test_invalid_line_items_are_refused(ags: Lms, fields: dict[str, Any], needle: str) -> None:
    response = ags.create(**fields)
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"].startswith(needle)


def test_container_filters_and_link_paging(ags: Lms) -> None:
    for n in range(5):
        assert ags.create(label=f"Item {n}", tag="even" if n % 2 == 0 else "odd").status_code == 201
    evens = ags.http.get(ags.container, params={"tag": "even"}, headers=ags.auth).json()
    assert [i["label"] for i in evens] == ["Item 0", "Item 2", "Item 4"]
    labels: list[str] = []
    url: str | None = ags.container + "?limit=2"
    pages = 0
    while url:
        response = ags.http.get(url, headers=ags.auth)
        assert response.headers["content-type"].startswith(
            "application/vnd.ims.lis.v2.lineitemcontainer+json"
        )
        labels += [i["label"] for i in response.json()]
        url = response.links.get("next", {}).get("url")
        pages += 1
    assert pages == 3
    assert labels == [f"Item {n}" for n in range(5)]


def test_an_lms_told_to_ignore_filters_and_page_small_answers_every_line_item(
    sandbox: RunningSandbox, ags: Lms
) -> None:
    """Filters are advisory in AGS and a platform pages as it chooses: the sandbox can be
    told to do both (`PATCH /_sandbox/config`), and to stop again."""
    for n in range(3):
        assert ags.create(label=f"Item {n}", tag="grade" if n else "other").status_code == 201
    config = sandbox.admin.configure(line_item_filters="ignored", max_page_size=2)
    assert (config["line_item_filters"], config["max_page_size"]) == ("ignored", 2)
    first = ags.http.get(ags.container, params={"tag": "grade", "limit": 50}, headers=ags.auth)
    assert [i["label"] for i in first.json()] == ["Item 0", "Item 1"]
    rest = ags.http.get(first.links["next"]["url"], headers=ags.auth).json()
    assert [i["label"] for i in rest] == ["Item 2"]
    sandbox.admin.configure(line_item_filters="honoured", max_page_size=None)
    again = ags.http.get(ags.container, params={"tag": "grade"}, headers=ags.auth).json()
    assert [i["label"] for i in again] == ["Item 1", "Item 2"]
    for body, field in (
        ({}, "(body)"),
        ({"mode": None}, "mode"),
        ({"max_page_size": 0}, "max_page_size"),
    ):
        refused = sandbox.admin.http.patch("/_sandbox/config", json=body)
        assert refused.status_code == 422 and field in refused.json()["error"], refused.text


def test_a_tool_finds_its_column_by_resource_id_tag_and_link_together(ags: Lms) -> None:
    # as real LMSs (and Open edX's django-filter on the same three fields) answer them
    for fields in (
        {"resourceId": "quiz-1", "tag": "grade", "resourceLinkId": "rl1"},
        {"resourceId": "quiz-1", "tag": "other"},
        {"resourceId": "quiz-2", "tag": "grade"},
    ):
        assert ags.create(label=str(fields), **fields).status_code == 201

    def found(**query: str) -> list[str]:
        listed = ags.http.get(ags.container, params=query, headers=ags.auth)
        return [i["label"] for i in listed.json()]

    assert len(found(resource_id="quiz-1")) == 2
    assert found(resource_id="quiz-1", tag="grade") == [
        str({"resourceId": "quiz-1", "tag": "grade", "resourceLinkId": "rl1"})
    ]
    assert found(resource_link_id="rl1") == found(resource_id="quiz-1", tag="grade")
    assert found(resource_id="quiz-2", resource_link_id="rl1") == []
    assert found(resource_id="nothing") == []


def test_line_item_of_another_tool_is_refused(
    sandbox: RunningSandbox, ags: Lms, tool_key: ToolKey
) -> None:
    sandbox.admin.register_tool(client_id="tool-2", public_key=tool_key.jwk)
    item = sandbox.admin.add_line_item("c1", label="Theirs", scoreMaximum=5, client_id="tool-2")
    assert ags.score(item["id"]).status_code == 412
    assert ags.http.get(ags.container + "/999", headers=ags.auth).status_code == 404


def test_score_is_stored_and_results_read_back(sandbox: RunningSandbox, ags: Lms) -> None:
    item = ags.create(scoreMaximum=20).json()
    response = ags.score(item["id"], scoreGiven=7, scoreMaximum=10, comment="Good")
    assert response.status_code == 200
    assert response.json()["resultUrl"].endswith("/results/u1")
    assert ags.score(item["id"], userId="u2", scoreGiven=0, scoreMaximum=10).status_code == 200
    results = ags.http.get(item["id"] + "/results", headers=ags.auth)
    assert results.headers["content-type"].startswith(
        "application/vnd.ims.lis.v2.resultcontainer+json"
    )
    by_user = {r["userId"]: r for r in results.json()}
    assert by_user["u1"]["resultScore"] == 14  # scaled to the line item's 20 points
    assert by_user["u1"]["resultMaximum"] == 20 and by_user["u1"]["comment"] == "Good"
    assert by_user["u2"]["resultScore"] == 0  # a zero is a grade, not "nothing"
    one = ags.http.get(item["id"] + "/results", params={"user_id": "u2"}, headers=ags.auth).json()
    assert [r["userId"] for r in one] == ["u2"]
    page = ags.http.get(item["id"] + "/results", params={"limit": 1}, headers=ags.auth)
    assert len(page.json()) == 1 and "next" in page.links


def test_score_needs_score_scope_and_media_type(sandbox: RunningSandbox, tool_key: ToolKey) -> None:
    with lms(sandbox, tool_key) as full:
        item = full.create().json()
        wrong_type = full.http.post(
            item["id"] + "/scores",
            json={"userId": "u1"},
            headers={**full.auth, "Content-Type": "application/json"},
        )
        assert wrong_type.status_code == 415
    with lms(sandbox, tool_key, [AGS_LINEITEM_READONLY]) as reader:
        assert reader.score(item["id"]).status_code == 403


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"scoreGiven": -1}, "scoreGiven"),
        ({"scoreMaximum": None}, "scoreMaximum"),
        ({"scoreMaximum": 0}, "scoreMaximum"),
        ({"activityProgress": "Done"}, "activityProgress"),
        ({"gradingProgress": "Graded"}, "gradingProgress"),
        ({"timestamp": "2024-03-01T12:00:00"}, "timestamp"),
        ({"userId": None}, "userId"),
    ],
)
def test_invalid_scores_are_refused(ags: Lms, fields: dict[str, Any], needle: str) -> None:
    item = ags.create().json()
    response = ags.score(item["id"], **fields)
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"].startswith(needle)


def test_422_cases(sandbox: RunningSandbox, ags: Lms) -> None:
    item = ags.create().json()
    stranger = ags.score(item["id"], userId="t1")  # an instructor is not a student
    assert stranger.status_code == 422
    assert stranger.json()["errors"][0]["message"] == "User not found in course or is not a student"
    sandbox.admin.patch_line_item("c1", int(item["id"].rsplit("/", 1)[1]), published=False)
    unpublished = ags.score(item["id"])
    assert unpublished.status_code == 422 and "unpublished" in unpublished.text
    sandbox.admin.patch_course("c1", concluded=True)
    concluded = ags.score(item["id"])
    assert concluded.status_code == 422 and "concluded" in concluded.text
    assert sandbox.admin.inspect("c1")["lms"]["courses"][0]["line_items"][0]["scores"] == {}


@pytest.mark.parametrize(
    ("mode", "equal", "older"), [("canvas", 200, 400), ("moodle", 204, 409), ("generic", 200, 400)]
)
def test_timestamp_rules_per_mode(
    make_sandbox: SandboxFactory, tool_key: ToolKey, mode: str, equal: int, older: int
) -> None:
    moodle_equal = 409 if mode == "moodle" else equal
    with make_sandbox(mode=mode) as running, lms(running, tool_key) as client:
        item = client.create().json()
        first = client.score(item["id"])
        assert first.status_code == (204 if mode == "moodle" else 200)
        assert client.score(item["id"], scoreGiven=8).status_code == moodle_equal
        earlier = (T0 - timedelta(microseconds=1)).isoformat()
        assert client.score(item["id"], timestamp=earlier, scoreGiven=9).status_code == older
        assert _user_score(running)["scoreGiven"] == (7 if mode == "moodle" else 8)
        later = (T0 + timedelta(seconds=1)).isoformat()
        assert client.score(item["id"], timestamp=later, scoreGiven=10).status_code in (200, 204)
        assert _user_score(running)["scoreGiven"] == 10


def test_canvas_line_item_urls_carry_a_query_string(
    make_sandbox: SandboxFactory, tool_key: ToolKey
) -> None:
    with make_sandbox(mode="canvas") as running, lms(running, tool_key) as client:
        item = client.create().json()
        assert "?" in item["id"]
        # A sender that appends /scores after the query string hits the line item: 405.
        naive = client.http.post(
            item["id"] + "/scores",
            json={},
            headers={**client.auth, "Content-Type": SCORE_TYPE},
        )
        assert naive.status_code == 405
        assert client.score(item["id"]).status_code == 200


def test_attempt_limit_and_new_submission_extension(sandbox: RunningSandbox, ags: Lms) -> None:
    item = sandbox.admin.add_line_item("c1", label="Limited", scoreMaximum=10, allowed_attempts=2)
    url = item["id"]
    for n in range(2):
        ts = (T0 + timedelta(seconds=n)).isoformat()
        assert ags.score(url, timestamp=ts).status_code == 200
    third = ags.score(url, timestamp=(T0 + timedelta(seconds=5)).isoformat())
    assert third.status_code == 422
    assert "maximum number of allowed attempts" in third.text
    regrade = ags.score(
        url,
        timestamp=(T0 + timedelta(seconds=6)).isoformat(),
        scoreGiven=9,
        **{"https://canvas.instructure.com/lti/submission": {"new_submission": False}},
    )
    assert regrade.status_code == 200
    stored = _user_score(sandbox)
    assert stored["attempts"] == 2 and stored["history"] == 3 and stored["scoreGiven"] == 9


def test_absent_score_and_comment_are_cleared(sandbox: RunningSandbox, ags: Lms) -> None:
    item = ags.create().json()
    assert ags.score(item["id"], comment="Nice").status_code == 200
    assert _user_score(sandbox)["comment"] == "Nice"
    later = (T0 + timedelta(seconds=1)).isoformat()
    cleared = ags.score(item["id"], timestamp=later, scoreGiven=None, scoreMaximum=None)
    assert cleared.status_code == 200
    stored = _user_score(sandbox)
    assert stored["scoreGiven"] is None and stored["comment"] is None
    result = ags.http.get(item["id"] + "/results", headers=ags.auth).json()[0]
    assert "resultScore" not in result


def test_moodle_stores_no_grade_until_fully_graded(
    make_sandbox: SandboxFactory, tool_key: ToolKey
) -> None:
    with make_sandbox(mode="moodle") as running, lms(running, tool_key) as client:
        item = client.create().json()
        assert client.score(item["id"], gradingProgress="Pending").status_code == 204
        assert _user_score(running)["scoreGiven"] is None


def test_instructor_grade_blocks_older_tool_scores(sandbox: RunningSandbox, ags: Lms) -> None:
    item = ags.create().json()
    number = int(item["id"].rsplit("/", 1)[1])
    assert ags.score(item["id"]).status_code == 200
    sandbox.admin.instructor_grade("c1", number, "u1", 9.5, "typed in the LMS")
    stored = _user_score(sandbox)
    assert stored["source"] == "instructor" and stored["scoreGiven"] == 9.5
    stale = ags.score(item["id"], timestamp=(T0 + timedelta(hours=1)).isoformat())
    assert stale.status_code == 400 and "before the last updated" in stale.text
    results = ags.http.get(item["id"] + "/results", headers=ags.auth).json()
    assert results[0]["resultScore"] == 9.5 and results[0]["comment"] == "typed in the LMS"


def test_score_scope_alone_cannot_read_results(sandbox: RunningSandbox, tool_key: ToolKey) -> None:
    with lms(sandbox, tool_key, [AGS_SCORE]) as client:
        item = sandbox.admin.add_line_item("c1", label="X", scoreMaximum=1)
        assert client.http.get(item["id"] + "/results", headers=client.auth).status_code == 403
