"""The tool's LTI signing keys over the API (`/api/v1/lti/tool-keys`): listed with their state
and times, rotated as `gradesync keys rotate-tool-key` does (the same store), and only by the
admins of a tenant the operator named: the keys sign for every tenant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gradesync.domain.tool_keys import KeyState
from gradesync.services.lti.keys import FORCED_INTERVAL, REPLACE_INTERVAL
from gradesync.testing import ManualClock
from tests.support.api import ApiEnv, Caller

ROUTE = "/lti/tool-keys"


@pytest.fixture
def clock(api: ApiEnv) -> ManualClock:
    """The tool keys' clock (set before the first key is made)."""
    clock = ManualClock(datetime(2025, 6, 1, 12, tzinfo=UTC))
    api.runtime.tool_keys.clock = clock
    return clock


@pytest.fixture
def operator(api: ApiEnv, clock: ManualClock) -> Caller:
    """An admin of the tenant allowed to rotate the tool keys."""
    settings = api.runtime.settings
    api.runtime.settings = settings.model_copy(update={"tool_key_tenants": ["ops"]})
    return Caller(api.client, api.tenant("ops", "admin"))


def _states(caller: Caller) -> dict[str, dict[str, Any]]:
    r = caller.get(ROUTE)
    assert r.status_code == 200, r.text
    return {k["kid"]: k for k in r.json()}


def test_an_admin_lists_and_rotates_the_tool_keys(
    api: ApiEnv, operator: Caller, clock: ManualClock
) -> None:
    first = api.runtime.tool_keys.current().kid
    assert [(k["kid"], k["state"]) for k in operator.get(ROUTE).json()] == [(first, "current")]

    r = operator.post(ROUTE)  # no body: a rotation that publishes first
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["retired_kid"] == first and made["replaced_kids"] == made["revoked_kids"] == []
    assert f"{first} signs until then" in made["message"]
    keys = _states(operator)
    assert (keys[made["kid"]]["state"], keys[first]["state"]) == ("next", "current")
    assert keys[made["kid"]]["signs_from"] == made["signs_from"] == keys[first]["retired_at"]
    assert api.runtime.tool_keys.current().kid == first  # published, not signing yet

    # a second rotation replaces the waiting key when asked: it never signs
    clock.advance(REPLACE_INTERVAL)
    r = operator.post(ROUTE, json={"now": False, "replace": True})
    assert r.status_code == 201, r.text
    newer = r.json()
    assert newer["retired_kid"] == first and newer["replaced_kids"] == [made["kid"]]
    keys = _states(operator)
    assert keys[made["kid"]]["signs_from"] is None
    assert keys[first]["retired_at"] == newer["signs_from"]

    # `now`: signs at once, every key it replaces is revoked, no future signing time shown
    r = operator.post(ROUTE, json={"now": True})
    assert r.status_code == 201, r.text
    forced = r.json()
    assert set(forced["revoked_kids"]) == {first, made["kid"], newer["kid"]}
    assert api.runtime.tool_keys.current().kid == forced["kid"]
    keys = _states(operator)
    assert keys[forced["kid"]]["state"] == KeyState.CURRENT
    for kid in (first, made["kid"], newer["kid"]):
        assert keys[kid]["state"] == "revoked" and keys[kid]["published"] is False
    assert keys[newer["kid"]]["signs_from"] is None
    published = {k["kid"] for k in api.client.get("/lti/jwks.json").json()["keys"]}
    assert published == {forced["kid"]}


def test_the_listing_shows_no_private_key_material(api: ApiEnv, operator: Caller) -> None:
    key = api.runtime.tool_keys.current()
    operator.post(ROUTE)
    r = operator.get(ROUTE)
    private = key.private_key.private_numbers()
    for secret in (private.d, private.p, private.q):
        assert str(secret) not in r.text
    assert "PRIVATE" not in r.text and '"d"' not in r.text and '"n"' not in r.text
    assert set(r.json()[0]) == {
        "kid",
        "state",
        "created_at",
        "signs_from",
        "retired_at",
        "revoked_at",
        "published",
        "published_until",
    }


def test_only_the_named_tenants_admins_rotate(api: ApiEnv, operator: Caller) -> None:
    """Every tenant signs with these keys: another tenant's admin may list them but not
    rotate them (a rotation with `now` stops every platform trusting gradesync for minutes);
    a key without the admin scope may do neither. A refusal changes nothing."""
    first = api.runtime.tool_keys.current().kid
    other = Caller(api.client, api.tenant("t1", "admin"))
    assert list(_states(other)) == [first]
    r = other.post(ROUTE, json={"now": True})
    assert r.status_code == 403, r.text
    assert "GRADESYNC_TOOL_KEY_TENANTS" in r.json()["detail"]
    sync = Caller(api.client, api.tenant("ops", "sync"))
    assert sync.get(ROUTE).status_code == 403 and sync.post(ROUTE).status_code == 403
    assert api.client.post(f"/api/v1{ROUTE}").status_code == 401
    assert [k.kid for k in api.runtime.tool_keys.list()] == [first]


@pytest.mark.parametrize(
    ("body", "rule"),
    [({"now": "yes"}, "boolean"), ({"now": 1}, "boolean"), ({"later": True}, "unknown_field")],
)
def test_a_wrong_rotation_body_is_refused_and_changes_nothing(
    api: ApiEnv, operator: Caller, body: dict[str, Any], rule: str
) -> None:
    first = api.runtime.tool_keys.current().kid
    r = operator.post(ROUTE, json=body)
    assert r.status_code == 422, r.text
    assert [(d["field"], d["rule"]) for d in r.json()["detail"]] == [(next(iter(body)), rule)]
    assert [k.kid for k in api.runtime.tool_keys.list()] == [first]


def test_a_rotation_while_a_key_waits_is_refused_unless_asked(
    api: ApiEnv, operator: Caller, clock: ManualClock
) -> None:
    """Each rotation adds a key every platform of every tenant downloads: one waiting to sign
    is replaced only when asked, naming the key, and no sooner than a minute after it."""
    first = api.runtime.tool_keys.current().kid
    made = operator.post(ROUTE).json()
    r = operator.post(ROUTE)
    assert r.status_code == 409, r.text
    assert made["kid"] in r.json()["detail"] and '"replace": true' in r.json()["detail"]
    r = operator.post(ROUTE, json={"replace": True})  # asked, but the key is seconds old
    assert r.status_code == 429, r.text
    assert r.headers["retry-after"] == str(int(REPLACE_INTERVAL.total_seconds()))
    assert "once a minute" in r.json()["detail"]
    assert [k.kid for k in api.runtime.tool_keys.list()] == [made["kid"], first]  # unchanged
    clock.advance(REPLACE_INTERVAL)
    r = operator.post(ROUTE, json={"replace": True})
    assert r.status_code == 201, r.text
    assert r.json()["replaced_kids"] == [made["kid"]]


def test_a_rotation_with_now_soon_after_another_is_refused(
    api: ApiEnv, operator: Caller, clock: ManualClock
) -> None:
    """Every rotation with `now` makes every tenant's platforms refuse gradesync until they
    read the key set again: a leaked admin key looping it would stop grade passback for all.
    The operator's command line is not limited."""
    forced = operator.post(ROUTE, json={"now": True})
    assert forced.status_code == 201, forced.text
    clock.advance(timedelta(seconds=60))
    r = operator.post(ROUTE, json={"now": True})
    assert r.status_code == 429, r.text
    left = FORCED_INTERVAL - timedelta(seconds=60)
    assert r.headers["retry-after"] == str(int(left.total_seconds()))
    assert "rotate-tool-key --now" in r.json()["detail"]
    assert api.runtime.tool_keys.current().kid == forced.json()["kid"]  # unchanged
    assert api.runtime.tool_keys.rotation(immediately=True).revoked  # the operator's
    clock.advance(FORCED_INTERVAL)
    assert operator.post(ROUTE, json={"now": True}).status_code == 201


def test_a_tenant_not_named_is_refused_before_its_body_is_read(
    api: ApiEnv, operator: Caller
) -> None:
    other = Caller(api.client, api.tenant("t1", "admin"))
    r = other.post(ROUTE, json={"now": "x"})
    assert r.status_code == 403, r.text
