"""`gradesync worker`: a worker process for the distributed mode (PostgreSQL).

Run any number of them on any number of machines against the same database. Each runs the
same engine as the worker inside `gradesync serve`, woken through procrastinate.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import typer

from gradesync.cli._common import bad_input, problem

if TYPE_CHECKING:
    from gradesync.adapters.metrics_server import MetricsServer
    from gradesync.runtime import Runtime

log = logging.getLogger(__name__)

MAX_NAME = 100  # the worker id, with the host, pid and random part, fits its 255 columns


def worker(
    concurrency: int = typer.Option(
        0, help="Procrastinate jobs run at once (0: the worker_concurrency setting)."
    ),
    name: str = typer.Option(
        "",
        help="This worker's name: its id in run records (requeued by, resumed by), leases "
        "and procrastinate's job records is NAME@host:pid:random (without it, "
        "host:pid:random). Up to 100 characters, no spaces.",
    ),
    metrics_address: str = typer.Option(
        "",
        help="Serve /metrics at HOST:PORT (port 0: a free one, logged) for Prometheus to "
        "scrape this worker's delivery counters (default: the worker_metrics_address setting; "
        "empty: none).",
    ),
) -> None:
    """Deliver grades: compute dirty keys, send due results, run sync runs (PostgreSQL)."""
    from gradesync import logs
    from gradesync.adapters.collector import settle_for_serving
    from gradesync.adapters.open_files import raise_open_files_limit
    from gradesync.config import load_settings
    from gradesync.runtime import Runtime

    if len(name) > MAX_NAME or any(c.isspace() for c in name):
        raise bad_input(
            problem("--name", "worker_name", f"Up to {MAX_NAME} characters, without spaces.")
        )
    settings = load_settings()
    logs.configure(settings.log_level, settings.log_format)
    raise_open_files_limit()  # a pool per platform: see gradesync.adapters.open_files
    runtime = Runtime.create(settings, serving=True)
    if runtime.on_sqlite:
        raise bad_input(
            problem(
                "GRADESYNC_DATABASE_URL",
                "postgresql",
                "gradesync worker needs PostgreSQL (postgresql://...); on SQLite the worker "
                "runs inside `gradesync serve`",
            )
        )
    try:
        # another key than the stored secrets' (a new machine without GRADESYNC_SECRET_KEY
        # generates one) would fail every grade and send one by one: refuse to start
        runtime.db.check_secret_key()
    except BaseException:
        runtime.close()
        raise
    runtime.prepare_queue()
    try:
        scrape = (
            _serve_metrics(runtime, metrics_address, "--metrics-address")
            if metrics_address
            else _serve_metrics(
                runtime, settings.worker_metrics_address, "GRADESYNC_WORKER_METRICS_ADDRESS"
            )
        )
    except BaseException:  # an address refused: the database connections go too
        runtime.close()
        raise

    async def main() -> None:
        await runtime.run_queue_worker(
            concurrency=concurrency or settings.worker_concurrency,
            name=name or None,
            patience=settings.worker_database_patience_seconds,
        )

    settle_for_serving()  # built: what the process holds now lives as long as it
    try:
        asyncio.run(main())
    finally:
        if scrape is not None:
            scrape.close()
        runtime.close()


def _serve_metrics(runtime: Runtime, address: str, field: str) -> MetricsServer | None:
    """This worker's `/metrics`: its counters (results delivered, rejected, retried, send
    latency, outbound requests) are counted here and nowhere else. `field` names where the
    address came from, for an error."""
    from gradesync.adapters.metrics_server import MetricsServer
    from gradesync.config import host_and_port

    if not address:
        return None
    try:
        host, port = host_and_port(address, field)
    except ValueError as exc:
        raise bad_input(problem(field, "host_port", str(exc))) from None
    try:
        server = MetricsServer(host, port, runtime.metrics_text, runtime.settings.metrics_token)
    except OSError as exc:
        raise bad_input(
            problem(field, "address_free", f"cannot serve /metrics at {address}: {exc}")
        ) from None
    log.info("metrics at %s", server.url)
    return server
