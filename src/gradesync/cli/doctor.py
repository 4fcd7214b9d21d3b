"""`gradesync doctor`, `gradesync repair`, `gradesync overrides` and
`gradesync destinations check`: why a grade did or did not sync, and what to do about it.

    gradesync doctor -t T --learner P --activity A [--destination D]   one grade
    gradesync doctor -t T --activity A                                 one activity
    gradesync doctor -t T --course C                                   course triage
    gradesync doctor -t T --destination D                              one destination (live)
    gradesync destinations check D -t T [--course C] [--learner P] [--send-test]
    gradesync overrides -t T --course C
    gradesync repair -t T --course C [--activity A ...] [--learner P ...] [--destination D]

`doctor` and `destinations check` exit 0 when every check passes, 1 otherwise and 3 when
the course (or activity, learner, destination) named does not exist, as `repair` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

import typer
from rich.markup import escape

from gradesync.cli._common import (
    JSON_OUT,
    TENANT,
    actor,
    bad_input,
    console,
    guarded,
    print_json,
    problem,
)
from gradesync.cli._common import runtime as open_runtime
from gradesync.domain.diagnosis import Check, Diagnosis, ProbeStep, plural
from gradesync.domain.remedies import Reader
from gradesync.domain.triage import DESTINATION_SYMPTOM_TEXT, CourseTriage, Scope, Symptom
from gradesync.services import overrides as ov

if TYPE_CHECKING:
    from gradesync.runtime import Runtime

T = TypeVar("T")


def _async(rt: Runtime, make: Callable[[], Awaitable[T]]) -> T:
    """Run one coroutine with the runtime's destination clients, then close their pool."""

    async def main() -> T:
        try:
            return await make()
        finally:
            await rt.stop_worker()

    return asyncio.run(main())


def _print_check(i: int, c: Check | ProbeStep) -> None:
    excluded = isinstance(c, Check) and c.excluded
    if c.passed:
        mark = "[green]✓ passed[/green]"
    elif excluded:
        mark = "[yellow]○ excluded on purpose[/yellow]"
    else:
        mark = "[red]✗ failed[/red]"
    console.print(f"{i:>2}. {mark}  [bold]{escape(c.name)}[/bold]", highlight=False)
    console.print(f"      {escape(c.evidence)}", highlight=False)
    if not c.passed and c.remedy:
        label = "to include it:" if excluded else "what to do:"
        console.print(f"      [yellow]{label}[/yellow] {escape(c.remedy)}", highlight=False)


def _print_diagnosis(d: Diagnosis) -> None:
    console.print(f"[bold]{escape(d.title)}[/bold]", highlight=False)
    current: str | None = None
    for i, c in enumerate(d.checks, 1):
        if c.destination_id != current and c.destination_id is not None:
            console.print(f"  [dim]at destination {escape(c.destination_id)}[/dim]")
        current = c.destination_id
        _print_check(i, c)
    console.print(
        ("[green]" if d.ok else "[red]") + escape(d.summary) + ("[/green]" if d.ok else "[/red]"),
        highlight=False,
    )


# the results first as a reader follows a grade (sent, then waiting, then the problems)
_STATES = ("delivered", "pending", "retrying", "rejected", "skipped")


def _counts_said(counts: Mapping[str, int]) -> str:
    """The triage's counts in words: "3 activities; results: 19 delivered, 1 pending;
    no problems" (the JSON keeps them by key)."""
    states = [s for s in _STATES if counts.get(s)]
    states += sorted(k for k in counts if k not in (*_STATES, "activities", "problems"))
    results = ", ".join(f"{counts[s]} {s}" for s in states) or "none yet"
    problems = counts.get("problems", 0)
    return (
        f"{plural(counts.get('activities', 0), 'activity', 'activities')}; results: {results}; "
        + (plural(problems, "problem") if problems else "no problems")
    )


def _print_triage(t: CourseTriage) -> None:
    console.print(f"[bold]Course {escape(t.course_id)}: {escape(t.summary)}[/bold]")
    if len(set(t.destinations.values())) > 1:
        for dest_id, symptom in t.destinations.items():
            text = DESTINATION_SYMPTOM_TEXT[symptom]
            console.print(f"  {escape(dest_id)}: {escape(text)}", highlight=False)
    console.print(f"  {_counts_said(t.counts)}", highlight=False)
    if t.symptom is Symptom.SOME_DESTINATIONS:
        course = "Nothing syncing at a destination (a pause, configuration, scope, credentials)"
    elif t.symptom is Symptom.SENDING_PAUSED:
        course = "Sending paused for a while (gradesync tries again by itself)"
    else:
        course = "Nothing syncing at all (configuration, scope, credentials)"
    headings = {
        Scope.COURSE: course,
        Scope.ACTIVITIES: "Only some activities",
        Scope.LEARNERS: "Only some learners",
        Scope.GRADES: "Only some grades (failed or refused at a destination)",
    }
    for scope in Scope:
        causes = t.by_scope(scope)
        if not causes:
            continue
        console.print(f"\n[bold]{headings[scope]}[/bold]")
        for c in causes:
            where = f" [dim]({escape(c.destination_id)})[/dim]" if c.destination_id else ""
            # a pause gradesync lifts by itself, or a grade it tries again: it waits
            mark = "[yellow]…[/yellow]" if c.tries_again_by_itself else "[red]✗[/red]"
            console.print(f"  {mark} {escape(c.title)}{where}", highlight=False)
            console.print(f"      {escape(c.evidence)}", highlight=False)
            console.print(f"      [yellow]what to do:[/yellow] {escape(c.remedy)}", highlight=False)
    if t.excluded:
        console.print("\n[bold]Left out on purpose (not a problem)[/bold]")
        for c in t.excluded:
            where = f" [dim]({escape(c.destination_id)})[/dim]" if c.destination_id else ""
            console.print(f"  - {escape(c.title)}{where}", highlight=False)
            console.print(f"      {escape(c.evidence)}", highlight=False)
            console.print(f"      [dim]to include it:[/dim] {escape(c.remedy)}", highlight=False)


def doctor(
    tenant: str = TENANT,
    learner: str | None = typer.Option(None, "--learner", "-l", help="Person id."),
    activity: str | None = typer.Option(None, "--activity", "-a", help="Activity id."),
    course: str | None = typer.Option(None, "--course", "-c", help="Course id (triage)."),
    destination: str | None = typer.Option(
        None, "--destination", "-d", help="Destination id (alone: diagnose the destination)."
    ),
    offline: bool = typer.Option(
        False, "--offline", help="With --destination alone: do not contact the destination."
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Why a grade did or did not sync: ordered checks with evidence and what to do."""
    if course and (learner or activity):
        # the activity says its course: a second one could only contradict it, unnoticed
        raise bad_input(
            problem(
                "--course",
                "exclusive",
                "--course diagnoses a whole course: name --course or --activity, not both",
            )
        )
    # what is not found is named as typed: `--learner`, not the use case's `person`
    options = {
        "person_id": "--learner",
        "activity_id": "--activity",
        "course_id": "--course",
        "destination_id": "--destination",
    }
    with open_runtime() as rt:
        if learner and activity:
            d = guarded(
                lambda: rt.diagnose_learner_activity(tenant, learner, activity, destination),
                options,
            )
        elif learner:
            raise bad_input(
                problem("--activity", "required", "--learner needs --activity (which grade?)")
            )
        elif activity:
            d = guarded(lambda: rt.diagnose_activity(tenant, activity, destination), options)
        elif course:
            t = guarded(lambda: rt.diagnose_course(tenant, course, destination), options)
            if as_json:
                print_json(t.as_json())
            else:
                _print_triage(t)
            if t.problems:  # what is left out on purpose is no reason to fail
                raise typer.Exit(1)
            return
        elif destination:
            dest_id = destination

            def run() -> Awaitable[Diagnosis]:
                return rt.diagnose_destination(tenant, dest_id, live=not offline)

            d = guarded(lambda: _async(rt, run), options)
        else:
            raise bad_input(
                problem(
                    "--course",
                    "required",
                    "say what to diagnose: --learner and --activity, --activity, --course or "
                    "--destination",
                )
            )
    d = d.read_over(Reader.CLI)  # a remedy's command as it is: this reader can type it
    if as_json:
        print_json(d.as_json())
    else:
        _print_diagnosis(d)
    if not d.ok:
        raise typer.Exit(1)


def destinations_check(
    destination_id: str = typer.Argument(..., help="Destination id."),
    tenant: str = TENANT,
    course: str | None = typer.Option(None, "--course", "-c", help="Course to test."),
    learner: str | None = typer.Option(
        None,
        "--learner",
        "-l",
        help="Learner who gets the test result (default: the first who launched from the course).",
    ),
    send_test: bool = typer.Option(
        False,
        "--send-test",
        help="Create a 'gradesync connection check' column (1 point), send and read back a "
        "test result for one learner, then delete the column (LTI 1.3 only; refused for other "
        "destinations). Nothing is sent while the destination is paused.",
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Prove a destination end to end before a course goes live: token, scopes, the
    course's gradebook, and (--send-test) a test result sent and read back."""
    if learner and not course:
        # without a course the learner could be used with any, or with none: say which
        raise bad_input(
            problem("--course", "required", "--learner needs --course (a learner of which?)")
        )
    with open_runtime() as rt:

        def run() -> Awaitable[list[ProbeStep]]:
            return rt.check_destination(
                tenant, destination_id, course_id=course, learner_id=learner, send_test=send_test
            )

        options = {"course_id": "--course", "learner_id": "--learner", "send_test": "--send-test"}
        steps = guarded(lambda: _async(rt, run), options, named=options)
    ok = all(s.passed for s in steps)
    if as_json:
        from gradesync.answers.checks import destination_check_out

        print_json(destination_check_out(destination_id, steps))  # as POST .../check
    else:
        for i, s in enumerate(steps, 1):
            _print_check(i, s)
        console.print("[green]destination works[/green]" if ok else "[red]check failed[/red]")
    if not ok:
        raise typer.Exit(1)


def overrides(
    tenant: str = TENANT,
    course: str = typer.Option(..., "--course", "-c", help="Course id."),
    destination: str | None = typer.Option(
        None, "--destination", "-d", help="Only this destination (default: every one)."
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Grades an instructor changed in the LMS after gradesync sent them (found when a sync
    run reads the gradebook back), and whether the course keeps the LMS edit."""
    with open_runtime() as rt:
        rows = guarded(
            lambda: ov.list_overrides(rt.uow, tenant, course, destination),
            {"destination_id": "--destination"},
            named=("destination_id",),
        )
    if as_json:
        from gradesync.answers.overrides import overrides_out

        print_json(overrides_out(rows))  # as GET /courses/C/overrides
        return
    if not rows:
        console.print("no overridden grades found (a sync run compares the gradebook)")
        return
    for r in rows:
        console.print(
            f"[bold]{escape(r['activity_id'])}[/bold] / {escape(r['person_id'])} at "
            f"{escape(r['destination_id'])} ({r['policy']}, {r['state']}): "
            f"{escape(r['explanation'] or '')}",
            highlight=False,
        )


def repair(
    tenant: str = TENANT,
    course: str = typer.Option(..., "--course", "-c", help="Course id."),
    activity: list[str] = typer.Option([], "--activity", "-a", help="Activities (repeatable)."),
    learner: list[str] = typer.Option([], "--learner", "-l", help="Learners (repeatable)."),
    destination: str | None = typer.Option(
        None, "--destination", "-d", help="Only this destination (default: every one)."
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Resend the selected grades with a fresh timestamp, so the LMS applies them over grades
    typed in by hand (which block an ordinary resync). Recorded in each grade's history."""
    from gradesync.answers.overrides import repair_out

    sel = ov.RepairSelection(tenant, course, destination, tuple(activity), tuple(learner))
    with open_runtime() as rt:
        options = {
            "course_id": "--course",
            "destination_id": "--destination",
            "activity_ids": "--activity",
            "person_ids": "--learner",
        }
        # an unknown course, destination, activity or learner is not found (exit 3), as in `sync`
        result = guarded(
            lambda: _async(rt, lambda: rt.repair(sel, actor())), options, named=options
        )
        if as_json:
            print_json(repair_out(rt, tenant, result))  # as POST /courses/C/repair
            return
    where = f"run {result.run.id}" if result.run else "the running gradesync worker"
    console.print(
        f"{result.marked} grade(s) will be resent with a fresh timestamp by {where}"
        + (
            f"; {result.skipped} selected result(s) have no grade to send" if result.skipped else ""
        ),
        highlight=False,
    )
    warning = ov.unread_warning(result.unread)
    if warning:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)


__all__: Sequence[str] = ("destinations_check", "doctor", "overrides", "repair")
