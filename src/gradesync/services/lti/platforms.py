"""Platform registrations as stored: an LMS (issuer + client id) that gradesync is installed
in, kept as a `Destination` of kind lti13_ags in the tenant that owns the courses.
(issuer, client_id) belongs to one tenant: that is how a login from an LMS finds its tenant.
Validating what an admin types is `gradesync.lti.registration`."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime

from gradesync.domain.errors import Conflict, NotFound
from gradesync.domain.model import Destination, DestinationKind
from gradesync.services.ports import UnitOfWork


def is_platform(dest: Destination) -> bool:
    return dest.kind is DestinationKind.LTI13_AGS


def save_platform(
    uow: UnitOfWork,
    dest: Destination,
    now: datetime,
    *,
    replace_existing: bool = False,
    keep: Collection[str] = (),
) -> Destination:
    """Create (or with `replace_existing`, update) a validated registration. Does not
    commit. An update keeps the engine's pause state, and the fields named in `keep` (those
    the caller did not give: `name`, `profile`, `enabled` or a config key such as `tag`) as
    they are stored, so a replace that does not mention them neither lifts a manual pause
    nor resets them; a new registration has the values `dest` holds (the defaults)."""
    tenant_id = dest.tenant_id
    if uow.tenants.get(tenant_id) is None:
        raise NotFound("tenant", tenant_id)
    issuer, client_id = str(dest.config["issuer"]), str(dest.config["client_id"])
    # held to the commit, first: a registration racing this one (the same id, or the same
    # LMS elsewhere) reads what it checks after this one's write (read committed, it saw
    # only what was committed before its check)
    uow.lti_links.lock_issuer(issuer.strip())
    # held to the commit: what an update keeps (the pause, the limits, fields left out) is
    # written back, and read unlocked a change committed meanwhile (PostgreSQL's read
    # committed) was lost
    existing = uow.destinations.get(tenant_id, dest.id, for_update=True)
    taken = f"id: a destination {dest.id!r} already exists in tenant {tenant_id!r}"
    if existing is not None and not replace_existing:
        raise Conflict(taken)
    if existing is not None and not is_platform(existing):
        raise Conflict(
            f"id: destination {dest.id!r} is a {existing.kind.value}, not an LTI 1.3 platform"
        )
    deployments = {str(d) for d in dest.config.get("deployment_ids") or []}
    for other in find_platforms(uow, issuer, client_id):
        if other.tenant_id != tenant_id:
            # An LMS registration (issuer + client id) belongs to one tenant: another tenant
            # could otherwise make this one's logins ambiguous. Which tenant is not said.
            raise Conflict(
                f"client_id: issuer {issuer!r} and client id {client_id!r} are registered "
                "elsewhere on this server; an LMS registration belongs to one tenant (ask the "
                "operator, or register a new client id in the LMS)"
            )
        shared = deployments & {str(d) for d in other.config.get("deployment_ids") or []}
        # One LMS application may serve several departments of a tenant (Blackboard): then
        # each registration owns its own deployments, and logins are told apart by deployment.
        if other.id != dest.id and shared:
            raise Conflict(
                f"deployment_ids: issuer {issuer!r}, client id {client_id!r} and "
                f"deployment(s) {', '.join(sorted(shared))} are already registered as {other.id!r}"
            )
    if existing is not None:
        # what the caller left out, and the rate limit, which no registration carries
        # (`destination_admin.set_limits`)
        kept = {k: existing.config[k] for k in (*keep, "rate_per_second") if k in existing.config}
        dest = replace(
            dest,
            name=existing.name if "name" in keep else dest.name,
            profile=existing.profile if "profile" in keep else dest.profile,
            enabled=existing.enabled if "enabled" in keep else dest.enabled,
            config={**dest.config, **kept},
            paused_until=existing.paused_until,
            pause_reason=existing.pause_reason,
            pause_cause=existing.pause_cause,
        )
        uow.destinations.upsert(dest, now)
    elif not uow.destinations.add(dest, now):
        # made meanwhile by another process (PostgreSQL's read committed: a registration of
        # another issuer, whose lock is not this one's): the row read above was not there
        # and locked nothing. Not written over: refused, or changed as a stored one is
        if not replace_existing:
            raise Conflict(taken)
        return save_platform(uow, dest, now, replace_existing=True, keep=keep)
    return dest


def get_platform(uow: UnitOfWork, tenant_id: str, platform_id: str) -> Destination:
    dest = uow.destinations.get(tenant_id, platform_id)
    if dest is None or not is_platform(dest):
        raise NotFound("platform", platform_id)
    return dest


def list_platforms(uow: UnitOfWork, tenant_id: str) -> list[Destination]:
    return [d for d in uow.destinations.all(tenant_id) if is_platform(d)]


def find_platforms(uow: UnitOfWork, issuer: str, client_id: str | None) -> list[Destination]:
    """Registrations (any tenant) for an issuer, narrowed to a client id when one is given."""
    issuer = issuer.strip()
    out = []
    for dest in uow.destinations.all():
        if not is_platform(dest) or str(dest.config.get("issuer")) != issuer:
            continue
        if client_id is not None and str(dest.config.get("client_id")) != client_id:
            continue
        out.append(dest)
    return out
