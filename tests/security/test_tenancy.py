"""Every API route, called with another tenant's key on this tenant's ids: a refusal (or
the caller's own, empty data), never another tenant's object, never a 5xx, and nothing of
this tenant changes."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from gradesync.services.outbound import FixedResolver
from tests.support.api import ROSTER, ApiEnv, Caller, attempt

# What only tenant A's data contains: none of it may reach tenant B.
MARKERS = ("Biology 101", "school-a", "Quiz 1", "Ada", "sis.school-a.example")
METHODS = ("get", "post", "put", "patch", "delete")


def _seed(api: ApiEnv) -> tuple[Caller, dict[str, str]]:
    a = Caller(api.client, api.tenant("school-a", "admin"))
    assert a.post("/ingest", json=ROSTER).status_code == 202
    assert a.post("/attempts", json=attempt("e1", 7)).status_code in (200, 201, 202)
    api.destination("school-a", "lms")
    ids = {
        "course_id": "c1",
        "activity_id": "a1",
        "person_id": "p1",
        "learner_id": "p1",
        "destination_id": "lms",
        "platform_id": "lms",
        "consumer_id": "lms",
        "connection_id": "lms",
    }
    run = a.post("/courses/c1/sync", json={"destination_id": "lms"})
    if run.status_code < 300 and isinstance(run.json(), dict) and run.json().get("id"):
        ids["run_id"] = str(run.json()["id"])
    return a, ids


def _routes(api: ApiEnv) -> list[tuple[str, str]]:
    paths = api.client.get("/api/v1/openapi.json")
    if paths.status_code != 200:
        paths = api.client.get("/openapi.json")
    out = []
    for path, ops in paths.json()["paths"].items():
        if not path.startswith("/api/v1"):
            continue
        for method in ops:
            if method in METHODS:
                out.append((method, path[len("/api/v1") :]))
    # reads first: a write of B's creates B's own object under the same id
    return sorted(out, key=lambda r: METHODS.index(r[0]))


def test_every_route_refuses_another_tenants_objects(api: ApiEnv) -> None:
    a, ids = _seed(api)
    b = Caller(api.client, api.tenant("school-b", "admin"))
    before = a.get("/courses/c1").json()
    checked = 0
    for method, template in _routes(api):
        names = re.findall(r"{(\w+)}", template)
        path = template
        for name in names:
            path = path.replace("{" + name + "}", ids.get(name, "lms"))
        body: dict[str, Any] | None = {} if method in ("post", "put", "patch") else None
        r = getattr(b, method)(path, json=body) if body is not None else getattr(b, method)(path)
        checked += 1
        assert r.status_code < 500, (method, path, r.status_code, r.text[:300])
        for marker in MARKERS:
            assert marker not in r.text, (method, path, marker, r.text[:300])
        if names and method == "get":
            assert r.status_code in (403, 404, 422), (method, path, r.status_code, r.text[:300])
    assert checked > 40
    # nothing of A changed (a PUT of B's lands in B's own tenant, under the same id)
    assert a.get("/courses/c1").json() == before
    assert [d["id"] for d in a.get("/destinations").json()] == ["lms"]
    assert a.get("/destinations/lms").json()["enabled"] is True
    with api.db.uow() as uow:
        person = uow.people.get("school-a", "p1")
        assert person is not None and person.name == "Ada"
        assert [x.score_given for x in uow.attempts.for_key("school-a", "a1", "p1")] == [7]


def test_an_lms_registration_belongs_to_one_tenant(api: ApiEnv) -> None:
    # the registration's names are checked by the outbound guard: answer from an empty table,
    # so the test makes no DNS query (a name that does not resolve yet is accepted)
    api.runtime.outbound = dataclasses.replace(api.runtime.outbound, resolver=FixedResolver({}))
    a = Caller(api.client, api.tenant("school-a", "admin"))
    b = Caller(api.client, api.tenant("school-b", "admin"))
    body = {
        "id": "canvas",
        "issuer": "https://canvas.instructure.com",
        "client_id": "10000000000001",
        "deployment_ids": ["1:abc"],
        "auth_login_url": "https://sso.canvaslms.com/api/lti/authorize_redirect",
        "auth_token_url": "https://sso.canvaslms.com/login/oauth2/token",
        "key_set_url": "https://sso.canvaslms.com/api/lti/security/jwks",
    }
    assert a.post("/platforms", json=body).status_code == 201
    for deployments in (["1:abc"], ["2:other"]):
        r = b.post("/platforms", json={**body, "deployment_ids": deployments})
        assert r.status_code == 409, r.text
        assert "school-a" not in r.text and "canvas'" not in r.text
    assert b.get("/platforms").json() == []
