"""LTI 1.1 consumers as the service stores them, whichever entrypoint asks."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.errors import Conflict
from gradesync.services import destination_admin
from gradesync.services.clock import SystemClock
from gradesync.services.lti.errors import Lti11Refused
from gradesync.services.lti.lti11 import find_consumer
from gradesync.services.lti11_consumers import ConsumerSpec, add_consumer
from gradesync.testing import add_tenant
from tests.support.races import AfterFirstRead, start_second

SECRET = "a-secret-of-24-characters"


def test_an_update_keeps_what_it_is_not_given(db: Database) -> None:
    add_tenant(db.uow, "t1")
    now = datetime.now(UTC)
    bare = ConsumerSpec("t1", "moodle11", None, "k-1", "first-secret-0123456789", ("lms.edu",))
    with db.uow() as uow:
        made = add_consumer(uow, bare, now)
        # a new consumer: named after its id, the generic profile, no comments
        assert (made.name, made.profile, made.config["comments"]) == ("moodle11", "generic", False)
        add_consumer(uow, replace(bare, name="Moodle", profile="moodle", comments=True), now)
        # a new secret and host, nothing else said: the name, profile and comments stay
        newer = replace(bare, consumer_secret="second-secret-0123456789", allowed_hosts=("a.edu",))
        kept = add_consumer(uow, newer, now)
        assert (kept.name, kept.profile, kept.config["comments"]) == ("Moodle", "moodle", True)
        assert (kept.config["allowed_hosts"], kept.secret["consumer_secret"]) == (
            ["a.edu"],
            "second-secret-0123456789",
        )
        # what is given wins, a False too
        off = add_consumer(uow, replace(bare, comments=False), now)
        assert (off.name, off.profile, off.config["comments"]) == ("Moodle", "moodle", False)


def test_two_registrations_of_one_key_at_once_one_is_a_conflict(postgres_db: Database) -> None:
    """Both checked the key before either wrote it (PostgreSQL reads only what committed), so
    both were stored and every launch with the key was then refused as ambiguous. The key is
    held from the check to the commit: the second reads the first's consumer and is refused."""
    db = postgres_db
    add_tenant(db.uow, "t1")
    add_tenant(db.uow, "t2")
    now = datetime.now(UTC)
    first = ConsumerSpec("t1", "lms-a", None, "k-race", "first-secret-0123456789", ("a.edu",))
    second = ConsumerSpec("t2", "lms-b", None, "k-race", "other-secret-0123456789", ("b.edu",))

    def register_second() -> None:
        with db.uow() as uow:
            add_consumer(uow, second, now)
            uow.commit()

    with db.uow() as uow:
        add_consumer(uow, first, now)
        racing = start_second(db, register_second)
        uow.commit()
    with pytest.raises(Conflict) as refused:
        racing.finish()
    assert (refused.value.field, refused.value.rule) == ("consumer_key", "taken")
    assert racing.blocked
    with db.uow() as uow:
        assert uow.lti_links.consumers_with_key("k-race") == [("t1", "lms-a")]


def test_an_ambiguous_key_is_refused_naming_no_tenant(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A key stored twice (written before registrations were serialised) refuses the launch;
    the LMS user was told both consumers' tenant and id. Only the operator's log names them."""
    db = sqlite_db
    now = datetime.now(UTC)
    for tenant, dest_id in (("t1", "lms-a"), ("t2", "lms-b")):
        add_tenant(db.uow, tenant)
        spec = ConsumerSpec(tenant, dest_id, None, f"k-{tenant}", SECRET, ("a.edu",))
        with db.uow() as uow:
            made = add_consumer(uow, spec, now)
            uow.destinations.upsert(replace(made, config={**made.config, "consumer_key": "k"}), now)
            uow.commit()
    with db.uow() as uow, pytest.raises(Lti11Refused) as refused:
        find_consumer(uow, "k")
    assert (refused.value.status, refused.value.rule) == (409, "ambiguous")
    told = str(refused.value)
    assert "'k' is registered more than once" in told
    assert not any(word in told for word in ("t1", "t2", "lms-a", "lms-b")), told
    assert "t1/lms-a, t2/lms-b" in caplog.text


def test_a_pause_made_while_a_consumer_is_updated_stays(db: Database) -> None:
    """An update keeps the consumer's pause and limits as it read them: on PostgreSQL (read
    committed) a pause committed between that read and the write was lifted."""
    add_tenant(db.uow, "t1")
    now = datetime.now(UTC)
    spec = ConsumerSpec("t1", "moodle", "Moodle", "k1", SECRET, ("a.edu",))
    with db.uow() as uow:
        add_consumer(uow, spec, now)
        uow.commit()
    racing = AfterFirstRead(
        db,
        "destinations",
        "get",
        lambda: destination_admin.pause(db.uow, SystemClock(), "t1", "moodle", actor="admin"),
    )
    with racing() as uow:
        add_consumer(uow, replace(spec, consumer_secret="second-secret-0123456789"), now)
        uow.commit()
    racing.finish()
    with db.uow() as uow:
        d = uow.destinations.get("t1", "moodle")
    assert d is not None
    assert (d.enabled, d.pause_reason) == (False, "paused by admin")
    assert d.secret["consumer_secret"] == "second-secret-0123456789"


def test_one_consumer_added_twice_at_once_is_refused_the_second_time(db: Database) -> None:
    """The console's Add form, twice at once for one new id (two keys): on PostgreSQL (read
    committed) each found the id free (its check, and the locked read that locks no row
    not there), and the second silently replaced the first. Its insert decides now."""
    add_tenant(db.uow, "t1")
    now = datetime.now(UTC)

    def added(factory: Any, name: str, key: str) -> str:
        spec = ConsumerSpec("t1", "moodle", name, key, SECRET, ("a.edu",))
        with factory() as uow:
            made = add_consumer(uow, spec, now, new=True)
            uow.commit()
        return made.name

    racing = AfterFirstRead(db, "destinations", "get", lambda: added(db.uow, "Moodle B", "k-b"))
    made: list[str] = []
    with contextlib.suppress(Conflict):
        made.append(added(racing, "Moodle A", "k-a"))
    with contextlib.suppress(Conflict):
        made.append(racing.finish())
    assert len(made) == 1, made
    with db.uow() as uow:
        stored = uow.destinations.get("t1", "moodle")
    assert stored is not None and stored.name == made[0]


def test_a_consumer_put_twice_at_once_keeps_what_the_second_leaves_out(db: Database) -> None:
    """Two PUTs of one new consumer at once, the second leaving the name, profile and
    comments out (kept as stored): on PostgreSQL the one that read no consumer wrote over
    the other's, committed meanwhile, with the defaults, where either order keeps them."""
    add_tenant(db.uow, "t1")
    now = datetime.now(UTC)
    bare = ConsumerSpec("t1", "moodle", None, "k-1", SECRET, ("a.edu",))

    def named() -> None:
        with db.uow() as uow:
            add_consumer(uow, replace(bare, name="Moodle", profile="moodle", comments=True), now)
            uow.commit()

    racing = AfterFirstRead(db, "destinations", "get", named)
    with racing() as uow:
        add_consumer(uow, replace(bare, consumer_secret="second-secret-0123456789"), now)
        uow.commit()
    racing.finish()
    with db.uow() as uow:
        d = uow.destinations.get("t1", "moodle")
    assert d is not None
    assert (d.name, d.profile, d.config["comments"]) == ("Moodle", "moodle", True)
