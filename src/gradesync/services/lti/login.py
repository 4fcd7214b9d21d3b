"""OIDC login initiation, the stored half: which registration a login names, and the one-time
nonce the launch must carry back.

A login writes nothing: its nonce travels sealed in the login's state (encrypted and
authenticated with gradesync's key, with the login's expiry), so only a nonce gradesync
issued can come back, and the launch records it as used in its own transaction
(`launch.record_launch`), where a second use is refused. A class opening a link at once
then costs the database one write per learner, not two: on SQLite every write waits for
the one writer."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from gradesync.domain.model import Destination
from gradesync.services.lti.errors import LaunchRefused
from gradesync.services.lti.platforms import find_platforms
from gradesync.services.ports import UnitOfWorkFactory

LOGIN_TTL = timedelta(minutes=10)
# Used nonces, kept until their login expires. (Before logins stopped writing, the store
# held issued nonces under "lti_nonce"; a used one has a key of its own so that a login
# issued just before an upgrade still launches once after it.)
NONCE_PURPOSE = "lti_nonce_used"


def nonce_key(nonce: str) -> str:
    """How a used login nonce is kept in the nonce store."""
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


def new_nonce(now: datetime) -> tuple[str, datetime]:
    """A new login nonce and when its login expires. Nothing is stored: the nonce is sealed
    in the login's state."""
    return secrets.token_urlsafe(32), now + LOGIN_TTL
