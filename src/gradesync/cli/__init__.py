"""The `gradesync` command. Each group lives in its own module and is registered here."""

from __future__ import annotations

import logging
import sys

import typer

from gradesync.cli import (
    db,
    destinations,
    doctor,
    import_,
    keys,
    lti11,
    platforms,
    policy,
    runs,
    sandbox,
    schedules,
    serve,
    sis,
    sync,
    tenants,
    users,
    worker,
)

app = typer.Typer(
    help="gradesync: one-way, reliable grade sync into LMS gradebooks and SIS.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("serve")(serve.serve)
app.command("worker")(worker.worker)
app.command("sandbox")(sandbox.sandbox)
app.add_typer(db.app, name="db")
app.add_typer(users.app, name="users")
app.add_typer(lti11.app, name="lti11")
app.add_typer(sis.app, name="sis")
app.add_typer(platforms.app, name="platforms")
# one `keys` group: tenant API keys (cli/keys.py) and the LTI tool keys (cli/platforms.py)
keys.app.registered_commands.extend(platforms.keys_app.registered_commands)
app.add_typer(keys.app, name="keys")
app.add_typer(tenants.app, name="tenants")
app.add_typer(policy.app, name="policy")
app.command("sync")(sync.sync)
app.add_typer(runs.app, name="runs")
app.add_typer(schedules.app, name="schedules")
app.add_typer(import_.app, name="import")
# diagnostics (cli/doctor.py); `destinations check` joins the destinations group from there
destinations.app.command("check")(doctor.destinations_check)
app.command("doctor")(doctor.doctor)
app.command("overrides")(doctor.overrides)
app.command("repair")(doctor.repair)
app.add_typer(destinations.app, name="destinations")


def main() -> None:
    try:
        app()
    except Exception as exc:
        problem = database_problem(exc) or settings_problem(exc)
        if problem is None:
            raise
        # one line an operator can act on, not a driver's traceback; and the last line: the
        # connection pools' threads may still complain about the database while we exit
        logging.disable(logging.CRITICAL)
        sys.stderr.write(f"error: {problem}\n")
        sys.stderr.flush()
        sys.exit(1)


def settings_problem(exc: BaseException) -> str | None:
    """Every setting that is wrong, one per line, named as it is set (`GRADESYNC_...`)."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError) or exc.title != "Settings":
        return None
    lines = []
    for e in exc.errors():
        name = "GRADESYNC_" + "_".join(str(p) for p in e["loc"]).upper()
        lines.append(f"{name}: {e['msg']} (given {e.get('input')!r})")
    return "bad settings:\n  " + "\n  ".join(lines)


def database_problem(exc: BaseException) -> str | None:
    """What is wrong with the database settings or server, if `exc` says so."""
    from sqlalchemy import exc as sa

    from gradesync.adapters.queue.procrastinate_app import DatabaseUnavailable

    if isinstance(exc, DatabaseUnavailable):
        return f"gradesync worker stops: {exc}"
    if isinstance(exc, sa.ArgumentError | sa.NoSuchModuleError):
        return f"GRADESYNC_DATABASE_URL is not a database URL gradesync can use ({exc})"
    if isinstance(exc, sa.OperationalError | sa.InterfaceError):
        first = str(exc.orig or exc).strip().splitlines()[0]
        return f"cannot reach the database of GRADESYNC_DATABASE_URL: {first}"
    return None
