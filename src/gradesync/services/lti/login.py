"""OIDC login initiation, the stored half: which registration a login names, and the one-time
nonce the launch must carry back (kept in the nonce store until the login expires)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from gradesync.domain.model import Destination
from gradesync.services.lti.errors import LaunchRefused
from gradesync.services.lti.platforms import find_platforms
from gradesync.services.ports import UnitOfWorkFactory

LOGIN_TTL = timedelta(minutes=10)
NONCE_PURPOSE = "lti_nonce"


def nonce_key(nonce: str) -> str:
    """How a login's nonce is kept in the nonce store."""
    return f"{NONCE_PURPOSE}:{nonce}"


def login_platform(
    uow: UnitOfWorkFactory, issuer: str, client_id: str | None, deployment_id: str | None
) -> Destination:
    """The registration a login initiation names: known, unambiguous, enabled, and knowing
    the deployment when one is named. Raises LaunchRefused."""
    who: dict[str, Any] = {"issuer": issuer, "client_id": client_id, "deployment_id": deployment_id}
    with uow() as u:
        candidates = find_platforms(u, issuer, client_id)
    if not candidates:
        raise LaunchRefused(
            "unknown_platform",
            f"iss/client_id: no platform is registered with issuer {issuer!r}"
            + (f" and client id {client_id!r}" if client_id else ""),
            status=400,
            **who,
        )
    if len(candidates) > 1 and deployment_id is not None:
        candidates = [
            d for d in candidates if deployment_id in (d.config.get("deployment_ids") or [])
        ] or candidates
    if len(candidates) > 1:
        raise LaunchRefused(
            "ambiguous_platform",
            f"client_id: several registrations share issuer {issuer!r}; the platform must send "
            "client_id (and lti_deployment_id) in the login initiation",
            **who,
        )
    platform = candidates[0]
    who.update(tenant_id=platform.tenant_id, destination_id=platform.id)
    if not platform.enabled:
        raise LaunchRefused(
            "platform_disabled", "this platform registration is disabled", status=403, **who
        )
    deployments = [str(d) for d in platform.config.get("deployment_ids") or []]
    if deployment_id is not None and deployment_id not in deployments:
        raise LaunchRefused(
            "unknown_deployment",
            f"lti_deployment_id: {deployment_id!r} is not a registered deployment of this "
            f"platform (registered: {', '.join(deployments)})",
            status=403,
            **who,
        )
    return platform


def issue_nonce(uow: UnitOfWorkFactory, now: datetime) -> tuple[str, datetime]:
    """A new login nonce, stored until the login expires: (nonce, expiry). Expired nonces
    go as we pass (a small table)."""
    nonce = secrets.token_urlsafe(32)
    expires = now + LOGIN_TTL
    with uow() as u:
        u.nonces.add(nonce_key(nonce), NONCE_PURPOSE, expires, now)
        u.nonces.purge(now)
        u.commit()
    return nonce, expires
