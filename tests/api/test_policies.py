"""Grade policies through the API: tenant defaults (admin keys), course and activity
overrides, the effective policy with each setting's source, and refusals naming the field."""

from __future__ import annotations

from typing import Any

from gradesync.domain.model import RosterMatch
from gradesync.domain.remedies import names_command
from gradesync.services.tenants import roster_match
from tests.support.api import ROSTER, ApiEnv, Caller


def _effective(body: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    return {s["name"]: (s["value"], s["source"]) for s in body["effective"]}


def test_tenant_defaults_course_and_activity_overrides_and_their_sources(api: ApiEnv) -> None:
    admin = Caller(api.client, api.tenant("t1", "admin"))
    admin.post("/ingest", json=ROSTER)
    start = admin.get("/courses/c1/policy").json()
    assert _effective(start)["attempt_selection"] == ("highest", "default")

    r = admin.patch(
        "/tenant/policy",
        json={"attempt_selection": "latest", "past_due_zeros": "on", "grace_period_minutes": 60},
    )
    assert r.status_code == 200, r.text
    change = r.json()
    assert change["policy"] == {
        "attempt_selection": "latest",
        "past_due_zeros": "on",
        "grace_period_minutes": 60,
    }
    assert sorted(change["changed"]) == [
        "attempt_selection",
        "grace_period_minutes",
        "past_due_zeros",
    ]
    assert change["recomputed"] == 4  # 2 activities x 2 learners
    assert api.waker.keys_calls >= 1

    # the course turns zeros off and sets a grace of 0 (a value, not "unset")
    course = Caller(api.client, api.tenant("t1", "ingest"))
    r = course.patch(
        "/courses/c1/policy", json={"past_due_zeros": "off", "grace_period_minutes": 0}
    )
    assert r.status_code == 200, r.text
    r = course.patch("/activities/a2/policy", json={"attempt_selection": "highest"})
    assert r.status_code == 200, r.text

    view = admin.get("/courses/c1/policy").json()
    eff = _effective(view)
    assert eff["attempt_selection"] == ("latest", "tenant")
    assert eff["past_due_zeros"] == ("off", "course")
    assert eff["grace_period_minutes"] == (0, "course")
    assert eff["extra_credit"] == ("cap", "default")
    acts = {a["activity_id"]: a for a in view["activities"]}
    assert acts["a2"]["policy"] == {"attempt_selection": "highest"}
    assert _effective(acts["a2"])["attempt_selection"] == ("highest", "activity")
    assert _effective(acts["a1"])["attempt_selection"] == ("latest", "tenant")
    # one activity asked about: its own effective settings, each with its source
    one = course.get("/activities/a2/policy").json()
    assert _effective(one)["attempt_selection"] == ("highest", "activity")
    assert _effective(one)["past_due_zeros"] == ("off", "course")
    assert _effective(one)["extra_credit"] == ("cap", "default")
    assert one["activity"] == {"attempt_selection": "highest"}
    assert one["course"] == {"past_due_zeros": "off", "grace_period_minutes": 0}
    assert [a["activity_id"] for a in one["activities"]] == ["a2"]
    assert course.get("/activities/nope/policy").status_code == 404
    # the course's own record says the same
    assert admin.get("/courses/c1").json()["policy"] == {
        "past_due_zeros": "off",
        "grace_period_minutes": 0,
    }

    # null clears a setting: the course inherits the tenant's zeros again
    admin.patch("/courses/c1/policy", json={"past_due_zeros": None})
    assert _effective(admin.get("/courses/c1/policy").json())["past_due_zeros"] == ("on", "tenant")
    # the tenant's defaults read back, with their sources
    tenant = admin.get("/tenant/policy").json()
    assert _effective(tenant)["attempt_selection"] == ("latest", "tenant")
    assert _effective(tenant)["name_rule"] == ("shorten", "default")


def test_bad_values_and_wrong_keys_are_refused_and_change_nothing(api: ApiEnv) -> None:
    admin = Caller(api.client, api.tenant("t1", "admin"))
    admin.post("/ingest", json=ROSTER)
    r = admin.patch(
        "/tenant/policy",
        json={"attempt_selection": "best", "grace_period_minutes": -1, "colour": "red"},
    )
    assert r.status_code == 422, r.text
    found = {(d["field"], d["rule"]) for d in r.json()["detail"]}
    assert found == {
        ("attempt_selection", "one_of"),
        ("grace_period_minutes", "not_negative"),
        ("colour", "unknown_setting"),  # as docs/policies.md and the CLI name it
    }
    unknown = next(d for d in r.json()["detail"] if d["field"] == "colour")
    assert unknown["msg"].startswith("No setting 'colour'; settings: attempt_selection, ")
    # a course's or activity's `policy` in an ingest names it the same way, where it is
    r = admin.post(
        "/ingest",
        json={"courses": [{"id": "c9", "title": "C", "policy": {"colour": "red"}}]},
    )
    assert r.status_code == 422, r.text
    assert [(d["field"], d["rule"]) for d in r.json()["detail"]] == [
        ("courses[0].policy.colour", "unknown_setting")
    ]
    # a key beside the policy is no setting: the usual rule
    r = admin.post("/ingest", json={"courses": [{"id": "c9", "title": "C", "colour": "red"}]})
    assert [(d["field"], d["rule"]) for d in r.json()["detail"]] == [
        ("courses[0].colour", "unknown_field")
    ]
    assert admin.get("/tenant/policy").json()["tenant"] == {}
    # only an admin key sets the institution's defaults
    sync = Caller(api.client, api.tenant("t1", "ingest"))
    assert sync.patch("/tenant/policy", json={"past_due_zeros": "on"}).status_code == 403
    assert admin.patch("/courses/nope/policy", json={}).status_code == 404


def test_roster_match_given_to_a_course_or_activity_is_tenant_only(api: ApiEnv) -> None:
    """PATCH .../policy named `roster_match` as a setting that does not exist
    (`unknown_setting`) while `PUT /courses/{id}` named it `tenant_only`: both now say it is
    the tenant's and where it is set."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    admin.post("/ingest", json=ROSTER)
    for path in ("/courses/c1/policy", "/activities/a1/policy"):
        body = {"roster_match": "email", "attempt_selection": "best"}
        r = admin.patch(path, json=body)
        assert r.status_code == 422, r.text
        found = {(tuple(d["loc"]), d["rule"]) for d in r.json()["detail"]}
        assert found == {
            (("body", "roster_match"), "tenant_only"),
            (("body", "attempt_selection"), "one_of"),
        }, path
        tenant_only = next(d for d in r.json()["detail"] if d["rule"] == "tenant_only")
        # where an API reader sets it: the API's route, not a command
        assert "(`PATCH /api/v1/tenant/policy`)" in tenant_only["msg"]
        assert not names_command(tenant_only["msg"])
        # the same answer as a course's body gives
        r = admin.put("/courses/c1", json={"title": "C", "policy": {"roster_match": "email"}})
        assert [d["rule"] for d in r.json()["detail"]] == [tenant_only["rule"]]
        assert r.json()["detail"][0]["msg"] == tenant_only["msg"]
        # `null` holds nothing to clear: the other settings change as asked
        r = admin.patch(path, json={"roster_match": None, "past_due_zeros": "on"})
        assert r.status_code == 200, r.text
        assert r.json()["policy"] == {"past_due_zeros": "on"}


def test_roster_match_is_set_through_the_tenant_policy(api: ApiEnv) -> None:
    """PATCH /tenant/policy refused `roster_match` as `not_in_policy`, naming the command
    `gradesync tenants roster-match`: an API reader could not set it. Now an admin key sets it
    there, as the command does; a wrong value is refused naming the field and its rule, and a
    refused body changes nothing."""
    admin = Caller(api.client, api.tenant("t1", "admin"))

    def stored() -> RosterMatch:
        return roster_match(api.db.uow, "t1")

    # a value that is no key: the field and its rule, with the other settings' problems
    r = admin.patch("/tenant/policy", json={"roster_match": "name", "attempt_selection": "best"})
    assert r.status_code == 422, r.text
    found = {(tuple(d["loc"]), d["rule"]) for d in r.json()["detail"]}
    assert found == {
        (("body", "roster_match"), "one_of"),
        (("body", "attempt_selection"), "one_of"),
    }
    [msg] = [d["msg"] for d in r.json()["detail"] if d["loc"][-1] == "roster_match"]
    assert all(k in msg for k in ("sis_id", "email", "lms_user_id")), msg
    # a right one beside a refused setting: nothing is saved
    r = admin.patch("/tenant/policy", json={"roster_match": "email", "past_due_zeros": "always"})
    assert r.status_code == 422, r.text
    assert [d["loc"] for d in r.json()["detail"]] == [["body", "past_due_zeros"]]
    assert admin.get("/tenant/policy").json()["tenant"] == {}
    assert stored() is RosterMatch.SIS_ID
    # other keys than admin ones may not
    for scope in ("sync", "ingest"):
        r = Caller(api.client, api.tenant("t1", scope)).patch(
            "/tenant/policy", json={"roster_match": "email"}
        )
        assert r.status_code == 403, (scope, r.text)
    assert stored() is RosterMatch.SIS_ID

    r = admin.patch("/tenant/policy", json={"roster_match": "email", "past_due_zeros": "on"})
    assert r.status_code == 200, r.text
    assert r.json()["policy"] == {"roster_match": "email", "past_due_zeros": "on"}
    assert sorted(r.json()["changed"]) == ["past_due_zeros", "roster_match"]
    assert stored() is RosterMatch.EMAIL
    assert admin.get("/tenant/policy").json()["tenant"] == {
        "roster_match": "email",
        "past_due_zeros": "on",
    }
    # the same again changes nothing; a grade setting alone keeps it
    assert admin.patch("/tenant/policy", json={"roster_match": "email"}).json()["changed"] == []
    assert admin.patch("/tenant/policy", json={"past_due_zeros": None}).status_code == 200
    assert stored() is RosterMatch.EMAIL
    # `null` clears it: the default again
    r = admin.patch("/tenant/policy", json={"roster_match": None})
    assert r.status_code == 200, r.text
    assert r.json()["changed"] == ["roster_match"] and r.json()["policy"] == {}
    assert stored() is RosterMatch.SIS_ID
    # the rule it was refused by is gone from the operation's 422
    op = api.client.get("/openapi.json").json()["paths"]["/api/v1/tenant/policy"]["patch"]
    assert "not_in_policy" not in op["responses"]["422"]["x-rules"]
