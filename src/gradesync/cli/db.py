"""`gradesync db ...`: schema migrations."""

from __future__ import annotations

import typer

from gradesync.cli._common import JSON_OUT, console, print_json

app = typer.Typer(help="Database schema: upgrade, show the current revision.", no_args_is_help=True)


@app.command()
def upgrade(as_json: bool = JSON_OUT) -> None:
    """Apply every pending migration (safe to run repeatedly)."""
    from gradesync.runtime import Runtime

    state = Runtime.upgrade_schema()
    if as_json:
        print_json(
            {
                "revisions": list(state.revisions),
                "up_to_date": state.up_to_date,
                "queue_schema_installed": state.queue_schema_installed,
            }
        )
        return
    console.print(f"database at {', '.join(state.revisions)}", highlight=False)
    if state.queue_schema_installed:
        # distributed workers: procrastinate's job tables, in their own schema
        console.print("procrastinate schema installed")


@app.command()
def current(as_json: bool = JSON_OUT) -> None:
    """Show the database's revision and whether it is up to date."""
    from gradesync.runtime import Runtime

    state = Runtime.schema_state()
    if as_json:
        print_json(
            {
                "revisions": list(state.revisions),
                "up_to_date": state.up_to_date,
                "newer": state.newer,
            }
        )
        return
    cur = ", ".join(state.revisions) or "empty"
    state_text = (
        "up to date"
        if state.up_to_date
        else "newer than this release: run the release that upgraded it"
        if state.newer
        else "behind: run `gradesync db upgrade`"
    )
    console.print(f"{cur} ({state_text})", highlight=False)
