"""`gradesync sandbox`: run the standalone sandbox LMS + SIS on loopback."""

from __future__ import annotations

from pathlib import Path

import typer

from gradesync.cli._common import CliError, problem, report


def sandbox(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8765, help="Port to listen on."),
    seed_file: Path | None = typer.Option(None, help="YAML or JSON seed file (docs/sandbox.md)."),
    mode: str | None = typer.Option(None, help="canvas, moodle or generic LMS rules."),
    base_url: str | None = typer.Option(None, help="Public URL and LTI issuer."),
    rng_seed: int | None = typer.Option(None, help="Seed for random fault decisions."),
    faults: str | None = typer.Option(None, help='JSON, e.g. \'{"scores": {"error_rate": 0.1}}\'.'),
    log_level: str = typer.Option(
        "info", help="critical, error, warning, info, debug or trace (uvicorn's)."
    ),
) -> None:
    """Run the sandbox LMS/SIS that gradesync's demo, tests and benchmarks deliver to."""
    from gradesync.sandbox import cli as sandbox_cli  # loaded only when used

    levels = ("critical", "error", "warning", "info", "debug", "trace")
    if log_level.lower() not in levels:
        raise typer.BadParameter(f"one of {', '.join(levels)}", param_hint="--log-level")
    try:
        options = sandbox_cli.StartOptions(host, port, seed_file, mode, base_url, rng_seed, faults)
        app, config = sandbox_cli.prepare(options)
        sandbox_cli.serve_app(app, config, host, port, log_level.lower())
    except sandbox_cli.StartRefused as refused:
        # the same lines `python -m gradesync.sandbox` prints, with this command's exit codes
        problems = tuple(problem(*p) for p in refused.problems)
        raise report(CliError(refused.exit_code, refused.message, problems)) from None
