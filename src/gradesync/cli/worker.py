"""`gradesync worker`: a worker process for the distributed mode (PostgreSQL).

Run any number of them on any number of machines against the same database. Each runs the
same engine as the worker inside `gradesync serve`, woken through procrastinate.
"""

from __future__ import annotations

import asyncio

import typer

from gradesync import logs
from gradesync.adapters.open_files import raise_open_files_limit
from gradesync.cli._common import bad_input, problem
from gradesync.config import load_settings
from gradesync.runtime import Runtime


def worker(
    concurrency: int = typer.Option(
        0, help="Procrastinate jobs run at once (0: the worker_concurrency setting)."
    ),
    name: str = typer.Option("", help="Worker name in logs and job records."),
) -> None:
    """Deliver grades: compute dirty keys, send due results, run sync runs (PostgreSQL)."""
    settings = load_settings()
    logs.configure(settings.log_level, settings.log_format)
    raise_open_files_limit()  # a pool per platform: see gradesync.adapters.open_files
    runtime = Runtime.create(settings)
    if runtime.on_sqlite:
        raise bad_input(
            problem(
                "GRADESYNC_DATABASE_URL",
                "postgresql",
                "gradesync worker needs PostgreSQL (postgresql://...); on SQLite the worker "
                "runs inside `gradesync serve`",
            )
        )
    runtime.prepare_queue()

    async def main() -> None:
        await runtime.run_queue_worker(
            concurrency=concurrency or settings.worker_concurrency,
            name=name or None,
            patience=settings.worker_database_patience_seconds,
        )

    try:
        asyncio.run(main())
    finally:
        runtime.close()
