"""Local console accounts: create, change password, delete, authenticate.

Passwords are hashed with scrypt (memory-hard, in the standard library) and a random salt;
comparison is constant-time. A username may exist in several tenants: a sign-in that names no
tenant opens the one account of that name whose password matches, and must name the tenant
only when the password matches in several.
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
        old = uow.users.get(tenant_id, username.strip())
        user = ConsoleUser(
            tenant_id=tenant_id,
            username=username.strip(),
            display_name=display_name or (old.display_name if old else username.strip()),
            password_hash=hash_password(password),
            role=role or (old.role if old else UserRole.INSTRUCTOR),
            course_ids=(
                tuple(course_ids) if course_ids is not None else old.course_ids if old else ()
            ),
        )
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

    Without a tenant, the password is checked against the account of that name in every
    tenant: one match signs in there. Matches in several raise InvalidInput on `tenant`: only
    someone holding a valid password learns that the school must be named, and never which
    schools there are."""
    with uow_factory() as uow:
        if tenant_id:
            found = uow.users.get(tenant_id, username)
            candidates = [found] if found else []
        else:
            candidates = uow.users.find_by_username(username)
    if not candidates:
        # still spend one hashing's time (as for a known user) so timing does not reveal
        # which usernames exist
        verify_password(password, _unknown_user_hash())
        return None
    matches = [u for u in candidates if verify_password(password, u.password_hash)]
    if len(matches) > 1:
        raise InvalidInput.one(
            "tenant",
            "required",
            "This username and password are valid in several schools: enter the school id.",
        )
    return matches[0] if matches else None


def schools_tried(
    uow_factory: UnitOfWorkFactory, username: str, tenant_id: str | None = None
) -> list[str]:
    """The schools whose account of `username` `authenticate` checks a password against: the
    named one, else each school holding the name (none for an unknown name)."""
    if tenant_id:
        return [tenant_id]
    with uow_factory() as uow:
        return sorted(u.tenant_id for u in uow.users.find_by_username(username))


def namesakes(
    uow_factory: UnitOfWorkFactory, tenant_id: str, username: str, password: str
) -> dict[str, bool]:
    """The other tenants with an account of this username, each with whether `password` opens
    it too (then signing in to either must name the school)."""
    with uow_factory() as uow:
        others = [u for u in uow.users.find_by_username(username) if u.tenant_id != tenant_id]
    return {u.tenant_id: verify_password(password, u.password_hash) for u in others}
