"""SIS grade passback (OneRoster 1.2): connection set-up, class and student mapping, category
alignment, the per-activity "Sync to SIS" selection, validation and "Post grades".

Where things are kept (no table of our own, see docs/oneroster.md):
- the connection is a Destination of kind oneroster_rest (config: URLs, scopes, profile
  knobs, category_map; secret: client_secret);
- course -> SIS class is the CourseLink (data: school, term dates, sections, category_map);
- person -> SIS student is a PersonLink (per course when the learner's section is its own
  SIS class);
- "Sync to SIS" is ItemLink.data["sync_to_sis"]: the link of an activity at this destination
  exists once it was selected, and keeps its stable line item sourcedId when unselected.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Protocol
from urllib.parse import urlsplit

from gradesync.domain.errors import FieldProblem, InvalidInput, NotFound
from gradesync.domain.model import (
    Activity,
    CourseLink,
    DeliveryState,
    Destination,
    DestinationKind,
    ItemLink,
    PersonLink,
    Role,
    RunScope,
    SyncRun,
    Trigger,
)
from gradesync.domain.passback import (
    PassbackRule,
    Term,
    line_item_sourced_id,
    passback_problems,
    profile_from_config,
)
from gradesync.domain.policy import resolve_settings
from gradesync.services.clock import Clock, SystemClock
from gradesync.services.destination import CheckStep, RemoteFailure
from gradesync.services.outbound import REMEDY, OutboundGuard
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory
from gradesync.services.runs import request_run
from gradesync.services.wakeup import Waker

SIS_KINDS = (DestinationKind.ONEROSTER_REST, DestinationKind.ONEROSTER_CSV)
SCOPE_PREFIX = "https://purl.imsglobal.org/spec/or/v1p2/scope/"
DEFAULT_SCOPES = (SCOPE_PREFIX + "gradebook.readonly", SCOPE_PREFIX + "gradebook.createput")
PROFILE_KEYS = (
    "name_max_length",
    "due_date_required",
    "due_date_inside_term",
    "may_create_categories",
    "category_match",
    "default_category",
    "concurrency",
)
# Refusals of a whole column: once the admin fixes the cause, the learners' rows are sent again.
COLUMN_RULES = frozenset(r.value for r in PassbackRule)


class SisDirectory(Protocol):
    """What the services need from a live SIS (the OneRoster adapter implements it)."""

    async def check(self) -> Sequence[CheckStep]: ...

    async def categories(self, *, refresh: bool = False) -> list[dict[str, Any]]: ...

    async def resolve_category(
        self, course: CourseLink, group: str | None, *, create: bool = True
    ) -> str: ...


# --- connection ----------------------------------------------------------------------------


def _url_problem(name: str, value: str | None, guard: OutboundGuard | None) -> FieldProblem | None:
    if value is None:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return FieldProblem(name, "url", f"{name} must be an absolute http(s) URL.")
    why = guard.url_problem(value) if guard is not None else None
    if why is not None:
        return FieldProblem(name, "address", f"{name}: {value!r} is refused: {why}. {REMEDY}")
    return None


def add_connection(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    *,
    tenant_id: str,
    destination_id: str,
    name: str | None,
    base_url: str | None,
    client_id: str | None = None,
    client_secret: str | None = None,
    token_url: str | None = None,
    scopes: Sequence[str] | None = None,
    profile: dict[str, Any] | None = None,
    file_based: bool | None = None,
    guard: OutboundGuard | None = None,
) -> Destination:
    """Create or update a SIS connection. On update, a value left out (None) keeps what was
    set (so rotating the secret does not forget the profile, the name or the kind), and
    nothing changes on bad input. A new connection is named after its id and uses REST
    unless told otherwise. Every entrypoint passes the runtime's outbound `guard`: the URLs
    must lead where gradesync may send requests."""
    with uow_factory() as uow:
        if uow.tenants.get(tenant_id) is None:
            raise NotFound("tenant", tenant_id)
        old = uow.destinations.get(tenant_id, destination_id)
    if old is not None and old.kind not in SIS_KINDS:
        raise InvalidInput.one(
            "destination_id",
            "kind",
            f"{destination_id!r} is a {old.kind.value} destination, not a SIS.",
        )
    if file_based is None:
        file_based = old is not None and old.kind is DestinationKind.ONEROSTER_CSV
    kind = DestinationKind.ONEROSTER_CSV if file_based else DestinationKind.ONEROSTER_REST
    if name is None:
        name = old.name if old is not None else destination_id
    config: dict[str, Any] = dict(old.config) if old else {}
    secret: dict[str, Any] = dict(old.secret) if old else {}
    for key, value in (("base_url", base_url), ("token_url", token_url), ("client_id", client_id)):
        if value is not None:
            config[key] = value
    if scopes is not None:
        config["scopes"] = list(scopes)
    config.setdefault("scopes", list(DEFAULT_SCOPES))
    for key, value in (profile or {}).items():
        if key not in PROFILE_KEYS:
            raise InvalidInput.one(
                f"profile.{key}",
                "unknown_field",
                f"Known profile settings: {', '.join(PROFILE_KEYS)}.",
            )
        config[key] = value
    if client_secret is not None:
        secret["client_secret"] = client_secret
    problems: list[FieldProblem] = []
    if not name.strip():
        problems.append(FieldProblem("name", "required", "A SIS connection needs a name."))
    for key in ("base_url", "token_url"):
        found = _url_problem(key, config.get(key), None if file_based else guard)
        if found:
            problems.append(found)
    if not file_based:
        if not config.get("base_url"):
            problems.append(
                FieldProblem("base_url", "required", "The SIS's OneRoster base URL is required.")
            )
        if not config.get("client_id"):
            problems.append(
                FieldProblem("client_id", "required", "The OAuth 2 client id is required.")
            )
        if not secret.get("client_secret"):
            problems.append(
                FieldProblem("client_secret", "required", "The OAuth 2 client secret is required.")
            )
    unknown = [s for s in config["scopes"] if not str(s).startswith(SCOPE_PREFIX)]
    if unknown:
        problems.append(
            FieldProblem(
                "scopes", "one_of", f"Not OneRoster scopes: {unknown} (they start {SCOPE_PREFIX})."
            )
        )
    try:
        profile_from_config(config)
    except InvalidInput as exc:
        problems.extend(exc.problems)
    if problems:
        raise InvalidInput(problems)
    dest = Destination(
        tenant_id=tenant_id,
        id=destination_id,
        kind=kind,
        name=name,
        profile="oneroster",
        config=config,
        secret=secret,
        enabled=old.enabled if old else True,
    )
    with uow_factory() as uow:
        uow.destinations.upsert(dest, clock.now())
        if old is not None and old.kind is not kind:
            # switched between REST and files: each line item is provisioned again the new
            # way (a file-based SIS keeps its rows on the link); results already sent stay
            _touch_items(uow, tenant_id, destination_id)
        uow.commit()
    return dest


def _sis(uow: UnitOfWork, tenant_id: str, destination_id: str) -> Destination:
    dest = uow.destinations.get(tenant_id, destination_id)
    if dest is None:
        raise NotFound("destination", destination_id)
    if dest.kind not in SIS_KINDS:
        raise InvalidInput.one(
            "destination_id",
            "kind",
            f"{destination_id!r} is a {dest.kind.value} destination, not a SIS.",
        )
    return dest


def rest_connection(
    uow_factory: UnitOfWorkFactory, tenant_id: str, destination_id: str
) -> Destination:
    """A SIS connection that has a OneRoster REST API to ask (a file-based one has none)."""
    with uow_factory() as uow:
        dest = _sis(uow, tenant_id, destination_id)
    if dest.kind is not DestinationKind.ONEROSTER_REST:
        raise InvalidInput.one("destination_id", "kind", "A file-based SIS has no REST API to ask.")
    return dest


def has_rest_api(uow_factory: UnitOfWorkFactory, tenant_id: str, destination_id: str) -> bool:
    """Whether the SIS connection can be asked (REST), or only receives files."""
    with uow_factory() as uow:
        return _sis(uow, tenant_id, destination_id).kind is DestinationKind.ONEROSTER_REST


# --- mapping -------------------------------------------------------------------------------


def _date(field_name: str, value: str | date | None) -> str | None:
    if value is None or isinstance(value, date):
        return value.isoformat() if value else None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidInput.one(
            field_name, "date", f"{field_name} must be a date like 2025-01-31."
        ) from None


def map_class(
    uow_factory: UnitOfWorkFactory,
    *,
    tenant_id: str,
    destination_id: str,
    course_id: str,
    class_id: str,
    school_id: str | None = None,
    term_start: str | date | None = None,
    term_end: str | date | None = None,
    section_id: str | None = None,
) -> CourseLink:
    """Map a course (or one of its sections) to a SIS class sourcedId. A section's class gets
    its own line items; its learners' results go there."""
    if not class_id.strip():
        raise InvalidInput.one("class_id", "required", "The SIS class sourcedId is required.")
    start, end = _date("term_start", term_start), _date("term_end", term_end)
    if start and end and start > end:
        raise InvalidInput.one(
            "term_end", "after_start", "The term ends on or after its first day."
        )
    with uow_factory() as uow:
        _sis(uow, tenant_id, destination_id)
        if uow.courses.get(tenant_id, course_id) is None:
            raise NotFound("course", course_id)
        link = uow.links.course(tenant_id, destination_id, course_id)
        if section_id is not None:
            if link is None:
                raise InvalidInput.one(
                    "section_id",
                    "course_first",
                    "Map the course to its SIS class before its sections.",
                )
            sections = {**(link.data.get("sections") or {}), section_id: class_id}
            link = replace(link, data={**link.data, "sections": sections})
        else:
            data = dict(link.data) if link else {}
            for key, value in (("school", school_id), ("term_start", start), ("term_end", end)):
                if value is not None:
                    data[key] = value
            if not data.get("school"):
                raise InvalidInput.one(
                    "school_id",
                    "required",
                    "The SIS school (org) sourcedId of the class is required.",
                )
            link = CourseLink(tenant_id, destination_id, course_id, class_id, data)
        uow.links.save_course(link)
        _touch_items(uow, tenant_id, destination_id, course_id)
        uow.commit()
        return link


def map_student(
    uow_factory: UnitOfWorkFactory,
    *,
    tenant_id: str,
    destination_id: str,
    person_id: str,
    student_id: str,
) -> PersonLink:
    """Map a person to their SIS student sourcedId (for every course)."""
    if not student_id.strip():
        raise InvalidInput.one("student_id", "required", "The SIS student sourcedId is required.")
    with uow_factory() as uow:
        _sis(uow, tenant_id, destination_id)
        if uow.people.get(tenant_id, person_id) is None:
            raise NotFound("person", person_id)
        link = PersonLink(tenant_id, destination_id, person_id, student_id)
        uow.links.save_person(link)
        uow.commit()
        return link


@dataclass(frozen=True, slots=True)
class RosterMapping:
    mapped: list[str] = field(default_factory=list)  # person ids
    unmapped: list[str] = field(default_factory=list)  # learners with no SIS id: say who


def map_course_students(
    uow_factory: UnitOfWorkFactory, *, tenant_id: str, destination_id: str, course_id: str
) -> RosterMapping:
    """Link every learner of a course to their SIS student: an explicit mapping wins, else
    the person's sis_id. Learners in a section mapped to its own class get a per-course link
    naming that class."""
    report = RosterMapping()
    with uow_factory() as uow:
        _sis(uow, tenant_id, destination_id)
        course = uow.links.course(tenant_id, destination_id, course_id)
        if course is None:
            raise InvalidInput.one(
                "course_id",
                PassbackRule.CLASS_NOT_MAPPED.value,
                "Map the course to a SIS class first.",
            )
        sections: dict[str, str] = course.data.get("sections") or {}
        enrollments = [
            e for e in uow.enrollments.for_course(tenant_id, course_id) if e.role is Role.LEARNER
        ]
        people = uow.people.get_many(tenant_id, [e.person_id for e in enrollments])
        for e in enrollments:
            general = uow.links.person(tenant_id, destination_id, e.person_id)
            person = people.get(e.person_id)
            student = (
                general.remote_id
                if general is not None and general.course_id is None
                else (person.sis_id if person else None)
            )
            if not student:
                report.unmapped.append(e.person_id)
                continue
            klass = sections.get(e.section_id or "")
            data = {"class": klass} if klass else {}
            uow.links.save_person(
                PersonLink(tenant_id, destination_id, e.person_id, student, course_id, data)
            )
            report.mapped.append(e.person_id)
        uow.commit()
    return report


def align_category(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    *,
    tenant_id: str,
    destination_id: str,
    group: str,
    category_id: str | None,
    course_id: str | None = None,
) -> dict[str, str]:
    """Align an activity group to a SIS category sourcedId, for the whole connection or one
    course (which wins). `category_id=None` removes the alignment. Returns the map now set."""
    if not group.strip():
        raise InvalidInput.one("group", "required", "Name the activity group to align.")
    with uow_factory() as uow:
        dest = _sis(uow, tenant_id, destination_id)
        link = uow.links.course(tenant_id, destination_id, course_id) if course_id else None
        if course_id is not None and link is None:
            raise InvalidInput.one(
                "course_id", "class_not_mapped", "Map the course to a SIS class first."
            )
        held = link.data if link is not None else dest.config
        mapping = dict(held.get("category_map") or {})
        if category_id is None:
            mapping.pop(group, None)
        else:
            mapping[group] = category_id
        if link is None:
            config = {**dest.config, "category_map": mapping}
            uow.destinations.upsert(replace(dest, config=config), clock.now())
        else:
            uow.links.save_course(replace(link, data={**link.data, "category_map": mapping}))
        _touch_items(uow, tenant_id, destination_id, course_id)
        uow.commit()
    return mapping


@dataclass(frozen=True, slots=True)
class CategoryAlignment:
    group: str | None
    activities: list[str]
    category_id: str | None
    problem: str | None


async def check_categories(
    uow_factory: UnitOfWorkFactory,
    directory: SisDirectory,
    *,
    tenant_id: str,
    destination_id: str,
    course_id: str,
) -> list[CategoryAlignment]:
    """How each activity group of the course's selected activities aligns (nothing created)."""
    with uow_factory() as uow:
        _sis(uow, tenant_id, destination_id)
        link = uow.links.course(tenant_id, destination_id, course_id)
        if link is None:
            raise InvalidInput.one(
                "course_id", "class_not_mapped", "Map the course to a SIS class first."
            )
        activities = uow.activities.for_course(tenant_id, course_id)
        items = uow.links.items(tenant_id, destination_id, [a.id for a in activities])
    groups: dict[str | None, list[str]] = {}
    for a in activities:
        item = items.get(a.id)
        if item is not None and item.data.get("sync_to_sis"):
            groups.setdefault(a.category, []).append(a.id)
    out: list[CategoryAlignment] = []
    for group, ids in sorted(groups.items(), key=lambda kv: kv[0] or ""):
        try:
            found = await directory.resolve_category(link, group, create=False)
        except RemoteFailure as failure:
            out.append(CategoryAlignment(group, ids, None, failure.message))
        else:
            out.append(CategoryAlignment(group, ids, found, None))
    return out


# --- selection and validation --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActivityCheck:
    activity_id: str
    title: str
    selected: bool
    problems: list[FieldProblem]

    @property
    def ok(self) -> bool:
        return not self.problems


async def check_activity_categories(
    uow_factory: UnitOfWorkFactory,
    directory: SisDirectory,
    *,
    tenant_id: str,
    destination_id: str,
    checks: Sequence[ActivityCheck],
) -> list[ActivityCheck]:
    """`checks` with a `category_missing` problem added to each activity whose group aligns
    to no SIS category (the SIS is asked; nothing is created): every result of such an
    activity would be refused, so validation says so before anything is sent."""
    with uow_factory() as uow:
        acts = uow.activities.get_many(tenant_id, [c.activity_id for c in checks])
        links = {
            cid: uow.links.course(tenant_id, destination_id, cid)
            for cid in {a.course_id for a in acts.values()}
        }
    problems: dict[tuple[str, str | None], str | None] = {}
    out: list[ActivityCheck] = []
    for c in checks:
        act = acts.get(c.activity_id)
        link = links.get(act.course_id) if act is not None else None
        if act is None or link is None:  # an unmapped class is reported already
            out.append(c)
            continue
        key = (act.course_id, act.category)
        if key not in problems:
            try:
                await directory.resolve_category(link, act.category, create=False)
                problems[key] = None
            except RemoteFailure as failure:
                if failure.code != PassbackRule.CATEGORY_MISSING.value:
                    raise  # the SIS could not be asked: not a finding about the activity
                problems[key] = " ".join(x for x in (failure.message, failure.remedy) if x)
        found = problems[key]
        if found is not None:
            rule = PassbackRule.CATEGORY_MISSING.value
            c = replace(c, problems=[*c.problems, FieldProblem("category", rule, found)])
        out.append(c)
    return out


def _check(
    uow: UnitOfWork, dest: Destination, activity: Activity, link: CourseLink | None
) -> ActivityCheck:
    profile = profile_from_config(dest.config)
    tenant = uow.tenants.get(dest.tenant_id)
    course = uow.courses.get(dest.tenant_id, activity.course_id)
    layers = [x.policy for x in (tenant, course) if x is not None] + [activity.policy]
    policy = resolve_settings(*layers)
    problems = passback_problems(
        activity,
        profile,
        term=Term.from_link_data(link.data) if link else Term(),
        name_rule=policy.name_rule,
        learner_due_dates=len(uow.overrides.for_activity(dest.tenant_id, activity.id)),
    )
    if link is None and dest.kind is DestinationKind.ONEROSTER_REST:
        problems.append(
            FieldProblem(
                "course_id",
                PassbackRule.CLASS_NOT_MAPPED.value,
                f"The course {activity.course_id!r} is not mapped to a SIS class "
                "(gradesync sis map-class).",
            )
        )
    item = uow.links.item(dest.tenant_id, dest.id, activity.id)
    selected = bool(item is not None and item.data.get("sync_to_sis"))
    return ActivityCheck(activity.id, activity.title, selected, problems)


def _activities(uow: UnitOfWork, tenant_id: str, ids: Iterable[str]) -> list[Activity]:
    ids = list(dict.fromkeys(ids))
    found = uow.activities.get_many(tenant_id, ids)
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound("activity", ", ".join(missing))
    return [found[i] for i in ids]


def validate(
    uow_factory: UnitOfWorkFactory,
    *,
    tenant_id: str,
    destination_id: str,
    course_id: str | None = None,
    activity_ids: Sequence[str] = (),
) -> list[ActivityCheck]:
    """The passback checks for a course's activities (or the given ones), selected or not."""
    with uow_factory() as uow:
        dest = _sis(uow, tenant_id, destination_id)
        if activity_ids:
            activities = _activities(uow, tenant_id, activity_ids)
        elif course_id is not None:
            activities = uow.activities.for_course(tenant_id, course_id)
        else:
            raise InvalidInput.one("course_id", "required", "Name a course or some activities.")
        return [
            _check(uow, dest, a, uow.links.course(tenant_id, destination_id, a.course_id))
            for a in activities
        ]


def select_activities(
    uow_factory: UnitOfWorkFactory,
    *,
    tenant_id: str,
    destination_id: str,
    activity_ids: Sequence[str],
    selected: bool = True,
    clock: Clock | None = None,
    waker: Waker | None = None,
) -> list[ActivityCheck]:
    """Tick (or clear) "Sync to SIS". Ticking validates first, like Canvas refusing to save:
    any activity with a problem refuses the whole request, naming each problem, and nothing
    changes. Ticking also brings back the activity's results that were skipped as not
    selected (they are recomputed, then sent) and reopens those refused for a column-level
    reason; `waker` (when given) has a worker do it now rather than on its next look."""
    if not activity_ids:
        raise InvalidInput.one("activity_ids", "required", "Name at least one activity.")
    with uow_factory() as uow:
        dest = _sis(uow, tenant_id, destination_id)
        activities = _activities(uow, tenant_id, activity_ids)
        checks = [
            _check(uow, dest, a, uow.links.course(tenant_id, destination_id, a.course_id))
            for a in activities
        ]
        if selected:
            problems = [
                replace(p, field=f"activities[{c.activity_id}].{p.field}")
                for c in checks
                for p in c.problems
            ]
            if problems:
                raise InvalidInput(problems)
        resend: list[tuple[str, str, str, str]] = []
        reopened = 0
        now = (clock or SystemClock()).now()
        for activity in activities:
            item = uow.links.item(tenant_id, destination_id, activity.id)
            if item is None:
                link = uow.links.course(tenant_id, destination_id, activity.course_id)
                remote = (
                    line_item_sourced_id(tenant_id, destination_id, activity.id, link.remote_id)
                    if link
                    else ""
                )
                item = ItemLink(tenant_id, destination_id, activity.id, remote)
            # details_hash cleared: the engine asks the adapter for the column again, which
            # provisions it (selected) or refuses it (not selected) before any result is sent.
            data = {**item.data, "sync_to_sis": selected}
            toggled = bool(item.data.get("sync_to_sis")) != selected
            if toggled and dest.kind is DestinationKind.ONEROSTER_CSV:
                data["selected_at"] = now.isoformat()  # a CSV delta lists the change from then
            uow.links.save_item(replace(item, details_hash=None, data=data))
            if selected:
                reopened += _reopen(uow, tenant_id, destination_id, activity.course_id, activity.id)
                resend += _not_selected_keys(
                    uow, tenant_id, destination_id, activity.course_id, activity.id
                )
        if resend:
            uow.dirty.mark_many(resend, now)
        uow.commit()
    if waker is not None and (resend or reopened):
        waker.wake_keys()
    return [replace(c, selected=selected) for c in checks]


def _not_selected_keys(
    uow: UnitOfWork, tenant_id: str, destination_id: str, course_id: str, activity_id: str
) -> list[tuple[str, str, str, str]]:
    """Dirty keys (tenant, course, activity, person) of the activity's rows skipped because it
    was not selected. A skipped row keeps no desired result, so it is recomputed rather than
    reopened: the recompute makes it pending with the learner's current result."""
    rows = uow.ledger.get_many(tenant_id, destination_id, course_id, [activity_id])
    return [
        (tenant_id, course_id, activity_id, person_id)
        for (_, person_id), r in sorted(rows.items())
        if r.state is DeliveryState.SKIPPED and r.reason_code == PassbackRule.NOT_SELECTED.value
    ]


def _touch_items(
    uow: UnitOfWork, tenant_id: str, destination_id: str, course_id: str | None = None
) -> None:
    """SIS-side details changed (alignment, classes): make the engine re-provision the line
    items of the course (or of every mapped course) before their next result."""
    courses = (
        [course_id]
        if course_id is not None
        else [c.course_id for c in uow.links.courses_for_destination(tenant_id, destination_id)]
    )
    for cid in courses:
        ids = [a.id for a in uow.activities.for_course(tenant_id, cid)]
        for item in uow.links.items(tenant_id, destination_id, ids).values():
            if item.details_hash is not None:
                uow.links.save_item(replace(item, details_hash=None))


def _reopen(
    uow: UnitOfWork, tenant_id: str, destination_id: str, course_id: str, activity_id: str
) -> int:
    """Rows refused for a column-level reason (not selected, no due date, category missing, ...)
    go back to pending once the admin fixed the cause: their desired result did not change, so
    a recompute alone would leave them refused."""
    rows = uow.ledger.get_many(tenant_id, destination_id, course_id, [activity_id])
    reopened = [
        (
            replace(
                r,
                state=DeliveryState.PENDING,
                tries=0,
                next_attempt_at=None,
                reason_code=None,
                reason_text=None,
            ),
            course_id,
        )
        for r in rows.values()
        if r.state is DeliveryState.REJECTED and (r.reason_code or "") in COLUMN_RULES
    ]
    if reopened:
        uow.ledger.save_many(reopened)
    return len(reopened)


# --- post grades ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostResult:
    run: SyncRun | None  # None when nothing in the selection could be sent
    joined: bool
    posted: list[str]  # activity ids in the run
    refused: list[ActivityCheck]  # selected but failing validation, or not selected


def post_grades(
    uow_factory: UnitOfWorkFactory,
    waker: Waker,
    clock: Clock,
    *,
    tenant_id: str,
    destination_id: str,
    course_id: str,
    actor: str,
    activity_ids: Sequence[str] = (),
    remaster: bool = False,
) -> PostResult:
    """ "Post grades": a run over the chosen activities (default: all selected for the SIS) of
    a course. Activities not selected or failing validation are left out and reported; the
    run's stages and counts are the engine's (follow `run.id`). `remaster` resends every
    result and the line item details."""
    with uow_factory() as uow:
        _sis(uow, tenant_id, destination_id)
        if uow.courses.get(tenant_id, course_id) is None:
            raise NotFound("course", course_id)
        activities = (
            _activities(uow, tenant_id, activity_ids)
            if activity_ids
            else uow.activities.for_course(tenant_id, course_id)
        )
        others = [a.id for a in activities if a.course_id != course_id]
        if others:
            raise InvalidInput.one(
                "activity_ids", "same_course", f"Not activities of course {course_id!r}: {others}."
            )
    checks = (
        validate(
            uow_factory,
            tenant_id=tenant_id,
            destination_id=destination_id,
            activity_ids=[a.id for a in activities],
        )
        if activities
        else []
    )
    posted = [c.activity_id for c in checks if c.selected and c.ok]
    refused = [c for c in checks if not (c.selected and c.ok) and (activity_ids or c.selected)]
    if not posted:
        return PostResult(None, False, [], refused)
    with uow_factory() as uow:
        for activity_id in posted:
            _reopen(uow, tenant_id, destination_id, course_id, activity_id)
        uow.commit()
    scope = RunScope(tenant_id, destination_id, course_id, tuple(sorted(posted)))
    run, joined = request_run(
        uow_factory, waker, clock, scope, Trigger.REMASTER if remaster else Trigger.MANUAL, actor
    )
    return PostResult(run, joined, posted, refused)
