"""`gradesync keys ...`: a tenant's API keys (only a hash is stored; the token is shown once)."""

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
)
from gradesync.services import auth

app = typer.Typer(
    help="API keys: create, list, revoke (and the LTI tool keys).", no_args_is_help=True
)


@app.command()
def create(
    tenant: str = TENANT,
    name: str = typer.Option(..., "--name", help="Who uses the key, e.g. 'courseware prod'."),
    scope: list[str] = typer.Option(
        ..., "--scope", "-s", help="ingest, sync or admin (repeatable; admin implies all)."
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Issue an API key. The token is printed once on stdout; store it now."""
    with runtime() as rt:
        issued = guarded(
            lambda: auth.create_key(rt.uow, rt.clock, tenant, name, scope),
            {"name": "--name", "scopes": "--scope"},
        )
    if as_json:
        k = issued.key
        print_json(
            {
                "id": k.id,
                "name": name,
                "tenant": tenant,
                "scopes": list(k.scopes),
                "token": issued.token,
            }
        )
        return
    console.print(
        f"key {issued.key.id} ({', '.join(issued.key.scopes)}) for tenant {tenant} (shown once):",
        highlight=False,
    )
    typer.echo(issued.token)


@app.command("list")
def list_(tenant: str = TENANT, as_json: bool = JSON_OUT) -> None:
    """List a tenant's keys (ids, names, scopes; never the tokens)."""
    with runtime() as rt:
        keys = auth.list_keys(rt.uow, tenant)
    if as_json:
        print_json(
            [
                {
                    "id": k.id,
                    "name": k.name,
                    "scopes": list(k.scopes),
                    "created_at": k.created_at,
                    "revoked_at": k.revoked_at,
                }
                for k in keys
            ]
        )
        return
    table = id_table("id", "name", "scopes", "created", "status")
    for k in keys:
        status = f"revoked {when(k.revoked_at)}" if k.revoked_at else "active"
        table.add_row(k.id, k.name, ", ".join(k.scopes), when(k.created_at), status)
    print_table(table)


@app.command()
def revoke(
    key_id: str = typer.Argument(..., help="The key id (the part after 'gs_' in the token)."),
    tenant: str = TENANT,
    as_json: bool = JSON_OUT,
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    with runtime() as rt:
        guarded(lambda: auth.revoke_key(rt.uow, rt.clock, tenant, key_id))
    if as_json:
        print_json({"id": key_id, "tenant": tenant, "revoked": True})
        return
    console.print(f"key {key_id} revoked")
