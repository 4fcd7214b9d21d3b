"""`gradesync serve`: API, LTI endpoints, console and the in-process worker, in one process."""

from __future__ import annotations

import logging

import typer
import uvicorn

from gradesync.config import load_settings
from gradesync.runtime import Runtime
from gradesync.web.app import create_app


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
) -> None:
    """Run gradesync (SQLite by default; migrations applied automatically on SQLite)."""
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    runtime = Runtime.create(settings)
    app = create_app(runtime)
    app.state.run_worker = True  # the in-process worker (docs/operations.md)
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower())
