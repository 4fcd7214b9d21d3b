"""An LTI 1.3 launch that carries the LTI 1.1 migration claim (`lti1p1`).

An LMS that upgrades gradesync from LTI 1.1 to LTI 1.3 keeps the old links and launches them
over LTI 1.3 with the claim. When its `oauth_consumer_key_sign` verifies with the secret of
that LTI 1.1 consumer (registered in the same tenant), the launch is known to come from the
LMS that used to launch us over LTI 1.1, and:

- the learner is the person their LTI 1.1 launches created (`lti1p1.user_id`), not a new
  person named after the LTI 1.3 `sub`;
- the link is the activity the LTI 1.1 link was bound to (same resource link id), so its
  gradebook column is the one the LTI 1.1 grades are in;
- the course's grade history moves (services.lti_migration.migrate_course_from_lti11).

A claim that does not verify changes nothing: the launch is an ordinary LTI 1.3 launch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import Destination, DestinationKind
from gradesync.services.lti_migration import LTI1P1_CLAIM, verify_lti1p1_claim
from gradesync.services.ports import UnitOfWork


@dataclass(frozen=True, slots=True)
class VerifiedLti1p1:
    claim: dict[str, Any]
    consumer: Destination  # the LTI 1.1 consumer the claim proves to be the same LMS
    user_id: str | None


def claim_of(claims: dict[str, Any]) -> dict[str, Any] | None:
    value = claims.get(LTI1P1_CLAIM)
    return value if isinstance(value, dict) else None


def verified_lti1p1(
    uow: UnitOfWork, tenant_id: str, claims: dict[str, Any]
) -> VerifiedLti1p1 | None:
    """The migration claim of a verified id token, if its signature verifies with the LTI
    1.1 consumer it names; else None."""
    claim = claim_of(claims)
    if claim is None:
        return None
    key = claim.get("oauth_consumer_key")
    consumer = next(
        (
            d
            for d in uow.destinations.all(tenant_id)
            if d.kind is DestinationKind.LTI11_OUTCOMES and d.config.get("consumer_key") == key
        ),
        None,
    )
    if consumer is None:
        return None
    secret = str(consumer.secret.get("consumer_secret") or "")
    try:
        if not secret or not verify_lti1p1_claim(claim, claims, secret):
            return None
    except InvalidInput:
        return None  # an incomplete claim proves nothing
    user_id = claim.get("user_id")
    return VerifiedLti1p1(
        claim, consumer, str(user_id) if isinstance(user_id, str | int) and str(user_id) else None
    )


def lti11_activity(
    uow: UnitOfWork, verified: VerifiedLti1p1, course_id: str, resource_link_id: str
) -> str | None:
    """The activity the LTI 1.1 consumer bound to this resource link in this course (LTI
    1.3 keeps resource link ids across the migration)."""
    tenant = verified.consumer.tenant_id
    activities = [a.id for a in uow.activities.for_course(tenant, course_id)]
    if not activities:
        return None
    for activity_id, link in sorted(
        uow.links.items(tenant, verified.consumer.id, activities).items()
    ):
        if link.remote_id == resource_link_id:
            return activity_id
    return None
