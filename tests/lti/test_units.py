"""Pure pieces: URLs and the SSRF guard, Link parsing, failure classification, roles,
registration rules, and the tool key store (on SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import select

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.database import Database
from gradesync.adapters.destinations.ags_urls import (
    ForeignUrl,
    allowed_origins,
    check_url,
    next_link,
    scores_url,
)
from gradesync.adapters.destinations.http_errors import classify
from gradesync.domain.errors import Conflict, InvalidInput
from gradesync.domain.model import ItemLink, Role, Tenant
from gradesync.lti import registration as reg
from gradesync.lti.launch import role_from
from gradesync.services import destination_admin, roster
from gradesync.services.clock import SystemClock
from gradesync.services.destination import FailureClass
from gradesync.services.lti import launch as launch_service
from gradesync.services.lti import platforms
from gradesync.services.lti.keys import PUBLISH_LEAD, ToolKeyStore
from gradesync.services.lti.launch import bind_context
from gradesync.services.roster import Membership, RosterResult
from gradesync.testing import TEST_SECRET, ManualClock, add_course, add_destination, add_tenant
from tests.support.races import AfterFirstRead

M = "http://purl.imsglobal.org/vocab/lis/v2/membership#"


def test_scores_url_keeps_the_query_string() -> None:
    assert scores_url("https://lms/api/li/5?tool=1") == "https://lms/api/li/5/scores?tool=1"
    assert scores_url("https://lms/api/li/5/") == "https://lms/api/li/5/scores"


@pytest.mark.parametrize(
    "header, expected",
    [
        (
            '<https://a/p2?x=1&page=2>; rel="next", <https://a/p1>; rel="first"',
            "https://a/p2?x=1&page=2",
        ),
        ('<https://a/p1>; rel="first", <https://a/p3>; rel=\u201cnext\u201d', "https://a/p3"),
        ("<https://a/p3>; rel=next", "https://a/p3"),
        ('<https://a/p1>; rel="prev first"', None),
        (None, None),
    ],
)
def test_next_link_is_parsed_leniently(header: str | None, expected: str | None) -> None:
    assert next_link(header) == expected


def test_only_registered_origins_are_allowed() -> None:
    origins = allowed_origins(
        {
            "issuer": "https://canvas.instructure.com",
            "auth_token_url": "https://sso.canvaslms.com/login/oauth2/token",
            "allowed_hosts": ["school.instructure.com", "http://127.0.0.1:9000"],
        }
    )
    assert check_url("https://school.instructure.com/api/lti/courses/1/line_items", origins, "x")
    assert check_url("http://127.0.0.1:9000/x", origins, "x")
    for bad in (
        "http://school.instructure.com/x",  # wrong scheme
        "https://school.instructure.com:8443/x",  # wrong port
        "https://user@school.instructure.com/x",  # credentials
        "https://169.254.169.254/latest",
        "file:///etc/passwd",
    ):
        with pytest.raises(ForeignUrl):
            check_url(bad, origins, "lineitem")


@pytest.mark.parametrize(
    "status, headers, body, what, failure, code",
    [
        (503, {}, "oops", "score", FailureClass.RETRY_LATER, "server_error"),
        (503, {"retry-after": "5"}, "", "score", FailureClass.SLOW_DOWN, "rate_limited"),
        (429, {}, "", "score", FailureClass.SLOW_DOWN, "rate_limited"),
        (
            403,
            {},
            "403 Forbidden (Rate Limit Exceeded)",
            "score",
            FailureClass.SLOW_DOWN,
            "rate_limited",
        ),
        (
            403,
            {"www-authenticate": 'Bearer error="insufficient_scope"'},
            "",
            "score",
            FailureClass.MISCONFIGURED,
            "no_grade_scope",
        ),
        (
            401,
            {},
            '{"errors":[{"message":"Invalid access token"}]}',
            "score",
            FailureClass.MISCONFIGURED,
            "bad_credentials",
        ),
        (
            400,
            {},
            '{"error":"invalid_scope","error_description":"nope"}',
            "token",
            FailureClass.MISCONFIGURED,
            "no_grade_scope",
        ),
        (
            401,
            {},
            '{"error":"invalid_client"}',
            "token",
            FailureClass.MISCONFIGURED,
            "bad_credentials",
        ),
        (404, {}, "", "score", FailureClass.REJECTED, "line_item_gone"),
        (412, {}, "", "score", FailureClass.REJECTED, "line_item_foreign"),
        (
            422,
            {},
            '{"errors":[{"message":"User not found in course or is not a student"}]}',
            "score",
            FailureClass.REJECTED,
            "unknown_user",
        ),
        (
            422,
            {},
            '{"errors":{"message":"Course is concluded"}}',
            "score",
            FailureClass.REJECTED,
            "course_concluded",
        ),
        (
            422,
            {},
            "The maximum number of allowed attempts has been reached",
            "score",
            FailureClass.REJECTED,
            "attempts_exceeded",
        ),
        (
            409,
            {},
            "Refusing score with an earlier or equal timestamp",
            "score",
            FailureClass.REJECTED,
            "timestamp_older",
        ),
        (
            400,
            {},
            "scoreGiven: must be a number",
            "score",
            FailureClass.REJECTED,
            "invalid_request",
        ),
    ],
)
def test_classification(
    status: int, headers: dict[str, str], body: str, what: str, failure: FailureClass, code: str
) -> None:
    got = classify(status, headers, body, what=what)
    assert (got.failure, got.code, got.status) == (failure, code, status)
    assert got.remedy


def test_retry_after_and_words_are_kept() -> None:
    got = classify(429, {"retry-after": "12"}, '{"errors":[{"message":"slow down"}]}')
    assert got.retry_after == 12.0 and got.message == "slow down"


def test_the_token_endpoint_s_words_say_they_are_its() -> None:
    """A grade whose token request failed said "the destination answered HTTP 500: injected
    server error", as if the gradebook had refused the grade."""
    got = classify(500, {}, '{"error":"injected server error"}', what="token")
    assert got.message == "injected server error (the token request)"
    assert classify(500, {}, "", what="token").message == "HTTP 500 from the platform (token)"


@pytest.mark.parametrize(
    "roles, role",
    [
        ([M + "Learner"], Role.LEARNER),
        ([M + "Instructor", M + "Learner"], Role.INSTRUCTOR),
        ([M + "Instructor#TeachingAssistant"], Role.TEACHING_ASSISTANT),
        ([M + "Mentor"], Role.OBSERVER),
        (
            ["http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator"],
            Role.ADMINISTRATOR,
        ),
        (
            [
                "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator",
                M + "Learner",
            ],
            Role.LEARNER,
        ),
        ([], Role.OBSERVER),
    ],
)
def test_roles(roles: list[str], role: Role) -> None:
    assert role_from(roles) is role


GOOD: dict[str, Any] = {
    "id": "canvas",
    "issuer": "https://canvas.instructure.com",
    "client_id": "10000000000001",
    "deployment_ids": ["1:abc"],
    "auth_login_url": "https://sso.canvaslms.com/api/lti/authorize_redirect",
    "auth_token_url": "https://sso.canvaslms.com/login/oauth2/token",
    "key_set_url": "https://sso.canvaslms.com/api/lti/security/jwks",
    "profile": "canvas",
    "allowed_hosts": ["school.instructure.com"],
}


def test_registration_rules_name_each_field() -> None:
    bad = {
        **GOOD,
        "issuer": "http://canvas.example.com",
        "deployment_ids": [],
        "profile": "d2l",
        "colour": 1,
    }
    bad.pop("client_id")
    with pytest.raises(InvalidInput) as info:
        reg.validate_platform(bad)
    rules = {(p.field, p.rule) for p in info.value.problems}
    assert rules == {
        ("issuer", "https"),
        ("deployment_ids", "required"),
        ("profile", "one_of"),
        ("client_id", "required"),
        ("colour", "unknown_field"),
    }
    spec = reg.validate_platform(GOOD)
    assert spec.scopes == reg.AGS_SCOPES and spec.deployment_ids == ("1:abc",)


def test_registration_is_unique_per_issuer_and_client(db: Database) -> None:
    now = datetime.now(UTC)
    with db.uow() as uow:
        for tid in ("a", "b"):
            uow.tenants.upsert(Tenant(tid, tid), now)
        platforms.save_platform(uow, reg.platform_of("a", GOOD), now)
        uow.commit()
        with pytest.raises(Conflict):
            platforms.save_platform(uow, reg.platform_of("b", {**GOOD, "id": "other"}), now)
        # the registration belongs to tenant a: another deployment does not let b in either,
        # and the refusal does not say whose it is
        with pytest.raises(Conflict) as refused:
            platforms.save_platform(
                uow, reg.platform_of("b", {**GOOD, "id": "other", "deployment_ids": ["9:zz"]}), now
            )
        assert "tenant 'a'" not in str(refused.value) and "as 'canvas'" not in str(refused.value)
        # the same LMS application, another department's deployment in tenant a (Blackboard)
        platforms.save_platform(
            uow, reg.platform_of("a", {**GOOD, "id": "other", "deployment_ids": ["9:zz"]}), now
        )
        with pytest.raises(Conflict):
            platforms.save_platform(uow, reg.platform_of("a", GOOD), now)  # exists: needs replace
        platforms.save_platform(
            uow,
            reg.platform_of("a", {**GOOD, "deployment_ids": ["1:abc", "2:def"]}),
            now,
            replace_existing=True,
        )
        uow.commit()
        found = platforms.find_platforms(uow, GOOD["issuer"], GOOD["client_id"])
    assert sorted((d.id, d.tenant_id, d.config["deployment_ids"]) for d in found) == [
        ("canvas", "a", ["1:abc", "2:def"]),
        ("other", "a", ["9:zz"]),
    ]


def test_an_update_keeps_every_field_it_leaves_out(db: Database) -> None:
    """The service keeps what a caller does not give (the CLI's --replace relies on it), and
    a PUT keeps only gradesync's own settings: it gives the LMS's side whole."""
    now = datetime.now(UTC)
    first = {**GOOD, "name": "Canvas prod", "audience": "aud-1", "person_id_from": "email"}
    first |= {"scopes": [reg.AGS_SCOPES[0]], "concurrency": 3, "tag": "gs", "enabled": False}
    # a second deployment, and nothing else that may be left out
    given = {**{k: v for k, v in GOOD.items() if k not in reg.OPTIONAL}, "person_id_from": None}
    given["deployment_ids"] = ["1:abc", "2:def"]
    assert reg.left_out(given) == set(reg.OPTIONAL)
    assert reg.left_out(given, reg.KEPT_ON_REPLACE) == {"enabled", "concurrency", "tag"}
    with db.uow() as uow:
        uow.tenants.upsert(Tenant("a", "a"), now)
        platforms.save_platform(uow, reg.platform_of("a", first), now)
        kept = platforms.save_platform(
            uow, reg.platform_of("a", given), now, replace_existing=True, keep=reg.left_out(given)
        )
        put = platforms.save_platform(
            uow,
            reg.platform_of("a", given),
            now,
            replace_existing=True,
            keep=reg.left_out(given, reg.KEPT_ON_REPLACE),
        )
    assert kept.config["deployment_ids"] == ["1:abc", "2:def"]
    assert (kept.name, kept.profile, kept.enabled) == ("Canvas prod", "canvas", False)
    assert {k: kept.config[k] for k in reg.OPTIONAL if k in kept.config} == {
        "audience": "aud-1",
        "scopes": [reg.AGS_SCOPES[0]],
        "allowed_hosts": ["school.instructure.com"],
        "person_id_from": "email",
        "concurrency": 3,
        "tag": "gs",
    }
    assert (put.name, put.profile, put.enabled) == ("canvas", "generic", False)
    assert (put.config["person_id_from"], put.config["allowed_hosts"]) == ("sub", [])
    assert (put.config["concurrency"], put.config["tag"]) == (3, "gs")


def test_tool_keys_encrypted_rotated_and_pruned(db: Database) -> None:
    clock = ManualClock(datetime(2025, 1, 1, tzinfo=UTC))
    store = ToolKeyStore(db.uow, clock, overlap=timedelta(days=7))  # type: ignore[arg-type]
    first = store.current()
    with db.engine.connect() as conn:
        stored = conn.execute(select(t.tool_keys.c.private_ciphertext)).scalar_one()
    assert "PRIVATE KEY" not in stored and "BEGIN" not in stored  # encrypted at rest
    token = first.sign({"iss": "me"})
    (jwk,) = store.jwks()["keys"]
    assert jwt.get_unverified_header(token)["kid"] == jwk["kid"] == first.kid
    assert jwt.decode(token, RSAAlgorithm.from_jwk(jwk), algorithms=["RS256"])["iss"] == "me"

    clock.advance(timedelta(days=1))
    second = store.rotate()
    assert {k["kid"] for k in store.jwks()["keys"]} == {first.kid, second.kid}  # published
    assert ToolKeyStore(db.uow, clock).current().kid == first.kid  # signs once caches hold it
    clock.advance(PUBLISH_LEAD)
    assert ToolKeyStore(db.uow, clock).current().kid == second.kid  # another process sees it
    assert {k["kid"] for k in store.jwks()["keys"]} == {first.kid, second.kid}  # overlap
    clock.advance(timedelta(days=8))
    assert {k["kid"] for k in store.jwks()["keys"]} == {second.kid}
    assert store.prune() == 1
    assert [k.kid for k in store.list()] == [second.kid]


class _AnotherProcessCommitsBetweenReads:
    """A reading unit of work whose first tool-key read is followed, before the next, by
    another process making the first key: the interleaving PostgreSQL's READ COMMITTED
    allows when two processes start together on an empty store."""

    def __init__(self, db: Database, other: ToolKeyStore) -> None:
        self.db, self.other, self.done = db, other, False

    @contextmanager
    def __call__(self) -> Iterator[Any]:
        with self.db.reads() as uow:  # as serve reads: no write lock held on SQLite
            keys, outer = uow.tool_keys, self

            class Interleaved:
                def __getattr__(self, name: str) -> Any:
                    read = getattr(keys, name)

                    def after_first(*args: Any) -> Any:
                        result = read(*args)
                        if not outer.done:
                            outer.done = True
                            outer.other.current()
                        return result

                    return after_first

            uow.tool_keys = Interleaved()
            try:
                yield uow
            finally:
                uow.tool_keys = keys


def test_a_first_key_made_between_two_reads_is_the_one_used(db_url: str, db: Database) -> None:
    """The process that read the store as empty and then saw a key appear signs with that
    key, and makes no second one."""
    other = Database(db_url, TEST_SECRET)
    try:
        winner = ToolKeyStore(other.uow)
        store = ToolKeyStore(db.uow, reads=_AnotherProcessCommitsBetweenReads(db, winner))
        kid = store.current().kid
        assert kid == winner.current().kid
        assert [k.kid for k in ToolKeyStore(db.uow).list()] == [kid]
    finally:
        other.dispose()


def test_processes_starting_together_make_one_tool_key(db_url: str, db: Database) -> None:
    """Two processes (two Database instances, each with its own store and lock) asking for
    the key of an empty store at once end up signing with the same key, and only one is
    stored or published."""
    others = [Database(db_url, TEST_SECRET) for _ in range(2)]
    stores = [ToolKeyStore(d.uow) for d in others]
    barrier = threading.Barrier(len(stores))

    def first_key(store: ToolKeyStore) -> str:
        barrier.wait(timeout=10)
        return store.current().kid

    try:
        with ThreadPoolExecutor(len(stores)) as pool:
            kids = list(pool.map(first_key, stores))
        assert kids[0] == kids[1]
        assert [k.kid for k in ToolKeyStore(db.uow).list()] == kids[:1]
        assert [k["kid"] for k in stores[1].jwks()["keys"]] == kids[:1]
    finally:
        for d in others:
            d.dispose()


@pytest.mark.parametrize(
    ("message", "temporary"),
    [
        ("invalid_client: kid: cannot fetch the tool's JWKS from https://g/lti/jwks.json: ", True),
        ("invalid_client: JWKS request timed out", True),
        ("Unable to retrieve the tool's public keys: 503 Service Unavailable", True),
        (
            "invalid_client: cannot fetch the tool's JWKS from u: Client error '404 Not Found'",
            False,
        ),
        ("invalid_client: signature does not verify with the tool's registered key", False),
        ("invalid_client: the service timed out", False),  # nothing about our keys
    ],
)
def test_token_refusal_for_unfetchable_tool_keys_is_temporary(
    message: str, temporary: bool
) -> None:
    from gradesync.adapters.destinations.ags import _token_failure
    from gradesync.adapters.destinations.http_errors import classify

    failure = _token_failure(classify(401, {}, message, what="token"))
    if temporary:
        assert (failure.failure, failure.code) == (
            FailureClass.RETRY_LATER,
            "tool_keys_unreachable",
        )
    else:
        assert (failure.failure, failure.code) == (FailureClass.MISCONFIGURED, "bad_credentials")


def test_a_launchs_line_items_url_committed_during_another_launch_is_kept(db: Database) -> None:
    """A launch without an AGS claim keeps the line items URL an earlier launch gave: on
    PostgreSQL (read committed) one made by a launch committed between this launch's read of
    the course's link and its write was written over, and the course's grades had nowhere to
    go until the next launch with the claim."""
    add_tenant(db.uow, "t1")
    add_course(db.uow, "t1", "c1")
    add_destination(db.uow, "t1", "lms")
    now = datetime.now(UTC)
    context = {"id": "ctx-1", "title": "Biology"}
    endpoint = {"lineitems": "https://lms.example/ctx-1/lineitems", "scope": []}

    def with_claim() -> None:
        with db.uow() as u:
            bind_context(
                u, "t1", "lms", "c1", context=context, endpoint=endpoint,
                deployment_id="d1", now=now,
            )  # fmt: skip
            u.commit()

    racing = AfterFirstRead(db, "links", "course", with_claim)
    with racing() as u:
        bind_context(
            u, "t1", "lms", "c1", context=context, endpoint=None, deployment_id="d1", now=now
        )
        u.commit()
    racing.finish()
    with db.uow() as u:
        link = u.links.course("t1", "lms", "c1")
    assert link is not None
    assert (link.remote_id, link.data["endpoint"]) == (endpoint["lineitems"], endpoint)


def test_a_launch_committed_while_a_roster_is_recorded_is_kept(db: Database) -> None:
    """A roster read writes what it found on the course's link, read after its facts: on
    PostgreSQL a launch's line items URL committed between that read and the write was
    written over with the link as it was."""
    add_tenant(db.uow, "t1")
    add_course(db.uow, "t1", "c1")
    platform = add_destination(db.uow, "t1", "lms")
    now = datetime.now(UTC)
    context = {"id": "ctx-1", "title": "Biology"}
    endpoint = {"lineitems": "https://lms.example/ctx-1/lineitems", "scope": []}
    with db.uow() as u:  # an earlier launch, without the AGS claim
        bind_context(
            u, "t1", "lms", "c1", context=context, endpoint=None, deployment_id="d1", now=now
        )
        u.commit()

    def launch_with_claim() -> None:
        with db.uow() as u:
            bind_context(
                u, "t1", "lms", "c1", context=context, endpoint=endpoint,
                deployment_id="d1", now=now,
            )  # fmt: skip
            u.commit()

    racing = AfterFirstRead(db, "links", "course", launch_with_claim)
    with racing() as u:
        members = Membership([], "https://lms.example/ctx-1/members?since=1", partial=True)
        roster._record(u, platform, "c1", members, now, RosterResult("c1", "lms"))
        u.commit()
    racing.finish()
    with db.uow() as u:
        link = u.links.course("t1", "lms", "c1")
    assert link is not None
    assert (link.remote_id, link.data["endpoint"]) == (endpoint["lineitems"], endpoint)
    assert link.data["roster"]["differences_url"] == members.differences_url


def test_a_pause_made_while_a_platform_is_registered_again_stays(db: Database) -> None:
    """A registration replaced keeps the platform's pause as it read it: on PostgreSQL a
    pause committed between that read and the write was lifted."""
    now = datetime.now(UTC)
    add_tenant(db.uow, "a")
    with db.uow() as uow:
        platforms.save_platform(uow, reg.platform_of("a", GOOD), now)
        uow.commit()
    racing = AfterFirstRead(
        db,
        "destinations",
        "get",
        lambda: destination_admin.pause(db.uow, SystemClock(), "a", "canvas", actor="admin"),
    )
    again = reg.platform_of("a", {**GOOD, "deployment_ids": ["1:abc", "2:def"]})
    with racing() as uow:
        platforms.save_platform(uow, again, now, replace_existing=True)
        uow.commit()
    racing.finish()
    with db.uow() as uow:
        d = uow.destinations.get("a", "canvas")
    assert d is not None
    assert (d.enabled, d.pause_reason) == (False, "paused by admin")
    assert d.config["deployment_ids"] == ["1:abc", "2:def"]


def _register(factory: Any, tenant: str, data: dict[str, Any], now: datetime, **how: Any) -> str:
    """A registration saved and committed through `factory`, as a request makes it; its name."""
    with factory() as uow:
        dest = platforms.save_platform(uow, reg.platform_of(tenant, data), now, **how)
        uow.commit()
    return dest.name


def test_one_lms_registered_in_two_tenants_at_once_is_refused_once(db: Database) -> None:
    """An LMS registration (issuer and client id) belongs to one tenant, checked against the
    registrations stored: on PostgreSQL one committed by another tenant after this check
    and before this write was not seen, and both were stored (every login from the LMS
    then ambiguous). The issuer and client id are held from the check to the commit."""
    now = datetime.now(UTC)
    add_tenant(db.uow, "a")
    add_tenant(db.uow, "b")

    # the registrations are listed to check: the other tenant's commits right after
    racing = AfterFirstRead(db, "destinations", "all", lambda: _register(db.uow, "b", GOOD, now))
    _register(racing, "a", GOOD, now)
    with pytest.raises(Conflict) as refused:
        racing.finish()
    assert "registered elsewhere" in str(refused.value)
    with db.uow() as uow:
        found = platforms.find_platforms(uow, GOOD["issuer"], GOOD["client_id"])
    assert [(d.tenant_id, d.id) for d in found] == [("a", "canvas")]


def test_one_registration_made_twice_at_once_is_refused_the_second_time(db: Database) -> None:
    """Two registrations of one new id in one tenant at once: the second read no
    registration before the first's commit, and replaced it silently. The issuer is held
    before the registration is read, so the second finds the first and is refused."""
    now = datetime.now(UTC)
    add_tenant(db.uow, "a")
    other = {**GOOD, "name": "Second"}

    racing = AfterFirstRead(db, "destinations", "get", lambda: _register(db.uow, "a", other, now))
    _register(racing, "a", GOOD, now)
    with pytest.raises(Conflict) as refused:
        racing.finish()
    assert "already exists" in str(refused.value)
    with db.uow() as uow:
        (found,) = platforms.find_platforms(uow, GOOD["issuer"], GOOD["client_id"])
    assert found.name == reg.platform_of("a", GOOD).name


def test_one_new_id_registered_twice_at_once_for_two_lmss_is_refused_the_second_time(
    db: Database,
) -> None:
    """Two registrations of one new id in one tenant at once, for two LMSs (issuers): each
    holds its own issuer, so neither waits for the other; on PostgreSQL (read committed) the
    second read no registration (nothing to lock) before the first's commit, and replaced
    it silently. The insert decides now: the one that finds the id taken is refused."""
    now = datetime.now(UTC)
    add_tenant(db.uow, "a")
    other = {**GOOD, "issuer": "https://moodle.example.edu", "name": "Moodle"}

    racing = AfterFirstRead(db, "destinations", "get", lambda: _register(db.uow, "a", other, now))
    made: list[str] = []
    with contextlib.suppress(Conflict):
        made.append(_register(racing, "a", {**GOOD, "name": "Canvas"}, now))
    with contextlib.suppress(Conflict):
        made.append(racing.finish())
    assert len(made) == 1, made
    with db.uow() as uow:
        stored = platforms.get_platform(uow, "a", "canvas")
    assert stored.name == made[0]


def test_one_new_id_put_twice_at_once_keeps_what_the_second_leaves_out(db: Database) -> None:
    """A replace (PUT) of an id no registration has yet, racing another one's: on PostgreSQL
    the one that read no registration wrote over the other's, committed meanwhile, with
    the defaults of what it left out (its name), where either order keeps the other's."""
    now = datetime.now(UTC)
    add_tenant(db.uow, "a")

    named = {**GOOD, "name": "Canvas"}
    racing = AfterFirstRead(
        db, "destinations", "get", lambda: _register(db.uow, "a", named, now, replace_existing=True)
    )
    moved = {**GOOD, "issuer": "https://moodle.example.edu"}  # no name: the stored one
    _register(racing, "a", moved, now, replace_existing=True, keep=("name",))
    racing.finish()
    with db.uow() as uow:
        stored = platforms.get_platform(uow, "a", "canvas")
    assert stored.name == "Canvas"


@pytest.mark.parametrize("linked_before", [False, True], ids=["first", "again"])
def test_a_column_made_while_a_launch_ties_its_link_is_kept(
    db: Database, linked_before: bool
) -> None:
    """A launch ties the activity's column to its resource link, writing the column's link
    back as it read it: on PostgreSQL (read committed) a column the engine made in the LMS
    and saved between that read and the write was forgotten, and the next grade made a
    second column in the LMS gradebook."""
    add_tenant(db.uow, "t1")
    add_course(db.uow, "t1", "c1", ("a1", "Quiz", 10.0))
    add_destination(db.uow, "t1", "lms")
    made = ItemLink("t1", "lms", "a1", "https://lms.example/ctx-1/lineitems/7", "h1")
    began: list[ItemLink] = []  # the link the engine read before it made the column
    if linked_before:  # a link with no column yet (a launch without a resource link id)
        began.append(ItemLink("t1", "lms", "a1", "", None, {"lineitems": "x"}))
        with db.uow() as u:
            u.links.save_item(began[0])
            u.commit()

    def column_made() -> None:  # the engine's provisioning, as it saves a column it made
        with db.uow() as u:
            u.links.save_written_item(made, began, read=began[0] if began else None)
            u.commit()

    racing = AfterFirstRead(db, "links", "item", column_made)
    endpoint = {"lineitems": "https://lms.example/ctx-1/lineitems"}
    with racing() as u:
        assert launch_service._bind_item(u, "t1", "lms", "a1", endpoint, "rl-1")
        u.commit()
    racing.finish()
    with db.uow() as u:
        item = u.links.item("t1", "lms", "a1")
    assert item is not None and item.remote_id == made.remote_id
    assert item.data.get("resourceLinkId") == "rl-1"  # the launch's tie kept by the save
