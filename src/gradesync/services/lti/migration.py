"""Moving a course from LTI 1.1 to LTI 1.3 without resending its grades.

When an LMS upgrades a tool to LTI 1.3, launches from old LTI 1.1 links arrive as LTI 1.3
launches carrying the migration claim (LTI 1.3 core, "LTI 1.1 migration claim"):

    "https://purl.imsglobal.org/spec/lti/claim/lti1p1": {
        "user_id": "<the LTI 1.1 user_id>", "oauth_consumer_key": "<key>",
        "oauth_consumer_key_sign": base64(HMAC-SHA256(
            key=<LTI 1.1 secret>,
            msg="<oauth_consumer_key>&<deployment_id>&<iss>&<client_id>&<exp>&<nonce>"))}

The signature proves the platform knows the LTI 1.1 secret, i.e. that this LTI 1.3
registration really is the LMS that used to launch us as that consumer. Only then does the
course's grade history move: for each result the LTI 1.1 consumer holds (DELIVERED), the
result the LTI 1.3 destination would be asked to hold is computed with today's facts and its
capabilities; when it is the same grade (the same fraction of the column), the new
destination's ledger row starts DELIVERED, so the engine sends only what differs.
The LTI 1.1 course link is marked `migrated_to`, and the LTI 1.1 adapter refuses to send for
that course from then on: the course has switched destination, its history stays readable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from gradesync.domain.canonical import iso
from gradesync.domain.capabilities import Capabilities
from gradesync.domain.errors import FieldProblem, InvalidInput, NotFound
from gradesync.domain.ledger import desired_from_json, desired_to_json, result_hash
from gradesync.domain.model import (
    Activity,
    Attempt,
    Course,
    CourseLink,
    DeliveryState,
    Destination,
    DestinationKind,
    ItemLink,
    LedgerKey,
    LedgerRow,
    Tenant,
)
from gradesync.domain.policy import (
    DesiredResult,
    NoResult,
    PolicyInput,
    column_for,
    desired_result,
    resolve_settings,
)
from gradesync.services.column_marks import new_look_mark
from gradesync.services.ports import UnitOfWork

log = logging.getLogger(__name__)

LTI1P1_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/lti1p1"
DEPLOYMENT_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/deployment_id"
MIGRATED_KEY = "migrated_to"
SAME_GRADE_TOLERANCE = 1e-6  # policy rounds scores to 6 decimals


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """What a migration did. `migrated` False means nothing changed; `reason` says why."""

    migrated: bool
    course_id: str
    lti11_destination_id: str | None = None
    lti13_destination_id: str | None = None
    lti11_user_id: str | None = None  # the launching person's LTI 1.1 identity (person id)
    carried_over: int = 0  # results the new destination starts with as delivered
    to_send: int = 0  # results that differ or were never delivered: the engine sends them
    already_present: int = 0  # the new destination already had a delivered result
    reason: str | None = None


def consumer_key_signature(
    consumer_key: str,
    consumer_secret: str,
    *,
    deployment_id: str,
    issuer: str,
    client_id: str,
    exp: int | str,
    nonce: str,
) -> str:
    """oauth_consumer_key_sign as the LTI 1.3 migration claim defines it."""
    message = "&".join((consumer_key, deployment_id, issuer, client_id, str(exp), nonce))
    mac = hmac.new(consumer_secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def _client_id(id_token: Mapping[str, Any]) -> str:
    aud = id_token.get("aud")
    if isinstance(aud, str):
        return aud
    if isinstance(aud, list) and aud:
        azp = id_token.get("azp")
        return str(azp) if isinstance(azp, str) and azp else str(aud[0])
    return ""


def _str_field(source: Mapping[str, Any], name: str, path: str) -> str:
    value = source.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise InvalidInput.one(path, "required", f"{path} is required to migrate from LTI 1.1.")
    return value


def verify_lti1p1_claim(
    claim: Mapping[str, Any], id_token: Mapping[str, Any], consumer_secret: str
) -> bool:
    """True when the claim's oauth_consumer_key_sign was made with this secret for this
    very id token (deployment, issuer, client, expiry and nonce are all signed)."""
    expected = consumer_key_signature(
        _str_field(claim, "oauth_consumer_key", "lti1p1.oauth_consumer_key"),
        consumer_secret,
        deployment_id=_str_field(id_token, DEPLOYMENT_CLAIM, "deployment_id"),
        issuer=_str_field(id_token, "iss", "iss"),
        client_id=_client_id(id_token),
        exp=_str_field(id_token, "exp", "exp"),
        nonce=_str_field(id_token, "nonce", "nonce"),
    )
    given = _str_field(claim, "oauth_consumer_key_sign", "lti1p1.oauth_consumer_key_sign")
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii", "replace"))


def _lti11_consumer(uow: UnitOfWork, tenant_id: str, consumer_key: str) -> Destination | None:
    for dest in uow.destinations.all(tenant_id):
        if (
            dest.kind is DestinationKind.LTI11_OUTCOMES
            and dest.config.get("consumer_key") == consumer_key
        ):
            return dest
    return None


def _fraction(result: DesiredResult) -> float | None:
    if result.score_given is None or result.score_maximum <= 0:
        return None
    return result.score_given / result.score_maximum


def _same_grade(old: DesiredResult, new: DesiredResult) -> bool:
    """The LMS column already shows `new`: LTI 1.1 carried only the score as a fraction of
    the column (no comment, no status), so that is all there is to compare."""
    a, b = _fraction(old), _fraction(new)
    if a is None or b is None:
        return False  # excused/cleared results are re-stated through the new destination
    return abs(a - b) <= SAME_GRADE_TOLERANCE


def migrate_course_from_lti11(
    uow: UnitOfWork,
    *,
    tenant_id: str,
    lti13_destination_id: str,
    course_id: str,
    lti1p1_claim: Mapping[str, Any],
    now: datetime,
    id_token: Mapping[str, Any],
    capabilities: Capabilities | None = None,
) -> MigrationResult:
    """Move `course_id`'s LTI 1.1 grade history to the LTI 1.3 destination (no commit: the
    launch handler commits with the launch).

    `id_token` is the verified LTI 1.3 id token's claims (iss, aud/azp, exp, nonce and
    deployment_id are part of the signature). `capabilities` are the LTI 1.3 destination's
    (`client.capabilities`); they decide the form its results take, so the carried-over
    rows hash exactly as the engine will compute them. Without them the domain defaults are
    assumed, and a destination whose capabilities differ simply resends.

    Idempotent: a second launch, at the same time or later, finds the course already moved
    and changes nothing (the LTI 1.1 course link is held until the commit). The LTI 1.3
    ledger rows it finds are held too, in key order: a grade computed for the course
    meanwhile is never written over by the carried one (`_carry_over`).
    Raises InvalidInput when the claim is incomplete; a signature that does not verify
    leaves everything as it was and says so in `reason`."""
    claim = lti1p1_claim
    consumer_key = _str_field(claim, "oauth_consumer_key", "lti1p1.oauth_consumer_key")
    user_id = claim.get("user_id")
    user_id = str(user_id) if isinstance(user_id, str | int) and str(user_id) else None
    base = MigrationResult(
        migrated=False,
        course_id=course_id,
        lti13_destination_id=lti13_destination_id,
        lti11_user_id=user_id,
    )
    target = uow.destinations.get(tenant_id, lti13_destination_id)
    if target is None:
        raise NotFound("destination", lti13_destination_id)
    if target.kind is not DestinationKind.LTI13_AGS:
        raise InvalidInput(
            [
                FieldProblem(
                    "lti13_destination_id",
                    "kind",
                    f"{lti13_destination_id!r} is a {target.kind.value} destination, "
                    "not an LTI 1.3 platform.",
                )
            ]
        )
    source = _lti11_consumer(uow, tenant_id, consumer_key)
    if source is None:
        return replace(base, reason=f"no LTI 1.1 consumer with key {consumer_key!r} in this tenant")
    base = replace(base, lti11_destination_id=source.id)
    secret = str(source.secret.get("consumer_secret") or "")
    if not secret or not verify_lti1p1_claim(claim, id_token, secret):
        log.warning(
            "LTI 1.1 migration refused: oauth_consumer_key_sign does not verify for consumer "
            "%s/%s (course %s)",
            tenant_id,
            source.id,
            course_id,
        )
        return replace(
            base,
            reason="oauth_consumer_key_sign does not verify with the LTI 1.1 consumer's secret",
        )
    # held to the commit, taken after the LTI 1.3 course link a launch holds: read unlocked,
    # two moves at once through two LTI 1.3 registrations (or callers not holding that link)
    # each found it unmoved on PostgreSQL, both carried the grades over and answered "moved
    # here" while the link named the last to write; an LTI 1.1 launch's data was written over
    link = uow.links.course(tenant_id, source.id, course_id, for_update=True)
    if link is None:
        return replace(base, reason="the course was never launched over LTI 1.1")
    if link.data.get(MIGRATED_KEY):
        return replace(
            base,
            migrated=link.data[MIGRATED_KEY] == lti13_destination_id,
            reason=f"already moved to {link.data[MIGRATED_KEY]!r}",
        )

    caps = capabilities or Capabilities()
    linked = _keep_lti11_links(uow, tenant_id, source.id, lti13_destination_id, course_id)
    carried, to_send, present = _carry_over(
        uow, tenant_id, source.id, lti13_destination_id, course_id, caps, now, linked
    )
    data = dict(link.data)
    data[MIGRATED_KEY] = lti13_destination_id
    data["migrated_at"] = iso(now)
    uow.links.save_course(
        CourseLink(link.tenant_id, link.destination_id, link.course_id, link.remote_id, data)
    )
    log.info(
        "course %s/%s moved from LTI 1.1 consumer %s to %s: %d carried over, %d to send",
        tenant_id,
        course_id,
        source.id,
        lti13_destination_id,
        carried,
        to_send,
    )
    return replace(
        base, migrated=True, carried_over=carried, to_send=to_send, already_present=present
    )


def _desired(
    uow: UnitOfWork,
    tenant: Tenant,
    course: Course,
    activity: Activity,
    key: LedgerKey,
    attempts: Mapping[tuple[str, str], list[Attempt]],
    caps: Capabilities,
    now: datetime,
) -> DesiredResult | None:
    """The result the new destination will be asked to hold, computed as the engine does
    (policy layers, column rules, then the learner's result); None when it holds none."""
    try:
        policy = resolve_settings(tenant.policy, course.policy, activity.policy)
    except InvalidInput:
        return None
    if isinstance(column_for(activity, policy, caps), NoResult):
        return None
    outcome = desired_result(
        PolicyInput(
            policy=policy,
            course=course,
            activity=activity,
            enrollment=uow.enrollments.get(key.tenant_id, course.id, key.person_id),
            attempts=attempts.get((key.activity_id, key.person_id), []),
            due_override=uow.overrides.get(key.tenant_id, key.activity_id, key.person_id),
            capabilities=caps,
            now=now,
        )
    )
    return outcome if isinstance(outcome, DesiredResult) else None


def _keep_lti11_links(
    uow: UnitOfWork, tenant_id: str, source_id: str, target_id: str, course_id: str
) -> set[str]:
    """Tie each LTI 1.1-linked activity's LTI 1.3 column to its LTI 1.1 resource link (the
    LMS keeps resource link ids across the migration), so the column looked up is the one
    the LMS already shows the LTI 1.1 grades in, even before the link is launched over LTI
    1.3. An activity whose LTI 1.3 column already has a link keeps it. Returns the
    activities tied so (their grades are in that column)."""
    activities = [a.id for a in uow.activities.for_course(tenant_id, course_id)]
    if not activities:
        return set()
    old = uow.links.items(tenant_id, source_id, activities)
    new = uow.links.items(tenant_id, target_id, activities)
    tied: set[str] = set()
    for activity_id, link in old.items():
        if not link.remote_id:
            continue
        mine = new.get(activity_id)
        if mine is not None and mine.data.get("resourceLinkId"):
            if mine.data["resourceLinkId"] == link.remote_id:
                tied.add(activity_id)
            continue
        data = dict(mine.data) if mine is not None else {}
        data["resourceLinkId"] = link.remote_id
        uow.links.save_item(
            replace(mine, details_hash=new_look_mark(), data=data)
            if mine is not None
            else ItemLink(tenant_id, target_id, activity_id, "", None, data)
        )
        tied.add(activity_id)
    return tied


def _carry_over(
    uow: UnitOfWork,
    tenant_id: str,
    source_id: str,
    target_id: str,
    course_id: str,
    caps: Capabilities,
    now: datetime,
    linked: set[str],
) -> tuple[int, int, int]:
    course = uow.courses.get(tenant_id, course_id)
    tenant = uow.tenants.get(tenant_id)
    if course is None or tenant is None:
        return 0, 0, 0
    carried = to_send = present = 0
    activities: dict[str, Activity] = {}
    # inserted once every batch's rows are held: an insert waits for a row computing is
    # making, and computing (holding a row of a later batch, locked in key order) may wait
    # for this one; every lock taken before any insert, as computing takes them, cannot
    new_rows: list[tuple[LedgerRow, str]] = []
    for batch in uow.ledger.iter_scope(tenant_id, source_id, course_id):
        wanted = {r.key.activity_id for r in batch} - activities.keys()
        activities.update(uow.activities.get_many(tenant_id, wanted))
        # the new destination's rows held (in key order, as computing locks them) before
        # the facts are read: unheld, a grade computed from newer facts and committed in
        # between (a course that already synced here) was written over as delivered with
        # the older grade, and never sent. Computing waits for a row found, then recomputes
        # over it; one not found is only inserted, so a row computed meanwhile stays
        existing = uow.ledger.get_keys(
            [LedgerKey(tenant_id, target_id, r.key.activity_id, r.key.person_id) for r in batch],
            lock=True,
        )
        attempts = uow.attempts.for_activities(
            tenant_id, sorted({r.key.activity_id for r in batch})
        )
        replacing: list[tuple[LedgerRow, str]] = []
        for row in batch:
            key = row.key
            there = LedgerKey(tenant_id, target_id, key.activity_id, key.person_id)
            mine = existing.get(there)
            if mine is not None and mine.delivered_hash is not None:
                present += 1
                continue
            held = (
                row.state is DeliveryState.DELIVERED
                and row.delivered_hash is not None
                and row.delivered_hash == row.desired_hash
                and row.desired is not None
            )
            activity = activities.get(key.activity_id)
            # only into the column of the grade's own LTI 1.1 link: any other column would
            # be marked as holding a grade the LMS does not show there
            if not held or activity is None or key.activity_id not in linked:
                to_send += int(row.state is not DeliveryState.SKIPPED)
                continue
            outcome = _desired(uow, tenant, course, activity, key, attempts, caps, now)
            assert row.desired is not None
            if outcome is None or not _same_grade(desired_from_json(row.desired), outcome):
                to_send += 1
                continue
            digest = result_hash(outcome)
            (new_rows if mine is None else replacing).append(
                (
                    LedgerRow(
                        key=there,
                        state=DeliveryState.DELIVERED,
                        desired_hash=digest,
                        desired=desired_to_json(outcome),
                        delivered_hash=digest,
                        delivered_at=row.delivered_at or now,
                        remote_message=f"carried over from LTI 1.1 consumer {source_id!r}",
                        updated_at=now,
                    ),
                    course_id,
                )
            )
        uow.ledger.save_many(replacing)
        carried += len(replacing)
    inserted = len(uow.ledger.insert_new(new_rows))
    carried += inserted
    to_send += len(new_rows) - inserted
    return carried, to_send, present


# --- an LTI 1.3 launch carrying the migration claim ----------------------------------------
#
# An LMS that upgrades gradesync from LTI 1.1 to LTI 1.3 keeps the old links and launches them
# over LTI 1.3 with the claim. When its `oauth_consumer_key_sign` verifies with the secret of
# that LTI 1.1 consumer (registered in the same tenant), the launch is known to come from the
# LMS that used to launch us over LTI 1.1, and: the learner is the person their LTI 1.1
# launches created (`lti1p1.user_id`), not a new person named after the LTI 1.3 `sub`; the
# link is the activity the LTI 1.1 link was bound to (same resource link id), so its gradebook
# column is the one the LTI 1.1 grades are in; and the course's grade history moves
# (`migrate_course_from_lti11`). A claim that does not verify changes nothing: the launch is an
# ordinary LTI 1.3 launch.


@dataclass(frozen=True, slots=True)
class VerifiedLti1p1:
    claim: dict[str, Any]
    consumer: Destination  # the LTI 1.1 consumer the claim proves to be the same LMS
    user_id: str | None


def claim_of(claims: Mapping[str, Any]) -> dict[str, Any] | None:
    value = claims.get(LTI1P1_CLAIM)
    return value if isinstance(value, dict) else None


def verified_lti1p1(
    uow: UnitOfWork, tenant_id: str, claims: Mapping[str, Any]
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


def migrate_on_launch(
    uow: UnitOfWork,
    platform: Destination,
    course_id: str,
    id_token: Mapping[str, Any],
    now: datetime,
    capabilities: Capabilities | None,
) -> dict[str, Any]:
    """Move the course's LTI 1.1 grade history to this platform, in the launch's
    transaction. Never refuses the launch: the result says what happened."""
    try:
        result = migrate_course_from_lti11(
            uow,
            tenant_id=platform.tenant_id,
            lti13_destination_id=platform.id,
            course_id=course_id,
            lti1p1_claim=claim_of(id_token) or {},
            now=now,
            id_token=id_token,
            capabilities=capabilities,
        )
    except (InvalidInput, NotFound) as exc:
        log.warning("LTI 1.1 migration claim not usable (course %s): %s", course_id, exc)
        return {"migrated": False, "course_id": course_id, "reason": str(exc)}
    return asdict(result)
