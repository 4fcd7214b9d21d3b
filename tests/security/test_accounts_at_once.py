"""Tenants and console accounts changed by two admins at once, on SQLite and PostgreSQL:
neither change is lost, and a tenant made twice at once is made once."""

from __future__ import annotations

import contextlib

from gradesync.adapters.db.database import Database
from gradesync.domain.errors import Conflict
from gradesync.domain.model import UserRole
from gradesync.services import accounts
from gradesync.services.tenants import create_tenant
from gradesync.testing import ManualClock
from tests.support.races import AfterFirstRead

CLOCK = ManualClock()


def test_a_tenant_made_twice_at_once_is_made_once(db: Database) -> None:
    """Each create checked that the id was free, then wrote the tenant: on PostgreSQL (read
    committed) the second did not see the first's, both were told it was made, and the
    first's name was written over. One is refused now (on SQLite the other one: its
    creates run one after the other)."""
    racing = AfterFirstRead(
        db, "tenants", "get", lambda: create_tenant(db.uow, CLOCK, "north", "North High")
    )
    made: list[str] = []
    with contextlib.suppress(Conflict):
        made.append(create_tenant(racing, CLOCK, "north", "North Academy").name)
    with contextlib.suppress(Conflict):
        made.append(racing.finish().name)
    assert len(made) == 1, made
    with db.uow() as uow:
        tenant = uow.tenants.get("north")
    assert tenant is not None and tenant.name == made[0]


def _ann_saved_while_made_admin(db: Database) -> UserRole:
    """Ann saved with another password and no role while another admin makes her an admin,
    that change committed right after this one read her account; her role then."""
    password = "a-long-enough-password"

    def made_admin() -> object:
        return accounts.create_user(
            db.uow, CLOCK, tenant_id="north", username="ann", password=password,
            role=UserRole.ADMIN,
        )  # fmt: skip

    racing = AfterFirstRead(db, "users", "get", made_admin)
    accounts.create_user(
        racing, CLOCK, tenant_id="north", username="ann", password="another-long-password"
    )
    racing.finish()
    with db.uow() as uow:
        user = uow.users.get("north", "ann")
    assert user is not None
    return user.role


def test_a_role_given_while_a_password_is_reset_stays(db: Database) -> None:
    """A password reset keeps the account's role as it read it: on PostgreSQL an admin role
    given between that read and the write was taken away again."""
    create_tenant(db.uow, CLOCK, "north", "North High")
    accounts.create_user(
        db.uow, CLOCK, tenant_id="north", username="ann", password="a-long-enough-password"
    )
    assert _ann_saved_while_made_admin(db) is UserRole.ADMIN


def test_an_account_made_twice_at_once_keeps_the_role_the_second_leaves_out(
    db: Database,
) -> None:
    """Two creates of one new account at once, the second not giving a role (kept as
    stored): on PostgreSQL (read committed) the one that read no account (nothing locked)
    wrote over the other's, committed meanwhile, as a new instructor: the admin role given
    was lost, where either order keeps it."""
    create_tenant(db.uow, CLOCK, "north", "North High")
    assert _ann_saved_while_made_admin(db) is UserRole.ADMIN
