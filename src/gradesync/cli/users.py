"""`gradesync users ...`: local console accounts for instructors and admins."""

from __future__ import annotations

import typer
from rich.console import Console

from gradesync.cli._common import (
    JSON_OUT,
    TENANT,
    YES,
    confirm_delete,
    guarded,
    id_table,
    print_json,
    print_table,
)
from gradesync.cli._common import runtime as open_runtime
from gradesync.domain.model import UserRole
from gradesync.services.accounts import create_user, delete_user, namesakes

app = typer.Typer(help="Console accounts: add, list, delete.", no_args_is_help=True)
console = Console()


@app.command()
def add(
    tenant: str = TENANT,
    username: str = typer.Argument(..., help="Sign-in name."),
    role: UserRole | None = typer.Option(
        None, help="admin or instructor (a new account: instructor; an update keeps it)."
    ),
    course: list[str] = typer.Option(
        [],
        help="Course id an instructor may see (repeatable; an update given none keeps them).",
    ),
    name: str = typer.Option("", help="Display name (an update given none keeps it)."),
    password: str | None = typer.Option(
        None,
        envvar="GRADESYNC_NEW_PASSWORD",
        help="Asked interactively; or from GRADESYNC_NEW_PASSWORD.",
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Create or update a console account (the password is stored as a scrypt hash). The
    password is asked for (on stderr, so that --json keeps stdout one JSON document), or
    read from GRADESYNC_NEW_PASSWORD. A new password ends the account's console sessions."""
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    with open_runtime() as rt:
        user = guarded(
            lambda: create_user(
                rt.uow,
                rt.clock,
                tenant_id=tenant,
                username=username,
                password=password,
                role=role,
                display_name=name,
                course_ids=course or None,
            )
        )
        with rt.reads() as uow:  # allowed: courses the courseware sends later, but said
            unknown = [c for c in course if uow.courses.get(tenant, c) is None]
        # the same name elsewhere: a sign-in must then name the school
        others = namesakes(rt.uow, tenant, user.username)
    if as_json:
        print_json(
            {
                "tenant": tenant,
                "username": user.username,
                "name": user.display_name,
                "role": user.role.value,
                "course_ids": list(user.course_ids),
                "unknown_course_ids": unknown,
                "also_in_tenants": others,
                "school_needed": bool(others),
            }
        )
        return
    console.print(
        f"account [bold]{user.username}[/bold] ({user.role.value}) saved in tenant {tenant}"
    )
    for c in unknown:
        console.print(
            f"note: no course {c!r} yet; {user.username} sees it once it is sent to gradesync",
            highlight=False,
        )
    if others:
        also = f"tenant{'s' if len(others) > 1 else ''} {', '.join(others)}"
        console.print(
            f"note: {user.username} is also an account in {also}, so signing in must name the "
            "school (tenant id) under 'Several schools on this server?'",
            highlight=False,
        )


@app.command("list")
def list_(
    tenant: str = TENANT,
    as_json: bool = JSON_OUT,
) -> None:
    """List a tenant's console accounts."""
    with open_runtime() as rt, rt.uow() as uow:
        users = uow.users.all(tenant)
    if as_json:
        print_json(
            [
                {
                    "username": u.username,
                    "name": u.display_name,
                    "role": u.role.value,
                    "course_ids": list(u.course_ids),
                }
                for u in users
            ]
        )
        return
    table = id_table("username", "name", "role", "courses")
    for u in users:
        # an admin sees every course; an instructor only the listed ones
        courses = "all" if u.role is UserRole.ADMIN else ", ".join(u.course_ids) or "none"
        table.add_row(u.username, u.display_name, u.role.value, courses)
    print_table(table)


@app.command()
def delete(
    username: str = typer.Argument(..., help="Sign-in name."),
    tenant: str = TENANT,
    yes: bool = YES,
    as_json: bool = JSON_OUT,
) -> None:
    """Delete a console account; its console sessions end with it (asks first, unless --yes)."""
    with open_runtime() as rt:
        confirm_delete(
            rt,
            yes,
            f"Delete account {username} of tenant {tenant}?",
            what="account",
            ident=username,
            find=lambda uow: uow.users.get(tenant, username),
        )
        guarded(lambda: delete_user(rt.uow, tenant, username))
    if as_json:
        print_json({"tenant": tenant, "username": username, "deleted": True})
        return
    console.print(f"account {username} deleted from tenant {tenant}", highlight=False)
