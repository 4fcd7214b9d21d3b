"""`gradesync destinations ...`: list, show, limits, pause, resume, delete (any protocol)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from gradesync.cli._common import (
    JSON_OUT,
    TENANT,
    YES,
    actor,
    bad_input,
    confirm_delete,
    console,
    destination_status,
    guarded,
    id_table,
    print_json,
    print_table,
    problem,
    runtime,
    setting_text,
)
from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import Destination
from gradesync.services import destination_admin as svc
from gradesync.services import queries

if TYPE_CHECKING:
    from gradesync.runtime import Runtime

app = typer.Typer(
    help="Destinations (LMS platforms, SIS): list, show, check, limits, pause, resume, delete.",
    no_args_is_help=True,
)


def status_said(view: dict[str, Any]) -> str:
    """A destination's state as `list` and `show` say it: paused, and why when a reason is
    recorded."""
    status = destination_status(bool(view["enabled"]), view["paused_until"])
    reason = view["pause_reason"]
    return status + (f" - {reason}" if reason else "")


@app.command("list")
def list_(tenant: str = TENANT, as_json: bool = JSON_OUT) -> None:
    """List a tenant's destinations."""
    from gradesync.answers.destinations import dest_out

    with runtime() as rt:
        dests = svc.list_destinations(rt.uow, tenant)
        views = [svc.public_view(d, rt.clock.now()) for d in dests]
    if as_json:
        print_json([dest_out(rt, d) for d in dests])  # as GET /destinations
        return
    table = id_table("id", "kind", "name", "profile", "status")
    for v in views:
        table.add_row(
            str(v["id"]),
            str(v["kind"]),
            str(v["name"]),
            str(v["profile"]),
            escape(status_said(v)),
        )
    print_table(table)


@app.command()
def show(
    destination_id: str = typer.Argument(...), tenant: str = TENANT, as_json: bool = JSON_OUT
) -> None:
    """A destination's settings (never its secrets) and its results by delivery state."""
    from gradesync.answers.destinations import dest_out

    with runtime() as rt:
        d, counts = guarded(lambda: queries.destination_summary(rt.uow, tenant, destination_id))
    view = svc.public_view(d, rt.clock.now())
    if as_json:
        print_json(dest_out(rt, d, counts))
        return
    console.print(
        f"[bold]{escape(d.name)}[/bold] ({d.id}, {d.kind.value}, profile {d.profile})",
        highlight=False,
    )
    console.print(escape(f"status: {status_said(view)}"))
    # the settings as shown (a URL without credentials), one line each however long
    for k, v in sorted(view["config"].items()):
        console.print(f"  {k}: {escape(setting_text(v))}", highlight=False, soft_wrap=True)
    console.print(
        "results: " + (", ".join(f"{s} {n}" for s, n in sorted(counts.items())) or "none yet")
    )


@app.command()
def limits(
    destination_id: str = typer.Argument(...),
    tenant: str = TENANT,
    concurrency: int | None = typer.Option(
        None, help="Requests in flight at once, for all workers together."
    ),
    rate_per_second: float | None = typer.Option(
        None, help="Requests per second, for all workers together."
    ),
    no_rate_limit: bool = typer.Option(False, "--no-rate-limit", help="Clear the rate limit."),
    default_concurrency: bool = typer.Option(
        False, "--default-concurrency", help="Back to the default concurrency (8; a SIS: 4)."
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Change how hard gradesync may press a destination; limits not given keep their value."""
    from gradesync.answers.destinations import dest_out

    options = {"concurrency": "--concurrency", "rate_per_second": "--rate-per-second"}
    problems = [
        problem(f"--{name}", "one_of", f"Give --{name} or --{other}, not both.")
        for name, given, other, clear in (
            ("concurrency", concurrency, "default-concurrency", default_concurrency),
            ("rate-per-second", rate_per_second, "no-rate-limit", no_rate_limit),
        )
        if given is not None and clear
    ]
    changes: dict[str, object] = {}
    if concurrency is not None or default_concurrency:
        changes["concurrency"] = concurrency
    if rate_per_second is not None or no_rate_limit:
        changes["rate_per_second"] = rate_per_second
    with runtime() as rt:
        if problems:
            # said with the values' own faults, at the destination's own bounds, all at once
            # (the service would say those alone)
            d = guarded(lambda: svc.get_destination(rt.uow, tenant, destination_id))
            given = {"concurrency": concurrency, "rate_per_second": rate_per_second}
            for fault in svc.limit_problems(
                d.kind, {k: v for k, v in given.items() if v is not None}
            ):
                problems.append(problem(options[fault.field], fault.rule, fault.message))
            raise bad_input(*problems)
        d = guarded(
            lambda: svc.set_limits(rt.uow, rt.clock, tenant, destination_id, changes),
            options,
        )
    if as_json:
        print_json(dest_out(rt, d))
        return
    rate = d.config.get("rate_per_second")
    console.print(
        f"destination {destination_id}: concurrency {d.config.get('concurrency', 'default')}, "
        + (f"{rate} requests/s" if rate is not None else "no rate limit")
    )


def _moment(field: str, value: str | None) -> datetime | None:
    """An ISO 8601 moment as typed (a date alone is its midnight; no zone is UTC), refused
    with the API's rule for a date-time that is none."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput.one(
            field,
            "datetime",
            f"{value!r} is not a date-time: write it as ISO 8601, e.g. 2026-12-06T08:00:00Z.",
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@app.command()
def pause(
    destination_id: str = typer.Argument(...),
    tenant: str = TENANT,
    reason: str | None = typer.Option(None, help="Why (shown to admins and support)."),
    until: str | None = typer.Option(
        None,
        help="Pause until this time (ISO 8601, e.g. 2026-12-06T08:00:00Z; without a zone, "
        "UTC); without it, until resumed.",
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Hold deliveries to a destination; results wait as pending, nothing is lost."""
    from gradesync.answers.destinations import dest_out

    def go(rt: Runtime) -> Destination:
        return svc.pause(
            rt.uow,
            rt.clock,
            tenant,
            destination_id,
            actor=actor(),
            reason=reason,
            until=_moment("until", until),
        )

    with runtime() as rt:
        d = guarded(lambda: go(rt), {"until": "--until", "reason": "--reason"})
    if as_json:
        print_json(dest_out(rt, d))
        return
    console.print(f"destination {destination_id} paused")


@app.command()
def resume(
    destination_id: str = typer.Argument(...), tenant: str = TENANT, as_json: bool = JSON_OUT
) -> None:
    """Deliver again (also clears a timed or misconfiguration pause)."""
    from gradesync.answers.destinations import dest_out

    with runtime() as rt:
        d = guarded(lambda: svc.resume(rt.uow, rt.clock, rt.waker, tenant, destination_id))
    if as_json:
        print_json(dest_out(rt, d))
        return
    console.print(f"destination {destination_id} resumed")


@app.command()
def delete(
    destination_id: str = typer.Argument(...),
    tenant: str = TENANT,
    yes: bool = YES,
    as_json: bool = JSON_OUT,
) -> None:
    """Delete a destination with its links and delivery ledger (asks first, unless --yes)."""
    with runtime() as rt:
        confirm_delete(
            rt,
            yes,
            f"Delete destination {destination_id} and its ledger?",
            what="destination",
            ident=destination_id,
            find=lambda uow: uow.destinations.get(tenant, destination_id),
        )
        guarded(lambda: svc.delete(rt.uow, rt.clock, tenant, destination_id))
    if as_json:
        print_json({"id": destination_id, "tenant": tenant, "deleted": True})
        return
    console.print(f"destination {destination_id} deleted")
