"""`gradesync sandbox`: run the standalone sandbox LMS + SIS on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from gradesync.cli._common import EXIT_BAD_INPUT, CliError, problem, report


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
    from gradesync.sandbox.app import create_app

    levels = ("critical", "error", "warning", "info", "debug", "trace")
    if log_level.lower() not in levels:
        raise typer.BadParameter(f"one of {', '.join(levels)}", param_hint="--log-level")
    try:
        config = sandbox_cli.build_config(host, port, seed_file, mode, base_url, rng_seed, faults)
        app = create_app(config)  # the seed's references are checked here
    except Exception as exc:
        error = _seed_problem(exc, seed_file)
        if error is None:
            raise
        raise report(error) from exc
    try:
        sandbox_cli.serve_app(app, config, host, port, log_level.lower())
    except sandbox_cli.StartRefused as refused:
        # the same line `python -m gradesync.sandbox` prints, as `gradesync serve` says it
        raise report(CliError(refused.exit_code, refused.message)) from None


def _seed_problem(exc: BaseException, seed_file: Path | None) -> CliError | None:
    """A seed file or --faults the sandbox refuses, one line per problem naming the field's
    path in the file (`tools[0].scopes`) and the rule, not a traceback."""
    import json

    import yaml
    from pydantic import ValidationError

    where = f" (in {seed_file})" if seed_file else ""
    if isinstance(exc, ValidationError):
        problems = tuple(
            problem(
                _path(e["loc"], seed_file),
                e["type"],
                str(e["msg"]).removeprefix("Value error, ") + where,
            )
            for e in exc.errors()
        )
        return CliError(EXIT_BAD_INPUT, "the sandbox's seed or faults are refused", problems)
    if isinstance(exc, json.JSONDecodeError):
        return CliError(EXIT_BAD_INPUT, str(exc), (problem("--faults", "json", str(exc)),))
    if isinstance(exc, OSError):
        message = f"cannot read {exc.filename or seed_file}: {exc.strerror or exc}"
        return CliError(EXIT_BAD_INPUT, message, (problem("--seed-file", "unreadable", message),))
    if isinstance(exc, yaml.YAMLError | ValueError):
        # an unreadable or unparsable file, or a seed naming what is not there ("field: ...")
        text = " ".join(str(exc).split())
        field, sep, message = text.partition(": ")
        if not sep or " " in field:
            field, message = "--seed-file", text
        return CliError(EXIT_BAD_INPUT, text, (problem(field, "invalid", message + where),))
    return None


def _path(loc: tuple[Any, ...], seed_file: Path | None) -> str:
    """("seed", "tools", 0, "scopes") as `tools[0].scopes`: how it reads in the file, which
    holds the seed at its top level unless it has a `seed:` key."""
    parts = list(loc)
    if parts[:1] == ["seed"] and seed_file is not None and not _has_seed_key(seed_file):
        parts = parts[1:]
    if parts[:1] == ["faults"] and seed_file is None:
        return "--faults" + "".join(f".{p}" for p in parts[1:])
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "--seed-file"


def _has_seed_key(seed_file: Path) -> bool:
    from gradesync.sandbox.config import load_seed_file

    return "seed" in load_seed_file(seed_file)
