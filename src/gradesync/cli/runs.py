"""`gradesync runs ...`: sync run history and one run's stages and counts."""

from __future__ import annotations

import re
from datetime import datetime

import typer
from rich.table import Table

from gradesync.cli._common import (
    JSON_OUT,
    TENANT,
    bad_input,
    console,
    flat_counts,
    guarded,
    print_json,
    print_table,
    problem,
    runtime,
    short_when,
    when,
)
from gradesync.domain.canonical import parse_iso
from gradesync.domain.model import SyncRun, Trigger
from gradesync.services import queries

app = typer.Typer(help="Sync runs: list, show.", no_args_is_help=True)


def _took(r: SyncRun) -> str:
    start, end = r.started_at or r.created_at, r.finished_at
    if start is None or end is None:
        return "not finished"
    secs = max(0.0, (end - start).total_seconds())
    return f"took {secs:.1f} s" if secs < 120 else f"took {secs / 60:.1f} min"


def _destination(r: SyncRun, names: queries.RunNames) -> str:
    """The run's destination by its name (`RunNames.labels`: with its id where the name does
    not say which), or all of them."""
    return names.labels.get(r.id, "all destinations")


def _summary(r: SyncRun, names: queries.RunNames) -> str:
    """What, when and how it went, in three short lines (the table fits 80 columns)."""
    scope = r.scope
    where = f"{scope.course_id or 'all courses'} -> {_destination(r, names)}"
    if scope.activity_ids:
        where += f" ({len(scope.activity_ids)} activities)"
    how = r.outcome.value if r.outcome else r.stage.value
    return (
        f"{r.trigger.value}: {where}, by {r.actor}\n"
        f"{short_when(r.created_at)} UTC, {_took(r)}\n"
        f"{how}: {flat_counts(r.counts, brief=True, deleted=names.deleted.get(r.id))}"
    )


@app.command("list")
def list_(
    tenant: str = TENANT,
    course: str | None = typer.Option(None, "--course", help="Only this course."),
    destination: str | None = typer.Option(None, "--destination", help="Only this destination."),
    trigger: Trigger | None = typer.Option(None, "--trigger", help="Only runs of this trigger."),
    since: str | None = typer.Option(
        None, "--since", help="Created at or after this ISO 8601 time (UTC without a zone)."
    ),
    until: str | None = typer.Option(None, "--until", help="Created before this time."),
    limit: int = typer.Option(20, "--limit", min=1, max=500, help="Show at most N runs."),
    as_json: bool = JSON_OUT,
) -> None:
    """Runs, newest first."""
    from gradesync.answers.runs import run_out

    moments = {name: _moment(name, text) for name, text in (("since", since), ("until", until))}
    with runtime() as rt:
        runs = guarded(
            lambda: queries.runs_with_stages(
                rt.uow,
                tenant,
                course_id=course,
                destination_id=destination,
                trigger=trigger.value if trigger is not None else None,
                since=moments["since"],
                until=moments["until"],
                limit=limit,
            ),
            {
                "until": "--until",
                "since": "--since",
                "course_id": "--course",
                "destination_id": "--destination",
            },
            named=("course_id", "destination_id"),
        )
        if as_json:
            print_json([run_out(d.run, d.stages) for d in runs])  # as GET /runs
            return
        names = queries.run_names(rt.uow, tenant, [d.run for d in runs])
    table = Table("run", "what, when, how it went", show_lines=True)
    table.columns[0].no_wrap = True
    for d in runs:
        table.add_row(d.run.id, _summary(d.run, names))
    print_table(table)


def _moment(name: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_iso(text)
    except ValueError:
        rule, why = "datetime", "is not an ISO 8601 time, e.g. 2025-09-01"
        if re.match(r"\d{4}-\d\d-\d\d", text):  # the right form, naming no day (31 February)
            rule, why = "calendar", "names no day"
        raise bad_input(problem(f"--{name}", rule, f"{text!r} {why}")) from None


@app.command()
def show(run_id: str = typer.Argument(...), tenant: str = TENANT, as_json: bool = JSON_OUT) -> None:
    """One run: scope, stage history, counts and outcome."""
    from gradesync.answers.runs import run_out

    with runtime() as rt:
        d = guarded(lambda: queries.run_detail(rt.uow, tenant, run_id))
        if as_json:
            print_json(run_out(d.run, d.stages))  # as GET /runs/{id}
            return
        names = queries.run_names(rt.uow, tenant, [d.run])
    r = d.run
    console.print(f"[bold]run {r.id}[/bold] ({r.trigger.value} by {r.actor})", highlight=False)
    scope = r.scope
    console.print(
        f"scope: course {scope.course_id or 'all'}, destination "
        + names.labels.get(r.id, "all")
        + (f", activities {', '.join(scope.activity_ids)}" if scope.activity_ids else ""),
        highlight=False,
    )
    # a resumed run's stages say which attempt they belong to, as --json's `attempt` does
    said = [
        (s, s["stage"] + (f" (attempt {s['attempt']})" if s.get("attempt", 1) > 1 else ""))
        for s in d.stages
    ]
    width = max([10, *(len(stage) for _, stage in said)])
    for s, stage in said:
        # the note says who stopped a run and who took it over (docs/operations.md)
        note = f"  {s['note']}" if s.get("note") else ""
        line = f"  {s.get('at') or '-':32} {stage:{width}}{note}"
        console.print(line.rstrip(), highlight=False)
    console.print(
        f"asked {when(r.created_at)}, finished {when(r.finished_at)} ({_took(r)})",
        highlight=False,
    )
    console.print(
        f"outcome: {r.outcome.value if r.outcome else 'running'}; "
        + flat_counts(r.counts, deleted=names.deleted.get(r.id)),
        highlight=False,
    )
    if r.message:
        console.print(r.message, highlight=False)
