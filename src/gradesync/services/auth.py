"""API keys per tenant: issue, verify, revoke.

A token looks like `gs_<key id>_<secret>`. Only its SHA-256 is stored, so a database dump does
not hand out working keys. The key id in the token lets verification fetch one row by primary
key and then compare digests in constant time (no lookup by a secret-derived value).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from gradesync.domain.errors import FieldProblem, InvalidInput, NotFound
from gradesync.domain.model import ApiKey, ApiScope
from gradesync.services.clock import Clock
from gradesync.services.ports import UnitOfWorkFactory

TOKEN_PREFIX = "gs_"
_TOKEN_RE = re.compile(r"^gs_([0-9a-f]{16})_([A-Za-z0-9_\-]{20,128})$")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a tenant's API key and what it may do."""

    tenant_id: str
    key_id: str
    scopes: frozenset[str]
    actor: str  # recorded on runs and audit entries: "api-key:<name>"

    def allows(self, scope: str | ApiScope) -> bool:
        return ApiScope.ADMIN.value in self.scopes or str(scope) in self.scopes


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: ApiKey
    token: str  # shown once; never stored


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    known = {s.value for s in ApiScope}
    out: list[str] = []
    for s in scopes:
        s = s.strip().lower()
        if s not in known:
            raise InvalidInput.one(
                "scopes", "unknown_scope", f"{s!r} is not a scope; use {', '.join(sorted(known))}"
            )
        if s not in out:
            out.append(s)
    if not out:
        raise InvalidInput.one("scopes", "required", "give at least one scope")
    return tuple(out)


def create_key(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    tenant_id: str,
    name: str,
    scopes: Iterable[str],
) -> IssuedKey:
    """Issue a new key for a tenant. The returned token is the only copy."""
    problems: list[FieldProblem] = []
    scope_tuple: tuple[str, ...] = ()
    try:
        scope_tuple = parse_scopes(scopes)
    except InvalidInput as exc:  # reported with the name's problem: every one at once
        problems.extend(exc.problems)
    name = name.strip()
    if not name:
        problems.append(FieldProblem("name", "required", "a key needs a name saying who uses it"))
    if problems:
        raise InvalidInput(problems)
    key_id = secrets.token_hex(8)
    token = f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        id=key_id,
        tenant_id=tenant_id,
        name=name,
        key_hash=hash_token(token),
        scopes=scope_tuple,
        created_at=clock.now(),
    )
    with uow_factory() as uow:
        if uow.tenants.get(tenant_id) is None:
            raise NotFound("tenant", tenant_id)
        uow.api_keys.add(key)
        uow.commit()
    return IssuedKey(key, token)


def revoke_key(uow_factory: UnitOfWorkFactory, clock: Clock, tenant_id: str, key_id: str) -> None:
    with uow_factory() as uow:
        if not uow.api_keys.revoke(tenant_id, key_id, clock.now()):
            raise NotFound("active API key", key_id)
        uow.commit()


def list_keys(uow_factory: UnitOfWorkFactory, tenant_id: str) -> list[ApiKey]:
    with uow_factory() as uow:
        return uow.api_keys.all(tenant_id)


def verify_token(uow_factory: UnitOfWorkFactory, token: str | None) -> Principal | None:
    """The principal a token stands for, or None for a missing, malformed, unknown or revoked
    token (callers answer all of these the same way, so no case leaks which one it was)."""
    if not token:
        return None
    m = _TOKEN_RE.match(token)
    if m is None:
        return None
    with uow_factory() as uow:
        key = uow.api_keys.get(m.group(1))
    digest = hash_token(token)
    stored = key.key_hash if key is not None else hash_token("gs_absent")
    if not hmac.compare_digest(digest, stored) or key is None or key.revoked_at is not None:
        return None
    return Principal(
        tenant_id=key.tenant_id,
        key_id=key.id,
        scopes=frozenset(key.scopes),
        actor=f"api-key:{key.name}",
    )
