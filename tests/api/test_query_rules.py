"""Every operation's query string, walked from the OpenAPI document: a parameter the
operation does not take is refused (a typo was ignored: `/people/p1/grades?course=c1` answered
every course's grades), and a filter naming nothing the tenant has is refused (it answered `[]`,
or a 404 as if the URL named it, so a typo read as "nothing to report")."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from gradesync.cli import app
from gradesync.domain.model import LedgerKey, RunScope, SyncRun, Trigger
from gradesync.web.api import diagnosis, errors, query, runs
from tests.support.api import ApiEnv, Caller

PREFIX = "/api/v1"
FILTERS = {
    "course_id": "unknown_course",
    "destination_id": "unknown_destination",
    "activity_id": "unknown_activity",
}


def _operations(api: ApiEnv) -> list[tuple[str, str, dict[str, Any]]]:
    paths = api.client.get("/openapi.json").json()["paths"]
    return [
        (method.upper(), path[len(PREFIX) :], op)
        for path, item in paths.items()
        if path.startswith(PREFIX + "/")
        for method, op in item.items()
    ]


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), path)


def _send(c: Caller, method: str, path: str, **kw: Any) -> httpx.Response:
    return c.client.request(method, PREFIX + path, headers=c.headers, **kw)


def _problems(r: httpx.Response) -> list[tuple[list[object], str, str]]:
    assert r.status_code == 422, (r.request.method, r.request.url, r.status_code, r.text)
    return [(p["loc"], p["field"], p["rule"]) for p in r.json()["detail"]]


def _seeded(api: ApiEnv) -> Caller:
    c = Caller(api.client, api.tenant("t1", "admin"))
    assert c.put("/courses/c1", json={"title": "C1"}).status_code == 200
    r = c.put("/activities/a1", json={"course_id": "c1", "title": "A1", "points_possible": 1})
    assert r.status_code == 200, r.text
    assert c.put("/people/p1", json={"name": "P"}).status_code == 200
    api.destination("t1", "lms")
    files = {"name": "Files", "file_based": True}
    assert c.put("/sis/connections/files", json=files).status_code == 200
    return c


def test_every_operation_refuses_a_query_parameter_it_does_not_take(api: ApiEnv) -> None:
    c = _seeded(api)
    operations = _operations(api)
    assert len(operations) > 40
    for method, path, _ in operations:
        url = _fill(path, {})
        r = _send(c, method, url, params={"no_such_param": "1"}, json={})
        assert _problems(r) == [(["query", "no_such_param"], "no_such_param", "unknown_field")]
    # the newcomer's typo, beside a parameter the operation does take
    r = c.get("/people/p1/grades", params={"course": "c1", "destination_id": "lms"})
    assert _problems(r) == [(["query", "course"], "course", "unknown_field")]
    assert "course_id" in r.json()["detail"][0]["msg"]  # it says what the operation takes
    # the key is checked first: without one it is a 401, whatever the query says
    assert api.client.get(f"{PREFIX}/runs?course=c1").status_code == 401
    # what the document lists is taken
    assert c.get("/people/p1/grades", params={"course_id": "c1"}).status_code == 200
    assert c.get("/lti/rejections", params={"limit": 5}).status_code == 200


def test_a_filter_naming_nothing_stored_is_refused_wherever_it_is_taken(api: ApiEnv) -> None:
    c = _seeded(api)
    ids = {"course_id": "c1", "activity_id": "a1", "person_id": "p1", "destination_id": "files"}
    walked = set()
    for method, path, op in _operations(api):
        for param in op.get("parameters", []):
            name = param["name"]
            if param["in"] != "query" or name not in FILTERS:
                continue
            walked.add(f"{method} {path} {name}")
            r = _send(c, method, _fill(path, ids), params={name: "nope"})
            assert _problems(r) == [(["query", name], name, FILTERS[name])]
    assert {
        "GET /runs course_id",
        "GET /runs destination_id",
        "GET /courses/{course_id}/overrides destination_id",
        "GET /people/{person_id}/grades course_id",
        "GET /people/{person_id}/grades destination_id",
        "GET /courses/{course_id}/diagnosis destination_id",
        "GET /activities/{activity_id}/diagnosis destination_id",
        "GET /activities/{activity_id}/learners/{person_id}/diagnosis destination_id",
        "GET /sis/connections/{destination_id}/categories course_id",
        "GET /sis/connections/{destination_id}/validation course_id",
        "GET /sis/connections/{destination_id}/validation activity_id",
    } <= walked
    # every filter at fault is named at once
    r = c.get("/runs", params={"course_id": "nope", "destination_id": "gone"})
    assert _problems(r) == [
        (["query", "course_id"], "course_id", "unknown_course"),
        (["query", "destination_id"], "destination_id", "unknown_destination"),
    ]
    # an id the tenant has still filters
    assert c.get("/runs", params={"course_id": "c1", "destination_id": "lms"}).json() == []
    assert c.get("/courses/c1/overrides", params={"destination_id": "lms"}).json() == []
    assert c.get("/courses/c1/diagnosis", params={"destination_id": "lms"}).status_code == 200
    # another tenant's ids are not this tenant's
    other = Caller(api.client, api.tenant("t2", "admin"))
    assert _problems(other.get("/runs", params={"course_id": "c1"})) == [
        (["query", "course_id"], "course_id", "unknown_course")
    ]


def test_the_runs_of_a_deleted_destination_can_still_be_filtered(api: ApiEnv) -> None:
    """Runs outlive their destination: its id names their history, not nothing."""
    c = _seeded(api)
    with api.runtime.db.uow() as uow:
        uow.runs.add(
            SyncRun(
                "r-old",
                RunScope("t1", "lms", "c1"),
                Trigger.MANUAL,
                "cli:ops",
                created_at=api.runtime.clock.now(),
            )
        )
        uow.commit()
    assert c.delete("/destinations/lms").status_code == 204
    r = c.get("/runs", params={"destination_id": "lms"})
    assert r.status_code == 200, r.text
    assert [run["id"] for run in r.json()] == ["r-old"]
    # a destination that never was is still refused
    assert _problems(c.get("/runs", params={"destination_id": "never"})) == [
        (["query", "destination_id"], "destination_id", "unknown_destination")
    ]
    # only a run history names it: elsewhere a deleted destination has nothing to show
    gone = [(["query", "destination_id"], "destination_id", "unknown_destination")]
    for path in (
        "/people/p1/grades",
        "/courses/c1/overrides",
        "/courses/c1/diagnosis",
        "/activities/a1/diagnosis",
        "/activities/a1/learners/p1/diagnosis",
    ):
        assert _problems(c.get(path, params={"destination_id": "lms"})) == gone, path


def test_a_deleted_destination_without_runs_of_its_own_has_an_empty_history(
    api: ApiEnv, api_cli: CliRunner
) -> None:
    """A destination sent grades by auto sync and tenant-wide runs has no run of its own:
    deleted, its id was refused as naming no destination (422; the CLI's exit 3). Its delivery
    log outlives it: its history is answered, empty."""
    c, now = _seeded(api), api.runtime.clock.now()
    with api.runtime.db.uow() as uow:
        uow.deliveries.add(
            key=LedgerKey("t1", "lms", "a1", "p1"),
            run_id=None,
            sent_at=now,
            sent_hash="h",
            payload=None,
            outcome="delivered",
            remote_status=200,
            remote_message=None,
            latency_ms=5.0,
        )
        uow.runs.add(  # a tenant-wide run: not the destination's own
            SyncRun("r-all", RunScope("t1"), Trigger.MANUAL, "cli:ops", created_at=now)
        )
        uow.commit()
    assert c.delete("/destinations/lms").status_code == 204
    r = c.get("/runs", params={"destination_id": "lms"})
    assert (r.status_code, r.json()) == (200, []), r.text
    listed = api_cli.invoke(app, ["runs", "list", "-t", "t1", "--destination", "lms", "--json"])
    assert (listed.exit_code, json.loads(listed.output)) == (0, []), listed.output
    said = api_cli.invoke(app, ["runs", "list", "-t", "t1", "--destination", "lms"])
    assert said.exit_code == 0 and said.output.strip() == "none", said.output
    # a destination the tenant never had is still a typo
    assert _problems(c.get("/runs", params={"destination_id": "never"})) == [
        (["query", "destination_id"], "destination_id", "unknown_destination")
    ]
    never = api_cli.invoke(app, ["runs", "list", "-t", "t1", "--destination", "never"])
    assert never.exit_code == 3 and "unknown_destination" in never.output, never.output


def test_a_key_that_may_not_call_the_operation_is_refused_whatever_the_query(
    api: ApiEnv,
) -> None:
    """A key without the operation's scope learned its query parameters (a 422 naming what
    the operation takes, or which filters name nothing) before its 403."""
    _seeded(api)
    ingest = Caller(api.client, api.tenant("t1", "ingest"))
    refused = set()
    for method, path, _ in _operations(api):
        r = _send(ingest, method, _fill(path, {}), params={"no_such_param": "1"}, json={})
        if r.status_code == 403:
            refused.add(f"{method} {path}")
            assert "no_such_param" not in r.text
        else:  # an operation the key may call
            assert _problems(r) == [(["query", "no_such_param"], "no_such_param", "unknown_field")]
    assert {
        "GET /destinations",
        "PATCH /destinations/{destination_id}/limits",
        "GET /runs",
        "GET /sis/connections/{destination_id}/validation",
    } <= refused
    assert "POST /attempts" not in refused
    for params in ({"course": "c1"}, {"course_id": "nope", "limit": "0"}, {"destination_id": "x"}):
        r = ingest.get("/runs", params=params)
        assert r.status_code == 403, r.text
        assert r.json()["detail"].startswith("forbidden: this needs a key with the sync scope")


def test_every_problem_of_the_query_is_listed_at_once(api: ApiEnv) -> None:
    """The query-string rules answered alone: `?course=nope&limit=0` named `course`, and
    `limit` only once that was fixed (the operation's own parameters were read later)."""
    c = _seeded(api)
    r = c.get("/runs", params={"course": "nope", "limit": "0"})
    assert sorted(_problems(r)) == [
        (["query", "course"], "course", "unknown_field"),
        (["query", "limit"], "limit", "minimum"),
    ]
    r = c.get("/runs", params={"course_id": "nope", "limit": "x", "since": "yesterday"})
    assert sorted(_problems(r)) == [
        (["query", "course_id"], "course_id", "unknown_course"),
        (["query", "limit"], "limit", "integer"),
        (["query", "since"], "since", "datetime"),
    ]
    r = c.get("/lti/rejections", params={"limit": "0", "courses": "c1"})
    assert sorted(_problems(r)) == [
        (["query", "courses"], "courses", "unknown_field"),
        (["query", "limit"], "limit", "minimum"),
    ]
    r = c.get("/people/p1/grades", params={"course": "c1", "destination_id": "gone"})
    assert sorted(_problems(r)) == [
        (["query", "course"], "course", "unknown_field"),
        (["query", "destination_id"], "destination_id", "unknown_destination"),
    ]
    # each problem once, in the usual shape
    assert all(p["field"] == p["loc"][1] for p in r.json()["detail"])


def test_the_run_history_names_a_deleted_destination_wherever_it_is_mounted(
    api: ApiEnv,
) -> None:
    """Which operation reads run history was named by its literal path (`GET /api/v1/runs`):
    mounted elsewhere (a moved route), its deleted destinations' runs could no longer be
    filtered. The mark is on the operation itself."""
    c = _seeded(api)
    with api.runtime.db.uow() as uow:
        scope = RunScope("t1", "lms", "c1")
        now = api.runtime.clock.now()
        uow.runs.add(SyncRun("r-old", scope, Trigger.MANUAL, "cli:ops", created_at=now))
        uow.commit()
    assert c.delete("/destinations/lms").status_code == 204
    app = FastAPI()
    app.state.runtime = api.runtime
    errors.install(app)
    moved = APIRouter(prefix="/api/v2", dependencies=[Depends(query.query_rules("/api/v2"))])
    moved.include_router(runs.router)
    moved.include_router(diagnosis.router)
    app.include_router(moved)
    client = TestClient(app)
    r = client.get("/api/v2/runs", params={"destination_id": "lms"}, headers=c.headers)
    assert r.status_code == 200, r.text
    assert [run["id"] for run in r.json()] == ["r-old"]
    # other operations still refuse it, as does the history a destination that never was
    gone = [(["query", "destination_id"], "destination_id", "unknown_destination")]
    r = client.get(
        "/api/v2/courses/c1/overrides", params={"destination_id": "lms"}, headers=c.headers
    )
    assert _problems(r) == gone
    r = client.get("/api/v2/runs", params={"destination_id": "never"}, headers=c.headers)
    assert _problems(r) == gone
