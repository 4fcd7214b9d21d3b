"""API keys: missing, wrong, revoked and out-of-scope keys get 401/403 and no detail."""

from __future__ import annotations

from sqlalchemy import select

from gradesync.adapters.db import schema as t
from gradesync.services import auth
from tests.support.api import ROSTER, ApiEnv, Caller, bearer


def test_missing_and_wrong_keys_are_401_without_detail(api: ApiEnv) -> None:
    good = api.tenant("t1", "ingest")
    c = api.client
    for headers in (
        {},
        bearer("gs_nonsense"),
        bearer(good[:-2] + ("AA" if not good.endswith("AA") else "BB")),  # right id, wrong secret
        bearer("gs_0123456789abcdef_" + "x" * 43),  # well-formed, unknown id
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ):
        r = c.post("/api/v1/ingest", json=ROSTER, headers=headers)
        assert r.status_code == 401, headers
        assert r.json() == {"detail": "unauthorized"}
        assert r.headers["www-authenticate"] == "Bearer"
    with api.db.uow() as uow:
        assert uow.courses.all("t1") == []


def test_scopes_are_enforced_and_admin_implies_all(api: ApiEnv) -> None:
    ingest = Caller(api.client, api.tenant("t1", "ingest"))
    sync = Caller(api.client, api.tenant("t1", "sync"))
    admin = Caller(api.client, api.tenant("t1", "admin"))
    assert sync.post("/ingest", json=ROSTER).status_code == 403
    # the scope that would do is named, so the caller knows which key to use
    assert sync.post("/ingest", json=ROSTER).json() == {
        "detail": "forbidden: this needs a key with the ingest scope (admin holds every scope)"
    }
    assert sync.post("/schedules", json={}).json() == {
        "detail": "forbidden: this needs a key with the admin scope"
    }
    assert ingest.post("/ingest", json=ROSTER).status_code == 202
    assert ingest.get("/runs").status_code == 403
    assert ingest.get("/destinations").status_code == 403
    assert sync.get("/destinations").status_code == 403
    assert sync.get("/runs").status_code == 200
    assert admin.get("/runs").status_code == 200
    assert admin.get("/destinations").status_code == 200
    assert admin.post("/ingest", json=ROSTER).status_code == 202


def test_revoked_key_stops_working_at_once(api: ApiEnv) -> None:
    token = api.tenant("t1", "ingest")
    c = Caller(api.client, token)
    assert c.post("/ingest", json=ROSTER).status_code == 202
    key_id = token.split("_")[1]
    auth.revoke_key(api.db.uow, api.runtime.clock, "t1", key_id)
    assert c.post("/ingest", json=ROSTER).status_code == 401


def test_only_a_hash_is_stored(api: ApiEnv) -> None:
    token = api.tenant("t1", "admin")
    with api.db.engine.connect() as conn:
        rows = conn.execute(select(t.api_keys)).mappings().all()
    assert len(rows) == 1
    assert token not in str(dict(rows[0]))
    assert rows[0]["key_hash"] == auth.hash_token(token)


def test_x_api_key_header_is_accepted(api: ApiEnv) -> None:
    token = api.tenant("t1", "sync")
    r = api.client.get("/api/v1/runs", headers={"X-API-Key": token})
    assert r.status_code == 200
