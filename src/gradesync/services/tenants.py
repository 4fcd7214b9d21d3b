"""Tenants: each school, vendor or customer whose data is kept apart from every other's."""

from __future__ import annotations

import re
from dataclasses import replace

from gradesync.domain.errors import Conflict, InvalidInput, NotFound
from gradesync.domain.model import RosterMatch, Tenant
from gradesync.services.clock import Clock
from gradesync.services.ports import UnitOfWorkFactory

_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def create_tenant(
    uow_factory: UnitOfWorkFactory, clock: Clock, tenant_id: str, name: str
) -> Tenant:
    """Create a tenant. Ids are short lowercase slugs (they appear in URLs and logs)."""
    if not _ID.match(tenant_id):
        raise InvalidInput.one(
            "id",
            "slug",
            "A tenant id is 1-63 characters: lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
        )
    name = name.strip() or tenant_id
    tenant = Tenant(id=tenant_id, name=name, created_at=clock.now())
    with uow_factory() as uow:
        # the insert decides, not the read before it: one made meanwhile by another process
        # (PostgreSQL's read committed) is not written over, and this create is refused
        if uow.tenants.get(tenant_id) is not None or not uow.tenants.add(tenant, clock.now()):
            raise Conflict(f"tenant {tenant_id!r} already exists")
        uow.commit()
    return tenant


def list_tenants(uow_factory: UnitOfWorkFactory) -> list[Tenant]:
    with uow_factory() as uow:
        return uow.tenants.all()


def roster_match(uow_factory: UnitOfWorkFactory, tenant_id: str) -> RosterMatch:
    """How the tenant's LMS rosters match learners who never launched (SIS id unless set)."""
    with uow_factory() as uow:
        tenant = uow.tenants.get(tenant_id)
    if tenant is None:
        raise NotFound("tenant", tenant_id)
    return tenant.policy.roster_match or RosterMatch.SIS_ID


def set_roster_match(
    uow_factory: UnitOfWorkFactory, clock: Clock, tenant_id: str, key: str | None
) -> Tenant:
    """How the tenant's LMS rosters (NRPS) match courseware learners who never launched
    (`gradesync tenants roster-match`, `PATCH /tenant/policy`, the console's Grade policy
    page); None clears it, back to the default (SIS id)."""
    try:
        match = RosterMatch(key) if key is not None else None
    except ValueError:
        raise InvalidInput.one(
            "roster_match",
            "one_of",
            f"roster_match must be one of {', '.join(m.value for m in RosterMatch)}.",
        ) from None
    with uow_factory() as uow:
        # held to the commit: the policy is written whole, so a grade default changed
        # meanwhile is read first, not lost
        tenant = uow.tenants.get(tenant_id, for_update=True)
        if tenant is None:
            raise NotFound("tenant", tenant_id)
        tenant = replace(tenant, policy=replace(tenant.policy, roster_match=match))
        uow.tenants.upsert(tenant, clock.now())
        uow.commit()
    return tenant
