"""`gradesync sync`: start a run for a course or a selection and, with --wait, follow it
through its stages: a progress bar on a terminal, a plain line per change otherwise."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column

from gradesync.cli._common import (
    EXIT_FAILED,
    TENANT,
    CliError,
    actor,
    console,
    flat_counts,
    guarded,
    json_option,
    print_json,
    report,
    runtime,
)
from gradesync.domain.model import RunOutcome, RunScope, RunStage, SyncRun
from gradesync.services import queries

if TYPE_CHECKING:
    from gradesync.runtime import Runtime

STAGES = [s for s in RunStage]  # queued .. finished, in order
POLL_SECONDS = 0.25
BAR_WIDTH = 20  # with the elapsed time, leaves 50 of 80 columns to the stage and its counts


def _describe(run: SyncRun) -> str:
    counts = flat_counts(run.counts)  # nested counts in words, not as Python's dicts
    return f"{run.stage.value}" + (f" ({counts})" if counts != "-" else "")


def _positive_seconds(value: float) -> float:
    """Checked while parsing, before a run is queued: no run finishes in 0 seconds or fewer,
    so such a wait would always give up (exit 124) on a run it had just queued."""
    if not value > 0:  # NaN too: it would wait forever
        raise typer.BadParameter(f"must be above 0 seconds, not {value:g}", param_hint="--timeout")
    return value


def sync(
    tenant: str = TENANT,
    course: str | None = typer.Option(None, "--course", "-c", help="Course id (default: all)."),
    destination: str | None = typer.Option(
        None, "--destination", "-d", help="Only this destination (default: all of the course's)."
    ),
    activity: list[str] = typer.Option(
        [], "--activity", "-a", help="Only these activities (repeatable)."
    ),
    trigger: str = typer.Option(
        "manual",
        "--trigger",
        help="manual: send what differs; resync: the same, asked by a person; "
        "remaster: resend everything, columns included.",
    ),
    wait: bool = typer.Option(False, "--wait", help="Follow the run until it finishes."),
    timeout: float = typer.Option(
        3600.0,
        "--timeout",
        help="Give up waiting after N seconds (above 0).",
        callback=_positive_seconds,
    ),
    as_json: bool = json_option("Print the run as JSON (an error as a JSON object)."),
) -> None:
    """Start a sync run. A run already queued for the same scope is joined, not duplicated.
    A `gradesync serve` or `gradesync worker` process runs it. Exit code with --wait: 0
    succeeded, 1 failed or partly failed, 124 timed out."""
    from gradesync.answers.runs import run_out

    with runtime() as rt:
        scope = RunScope(tenant, destination, course, tuple(activity))
        run, joined = guarded(
            lambda: rt.ask_for_run(scope, trigger, actor()),
            {
                "course_id": "--course",
                "destination_id": "--destination",
                "activity_ids": "--activity",
                "trigger": "--trigger",
            },
            named=("course_id", "destination_id", "activity_ids"),
        )
        if not as_json:
            if joined:  # queued or already sending: say which
                console.print(
                    f"joined run [bold]{run.id}[/bold] ({run.trigger.value}, {run.stage.value}), "
                    "already going for this scope"
                )
            else:
                console.print(f"queued run [bold]{run.id}[/bold] ({trigger})")
        if wait:
            run = _follow(rt, tenant, run, timeout, quiet=as_json)
        if as_json:
            # as the API's POST /runs (with the stages GET /runs/{id} adds)
            detail = queries.run_detail(rt.uow, tenant, run.id)
            print_json(run_out(run, detail.stages, joined=joined))
    if wait:
        if run.stage is not RunStage.FINISHED:
            # the run (its JSON included) is printed above: the error is one more line
            raise report(
                CliError(124, f"run {run.id} still {run.stage.value} after {timeout:g}s"),
                as_json=False,
            )
        if run.outcome is not RunOutcome.SUCCEEDED:
            outcome = run.outcome.value if run.outcome else "failed"
            raise report(
                CliError(
                    EXIT_FAILED,
                    f"run {run.id} {outcome}" + (f": {run.message}" if run.message else ""),
                ),
                as_json=False,
            )


def _follow(rt: Runtime, tenant: str, run: SyncRun, timeout: float, *, quiet: bool) -> SyncRun:
    deadline = time.monotonic() + timeout
    if not quiet and not _on_a_terminal():
        run = _follow_in_lines(rt, tenant, run, deadline)
    else:
        run = _follow_with_bar(rt, tenant, run, deadline, quiet=quiet)
    if not quiet and run.stage is RunStage.FINISHED:
        outcome = run.outcome.value if run.outcome else "-"
        console.print(f"run {run.id} finished: {outcome}", highlight=False)
    return run


def _on_a_terminal() -> bool:
    """Whether stdout is a terminal that redraws a line: not a pipe or a file (whatever
    FORCE_COLOR says: a CI log set to colour still gets lines), nor TERM=dumb."""
    isatty = getattr(console.file, "isatty", None)
    return bool(isatty is not None and isatty()) and not console.is_dumb_terminal


def _follow_in_lines(rt: Runtime, tenant: str, run: SyncRun, deadline: float) -> SyncRun:
    """Into a file or a pipe (a log, `| tee`): a plain line each time the stage or its counts
    change, no bar and no terminal control characters."""
    said = None
    while True:
        run = queries.run_detail(rt.uow, tenant, run.id).run
        line = _describe(run)
        if line != said:
            console.print(line, highlight=False, soft_wrap=True)
            said = line
        if run.stage is RunStage.FINISHED or time.monotonic() >= deadline:
            return run
        time.sleep(POLL_SECONDS)  # polling a person watches; not test synchronisation


def _follow_with_bar(
    rt: Runtime, tenant: str, run: SyncRun, deadline: float, *, quiet: bool
) -> SyncRun:
    # the run's id is on the line above (queued, joined); the stage and its counts, as long
    # as a run makes them, wrap between words at the terminal's width rather than being cut
    with Progress(
        BarColumn(bar_width=BAR_WIDTH),
        TimeElapsedColumn(),
        TextColumn("{task.description}", table_column=Column(overflow="fold")),
        console=console,
        disable=quiet,
    ) as progress:
        task = progress.add_task(_describe(run), total=len(STAGES) - 1)
        while True:
            run = queries.run_detail(rt.uow, tenant, run.id).run
            progress.update(task, completed=STAGES.index(run.stage), description=_describe(run))
            if run.stage is RunStage.FINISHED or time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)  # polling a person watches; not test synchronisation
    return run
