"""`gradesync db ...`: schema migrations."""

from __future__ import annotations

import typer
from rich.console import Console

from gradesync.adapters.db import migrate
from gradesync.adapters.db.database import Database
from gradesync.config import load_settings

app = typer.Typer(help="Database schema: upgrade, show the current revision.", no_args_is_help=True)
console = Console()


@app.command()
def upgrade() -> None:
    """Apply every pending migration (safe to run repeatedly)."""
    db = Database.from_settings(load_settings())
    db.upgrade()
    console.print(f"database at {', '.join(sorted(migrate.current_revisions(db.engine)))}")
    if not db.is_sqlite:
        # distributed workers: procrastinate's job tables, in their own schema
        from gradesync.adapters.queue.procrastinate_app import ensure_schema

        if ensure_schema(db.url):
            console.print("procrastinate schema installed")


@app.command()
def current() -> None:
    """Show the database's revision and whether it is up to date."""
    db = Database.from_settings(load_settings())
    cur = ", ".join(sorted(migrate.current_revisions(db.engine))) or "empty"
    state = "up to date" if db.is_up_to_date() else "behind: run `gradesync db upgrade`"
    console.print(f"{cur} ({state})")
