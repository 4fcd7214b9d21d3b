"""Which activities go to the SIS ("Sync to SIS"), and whether each meets the SIS's rules
(validation, before anything is sent)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from gradesync.domain.columns import never_sent_problem
from gradesync.domain.errors import FieldProblem, InvalidInput, NotFound
from gradesync.domain.ledger import reopened
from gradesync.domain.model import (
    Activity,
    CourseLink,
    DeliveryState,
    Destination,
    DestinationKind,
    ItemLink,
)
from gradesync.domain.passback import (
    PassbackRule,
    Term,
    capabilities_for,
    file_category,
    group_of,
    line_item_sourced_id,
    passback_problems,
    profile_from_config,
)
from gradesync.domain.policy import resolve_settings
from gradesync.domain.remedies import SEPARATOR, Reader, Remedy, RemedyProblem, for_reader
from gradesync.services.clock import Clock, SystemClock
from gradesync.services.column_marks import new_look_mark
from gradesync.services.destination import RemoteFailure
from gradesync.services.ports import UnitOfWork, UnitOfWorkFactory
from gradesync.services.sis.common import (
    COLUMN_RULES,
    DirtyKey,
    SisDirectory,
    release_keys,
    sis_destination,
)
from gradesync.services.wakeup import Waker


@dataclass(frozen=True, slots=True)
class ActivityCheck:
    activity_id: str
    title: str
    selected: bool
    problems: list[FieldProblem]
    course_id: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def read_over(self, reader: Reader, destination_id: str) -> ActivityCheck:
        """The check with each problem's remedy as an administrator reading it over `reader`
        acts on it: one held as a code (`RemedyProblem`) in that reader's words, any other
        reworded where it names a command (`remedies.for_reader`: the API's route, the
        console's form, the command line's command), about this activity, its course and the
        SIS connection."""
        return replace(
            self, problems=[self._read(p, reader, destination_id) for p in self.problems]
        )

    def _read(self, p: FieldProblem, reader: Reader, destination_id: str) -> FieldProblem:
        if isinstance(p, RemedyProblem):
            return p.read_over(reader)
        said = for_reader(
            p.rule,
            p.message,
            reader,
            destination_id,
            course_id=self.course_id,
            activity_id=self.activity_id,
        )
        return replace(p, message=said)


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
    problems: dict[tuple[str, str | None], RemoteFailure | None] = {}
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
                problems[key] = failure
        found = problems[key]
        if found is not None:
            problem = _category_problem(found.message, found, act.course_id)
            c = replace(c, problems=[*c.problems, problem])
        out.append(c)
    return out


def check_activity(
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
    never = never_sent_problem(activity, policy, capabilities_for(profile))
    if never is not None:
        problems.append(never)
    if link is None and dest.kind is DestinationKind.ONEROSTER_REST:
        rule = PassbackRule.CLASS_NOT_MAPPED.value
        problems.append(
            RemedyProblem.of(
                "course_id",
                rule,
                f"The course {activity.course_id!r} is not mapped to a SIS class.",
                Remedy(rule, dest.id, activity.course_id),
            )
        )
    item = uow.links.item(dest.tenant_id, dest.id, activity.id)
    selected = bool(item is not None and item.data.get("sync_to_sis"))
    return ActivityCheck(activity.id, activity.title, selected, problems, activity.course_id)


def activities_of(
    uow: UnitOfWork, tenant_id: str, ids: Iterable[str], field: str = "activity_ids"
) -> list[Activity]:
    """The activities a request names in its list `field`; InvalidInput naming every bad
    entry at once, located by its index: a blank id (`required`), one listed twice
    (`unique`), one the tenant does not have (`unknown_activity`)."""
    ids = list(ids)
    found = uow.activities.get_many(tenant_id, [i for i in ids if i.strip()])
    problems: list[FieldProblem] = []
    first: dict[str, int] = {}
    for n, i in enumerate(ids):
        at = f"{field}[{n}]"
        if not i.strip():
            problems.append(FieldProblem(at, "required", "An activity id is required (blank)."))
        elif i in first:
            problems.append(
                FieldProblem(at, "unique", f"{i!r} is listed already at {field}[{first[i]}].")
            )
        elif i not in found:
            problems.append(FieldProblem(at, "unknown_activity", f"No activity {i!r}."))
        first.setdefault(i, n)
    if problems:
        raise InvalidInput(problems)
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
        dest = sis_destination(uow, tenant_id, destination_id)
        if activity_ids:
            activities = activities_of(uow, tenant_id, activity_ids)
            others = [a.id for a in activities if course_id not in (None, a.course_id)]
            if others:  # named with a course: another course's are not shown (nor said to exist)
                raise NotFound("activity", ", ".join(others))
        elif course_id is not None:
            if uow.courses.get(tenant_id, course_id) is None:
                raise NotFound("course", course_id)  # not "no activity to check"
            activities = uow.activities.for_course(tenant_id, course_id)
        else:
            raise InvalidInput.one("course_id", "required", "Name a course or some activities.")
        checks = []
        for a in activities:
            link = uow.links.course(tenant_id, destination_id, a.course_id)
            check = check_activity(uow, dest, a, link)
            if dest.kind is DestinationKind.ONEROSTER_CSV and link is not None:
                check = _file_category_check(dest, link, a, check)
            checks.append(check)
        return checks


async def validate_asking(
    uow_factory: UnitOfWorkFactory,
    directory: SisDirectory | None,
    *,
    tenant_id: str,
    destination_id: str,
    course_id: str | None = None,
    activity_ids: Sequence[str] = (),
) -> list[ActivityCheck]:
    """`validate`, the SIS asked through `directory` (a REST connection; None: a file-based
    SIS, whose alignment `validate` checks) whether each activity's group has a category
    (`check_activity_categories`). A SIS that cannot be asked is no finding about an
    activity: the engine refuses a missing category when it sends."""
    checks = await asyncio.to_thread(
        validate,
        uow_factory,
        tenant_id=tenant_id,
        destination_id=destination_id,
        course_id=course_id,
        activity_ids=activity_ids,
    )
    if directory is not None and checks:
        with contextlib.suppress(RemoteFailure):
            checks = await check_activity_categories(
                uow_factory,
                directory,
                tenant_id=tenant_id,
                destination_id=destination_id,
                checks=checks,
            )
    return checks


def left_out(checks: Iterable[ActivityCheck], destination_id: str) -> list[ActivityCheck]:
    """The checks a post leaves out (not ticked, or failing validation), each with every
    reason as a problem: not ticked (`not_selected_for_sis`) first, then what validation
    found. Every caller's listing of what a post leaves out (the console's confirmation,
    the command's and the API's answers, `nothing_to_post`)."""
    out = []
    for c in checks:
        if c.selected and c.ok:
            continue
        if not c.selected:
            rule = PassbackRule.NOT_SELECTED.value
            fix = Remedy(rule, destination_id, c.course_id, c.activity_id)
            off = RemedyProblem.of("sync_to_sis", rule, "Sync to SIS is off for it.", fix)
            c = replace(c, problems=[off, *c.problems])
        out.append(c)
    return out


def _file_category_check(
    dest: Destination, link: CourseLink, activity: Activity, check: ActivityCheck
) -> ActivityCheck:
    """A file-based SIS cannot be asked for its categories: the group must be aligned (or be
    the category's sourcedId, with category_match id), or every result is refused
    `category_missing`, so validation says so before anything is written."""
    category_id, why = file_category(
        profile_from_config(dest.config),
        dest.config.get("category_map"),
        link.data.get("category_map"),
        activity.category,
    )
    if category_id is not None:
        return check
    group = group_of(activity.category, profile_from_config(dest.config).default_category)
    named = repr(group) if group is not None else "(none)"
    fix = Remedy(
        PassbackRule.CATEGORY_MISSING.value,
        dest.id,
        group=group,
        category_word="CATEGORY_SOURCEDID",
    )
    problem = _category_problem(f"Activity group {named}: {why}.", fix, activity.course_id)
    return replace(check, problems=[*check.problems, problem])


def _category_problem(said: str, fix: Remedy | RemoteFailure, course_id: str) -> FieldProblem:
    """An activity's group with no SIS category, its remedy held as a code where the SIS's
    refusal holds one, about the activity's course (the SIS's refusal does not know it, and
    a remedy naming the course's page would otherwise name a placeholder)."""
    rule = PassbackRule.CATEGORY_MISSING.value
    if isinstance(fix, RemoteFailure):
        if fix.fix is None:  # the adapter's own words
            return FieldProblem(
                "category", rule, SEPARATOR.join(x for x in (said, fix.remedy) if x)
            )
        fix = fix.fix
    if fix.course is None:
        fix = replace(fix, course=course_id)
    return RemedyProblem.of("category", rule, said, fix)


async def tick_checked(
    uow_factory: UnitOfWorkFactory,
    directory: SisDirectory | None,
    *,
    tenant_id: str,
    destination_id: str,
    activity_ids: Sequence[str],
    selected: bool = True,
    clock: Clock | None = None,
    waker: Waker | None = None,
    hold: bool = False,
) -> list[ActivityCheck]:
    """`select_activities`, with every check of `validate` first, the SIS asked through
    `directory` (a REST connection) whether each group has a category: an activity whose
    every result the SIS would refuse (`category_missing`) is refused like any other, with
    each problem of the request named. A SIS that cannot be asked is no reason to refuse:
    Post grades asks again, and the engine refuses a missing category."""
    if selected and activity_ids:  # none: `select_activities` says so
        checks = await validate_asking(
            uow_factory,
            directory,
            tenant_id=tenant_id,
            destination_id=destination_id,
            activity_ids=activity_ids,
        )
        problems = [
            replace(p, field=f"activities[{c.activity_id}].{p.field}")
            for c in checks
            for p in c.problems
        ]
        if problems:
            raise InvalidInput(problems)
    return await asyncio.to_thread(
        select_activities,
        uow_factory,
        tenant_id=tenant_id,
        destination_id=destination_id,
        activity_ids=activity_ids,
        selected=selected,
        clock=clock,
        waker=waker,
        hold=hold,
    )


def select_activities(
    uow_factory: UnitOfWorkFactory,
    *,
    tenant_id: str,
    destination_id: str,
    activity_ids: Sequence[str],
    selected: bool = True,
    clock: Clock | None = None,
    waker: Waker | None = None,
    hold: bool = False,
) -> list[ActivityCheck]:
    """Tick (or clear) "Sync to SIS". Ticking validates first, like Canvas refusing to save:
    any activity with a problem refuses the whole request, naming each problem, and nothing
    changes. Ticking also has the activity's results computed for the SIS (those that have
    no row there yet and those skipped as not selected), then sent, and reopens those
    refused for a column-level reason; `waker` (when given) has a worker do it now rather
    than on its next look.
    With `hold`, ticking only records the choice: the activity's grades (those already there
    and any that come later) are held back (skipped `waiting_for_post`) until "Post grades"
    sends the activities it is given (`post_grades`), so ticking and posting are two steps
    the way a SIS admin expects them. Ticking without `hold` sends at once."""
    if not activity_ids:
        raise InvalidInput.one("activity_ids", "required", "Name at least one activity.")
    with uow_factory() as uow:
        dest = sis_destination(uow, tenant_id, destination_id)
        activities = activities_of(uow, tenant_id, activity_ids)
        checks = [
            check_activity(uow, dest, a, uow.links.course(tenant_id, destination_id, a.course_id))
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
        resend: list[DirtyKey] = []
        reopened = 0
        now = (clock or SystemClock()).now()
        # in id order, as every change of several links locks them (`mark_items_to_check`)
        for activity in sorted(activities, key=lambda a: a.id):
            # held to the commit: the link is written back whole, and a change committed
            # since an unlocked read (PostgreSQL's read committed: a post lifting its hold,
            # a column written) would be written over
            item = uow.links.item(tenant_id, destination_id, activity.id, for_update=True)
            if item is None:
                link = uow.links.course(tenant_id, destination_id, activity.course_id)
                remote = (
                    line_item_sourced_id(tenant_id, destination_id, activity.id, link.remote_id)
                    if link
                    else ""
                )
                item = ItemLink(tenant_id, destination_id, activity.id, remote)
                # a row that was not there locks nothing: a link made meanwhile by another
                # process (PostgreSQL's read committed: a tick to send at once) is not written
                # over as if there were none, but held and changed as any stored link is
                if not uow.links.add_item(item):
                    held = uow.links.item(tenant_id, destination_id, activity.id, for_update=True)
                    item = held or item
            # details_hash marked: the engine asks the adapter for the column again, which
            # provisions it (selected) or refuses it (not selected) before any result is sent.
            data = {**item.data, "sync_to_sis": selected}
            toggled = bool(item.data.get("sync_to_sis")) != selected
            if not selected or not hold:
                data.pop("held", None)  # cleared, or ticked to send at once
            elif toggled:
                data["held"] = True  # newly ticked: its grades wait for Post grades
            if toggled and dest.kind is DestinationKind.ONEROSTER_CSV:
                data["selected_at"] = now.isoformat()  # a CSV delta lists the change from then
            uow.links.save_item(replace(item, details_hash=new_look_mark(), data=data))
            if selected and not hold:
                reopened += reopen_rejected(
                    uow, tenant_id, destination_id, activity.course_id, activity.id, now
                )
                resend += release_keys(
                    uow, tenant_id, destination_id, activity.course_id, activity.id
                )
            elif selected:
                # held: the grades already skipped as not selected are worked out again, and
                # wait `waiting_for_post` like those that come later
                rows = uow.ledger.get_many(
                    tenant_id, destination_id, activity.course_id, [activity.id]
                )
                resend += [
                    (tenant_id, activity.course_id, activity.id, person)
                    for (_, person), r in sorted(rows.items())
                    if r.state is DeliveryState.SKIPPED
                    and r.reason_code == PassbackRule.NOT_SELECTED.value
                ]
        if resend:
            uow.dirty.mark_many(resend, now, destination_id=destination_id)
        uow.commit()
    if waker is not None and (resend or reopened):
        waker.wake_keys()
    return [replace(c, selected=selected) for c in checks]


def release_held(
    uow: UnitOfWork, tenant_id: str, destination_id: str, course_id: str, activity_id: str
) -> list[DirtyKey]:
    """Post grades of a held activity: its hold is lifted (the column is asked for again)
    and its held-back rows come back. Inside the caller's transaction; returns the keys to
    mark for recompute."""
    # held to the commit, as where the activity is ticked: an untick committed meanwhile
    # (PostgreSQL's read committed) is not written over
    item = uow.links.item(tenant_id, destination_id, activity_id, for_update=True)
    if item is not None and item.data.get("held"):
        data = {k: v for k, v in item.data.items() if k != "held"}
        uow.links.save_item(replace(item, details_hash=new_look_mark(), data=data))
    return release_keys(uow, tenant_id, destination_id, course_id, activity_id)


def reopen_rejected(
    uow: UnitOfWork,
    tenant_id: str,
    destination_id: str,
    course_id: str,
    activity_id: str,
    now: datetime,
) -> int:
    """Rows refused for a column-level reason (not selected, no due date, category missing, ...)
    go back to pending, from `now`, once the admin fixed the cause: their desired result did
    not change, so a recompute alone would leave them refused."""
    rows = uow.ledger.get_many(tenant_id, destination_id, course_id, [activity_id])
    again = [
        (reopened(r, now), course_id)
        for r in rows.values()
        if r.state is DeliveryState.REJECTED and (r.reason_code or "") in COLUMN_RULES
    ]
    if again:
        uow.ledger.save_many(again)
    return len(again)
