"""`gradesync db ...`: schema migrations."""

from __future__ import annotations

import typer
from rich.console import Console

from gradesync.runtime import Runtime

app = typer.Typer(help="Database schema: upgrade, show the current revision.", no_args_is_help=True)
console = Console()


@app.command()
def upgrade() -> None:
    """Apply every pending migration (safe to run repeatedly)."""
    state = Runtime.upgrade_schema()
    console.print(f"database at {', '.join(state.revisions)}")
    if state.queue_schema_installed:
        # distributed workers: procrastinate's job tables, in their own schema
        console.print("procrastinate schema installed")


@app.command()
def current() -> None:
    """Show the database's revision and whether it is up to date."""
    state = Runtime.schema_state()
    cur = ", ".join(state.revisions) or "empty"
    state_text = "up to date" if state.up_to_date else "behind: run `gradesync db upgrade`"
    console.print(f"{cur} ({state_text})")
