"""`gradesync schedules ...`: scheduled syncs, managed by an admin on the server.

Changes made here are picked up by a running `gradesync serve` within a minute (its
scheduler re-reads the schedules at least that often); "run-now" queues a run that the
server's worker starts at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from gradesync.cli._common import (
    JSON_OUT,
    TENANT,
    YES,
    actor,
    bad_input,
    confirm,
    console,
    flat_counts,
    guarded,
    id_table,
    print_json,
    print_table,
    problem,
    runtime,
    when,
)
from gradesync.domain.errors import FieldProblem, InvalidInput
from gradesync.domain.local_time import in_zone, strftime
from gradesync.domain.model import RunScope
from gradesync.domain.schedule_rules import parse_rule, parse_time_zone
from gradesync.services.schedules import HistoryEntry, ScheduleInfo, ScheduleService

if TYPE_CHECKING:
    from gradesync.runtime import Runtime

app = typer.Typer(
    help="Scheduled syncs: add, list, show, edit, pause, resume, pause-all, delete, run-now, "
    "history, preview.",
    no_args_is_help=True,
)

KIND = typer.Option(
    ..., "--kind", "-k", help="interval, daily, weekly or cron.", case_sensitive=False
)
SPEC = typer.Option(
    ...,
    "--spec",
    "-s",
    help='interval "15m"/"2h"; daily "01:30"; weekly "mon,wed 07:00"; cron "0 7 * * 1-5".',
)
ZONE = typer.Option(
    None, "--tz", help="IANA time zone, e.g. America/New_York (default: the course's zone)."
)
FIRST_RUN = typer.Option(
    None,
    "--first-run",
    help="Start no earlier than this ISO date-time (without an offset: local to --tz).",
)
BY = typer.Option(None, "--by", help="Who is doing this (default cli:<login name>).")
# The schedule service's fields as this group's options, to name a bad one as it was typed.
OPTIONS = {
    "kind": "--kind",
    "spec": "--spec",
    "time_zone": "--tz",
    "course_id": "--course",
    "destination_id": "--destination",
    "activity_ids": "--activity",
    "first_run_at": "--first-run",
    "posted_by": "--by",
}


def _service(rt: Runtime) -> ScheduleService:
    return rt.schedules()


def _parse_time(value: str | None, field: str, *, naive_is_utc: bool) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput.one(
            field, "datetime", f"{value!r} is not an ISO 8601 date-time (2025-01-31T07:00)"
        ) from None
    if naive_is_utc and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at


def _check_rule(kind: str | None, spec: str | None, tz: str | None, first_run: str | None) -> None:
    """Every problem of a rule to preview, its time zone and first run at once (the service's
    preview stops at the first; its create and edit name every problem themselves)."""
    problems: list[FieldProblem] = []
    checks: list[Callable[[], object]] = [
        lambda: _parse_time(first_run, "first_run_at", naive_is_utc=False)
    ]
    if kind is not None and spec is not None:
        checks.append(lambda: parse_rule(kind.lower(), spec))
    if tz is not None:
        checks.append(lambda: parse_time_zone(tz))
    for check in checks:
        try:
            check()
        except InvalidInput as exc:
            problems.extend(exc.problems)
    if problems:
        raise InvalidInput(problems)


def _local(at: datetime | None, zone: str) -> str:
    if at is None:
        return "-"
    # in UTC when the zone's clock cannot show it
    return strftime(in_zone(at, zone), "%Y-%m-%d %H:%M %Z")


def _scope_text(scope: RunScope) -> str:
    parts = [f"course {scope.course_id}" if scope.course_id else "all courses"]
    parts.append(f"to {scope.destination_id}" if scope.destination_id else "to all destinations")
    if scope.activity_ids:
        parts.append(f"activities {', '.join(scope.activity_ids)}")
    return ", ".join(parts)


def _print(infos: list[ScheduleInfo]) -> None:
    # six columns, so that each header fits its column at 80 (the next run's time names its
    # zone; the first run and the zone's name are in `schedules show`)
    table = id_table("id", "scope", "interval", "next run", "posted by", "status")
    for i in infos:
        s = i.schedule
        status = f"paused {when(s.paused_at)}" if s.paused_at else "active"
        table.add_row(
            s.id,
            _scope_text(s.scope) + (" (remaster)" if s.trigger.value == "remaster" else ""),
            i.description,
            _local(s.next_run_at, s.time_zone),
            s.posted_by,
            status,
        )
    print_table(table)


def _show(info: ScheduleInfo, as_json: bool) -> None:
    if as_json:
        from gradesync.answers.schedules import schedule_out

        print_json(schedule_out(info))
        return
    _print([info])
    zone = info.schedule.time_zone
    console.print(
        f"first run: {_local(info.schedule.first_run_at, zone)}; time zone: {zone}",
        highlight=False,
    )
    if info.upcoming:
        console.print(
            "next runs: " + "; ".join(_local(u, zone) for u in info.upcoming), highlight=False
        )


@app.command("add")
def add(
    tenant: str = TENANT,
    kind: str = KIND,
    spec: str = SPEC,
    tz: str | None = ZONE,
    course: str | None = typer.Option(None, "--course", help="Only this course."),
    destination: str | None = typer.Option(None, "--destination", help="Only this destination."),
    activity: list[str] = typer.Option([], "--activity", help="Only these activities (repeat)."),
    first_run: str | None = FIRST_RUN,
    remaster: bool = typer.Option(False, "--remaster", help="Each run is a full remaster."),
    by: str | None = BY,
    as_json: bool = JSON_OUT,
) -> None:
    """Add a schedule."""
    with runtime() as rt:
        # the service names every problem at once, the scope's with the rule's (as the API)
        info = guarded(
            lambda: _service(rt).create(
                tenant,
                by or actor(),
                kind=kind.lower(),
                spec=spec,
                time_zone=tz,
                course_id=course,
                destination_id=destination,
                activity_ids=activity,
                first_run_at=first_run,
                trigger="remaster" if remaster else "schedule",
            ),
            OPTIONS,
        )
    _show(info, as_json)


@app.command("list")
def list_(tenant: str = TENANT, as_json: bool = JSON_OUT) -> None:
    """The tenant's schedules: interval, first and next run (local time), posted by."""
    from gradesync.answers.schedules import schedule_out

    with runtime() as rt:
        infos = guarded(lambda: _service(rt).all(tenant))
    if as_json:
        print_json([schedule_out(i) for i in infos])
    else:
        _print(infos)


@app.command("show")
def show(schedule_id: str, tenant: str = TENANT, as_json: bool = JSON_OUT) -> None:
    """One schedule and its next runs."""
    with runtime() as rt:
        info = guarded(lambda: _service(rt).get(tenant, schedule_id))
    _show(info, as_json)


@app.command("edit")
def edit(
    schedule_id: str,
    tenant: str = TENANT,
    kind: str | None = typer.Option(None, "--kind", "-k", help="A new kind (needs --spec)."),
    spec: str | None = typer.Option(None, "--spec", "-s", help="A new spec."),
    tz: str | None = typer.Option(None, "--tz", help="A new IANA time zone."),
    course: str | None = typer.Option(None, "--course", help="Only this course."),
    destination: str | None = typer.Option(None, "--destination", help="Only this destination."),
    all_courses: bool = typer.Option(False, "--all-courses", help="Every course."),
    all_destinations: bool = typer.Option(False, "--all-destinations", help="Every destination."),
    first_run: str | None = FIRST_RUN,
    by: str | None = BY,
    as_json: bool = JSON_OUT,
) -> None:
    """Change a schedule; options not given stay as they are."""
    both = [
        problem(one, "exclusive", f"{one} narrows to one, {every} widens to every: give one")
        for one, every, given in (
            ("--course", "--all-courses", course and all_courses),
            ("--destination", "--all-destinations", destination and all_destinations),
        )
        if given
    ]
    if both:
        raise bad_input(*both)

    def work() -> ScheduleInfo:
        svc = _service(rt)
        current = svc.get(tenant, schedule_id).schedule
        scope = None
        if course or destination or all_courses or all_destinations:
            cur = current.scope
            new_course = None if all_courses else (course or cur.course_id)
            scope = RunScope(
                tenant,
                None if all_destinations else (destination or cur.destination_id),
                new_course,
                cur.activity_ids if new_course == cur.course_id else (),
            )
        return svc.edit(
            tenant,
            schedule_id,
            by or actor(),
            kind=kind.lower() if kind else None,
            spec=spec,
            time_zone=tz,
            first_run_at=first_run,  # every problem named at once, as on add
            scope=scope,
        )

    with runtime() as rt:
        info = guarded(work, OPTIONS)
    _show(info, as_json)


@app.command("pause")
def pause(
    schedule_id: str, tenant: str = TENANT, by: str | None = BY, as_json: bool = JSON_OUT
) -> None:
    """Stop a schedule's runs until it is resumed."""
    from gradesync.answers.schedules import schedule_out

    with runtime() as rt:
        info = guarded(lambda: _service(rt).pause(tenant, schedule_id, by or actor()))
    if as_json:
        print_json(schedule_out(info))
        return
    console.print(f"{schedule_id} paused at {when(info.schedule.paused_at)}", highlight=False)


@app.command("resume")
def resume(
    schedule_id: str, tenant: str = TENANT, by: str | None = BY, as_json: bool = JSON_OUT
) -> None:
    """Let a paused schedule run again (from its next slot)."""
    from gradesync.answers.schedules import schedule_out

    with runtime() as rt:
        info = guarded(lambda: _service(rt).resume(tenant, schedule_id, by or actor()))
    if as_json:
        print_json(schedule_out(info))
        return
    s = info.schedule
    console.print(
        f"{schedule_id} resumed; next run {_local(s.next_run_at, s.time_zone)}", highlight=False
    )


@app.command("pause-all")
def pause_all(tenant: str = TENANT, by: str | None = BY, as_json: bool = JSON_OUT) -> None:
    """Pause every schedule of the tenant."""
    from gradesync.answers.schedules import schedule_out

    with runtime() as rt:
        infos = guarded(lambda: _service(rt).pause_all(tenant, by or actor()))
    if as_json:
        print_json([schedule_out(i) for i in infos])
        return
    console.print(f"paused {len(infos)} schedule(s)", highlight=False)


@app.command("delete")
def delete(
    schedule_id: str,
    tenant: str = TENANT,
    by: str | None = BY,
    yes: bool = YES,
    as_json: bool = JSON_OUT,
) -> None:
    """Delete a schedule (its history stays; asks first, unless --yes)."""
    with runtime() as rt:
        if not yes:  # one that does not exist is said before the question
            guarded(lambda: _service(rt).get(tenant, schedule_id))
            confirm(f"Delete schedule {schedule_id}?", yes)
        guarded(lambda: _service(rt).delete(tenant, schedule_id, by or actor()))
    if as_json:
        print_json({"id": schedule_id, "tenant": tenant, "deleted": True})
        return
    console.print(f"{schedule_id} deleted", highlight=False)


@app.command("run-now")
def run_now(
    schedule_id: str, tenant: str = TENANT, by: str | None = BY, as_json: bool = JSON_OUT
) -> None:
    """Run a schedule's sync now, in your name (joins a run already going for its scope)."""
    from gradesync.answers.runs import asked_out

    with runtime() as rt:
        run, joined = guarded(lambda: _service(rt).run_now(tenant, schedule_id, by or actor()))
        if as_json:  # as the API's run-now: the run as GET /runs/{id} shows it
            print_json(asked_out(rt, tenant, run, joined))
            return
    verb = "joined the run already going" if joined else "queued run"
    console.print(f"{verb} {run.id} ({run.trigger.value} by {run.actor})", highlight=False)


@app.command("history")
def history(
    schedule_id: str | None = typer.Argument(None, help="One schedule (default: all)."),
    tenant: str = TENANT,
    since: str | None = typer.Option(None, "--since", help="At or after (ISO; default UTC)."),
    until: str | None = typer.Option(None, "--until", help="Before (ISO; default UTC)."),
    limit: int = typer.Option(50, "--limit", min=1, max=1000, help="Show at most N entries."),
    as_json: bool = JSON_OUT,
) -> None:
    """The schedule log: who changed what, and every run fired or pressed with its outcome."""
    from gradesync.answers.schedules import history_out

    with runtime() as rt:
        entries = guarded(
            lambda: _service(rt).history(
                tenant,
                schedule_id,
                since=_parse_time(since, "since", naive_is_utc=True),
                until=_parse_time(until, "until", naive_is_utc=True),
                limit=limit,
            ),
            {"since": "--since", "until": "--until", "limit": "--limit"},
        )
    if as_json:
        print_json([history_out(h) for h in entries])
        return
    # two columns, an entry's lines in the second (as `runs list`): eight columns of their
    # own left the counts a few characters wide at 80 columns, one word a line
    table = Table("at", "what happened", show_lines=True)
    table.columns[0].no_wrap = True
    for h in entries:
        table.add_row(when(h.event.at), _happened(h))
    print_table(table)


def _happened(h: HistoryEntry) -> str:
    """A history entry in short lines: the schedule, what was done and by whom; the run it
    fired or joined, how it went and its counts; the entry's note."""
    e, r = h.event, h.run
    by = e.actor + (f" / {r.actor}" if r is not None and r.actor != e.actor else "")
    lines = [f"{e.schedule_id}: {e.action.value}{' (joined)' if e.joined else ''}, by {by}"]
    if r is not None:
        outcome = r.outcome.value if r.outcome else r.stage.value
        lines.append(f"{r.id}: {outcome}")
        lines.append(flat_counts(r.counts))
    elif e.run_id:
        lines.append(e.run_id)
    if e.message:
        lines.append(e.message)
    return "\n".join(lines)


@app.command("preview")
def preview(
    kind: str = KIND,
    spec: str = SPEC,
    tz: str = typer.Option("UTC", "--tz", help="IANA time zone."),
    first_run: str | None = FIRST_RUN,
    count: int = typer.Option(5, "--count", min=1, max=50, help="How many runs to show."),
    as_json: bool = JSON_OUT,
) -> None:
    """Show the next runs a rule would make (daylight-saving changes included)."""
    from gradesync.answers.schedules import PreviewOut

    guarded(lambda: _check_rule(kind, spec, tz, first_run), OPTIONS)
    with runtime() as rt:
        runs = guarded(
            lambda: _service(rt).preview(
                kind.lower(),
                spec,
                tz,
                first_run_at=_parse_time(first_run, "first_run_at", naive_is_utc=False),
                count=count,
            ),
            OPTIONS,
        )
    if as_json:
        print_json(PreviewOut(runs=list(runs)))  # as POST /schedules/preview
        return
    for at in runs:
        console.print(f"{_local(at, tz)}   ({when(at)})", highlight=False)
