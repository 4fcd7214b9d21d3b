"""OneRoster 1.2 gradebook: token, schema validation, references, upserts, reads, deletes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gradesync.sandbox.config import OR_CREATEPUT, OR_DELETE, OR_READONLY
from gradesync.sandbox.testing import RunningSandbox

BASE = "/ims/oneroster/gradebook/v1p2"
TOKEN = "/ims/oneroster/oauth2/token"


def _ref(kind: str, sourced_id: str) -> dict[str, str]:
    return {
        "href": f"https://sis.example/{kind}/{sourced_id}",
        "sourcedId": sourced_id,
        "type": kind,
    }


def line_item(sourced_id: str = "li1", **fields: Any) -> dict[str, Any]:
    data = {
        "sourcedId": sourced_id,
        "status": "active",
        "dateLastModified": "2024-03-01T12:00:00Z",
        "title": "Chapter 3 quiz",
        "assignDate": "2024-02-01T00:00:00Z",
        "dueDate": "2024-03-01T23:59:00Z",
        "class": _ref("class", "cls1"),
        "school": _ref("org", "sch1"),
        "category": _ref("category", "cat-quiz"),
        "resultValueMin": 0,
        "resultValueMax": 25,
    }
    data.update(fields)
    return {"lineItem": data}


def result(sourced_id: str = "r1", **fields: Any) -> dict[str, Any]:
    data = {
        "sourcedId": sourced_id,
        "status": "active",
        "dateLastModified": "2024-03-02T12:00:00Z",
        "lineItem": _ref("lineItem", "li1"),
        "student": _ref("user", "s1"),
        "scoreStatus": "fully graded",
        "score": 21.5,
        "scoreDate": "2024-03-02",
        "late": "false",
    }
    data.update(fields)
    return {"result": data}


def _token(http: httpx.Client, scopes: list[str], basic: bool = True, url: str = TOKEN) -> str:
    data = {"grant_type": "client_credentials", "scope": " ".join(scopes)}
    if basic:
        response = http.post(url, data=data, auth=("sis-client", "sis-secret"))
    else:
        data.update(client_id="sis-client", client_secret="sis-secret")
        response = http.post(url, data=data)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.fixture
def sis(sandbox: RunningSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.base_url + BASE, timeout=10) as client:
        client.headers["Authorization"] = "Bearer " + _token(
            client, [OR_READONLY, OR_CREATEPUT, OR_DELETE], url=sandbox.base_url + TOKEN
        )
        yield client


def _minor(response: httpx.Response) -> str:
    body = response.json()
    assert body["imsx_codeMajor"] == "failure" and body["imsx_severity"] == "error"
    return str(body["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"])


def test_token_via_basic_and_form_and_bad_secret(http: httpx.Client) -> None:
    assert _token(http, [OR_READONLY], basic=True)
    assert _token(http, [OR_READONLY], basic=False)
    bad = http.post(TOKEN, data={"grant_type": "client_credentials"}, auth=("sis-client", "nope"))
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"


def test_scopes_are_enforced(http: httpx.Client) -> None:
    read_only = _token(http, [OR_READONLY])
    headers = {"Authorization": "Bearer " + read_only}
    response = http.put(f"{BASE}/lineItems/li1", json=line_item(), headers=headers)
    assert response.status_code == 403 and _minor(response) == "forbidden"
    assert http.get(f"{BASE}/lineItems").status_code == 401


def test_upsert_then_read_then_delete(sis: httpx.Client) -> None:
    assert sis.put("/lineItems/li1", json=line_item()).status_code == 201
    assert sis.put("/lineItems/li1", json=line_item(title="Ch. 3 quiz")).status_code == 204
    assert sis.get("/lineItems/li1").json()["lineItem"]["title"] == "Ch. 3 quiz"
    assert sis.put("/results/r1", json=result()).status_code == 201
    assert sis.get("/results/r1").json()["result"]["score"] == 21.5
    assert sis.delete("/results/r1").status_code == 204
    assert sis.get("/results/r1").json()["result"]["status"] == "tobedeleted"
    missing = sis.get("/results/nope")
    assert missing.status_code == 404 and _minor(missing) == "unknownobject"
    assert sis.delete("/results/nope").status_code == 404


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (line_item(title=None), "lineItem.title"),
        (
            {"lineItem": {k: v for k, v in line_item()["lineItem"].items() if k != "dueDate"}},
            "'dueDate' is a required",
        ),
        (line_item(status="deleted"), "lineItem.status"),
        (line_item(dueDate="next week"), "lineItem.dueDate"),
        (line_item(colour="red"), "Additional properties"),
        (line_item(category={"sourcedId": "cat-quiz"}), "lineItem.category"),
        ({"title": "unwrapped"}, "'lineItem' is a required"),
    ],
)
def test_schema_violations_are_refused(
    sis: httpx.Client, body: dict[str, Any], needle: str
) -> None:
    response = sis.put("/lineItems/li1", json=body)
    assert response.status_code == 400
    assert _minor(response) == "invaliddata"
    assert needle in response.json()["imsx_description"]
    assert sis.get("/lineItems/li1").status_code == 404  # nothing changed


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (line_item(**{"class": _ref("class", "nope")}), "lineItem.class.sourcedId"),
        (line_item(school=_ref("org", "other")), "lineItem.school.sourcedId"),
        (line_item(category=_ref("category", "cat-x")), "known: ['cat-hw', 'cat-quiz']"),
        (line_item(dueDate="2024-01-01T00:00:00Z"), "lineItem.dueDate"),
    ],
)
def test_unknown_references_are_refused(
    sis: httpx.Client, body: dict[str, Any], needle: str
) -> None:
    response = sis.put("/lineItems/li1", json=body)
    assert response.status_code == 422 and _minor(response) == "invaliddata"
    assert needle in response.json()["imsx_description"]


def test_result_references(sis: httpx.Client) -> None:
    assert sis.put("/lineItems/li1", json=line_item()).status_code == 201
    for body, needle in [
        (result(lineItem=_ref("lineItem", "li-x")), "result.lineItem.sourcedId"),
        (result(student=_ref("user", "s-x")), "does not exist"),
        (result(student=_ref("user", "s3")), "not enrolled"),
        (result(score=30), "result.score"),
    ]:
        response = sis.put("/results/r1", json=body)
        assert response.status_code == 422, body
        assert needle in response.json()["imsx_description"]
    wrong_id = sis.put("/results/r2", json=result("r1"))
    assert wrong_id.status_code == 400 and "sourcedId" in wrong_id.json()["imsx_description"]


def test_profile_rules(sandbox: RunningSandbox, sis: httpx.Client) -> None:
    sandbox.admin.set_sis_profile(max_title_length=30, due_date_in_term=True)
    too_long = sis.put("/lineItems/li1", json=line_item(title="A" * 31))
    assert too_long.status_code == 422 and "30 characters" in too_long.text
    outside = sis.put("/lineItems/li1", json=line_item(dueDate="2024-06-15T00:00:00Z"))
    assert outside.status_code == 422 and "term" in outside.text
    assert sis.put("/lineItems/li1", json=line_item(title="A" * 30)).status_code == 201


def test_collections_paging_filter_and_class_routes(sis: httpx.Client) -> None:
    for n in range(5):
        category = "cat-quiz" if n < 3 else "cat-hw"
        body = line_item(f"li{n}", title=f"Item {n}", category=_ref("category", category))
        assert sis.put(f"/lineItems/li{n}", json=body).status_code == 201
    page = sis.get("/lineItems", params={"limit": 2, "offset": 0})
    assert page.headers["x-total-count"] == "5"
    assert [i["sourcedId"] for i in page.json()["lineItems"]] == ["li0", "li1"]
    seen: list[str] = []
    url: str | None = str(page.url)
    while url:
        response = sis.get(url)
        seen += [i["sourcedId"] for i in response.json()["lineItems"]]
        url = response.links.get("next", {}).get("url")
    assert seen == [f"li{n}" for n in range(5)]
    quizzes = sis.get(
        "/classes/cls1/lineItems",
        params={"filter": "category.sourcedId='cat-quiz' AND title!='Item 0'"},
    )
    assert [i["sourcedId"] for i in quizzes.json()["lineItems"]] == ["li1", "li2"]
    bad = sis.get("/lineItems", params={"filter": "nope='x'"})
    assert bad.status_code == 400 and _minor(bad) == "invalid_filter_field"
    assert sis.get("/classes/cls2/lineItems").json()["lineItems"] == []
    assert sis.get("/classes/nope/lineItems").status_code == 404
    categories = sis.get("/classes/cls1/categories").json()["categories"]
    assert {c["title"] for c in categories} == {"Quizzes", "Homework"}
    assert sis.put("/results/r1", json=result(lineItem=_ref("lineItem", "li1"))).status_code == 201
    assert (
        sis.put(
            "/results/r2",
            json=result("r2", student=_ref("user", "s2"), lineItem=_ref("lineItem", "li1")),
        ).status_code
        == 201
    )
    assert len(sis.get("/classes/cls1/results").json()["results"]) == 2
    assert len(sis.get("/classes/cls1/lineItems/li1/results").json()["results"]) == 2
    mine = sis.get("/classes/cls1/students/s2/results").json()["results"]
    assert [r["sourcedId"] for r in mine] == ["r2"]
    fields = sis.get("/results", params={"fields": "sourcedId,score"}).json()["results"]
    assert fields[0] == {"sourcedId": "r1", "score": 21.5}
