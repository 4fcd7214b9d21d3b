"""A tenant can never read or change another tenant's data, even with the same ids."""

from __future__ import annotations

from tests.support.api import ROSTER, ApiEnv, Caller, attempt


def test_same_ids_in_two_tenants_stay_apart(api: ApiEnv) -> None:
    a = Caller(api.client, api.tenant("school-a", "admin"))
    b = Caller(api.client, api.tenant("school-b", "admin"))
    assert a.post("/ingest", json=ROSTER).status_code == 202
    # B has no course c1: its attempt on A's activity is an unknown activity, not a write
    r = b.post("/attempts", json=attempt("e1", 9))
    assert r.status_code == 422 and r.json()["detail"][0]["rule"] == "unknown_activity"
    assert b.get("/courses").json() == []
    assert b.get("/courses/c1").status_code == 404
    assert b.get("/activities/a1").status_code == 404
    assert b.get("/people/p1/grades").status_code == 404

    # B creates its own c1 with a different title: A's is untouched
    assert (
        b.post("/ingest", json={**ROSTER, "courses": [{"id": "c1", "title": "B's"}]}).status_code
        == 202
    )
    assert a.get("/courses/c1").json()["title"] == "Biology 101"
    assert b.get("/courses/c1").json()["title"] == "B's"
    # the same event id in both tenants is two different attempts
    assert a.post("/attempts", json=attempt("e1", 7)).json()["recorded"] == 1
    assert b.post("/attempts", json=attempt("e1", 3)).json()["recorded"] == 1
    with api.db.uow() as uow:
        assert [x.score_given for x in uow.attempts.for_key("school-a", "a1", "p1")] == [7]
        assert [x.score_given for x in uow.attempts.for_key("school-b", "a1", "p1")] == [3]


def test_destinations_and_runs_of_another_tenant_are_invisible(api: ApiEnv) -> None:
    a = Caller(api.client, api.tenant("school-a", "admin"))
    b = Caller(api.client, api.tenant("school-b", "admin"))
    api.destination("school-a", "lms")
    assert [d["id"] for d in a.get("/destinations").json()] == ["lms"]
    assert b.get("/destinations").json() == []
    assert b.get("/destinations/lms").status_code == 404
    assert b.post("/destinations/lms/pause").status_code == 404
    assert b.delete("/destinations/lms").status_code == 404
    assert a.get("/destinations/lms").json()["enabled"] is True
    assert b.get("/runs/anything").status_code == 404
