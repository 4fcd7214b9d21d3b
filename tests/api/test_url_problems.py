"""A problem with an id the URL gave is the URL's: located in the path (or the query) and
named as its parameter, not as a body field (the body has no such field: sending it is
`unknown_field`)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.api import ApiEnv, Caller


def _caller(api: ApiEnv) -> Caller:
    c = Caller(api.client, api.tenant("t1", "ingest"))
    assert c.put("/courses/c1", json={"title": "C1"}).status_code == 200
    r = c.put("/activities/a1", json={"course_id": "c1", "title": "A1", "points_possible": 1})
    assert r.status_code == 200, r.text
    return c


def _problems(r: httpx.Response) -> list[tuple[list[object], str, str]]:
    assert r.status_code == 422, r.text
    return [(p["loc"], p["field"], p["rule"]) for p in r.json()["detail"]]


def test_an_id_too_long_in_the_url_is_the_paths(api: ApiEnv) -> None:
    c = _caller(api)
    long_id = "x" * 300
    assert _problems(c.put(f"/courses/{long_id}", json={"title": "C"})) == [
        (["path", "course_id"], "course_id", "too_long")
    ]
    assert _problems(c.put(f"/people/{long_id}", json={"name": "P"})) == [
        (["path", "person_id"], "person_id", "too_long")
    ]
    # a body field keeps its place in the body
    assert _problems(c.put("/courses/c2", json={"title": "C", "time_zone": "Mars/Base"})) == [
        (["body", "time_zone"], "time_zone", "time_zone")
    ]


def test_an_unknown_person_in_the_url_is_the_paths(api: ApiEnv) -> None:
    c = _caller(api)
    at = {"due_at": "2030-01-01T00:00:00Z"}
    assert _problems(c.put("/activities/a1/overrides/ghost", json=at)) == [
        (["path", "person_id"], "person_id", "unknown_person")
    ]
    assert _problems(c.put("/courses/c1/enrollments/ghost", json={})) == [
        (["path", "person_id"], "person_id", "unknown_person")
    ]
    assert c.get("/activities/a1").status_code == 200  # nothing else changed


def test_a_filter_naming_nothing_stored_is_refused_not_an_empty_answer(api: ApiEnv) -> None:
    c = _caller(api)
    assert c.put("/people/p1", json={"name": "P"}).status_code == 200
    reader = Caller(api.client, api.tenant("t1", "sync"))
    assert reader.get("/people/p1/grades").status_code == 200
    assert reader.get("/people/p1/grades?course_id=c1").status_code == 200
    r = reader.get("/people/p1/grades?destination_id=ghost&course_id=nope")
    assert _problems(r) == [
        (["query", "destination_id"], "destination_id", "unknown_destination"),
        (["query", "course_id"], "course_id", "unknown_course"),
    ]


def test_a_sis_connection_in_the_url_that_is_no_sis_is_the_paths(api: ApiEnv) -> None:
    _caller(api)
    api.destination("t1", "lms")
    admin = Caller(api.client, api.tenant("t1", "admin"))
    where = [(["path", "destination_id"], "destination_id", "kind")]
    assert _problems(admin.post("/sis/connections/lms/check")) == where
    assert _problems(admin.get("/sis/connections/lms/validation?course_id=c1")) == where
    r = admin.put("/sis/connections/lms/alignments/Labs", json={"category_id": "x"})
    assert _problems(r) == where
    # a field of the body stays the body's
    files = {"name": "Files", "file_based": True}
    assert admin.put("/sis/connections/files", json=files).status_code == 200
    r = admin.put(
        "/sis/connections/files/alignments/Labs", json={"category_id": "x", "course_id": "c1"}
    )
    assert _problems(r) == [(["body", "course_id"], "course_id", "class_not_mapped")]


def test_an_unknown_course_in_the_url_of_sync_and_repair_is_the_paths(api: ApiEnv) -> None:
    """`POST /courses/nope/sync` named the unknown course as a body field `course_id`, which
    the body does not have (sending one is `unknown_field`)."""
    _caller(api)
    c = Caller(api.client, api.tenant("t1", "sync"))
    for action in ("sync", "repair"):
        assert _problems(c.post(f"/courses/nope/{action}", json={})) == [
            (["path", "course_id"], "course_id", "unknown_course")
        ], action
        # beside it, a body field stays the body's
        r = c.post(f"/courses/nope/{action}", json={"destination_id": "ghost"})
        assert _problems(r) == [
            (["path", "course_id"], "course_id", "unknown_course"),
            (["body", "destination_id"], "destination_id", "unknown_destination"),
        ], action
    assert c.get("/runs").json() == []


def _properties(spec: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """The top-level fields a request body schema names (through `$ref` and `anyOf`)."""
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    names = set(schema.get("properties") or {})
    for alt in schema.get("anyOf", []) + schema.get("allOf", []):
        names |= _properties(spec, alt)
    return names


def test_no_body_field_is_named_as_a_parameter_of_its_url(api: ApiEnv) -> None:
    """Every API route locates a problem named as one of its URL's parameters in the URL
    (`UrlIdsRoute`): that holds only while no body field of the route has the same name."""
    spec = api.client.get("/openapi.json").json()
    clashes = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            params = {p["name"] for p in op.get("parameters", []) if p["in"] in ("path", "query")}
            content = (op.get("requestBody") or {}).get("content", {})
            for media in content.values():
                both = params & _properties(spec, media.get("schema", {}))
                if both:
                    clashes.append(f"{method.upper()} {path}: {sorted(both)}")
    assert not clashes, clashes


def test_a_problem_with_a_query_parameter_is_the_querys(api: ApiEnv) -> None:
    """`GET /runs?since=...&until=...` with `until` before `since` located `until` in the
    body, which a GET does not have."""
    _caller(api)
    admin = Caller(api.client, api.tenant("t1", "admin", "sync"))
    window = {"since": "2026-12-05T07:00:00Z", "until": "2026-12-05T06:00:00Z"}
    where = [(["query", "until"], "until", "after_since")]
    assert _problems(admin.get("/runs", params=window)) == where
    assert _problems(admin.get("/schedules/history", params=window)) == where
    r = admin.post("/schedules", json={"kind": "interval", "spec": "15m", "course_id": "c1"})
    assert r.status_code == 201, r.text
    assert _problems(admin.get(f"/schedules/{r.json()['id']}/history", params=window)) == where
