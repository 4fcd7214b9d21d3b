"""The `gradesync` command. Each group lives in its own module and is registered here."""

from __future__ import annotations

import typer

from gradesync.cli import db, serve, users

app = typer.Typer(
    help="gradesync: one-way, reliable grade sync into LMS gradebooks and SIS.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("serve")(serve.serve)
app.add_typer(db.app, name="db")
app.add_typer(users.app, name="users")


def main() -> None:
    app()
