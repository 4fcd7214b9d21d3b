"""Diagnostics: gather the facts about a grade (or an activity, a course, a destination)
through the unit of work and run the pure diagnosis rules over them.

Diagnostics read facts; they never guess and never change anything. Public functions:

- `diagnose_learner_activity(...)`: every check for one learner and one activity;
- `diagnose_activity(...)`: the activity's own checks and its learners' states, per destination;
- `diagnose_course(...)`: the course sorted by symptom (`CourseTriage`);
- `diagnose_destination(...)`: a destination's settings, launches, failures and, given a
  client, its own live check (async).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

from gradesync.domain.capabilities import Capabilities
from gradesync.domain.diagnosis import (
    ActivityDestinationFacts,
    ActivityFacts,
    DeliveryFact,
    DestinationDiagnosisFacts,
    DestinationFacts,
    DestinationQueue,
    Diagnosis,
    KeyState,
    LaunchFact,
    LearnerActivityFacts,
    OtherAccount,
    ProbeStep,
)
from gradesync.domain.diagnosis import (
    diagnose_activity as _activity_rules,
)
from gradesync.domain.diagnosis import (
    diagnose_destination as _destination_rules,
)
from gradesync.domain.diagnosis import (
    diagnose_learner_activity as _learner_rules,
)
from gradesync.domain.errors import NotFound
from gradesync.domain.model import (
    SIS_KINDS,
    Activity,
    Course,
    CourseLink,
    DeliveryState,
    Destination,
    LedgerKey,
    LedgerRow,
    Person,
    Role,
    Tenant,
)
from gradesync.domain.policy import ResolvedPolicy, activity_policy
from gradesync.domain.reasons import Reason
from gradesync.domain.triage import CourseDestinationFacts, CourseFacts, CourseTriage, triage_course
from gradesync.services.clock import Clock
from gradesync.services.destination import CapabilitiesLookup, DestinationClient, RemoteFailure
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory
from gradesync.services.queue_facts import destination_queue

REJECTIONS_WINDOW = timedelta(days=30)  # refused launches older than this are history
_NOT_LAUNCHED = {"no_person_link", "never_launched", "unknown_user"}


def _default_caps(_: Destination) -> Capabilities | Reason:
    return Capabilities()


def _policy(tenant: Tenant, course: Course, activity: Activity) -> ResolvedPolicy | Reason:
    return activity_policy((tenant.policy, course.policy), activity)


def _load(uow: UnitOfWork, tenant_id: str, activity_id: str) -> tuple[Tenant, Course, Activity]:
    tenant = uow.tenants.get(tenant_id)
    if tenant is None:
        raise NotFound("tenant", tenant_id)
    activity = uow.activities.get(tenant_id, activity_id)
    if activity is None:
        raise NotFound("activity", activity_id)
    course = uow.courses.get(tenant_id, activity.course_id)
    if course is None:
        raise NotFound("course", activity.course_id)
    return tenant, course, activity


def _destinations(
    uow: UnitOfWork, tenant_id: str, course_id: str, destination_id: str | None
) -> list[tuple[Destination, CourseLink | None]]:
    """The destinations a course syncs to (or the one asked for). A course linked nowhere
    is diagnosed against every destination of the tenant, so the checks say it is not
    connected rather than saying nothing."""
    if destination_id is not None:
        d = uow.destinations.get(tenant_id, destination_id)
        if d is None:
            raise NotFound("destination", destination_id)
        return [(d, uow.links.course(tenant_id, d.id, course_id))]
    links = sorted(
        uow.links.destinations_for_course(tenant_id, course_id), key=lambda lk: lk.destination_id
    )
    # the linked destinations in one statement, not one each
    found = uow.destinations.get_many(tenant_id, [lk.destination_id for lk in links])
    out: list[tuple[Destination, CourseLink | None]] = [
        (found[lk.destination_id], lk) for lk in links if lk.destination_id in found
    ]
    if not out:
        out = [(d, None) for d in uow.destinations.all(tenant_id)]
    return out


def _full_name(person: Person) -> bool:
    return " " in person.name.strip()  # a bare first name matches too many


def _others(
    uow: UnitOfWork, tenant_id: str, people: Sequence[Person]
) -> dict[str, dict[str, tuple[Person, str]]]:
    """Per person, the other person records with the same email (or the same full name)
    and which of them matched, searched in one statement for all of `people`: a course's
    triage asks for every learner whose grade is not delivered."""
    by_email, by_name = uow.people.find_many(
        tenant_id,
        emails=[p.email for p in people if p.email],
        names=[p.name for p in people if _full_name(p)],
    )
    out: dict[str, dict[str, tuple[Person, str]]] = {}
    for person in people:
        found: dict[str, tuple[Person, str]] = {}
        if person.email:
            for p in by_email.get(person.email.lower(), ()):
                found.setdefault(p.id, (p, "email"))
        if _full_name(person):
            for p in by_name.get(person.name.lower(), ()):
                found.setdefault(p.id, (p, "name"))
        found.pop(person.id, None)
        if found:
            out[person.id] = found
    return out


def _duplicates(
    uow: UnitOfWork,
    tenant_id: str,
    course_id: str,
    activity_ids: Sequence[str],
    others: dict[str, dict[str, tuple[Person, str]]],
) -> dict[str, tuple[OtherAccount, ...]]:
    """Per person, their other accounts (`_others`) with what each did in the course: its
    attempts, enrollment and launches read for all of them at once, not per account."""
    ids = sorted({pid for found in others.values() for pid in found})
    attempts = uow.attempts.for_pairs(tenant_id, [(a, pid) for a in activity_ids for pid in ids])
    enrolled = uow.enrollments.for_pairs(tenant_id, [(course_id, pid) for pid in ids])
    launched = uow.launches.launched_in(tenant_id, course_id, ids) if ids else set()
    return {
        person_id: tuple(
            OtherAccount(
                person=p,
                matched_on=matched,
                attempts_here=sum(len(attempts.get((a, pid), ())) for a in activity_ids),
                enrolled_here=(course_id, pid) in enrolled,
                launched_here=pid in launched,
            )
            for pid, (p, matched) in sorted(found.items())
        )
        for person_id, found in others.items()
    }


def _deliveries(uow: UnitOfWork, key: LedgerKey, limit: int = 10) -> tuple[DeliveryFact, ...]:
    out = []
    for e in uow.deliveries.for_key(key, limit):
        payload = e.get("payload")
        out.append(
            DeliveryFact(
                sent_at=e["sent_at"],
                outcome=str(e["outcome"]),
                remote_status=e.get("remote_status"),
                remote_message=e.get("remote_message"),
                payload=payload if isinstance(payload, dict) else None,
                run_id=e.get("run_id"),
            )
        )
    return tuple(out)


# --- one learner, one activity -------------------------------------------------------------


def learner_activity_facts(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    tenant_id: str,
    person_id: str,
    activity_id: str,
    destination_id: str | None = None,
    *,
    capabilities: CapabilitiesLookup = _default_caps,
) -> LearnerActivityFacts:
    with uow_factory() as uow:
        tenant, course, activity = _load(uow, tenant_id, activity_id)
        person = uow.people.get(tenant_id, person_id)
        if person is None:
            raise NotFound("person", person_id)
        dests = _destinations(uow, tenant_id, course.id, destination_id)
        launches = uow.launches.for_person(tenant_id, person_id, limit=200)
        facts: list[DestinationFacts] = []
        now = clock.now()
        for d, course_link in dests:
            key = LedgerKey(tenant_id, d.id, activity_id, person_id)
            ledger = uow.ledger.get(key)
            waits = ledger is not None and ledger.state is DeliveryState.PENDING
            facts.append(
                DestinationFacts(
                    destination=d,
                    capabilities=capabilities(d),
                    course_link=course_link,
                    item_link=uow.links.item(tenant_id, d.id, activity_id),
                    person_link=uow.links.person(tenant_id, d.id, person_id, course.id),
                    hand_picked=d.kind in SIS_KINDS
                    and any(
                        x.course_id is None
                        for x in uow.links.person_links(tenant_id, d.id, person_id)
                    ),
                    launches=tuple(x for x in launches if x.destination_id == d.id),
                    ledger=ledger,
                    deliveries=_deliveries(uow, key),
                    queue=destination_queue(uow, tenant_id, d.id, course.id, now)
                    if waits
                    else DestinationQueue(),
                )
            )
        shown = {d.id for d, _ in dests}
        return LearnerActivityFacts(
            now=now,
            course=course,
            activity=activity,
            person=person,
            enrollment=uow.enrollments.get(tenant_id, course.id, person_id),
            attempts=tuple(uow.attempts.for_key(tenant_id, activity_id, person_id)),
            due_override=uow.overrides.get(tenant_id, activity_id, person_id),
            policy=_policy(tenant, course, activity),
            duplicates=_duplicates(
                uow, tenant_id, course.id, [activity_id], _others(uow, tenant_id, [person])
            ).get(person.id, ()),
            destinations=tuple(facts),
            other_launches=tuple(x for x in launches if x.destination_id not in shown),
        )


def diagnose_learner_activity(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    tenant_id: str,
    person_id: str,
    activity_id: str,
    destination_id: str | None = None,
    *,
    capabilities: CapabilitiesLookup = _default_caps,
) -> Diagnosis:
    """Why this learner's grade for this activity is where it is: ordered checks, each with
    evidence and a remedy. Raises NotFound for an unknown tenant, person, activity or
    destination."""
    return _learner_rules(
        learner_activity_facts(
            uow_factory,
            clock,
            tenant_id,
            person_id,
            activity_id,
            destination_id,
            capabilities=capabilities,
        )
    )


# --- one activity --------------------------------------------------------------------------


def _key_state(r: LedgerRow) -> KeyState:
    return KeyState(
        r.key.destination_id,
        r.key.activity_id,
        r.key.person_id,
        r.state,
        r.reason_code,
        r.reason_text,
        r.tries,
        r.next_attempt_at,
        r.remote_status,
        r.remote_message,
    )


def diagnose_activity(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    tenant_id: str,
    activity_id: str,
    destination_id: str | None = None,
    *,
    capabilities: CapabilitiesLookup = _default_caps,
) -> Diagnosis:
    """The activity's checks and, per destination, its learners' delivery states."""
    with uow_factory() as uow:
        tenant, course, activity = _load(uow, tenant_id, activity_id)
        learners = sum(
            1 for e in uow.enrollments.for_course(tenant_id, course.id) if e.role is Role.LEARNER
        )
        out: list[ActivityDestinationFacts] = []
        for d, link in _destinations(uow, tenant_id, course.id, destination_id):
            rows = uow.ledger.get_many(tenant_id, d.id, course.id, [activity_id])
            out.append(
                ActivityDestinationFacts(
                    destination=d,
                    capabilities=capabilities(d),
                    course_link=link,
                    item_link=uow.links.item(tenant_id, d.id, activity_id),
                    rows=tuple(_key_state(r) for _, r in sorted(rows.items())),
                )
            )
        facts = ActivityFacts(
            now=clock.now(),
            course=course,
            activity=activity,
            policy=_policy(tenant, course, activity),
            learners=learners,
            destinations=tuple(out),
        )
    return _activity_rules(facts)


# --- one course ----------------------------------------------------------------------------


def diagnose_course(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    tenant_id: str,
    course_id: str,
    destination_id: str | None = None,
    *,
    capabilities: CapabilitiesLookup = _default_caps,
) -> CourseTriage:
    """The course sorted by symptom: nothing syncing, some activities, some
    learners, each cause with the activities and learners it affects."""
    now = clock.now()
    with uow_factory() as uow:
        tenant = uow.tenants.get(tenant_id)
        if tenant is None:
            raise NotFound("tenant", tenant_id)
        course = uow.courses.get(tenant_id, course_id)
        if course is None:
            raise NotFound("course", course_id)
        activities = uow.activities.for_course(tenant_id, course_id)
        policy = {a.id: _policy(tenant, course, a) for a in activities}
        dests: list[CourseDestinationFacts] = []
        rows: list[KeyState] = []
        elsewhere: dict[tuple[str, str], tuple[LaunchFact, ...]] = {}
        suspects: set[str] = set()
        for d, link in _destinations(uow, tenant_id, course_id, destination_id):
            dests.append(
                CourseDestinationFacts(
                    destination=d,
                    capabilities=capabilities(d),
                    course_link=link,
                    item_links=uow.links.items(tenant_id, d.id, [a.id for a in activities]),
                    rejections=tuple(
                        uow.launches.rejections(
                            tenant_id,
                            d.id,
                            issuer=str(d.config.get("issuer") or "") or None,
                            client_id=str(d.config.get("client_id") or "") or None,
                            since=now - REJECTIONS_WINDOW,
                        )
                    ),
                )
            )
            not_launched: set[str] = set()
            if link is not None:
                for batch in uow.ledger.iter_scope(tenant_id, d.id, course_id):
                    for r in batch:
                        rows.append(_key_state(r))
                        if r.reason_code in _NOT_LAUNCHED:
                            not_launched.add(r.key.person_id)
                        if r.state is not DeliveryState.DELIVERED:
                            suspects.add(r.key.person_id)
            for pid, facts in uow.launches.for_people(tenant_id, d.id, not_launched).items():
                other = tuple(x for x in facts if x.course_id != course_id)
                if other and not any(x.course_id == course_id for x in facts):
                    elsewhere[(d.id, pid)] = other
        people = uow.people.get_many(tenant_id, sorted(suspects))
        others = _others(uow, tenant_id, [people[pid] for pid in sorted(people)])
        duplicates = _duplicates(uow, tenant_id, course_id, [a.id for a in activities], others)
    return triage_course(
        CourseFacts(
            now=now,
            course=course,
            activities=tuple(activities),
            policy=policy,
            destinations=tuple(dests),
            rows=tuple(rows),
            launched_elsewhere=elsewhere,
            duplicates=duplicates,
            sis_ids={pid: pe.sis_id for pid, pe in people.items()},
        )
    )


# --- one destination -----------------------------------------------------------------------


def destination_facts(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    tenant_id: str,
    destination_id: str,
    *,
    capabilities: CapabilitiesLookup = _default_caps,
    probe: Sequence[ProbeStep] = (),
) -> DestinationDiagnosisFacts:
    now = clock.now()
    with uow_factory() as uow:
        d = uow.destinations.get(tenant_id, destination_id)
        if d is None:
            raise NotFound("destination", destination_id)
        launches, last_launch = uow.launches.summary(tenant_id, d.id)
        rejections = uow.launches.rejections(
            tenant_id,
            d.id,
            issuer=str(d.config.get("issuer") or "") or None,
            client_id=str(d.config.get("client_id") or "") or None,
            since=now - REJECTIONS_WINDOW,
        )
        failures: dict[str, int] = {}
        delivered = 0
        for state, reason, _, n in uow.ledger.scope_summary(tenant_id, destination_id=d.id):
            if state == DeliveryState.DELIVERED.value:
                delivered += n
            elif state in (DeliveryState.REJECTED.value, DeliveryState.RETRYING.value):
                code = reason or state
                failures[code] = failures.get(code, 0) + n
        courses = len(uow.links.courses_for_destination(tenant_id, d.id))
        waiting = uow.ledger.waiting_at(tenant_id, d.id)
    return DestinationDiagnosisFacts(
        now=now,
        destination=d,
        capabilities=capabilities(d),
        courses=courses,
        launches=launches,
        last_launch_at=last_launch,
        rejections=tuple(rejections),
        failures=failures,
        delivered=delivered,
        last_delivery=None,
        probe=tuple(probe),
        waiting=waiting,
    )


def unreachable(exc: BaseException) -> ProbeStep:
    """A destination's check that could not run, in words."""
    if isinstance(exc, RemoteFailure):
        return ProbeStep(
            "Reach the destination", False, exc.message, exc.remedy, code=exc.code, fix=exc.fix
        )
    return ProbeStep(
        "Reach the destination",
        False,
        f"{type(exc).__name__}: {exc}",
        "Check the destination's URLs and that this server can reach it.",
        code="unreachable",
    )


async def probe(client: DestinationClient) -> list[ProbeStep]:
    """The destination's own check (credentials, token, scopes), failures in words."""
    try:
        steps = await client.check()
    except Exception as exc:  # a check answers in words, whatever went wrong
        return [unreachable(exc)]
    return list(steps)


async def diagnose_destination(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    tenant_id: str,
    destination_id: str,
    *,
    client: DestinationClient | None = None,
    capabilities: CapabilitiesLookup = _default_caps,
) -> Diagnosis:
    """A destination's settings, refused launches (deployment problems), failures by cause
    and, with `client`, its live check (token, scopes)."""
    steps: list[ProbeStep] = []
    if client is not None:
        steps = await probe(client)
    facts = await asyncio.to_thread(
        destination_facts,
        uow_factory,
        clock,
        tenant_id,
        destination_id,
        capabilities=capabilities,
        probe=steps,
    )
    return _destination_rules(facts)
