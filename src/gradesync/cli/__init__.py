"""The `gradesync` command. Each group lives in its own module and is registered here."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup

from gradesync.cli._context import CommandContext

if TYPE_CHECKING:
    from gradesync.cli._common import CliError

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


class _Gradesync(TyperGroup):
    """The `gradesync` command. Typer builds the commands and groups first, so the root sees
    them all, and settles how each shows itself:

    - its arguments are named in upper case (`DESTINATION_ID`), the way docs/ write them,
      alike in its usage line, its help and its errors (typer's help said `{destination_id}`
      while a not-found error said `DESTINATION_ID`);
    - each runs in a `CommandContext`: its help wrapped between words only, and known to
      the helpers that are not handed it (`_context.current_context`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _settle(self)


def _settle(command: TyperCommand | TyperGroup) -> None:
    command.context_class = CommandContext
    for sub in getattr(command, "commands", {}).values():
        _settle(sub)
    for param in command.params:
        if param.param_type_name == "argument" and param.metavar is None and param.name:
            param.metavar = param.name.upper()


app = typer.Typer(
    cls=_Gradesync,
    help="gradesync: one-way, reliable grade sync into LMS gradebooks and SIS.",
    no_args_is_help=True,
    add_completion=False,
    # click's plain help for every command: an option's names on their line, its help beside
    # or below them, whatever the width. rich's table gives each name, type and help a column,
    # and at 80 columns cut the longer names (`--default-token…`) to fit them all.
    rich_markup_mode=None,
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
    """Run the command; every error it ends with is reported the one way
    (`cli._common.report`): `error: ...` lines on stderr, with --json a JSON object on stdout,
    and the exit code of its kind."""
    from gradesync.cli._common import EXIT_FAILED, CliError, _Output, error_of, report

    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:
        if not _refused_usage(exc):
            raise
        ctx = getattr(exc, "ctx", None)
        if ctx is not None and exc.format_message() == ctx.get_help():
            # a group given no command: its help, as it asks (`no_args_is_help`)
            typer.echo(exc.format_message())
            code = exc.exit_code
        else:
            # refused while parsing: --json may not have been read yet
            _Output.json = _Output.json or "--json" in sys.argv[1:]
            code = report(usage_error(exc)).exit_code
    except typer.Abort:
        code = report(CliError(EXIT_FAILED, "aborted: nothing was changed")).exit_code
    except Exception as exc:
        error = error_of(exc)
        if error is None:
            problem = database_problem(exc)
            error = CliError(EXIT_FAILED, problem) if problem else settings_problem(exc)
        if error is None:
            raise
        # one report an operator can act on, not a driver's traceback; and the last lines: the
        # connection pools' threads may still complain about the database while we exit
        logging.disable(logging.CRITICAL)
        code = report(error).exit_code
        sys.stderr.flush()
    sys.exit(code if isinstance(code, int) else 0)


# click's exit code for a command line it refuses (its UsageError): the errors typer raises
# are told apart by what they carry, as it exports only their base (`_context`)
_USAGE = 2


def _refused_usage(exc: typer.TyperException) -> bool:
    """Whether typer refused the command line itself (an unknown option, a missing or
    malformed value, a group given no command), not a file or the command's own work."""
    return exc.exit_code == _USAGE


def usage_error(exc: typer.TyperException) -> CliError:
    """A refused command line (an unknown option, a missing or malformed value) as a
    problem naming the option and the rule, plus where to look."""
    from gradesync.cli._common import EXIT_BAD_INPUT, CliError
    from gradesync.domain.errors import FieldProblem

    field = "command line"
    rule = "usage"
    # nothing given for it: click's MissingParameter, the one that says which kind it missed
    missing = isinstance(exc, typer.BadParameter) and hasattr(exc, "param_type")
    if isinstance(exc, typer.BadParameter):
        param = exc.param
        if param is not None and param.param_type_name == "argument":
            field = param.metavar or str(param.name)  # as --help names it (DESTINATION_ID)
        elif param is not None:
            field = param.opts[0] if param.opts else str(param.name)
        elif isinstance(exc.param_hint, str):
            field = exc.param_hint
        rule = "required" if missing else "invalid"
    elif hasattr(exc, "possibilities"):  # click's NoSuchOption: the options it knows instead
        field, rule = str(getattr(exc, "option_name", field)), "unknown_option"
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "gradesync"
    said = exc.format_message()
    if isinstance(exc, typer.BadParameter) and not missing:
        said = exc.message  # without click's "Invalid value for '--x':", the field says it
        # an option parsed through pydantic (an enum) says so first: not the user's concern
        said = said.removeprefix("Value error, ")
    message = f"{said} (see `{where} --help`)"
    return CliError(EXIT_BAD_INPUT, message, (FieldProblem(field, rule, message),))


def settings_problem(exc: BaseException) -> CliError | None:
    """Every setting that is wrong, one per line, named as it is set (`GRADESYNC_...`)."""
    from pydantic import ValidationError

    from gradesync.cli._common import EXIT_FAILED, CliError
    from gradesync.domain.errors import FieldProblem

    if not isinstance(exc, ValidationError) or exc.title != "Settings":
        return None
    problems = []
    for e in exc.errors():
        name = "_".join(str(p) for p in e["loc"])
        if e["type"] == "unknown_setting":
            # a line of the file GRADESYNC_CONFIG_FILE names, as written; its value is not
            # echoed: it may be a secret
            problems.append(FieldProblem(name, e["type"], e["msg"]))
            continue
        name = name.upper()
        problems.append(
            FieldProblem("GRADESYNC_" + name, e["type"], f"{e['msg']} (given {e.get('input')!r})")
        )
    return CliError(EXIT_FAILED, "bad settings", tuple(problems))


def database_problem(exc: BaseException) -> str | None:
    """What is wrong with the database settings or server, if `exc` says so."""
    from sqlalchemy import exc as sa

    from gradesync.adapters.queue.procrastinate_app import DatabaseUnavailable
    from gradesync.runtime import SchemaNewer

    if isinstance(exc, DatabaseUnavailable):
        return f"gradesync worker stops: {exc}"
    if isinstance(exc, SchemaNewer):  # every command: an older release on a newer schema
        return str(exc)
    if isinstance(exc, sa.ArgumentError | sa.NoSuchModuleError):
        return f"GRADESYNC_DATABASE_URL is not a database URL gradesync can use ({exc})"
    if isinstance(exc, sa.OperationalError | sa.InterfaceError):
        first = str(exc.orig or exc).strip().splitlines()[0]
        return f"cannot reach the database of GRADESYNC_DATABASE_URL: {first}"
    return None
