"""Local console accounts: create, change password, delete, authenticate.

Passwords are hashed with scrypt (memory-hard, in the standard library) and a random salt;
comparison is constant-time. A username may exist in several tenants: a sign-in that names no
tenant opens the account of that name when only one tenant holds it; when several do, it must
name the tenant (no account is tried, so a sign-in costs one scrypt however many tenants hold
the name, and fails as for an unknown name).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from gradesync.domain.errors import InvalidInput, NotFound
from gradesync.domain.model import ConsoleUser, UserRole
from gradesync.services.clock import Clock
from gradesync.services.ports import UnitOfWorkFactory

_N, _R, _P = 2**14, 8, 1
MIN_PASSWORD = 10


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    enc = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${enc(salt).decode()}${enc(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt_b64), n=int(n), r=int(r), p=int(p), dklen=32
    )
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


def create_user(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    *,
    tenant_id: str,
    username: str,
    password: str,
    role: UserRole | None = None,
    display_name: str = "",
    course_ids: Sequence[str] | None = None,
) -> ConsoleUser:
    """Create an account, or update one (a new password, say). What an update is not given
    (role None, no display name, course_ids None) stays as stored; a new account is an
    instructor of no courses, named by its username."""
    if not username.strip():
        raise InvalidInput.one("username", "required", "A username is required.")
    if len(password) < MIN_PASSWORD:
        raise InvalidInput.one(
            "password", "min_length", f"The password must have at least {MIN_PASSWORD} characters."
        )
    with uow_factory() as uow:
        if uow.tenants.get(tenant_id) is None:
            raise NotFound("tenant", tenant_id)
        # held to the commit: what is not given is kept as read, and read unlocked a change
        # committed meanwhile (PostgreSQL's read committed: a role given) was written over
        old = uow.users.get(tenant_id, username.strip(), for_update=True)
        password_hash = hash_password(password)

        def account(old: ConsoleUser | None) -> ConsoleUser:
            return ConsoleUser(
                tenant_id=tenant_id,
                username=username.strip(),
                display_name=display_name or (old.display_name if old else username.strip()),
                password_hash=password_hash,
                role=role or (old.role if old else UserRole.INSTRUCTOR),
                course_ids=(
                    tuple(course_ids) if course_ids is not None else old.course_ids if old else ()
                ),
            )

        user = account(old)
        if old is not None:
            uow.users.save(user, clock.now())
        elif not uow.users.add(user, clock.now()):
            # made meanwhile by another process (PostgreSQL's read committed: the row read
            # above was not there and locked nothing): changed as a stored account is, what
            # this change is not given kept, not written over with a new account's defaults
            made = uow.users.get(tenant_id, username.strip(), for_update=True)
            user = account(made)
            uow.users.save(user, clock.now())
        uow.commit()
    return user


def delete_user(uow_factory: UnitOfWorkFactory, tenant_id: str, username: str) -> None:
    """Remove an account; its console sessions end with it (each request re-reads it)."""
    with uow_factory() as uow:
        if not uow.users.delete(tenant_id, username):
            raise NotFound("account", username)
        uow.commit()


@functools.cache
def _unknown_user_hash() -> str:
    """A hash no password matches, made once: the unknown-user path then costs one scrypt."""
    return hash_password(secrets.token_urlsafe(16))


def authenticate(
    uow_factory: UnitOfWorkFactory, username: str, password: str, tenant_id: str | None = None
) -> ConsoleUser | None:
    """The user when the password matches, else None (the same answer for an unknown user).

    Without a tenant, the account of that name is tried when one tenant only holds it. A name
    held in several tenants tries none of them: the answer is None, as for an unknown name,
    so a try costs one password hash (scrypt) whatever the number of tenants holding the name,
    and says nothing of how many there are; the sign-in must name the school."""
    with uow_factory() as uow:
        found = (
            uow.users.get(tenant_id, username)
            if tenant_id
            else _account_tried(uow.users.find_by_username(username))
        )
    if found is None:
        # still spend one hashing's time (as for a known user) so timing does not reveal
        # which usernames exist, nor in how many schools
        verify_password(password, _unknown_user_hash())
        return None
    return found if verify_password(password, found.password_hash) else None


def _account_tried(holders: Sequence[ConsoleUser]) -> ConsoleUser | None:
    """Of the accounts holding a name (no school named), the one a password is tried against:
    the only one, or none when several schools hold the name."""
    return holders[0] if len(holders) == 1 else None


def schools_tried(
    uow_factory: UnitOfWorkFactory, username: str, tenant_id: str | None = None
) -> list[str]:
    """The schools whose account of `username` `authenticate` checks a password against: the
    named one, else the one school holding the name (none for an unknown name or a name held
    in several schools: no account is tried)."""
    if tenant_id:
        return [tenant_id]
    with uow_factory() as uow:
        found = _account_tried(uow.users.find_by_username(username))
    return [found.tenant_id] if found is not None else []


def namesakes(uow_factory: UnitOfWorkFactory, tenant_id: str, username: str) -> list[str]:
    """The other tenants with an account of this username (then signing in to any of them
    must name the school)."""
    with uow_factory() as uow:
        return sorted(
            u.tenant_id for u in uow.users.find_by_username(username) if u.tenant_id != tenant_id
        )
