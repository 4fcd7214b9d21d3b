"""`gradesync tenants ...`: create and list tenants."""

from __future__ import annotations

import typer

from gradesync.cli._common import (
    JSON_OUT,
    TENANT,
    console,
    guarded,
    id_table,
    print_json,
    print_table,
    runtime,
    when,
    will_write,
)
from gradesync.services import auth
from gradesync.services.tenants import create_tenant, list_tenants, set_roster_match
from gradesync.services.tenants import roster_match as current_roster_match

app = typer.Typer(help="Tenants: create, list, roster matching.", no_args_is_help=True)


@app.command()
def create(
    tenant_id: str = typer.Argument(..., help="Short lowercase id, e.g. 'northwind-u'."),
    name: str = typer.Option("", "--name", help="Display name."),
    key: bool = typer.Option(True, "--key/--no-key", help="Also issue a first admin API key."),
    as_json: bool = JSON_OUT,
) -> None:
    """Create a tenant and print its first admin API key (shown once: store it now)."""
    with runtime() as rt:
        t = guarded(lambda: create_tenant(rt.uow, rt.clock, tenant_id, name))
        issued = None
        if key:
            issued = guarded(
                lambda: auth.create_key(rt.uow, rt.clock, t.id, "first admin key", ["admin"])
            )
    if as_json:
        out: dict[str, object] = {"id": t.id, "name": t.name, "created_at": t.created_at}
        if issued is not None:
            out["key"] = {
                "id": issued.key.id,
                "scopes": list(issued.key.scopes),
                "token": issued.token,
            }
        print_json(out)
        return
    console.print(f"tenant [bold]{t.id}[/bold] ({t.name}) created")
    if issued is not None:
        console.print(f"admin API key {issued.key.id} (shown once):")
        typer.echo(issued.token)


@app.command("list")
def list_(as_json: bool = JSON_OUT) -> None:
    """List tenants."""
    with runtime() as rt:
        tenants = list_tenants(rt.uow)
    if as_json:
        print_json([{"id": t.id, "name": t.name, "created_at": t.created_at} for t in tenants])
        return
    table = id_table("id", "name", "created")
    for t in tenants:
        table.add_row(t.id, t.name, when(t.created_at))
    print_table(table)


@app.command("roster-match")
def roster_match(
    key: str | None = typer.Argument(
        None, help="sis_id, email or lms_user_id; left out: show the current one."
    ),
    tenant_id: str = TENANT,
    as_json: bool = JSON_OUT,
) -> None:
    """How LMS rosters (NRPS) match courseware learners who never launched (by SIS id
    unless set)."""
    if key is not None:
        will_write()
    with runtime() as rt:
        if key is None:
            key = guarded(lambda: current_roster_match(rt.uow, tenant_id)).value
        else:
            guarded(lambda: set_roster_match(rt.uow, rt.clock, tenant_id, key))
    if as_json:
        print_json({"id": tenant_id, "roster_match": key})
        return
    console.print(f"tenant [bold]{tenant_id}[/bold]: roster members are matched by {key}")
