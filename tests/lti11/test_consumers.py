"""LTI 1.1 consumers as the service stores them, whichever entrypoint asks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from gradesync.adapters.db.database import Database
from gradesync.services.lti11_consumers import ConsumerSpec, add_consumer
from gradesync.testing import add_tenant


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
