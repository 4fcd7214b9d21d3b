"""API-key authentication for the JSON API.

Use as a dependency: `principal: Principal = Depends(require_scope("sync"))`. A missing,
malformed, unknown or revoked key is 401; a valid key without the scope is 403. Neither says
more than that, so a caller cannot probe which keys or tenants exist.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gradesync.domain.model import ApiScope
from gradesync.services import log_context
from gradesync.services.auth import Principal, verify_token

__all__ = ["Principal", "current_principal", "require_scope", "scope_checks"]

_bearer = HTTPBearer(auto_error=False, description="A tenant API key: `Bearer gs_...`")


def current_principal(
    request: Request,
    creds: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> Principal:
    """The caller's principal, whatever its scopes (401 when there is none)."""
    token = creds.credentials if creds is not None else request.headers.get("x-api-key")
    # a read only: on SQLite it waits for no writer (every API request checks its key)
    principal = verify_token(request.app.state.runtime.reads, token)
    if principal is None:
        raise HTTPException(
            status_code=401, detail="unauthorized", headers={"WWW-Authenticate": "Bearer"}
        )
    request.state.principal = principal
    log_context.bind(tenant=principal.tenant_id)
    return principal


def require_scope(scope: str | ApiScope, *more: str | ApiScope) -> Callable[..., Principal]:
    """A dependency that admits keys holding `scope` or any of `more` (`admin` implies every
    scope). Usage: `principal: Principal = Depends(require_scope("ingest"))`."""
    wanted = [ApiScope(s) for s in (scope, *more)]
    # the caller holds a valid key: naming the scope it lacks tells it nothing about others
    names = " or ".join(w.value for w in wanted)
    refused = f"forbidden: this needs a key with the {names} scope"
    if ApiScope.ADMIN not in wanted:
        refused += " (admin holds every scope)"

    def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        if not any(principal.allows(w) for w in wanted):
            raise HTTPException(status_code=403, detail=refused)
        return principal

    dependency.__name__ = "require_scope_" + "_or_".join(w.value for w in wanted)
    # how `scope_checks` finds an operation's authorization
    setattr(dependency, _SCOPE_CHECK, tuple(wanted))
    return dependency


_SCOPE_CHECK = "gradesync_scopes"


def scope_checks(dependant: Dependant) -> list[Callable[[Principal], Principal]]:
    """The scope checks (`require_scope`) an operation's dependencies hold, so that the rules
    every operation shares can authorize the caller before anything else of the request: a
    key that may not call the operation learns nothing of its parameters."""
    found: list[Callable[[Principal], Principal]] = []
    for sub in dependant.dependencies:
        if sub.call is not None and hasattr(sub.call, _SCOPE_CHECK):
            found.append(sub.call)
        found += scope_checks(sub)
    return found
