"""`gradesync policy ...`: the grade policy of a tenant, course or activity, where each setting
comes from, and changes to one layer (tenant defaults, course or activity overrides)."""

from __future__ import annotations

from enum import Enum

import typer
from rich.table import Table

from gradesync.cli._common import (
    JSON_OUT,
    TENANT,
    bad_input,
    console,
    guarded,
    print_json,
    problem,
    runtime,
)
from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import PolicySettings
from gradesync.domain.policy_layers import GRADE_SETTINGS, SettingSource, with_changes
from gradesync.services import policies as svc

app = typer.Typer(
    help="Grade policies: tenant-wide defaults, course and activity overrides.",
    no_args_is_help=True,
)

COURSE = typer.Option(None, "--course", help="A course: show or change its overrides.")
ACTIVITY = typer.Option(None, "--activity", help="An activity: show or change its overrides.")


def _typed(s: SettingSource) -> str:
    """A setting's value as `policy set` takes it (`keep_lms_edits=true`, not Python's `True`;
    `minimum_points=1`, not `1.0`)."""
    if isinstance(s.value, bool):
        return "true" if s.value else "false"
    if isinstance(s.value, float):
        return f"{s.value:g}"
    return str(s.value.value if isinstance(s.value, Enum) else s.value)


def _table(title: str, settings: list[SettingSource]) -> None:
    # each value in words, as `sis show` and `destinations show` print theirs (--json and
    # the docs give the values `policy set` takes)
    table = Table("setting", "value", "from", title=title)
    for s in settings:
        table.add_row(s.name, svc.value_text(s.name, s.value), svc.SOURCE_LABELS[s.source.value])
    console.print(table)


@app.command("show")
def show(
    tenant: str = TENANT,
    course: str | None = COURSE,
    activity: str | None = ACTIVITY,
    as_json: bool = JSON_OUT,
) -> None:
    """The effective policy and where each setting comes from (default, tenant, course,
    activity): the tenant's defaults, a course's (with its activities' overrides), or an
    activity's."""
    from gradesync.answers.policies import policy_out

    if course is not None and activity is not None:
        raise bad_input(problem("--activity", "exclusive", "name --course or --activity, not both"))
    with runtime() as rt:
        if activity is not None:
            view = guarded(lambda: svc.activity_policy_view(rt.uow, tenant, activity))
        else:
            view = guarded(lambda: svc.policy_view(rt.uow, tenant, course))
    if as_json:  # GET /tenant/policy, /courses/C/policy or /activities/A/policy
        print_json(policy_out(view))
        return
    if activity is not None:
        _table(f"activity {activity}", view.effective)
        return
    _table(f"course {course}" if course else f"tenant {tenant}", view.effective)
    for a in view.activities:
        if a.own:
            own = ", ".join(f"{s.name}={_typed(s)}" for s in a.own)
            console.print(f"activity {a.activity.id} ({a.activity.title}) overrides: {own}")


@app.command("set")
def set_(
    settings: list[str] = typer.Argument(
        ...,
        help="name=value pairs; 'inherit' clears a value. Settings: "
        + ", ".join(GRADE_SETTINGS)
        + ".",
    ),
    tenant: str = TENANT,
    course: str | None = COURSE,
    activity: str | None = ACTIVITY,
    as_json: bool = JSON_OUT,
) -> None:
    """Change the tenant's defaults (or, with --course / --activity, its overrides). Grades
    the change affects are recomputed and sent by the workers; nothing else is needed."""
    from gradesync.answers.policies import policy_change_out

    problems = []
    if course is not None and activity is not None:
        problems.append(problem("--activity", "exclusive", "name --course or --activity, not both"))
    changes: dict[str, object] = {}
    for pair in settings:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            problems.append(
                problem(
                    "SETTINGS", "format", f"{pair!r}: write name=value (e.g. past_due_zeros=on)"
                )
            )
        elif name in changes:  # the last would win unseen: which one was meant is not ours
            problems.append(
                problem(
                    name,
                    "duplicate",
                    f"{name} is given twice ({changes[name]!r}, then {value!r}): give it once",
                )
            )
        else:
            changes[name] = value
    if problems:
        try:  # the values' own problems with these, every one at once
            with_changes(PolicySettings(), changes)
        except InvalidInput as exc:
            problems += exc.problems
        raise bad_input(*problems)
    with runtime() as rt:
        if activity is not None:
            change = guarded(
                lambda: svc.set_activity_policy(
                    rt.uow, rt.clock, rt.waker, tenant, activity, changes
                )
            )
            where = f"activity {activity}"
        elif course is not None:
            change = guarded(
                lambda: svc.set_course_policy(rt.uow, rt.clock, rt.waker, tenant, course, changes)
            )
            where = f"course {course}"
        else:
            change = guarded(
                lambda: svc.set_tenant_policy(rt.uow, rt.clock, rt.waker, tenant, changes)
            )
            where = f"tenant {tenant} (defaults)"
    if as_json:
        print_json(policy_change_out(change))  # as the API's PATCH .../policy
        return
    if not change.changed:
        console.print(f"{where}: nothing changed")
        return
    console.print(
        f"{where}: {', '.join(change.changed)} changed; {change.recomputed} grade(s) to "
        f"recompute, {change.resent} LMS edit(s) to overwrite"
    )
