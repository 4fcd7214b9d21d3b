"""Shared bits of the admin CLI groups: the runtime, error reporting, JSON output.

These commands run where `gradesync serve` runs (an admin on the server, with the same
GRADESYNC_DATABASE_URL and GRADESYNC_SECRET_KEY) and call the same use cases through the
runtime as the API and the console.
"""

from __future__ import annotations

import getpass
import json
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from gradesync.cli._context import current_context
from gradesync.domain import run_counts
from gradesync.domain.errors import Conflict, FieldProblem, GradesyncError, InvalidInput, NotFound
from gradesync.domain.run_counts import in_reading_order

if TYPE_CHECKING:
    from gradesync.runtime import Runtime
    from gradesync.services.ports import UnitOfWork

# The runtime (the database layer) and gradesync.answers' response models are imported by the
# commands that use them, when they run: `gradesync --help`, a group's help and a command
# refused while parsing load neither (tests/cli/test_cli_startup.py).

console = Console()
err = Console(stderr=True)
T = TypeVar("T")

# Exit codes of every command (docs/operations.md, "The command line"): 0 done, 1 the
# operation failed (a remote refused, a check failed), 2 bad input (nothing was changed),
# 3 something named was not found, 4 a conflict with what is stored.
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
_ERROR_CODES = {
    EXIT_FAILED: "failed",
    EXIT_BAD_INPUT: "invalid_input",
    EXIT_NOT_FOUND: "not_found",
    EXIT_CONFLICT: "conflict",
}


class _Output:
    """Whether the command running asked for --json (set while its options are parsed), so
    an error is reported as JSON too, wherever it is raised."""

    json = False


def _json_given(value: bool) -> bool:
    _Output.json = bool(value)
    return value


def json_option(
    help: str = "Print JSON instead of text (errors as a JSON object on stdout too).",
) -> Any:
    # eager: read before the other options' callbacks (the tenant check, the write refusal),
    # so that a refusal there is reported as JSON wherever --json stands on the command line
    return typer.Option(False, "--json", help=help, callback=_json_given, is_eager=True)


_SHARED = "gradesync.runtime"  # in the command's context: its runtime, once made

# The commands that always change what is stored. On a schema a newer release upgraded, each
# is refused as its runtime is made, before it reads anything or asks a remote (a `sis
# map-class` asked the SIS about the class, then had only its commit refused); a command
# that writes only when told to calls `will_write` then. Any other write is still refused at
# its commit (`Database.refuse_writes`); reads go on, warning.
WRITES = frozenset(
    {
        "sync",
        "repair",
        "users add",
        "users delete",
        "lti11 add-consumer",
        "sis add",
        "sis map-class",
        "sis unmap-section",
        "sis map-student",
        "sis map-students",
        "sis select",
        "sis post",
        "sis export-csv",
        "platforms add",
        "keys create",
        "keys revoke",
        "keys rotate-tool-key",
        "keys prune-tool-keys",
        "tenants create",
        "policy set",
        "schedules add",
        "schedules edit",
        "schedules pause",
        "schedules resume",
        "schedules pause-all",
        "schedules delete",
        "schedules run-now",
        "import attempts",
        "destinations limits",
        "destinations pause",
        "destinations resume",
        "destinations delete",
    }
)


def command_path(ctx: typer.Context) -> str:
    """The command `ctx` runs, as WRITES names it (`sis map-class`): its path under the
    root's name, however the root was called."""
    return ctx.command_path.removeprefix(ctx.find_root().command_path).strip()


def _command_runtime(ctx: typer.Context) -> Runtime:
    """The runtime of the command `ctx` parses, made on first use and closed when the command
    ends: the tenant check and the command's own work (`runtime()`) share one database
    engine and one schema check. A command of WRITES on a schema it may not write is refused
    here (SchemaNewerWrite), before the tenant check reads anything."""
    rt: Runtime | None = ctx.meta.get(_SHARED)
    if rt is None:
        from gradesync.runtime import Runtime

        rt = Runtime.create()
        ctx.meta[_SHARED] = rt
        ctx.find_root().call_on_close(rt.close)
        if command_path(ctx) in WRITES:
            rt.db.check_writable()
    return rt


def will_write() -> None:
    """The running command is going to change what is stored (one that writes only when told
    to: `tenants roster-match KEY`): on a schema it may not write, refused now
    (SchemaNewerWrite), before it reads or asks a remote anything more."""
    ctx = current_context()
    if ctx is None:
        raise RuntimeError("will_write() needs a running command")
    _command_runtime(ctx).db.check_writable()


def _known_tenant(ctx: typer.Context, tenant: str) -> str:
    """The tenant a command names must exist: refused (exit 3) before the command runs, so
    that listing an unknown tenant, or the right one in the wrong database, does not print
    "none" as if all were well. Read without a write lock (a busy `serve` never holds it up);
    the embedded SQLite default is brought up to date first, as the command's runtime would."""
    if ctx.resilient_parsing:
        return tenant
    known = False
    if tenant:
        with _command_runtime(ctx).reads() as uow:
            known = uow.tenants.get(tenant) is not None
    if not known:
        raise NotFound("tenant", tenant)
    return tenant


TENANT = typer.Option(
    ..., "--tenant", "-t", help="Tenant id.", envvar="GRADESYNC_TENANT", callback=_known_tenant
)
JSON_OUT = json_option()


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name in some containers
        return "cli"


@contextmanager
def runtime() -> Iterator[Runtime]:
    """The runtime of a CLI command. It runs no worker: its waker reaches the workers of
    `gradesync serve`/`gradesync worker` (procrastinate on PostgreSQL; on SQLite the serve
    process finds queued work within its poll interval). The one the tenant check made,
    when it made one (closed with the command)."""
    from gradesync.runtime import Runtime

    ctx = current_context()
    shared: Runtime | None = ctx.meta.get(_SHARED) if ctx is not None else None
    rt = shared or Runtime.create()
    try:
        if shared is None and ctx is not None and command_path(ctx) in WRITES:
            rt.db.check_writable()  # as `_command_runtime` does: before anything is read
        if rt.waker is None:
            rt.waker = rt.remote_waker()
        yield rt
    finally:
        if shared is None:
            rt.close()


@dataclass(frozen=True, slots=True)
class CliError:
    """What went wrong, as every command reports it."""

    exit_code: int
    message: str
    problems: tuple[FieldProblem, ...] = ()
    remedy: str | None = None

    def lines(self, limit: int = 50) -> list[str]:
        """One line per problem (field, message, rule; the first `limit`), else the message
        with what to do."""
        if not self.problems:
            return [self.message + (f" (what to do: {self.remedy})" if self.remedy else "")]
        out = [f"{p.field}: {p.message} [{p.rule}]" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            out.append(f"... and {len(self.problems) - limit} more")
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "error": {
                "code": _ERROR_CODES.get(self.exit_code, "failed"),
                "exit_code": self.exit_code,
                "message": self.message,
                "problems": [
                    {"field": p.field, "rule": p.rule, "message": p.message} for p in self.problems
                ],
                "remedy": self.remedy,
            }
        }


def as_options(problems: list[FieldProblem], options: Mapping[str, str]) -> list[FieldProblem]:
    """Problems named by the use case's fields (`course_id`, `allowed_hosts[0]`) named by the
    command's options instead (`--course`, `--allowed-host`): what the user typed, where the
    problem is located and in its words (`base_url must be ...`, `Give base_url again`: the
    API's names, which the use case's words share with the API, read `--base-url`)."""

    def named(field: str) -> str:
        for name, option in options.items():
            m = re.fullmatch(rf"{re.escape(name)}(\[\d+\])?(.*)", field)
            if m:
                return option + m.group(2)
        return field

    # a field's name (`config.category_match`: `category_match`) said in words: an API name
    # (snake_case) wherever it stands, but not inside a longer name or a route
    # (`{course_id}`); a plain word (`concurrency`) only as the subject its own problem opens
    # with (`concurrency must be ...`), since elsewhere it is English (`needs a name`)
    said = {
        name.rsplit(".", 1)[-1]: option
        for name, option in options.items()
        if option.startswith("--")
    }
    apis = [n for n in said if "_" in n]
    spoken = (
        re.compile(r"(?<![\w.{/-])(" + "|".join(map(re.escape, apis)) + r")(?![\w}-])")
        if apis
        else None
    )

    def words(field: str, message: str) -> str:
        own = re.sub(r"\[\d+\]", "", field).rsplit(".", 1)[-1]
        if own in said and message.startswith(own + " "):
            message = said[own] + message[len(own) :]
        return spoken.sub(lambda m: said[m.group(1)], message) if spoken else message

    return [FieldProblem(named(p.field), p.rule, words(p.field, p.message)) for p in problems]


def _only_missing(problems: list[FieldProblem], named: Collection[str]) -> bool:
    """Whether every problem is an unknown course, person, ... given in one of the fields
    `named` (a thing the command names by its id, as a tenant or a destination; a list's
    item, `activity_ids[1]`, by its list)."""
    return all(
        p.rule.startswith("unknown_") and re.sub(r"\[\d+\]$", "", p.field) in named
        for p in problems
    )


# Something named that is not there, told as the API tells an unknown id in a body (its rule,
# e.g. `unknown_activity`), else `not_found`; named by the option (or argument) it was given in.
_NOT_FOUND_RULES = {w: f"unknown_{w}" for w in ("course", "activity", "person", "destination")}


def _typed_as(names: Collection[str]) -> str | None:
    """How the running command's parameter of one of `names` is typed: its long option
    (`--tenant`), or an argument's metavar (`DESTINATION_ID`); None outside a command."""
    ctx = current_context()
    for param in ctx.command.params if ctx is not None else ():
        if param.name in names:
            if param.param_type_name == "option":
                return max(param.opts, key=len)
            return param.metavar or param.name  # an argument, as --help shows it
    return None


def _not_found(exc: NotFound, options: Mapping[str, str]) -> CliError:
    key = exc.what.replace(" ", "_")
    names = (f"{key}_id", f"{key}_ids", key)
    field = (
        next((options[k] for k in names if k in options), None)
        or _typed_as(names)
        or {"tenant": "--tenant"}.get(key, key)  # refused while parsing: no command yet
    )
    rule = _NOT_FOUND_RULES.get(key, "not_found")
    return CliError(EXIT_NOT_FOUND, str(exc), (FieldProblem(field, rule, str(exc)),))


def error_of(
    exc: BaseException,
    options: Mapping[str, str] | None = None,
    named: Collection[str] = (),
) -> CliError | None:
    """The CliError an exception stands for, or None for one that is not gradesync's.
    `options`: the command's option for each field of the use case (see as_options);
    `named`: the use case's fields naming something by id, not found when unknown (exit 3,
    as a tenant or a destination the command names; the API refuses them as bad input)."""
    from gradesync.adapters.secretbox import SecretBoxError
    from gradesync.services.destination import RemoteFailure

    if isinstance(exc, InvalidInput):
        code = EXIT_NOT_FOUND if _only_missing(exc.problems, named) else EXIT_BAD_INPUT
        problems = as_options(exc.problems, options or {})
        return CliError(code, str(InvalidInput(problems)), tuple(problems))
    if isinstance(exc, NotFound):
        return _not_found(exc, options or {})
    if isinstance(exc, Conflict):
        if exc.field is None:
            return CliError(EXIT_CONFLICT, str(exc))
        at_fault = as_options([FieldProblem(exc.field, exc.rule, str(exc))], options or {})
        return CliError(EXIT_CONFLICT, str(InvalidInput(at_fault)), tuple(at_fault))
    if isinstance(exc, RemoteFailure):
        return CliError(EXIT_FAILED, str(exc), remedy=exc.remedy)
    if isinstance(exc, GradesyncError):
        return CliError(EXIT_FAILED, str(exc))
    if isinstance(exc, SecretBoxError):
        return CliError(
            EXIT_FAILED,
            str(exc),
            remedy="Run the command with the secret key the server uses: the same "
            "GRADESYNC_SECRET_KEY, or the same GRADESYNC_DATA_DIR, which holds it.",
        )
    return None


def report(error: CliError, *, as_json: bool | None = None) -> typer.Exit:
    """Print an error the one way every command does, and the Exit to raise: each line on
    stderr (`error: field: message [rule]`), and with --json the error as a JSON object on
    stdout (so stdout holds one JSON document, success or not; `as_json=False` when the
    command printed its result already)."""
    for line in error.lines():
        # soft_wrap: one message stays one line, whatever the terminal's width
        err.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
    if error.problems and error.remedy:
        err.print(f"what to do: {escape(error.remedy)}", highlight=False, soft_wrap=True)
    if _Output.json if as_json is None else as_json:
        print_json(error.as_json())
    return typer.Exit(error.exit_code)


def fail(message: str, code: int = EXIT_FAILED, *, remedy: str | None = None) -> typer.Exit:
    """An operation that could not be done (or, with its code, something not found)."""
    return report(CliError(code, message, remedy=remedy))


def bad_input(*problems: FieldProblem) -> typer.Exit:
    """Input the command itself refused, every problem at once (nothing was changed)."""
    return report(CliError(EXIT_BAD_INPUT, str(InvalidInput(list(problems))), problems))


def problem(field: str, rule: str, message: str) -> FieldProblem:
    return FieldProblem(field, rule, message)


YES = typer.Option(False, "--yes", help="Do not ask for confirmation (needed with --json).")


def confirm(question: str, yes: bool) -> None:
    """Ask before a change that cannot be undone, unless --yes said so. With --json no
    question is asked (docs/operations.md: a script reads the answer, it does not type one):
    refused as bad input, nothing changed. A question declined ends the command (exit 1)."""
    if yes:
        return
    if _Output.json:
        answer = f"--json asks no question: add --yes to answer {question!r}"
        raise bad_input(problem("--yes", "required", answer))
    # on stderr: stdout holds the result only
    typer.confirm(question, abort=True, err=True)


def confirm_delete(
    rt: Runtime,
    yes: bool,
    question: str,
    *,
    what: str,
    ident: str,
    find: Callable[[UnitOfWork], object | None],
) -> None:
    """Before a delete: unless --yes, look `ident` up with `find` (None: not there) and say a
    missing one as not found before anything is asked (exit 3), then ask `question`."""
    if yes:
        return
    with rt.reads() as uow:
        if find(uow) is None:
            raise NotFound(what, ident)
    confirm(question, yes)


def guarded(
    fn: Callable[[], T], options: Mapping[str, str] | None = None, named: Collection[str] = ()
) -> T:
    """Run `fn`, reporting gradesync's errors (and a destination's refusal) with their exit
    codes: 2 bad input, 3 not found, 4 conflict, 1 failed. A bad field is named by its option
    in `options` ({"course_id": "--course"}), as docs/operations.md promises; an unknown id
    in one of the fields `named` is not found (see error_of)."""
    try:
        return fn()
    except Exception as exc:
        error = error_of(exc, options, named)
        if error is None:
            raise
        raise report(error) from exc


def _default(o: Any) -> Any:
    if isinstance(o, BaseModel):  # an API response model: the JSON the API sends for it
        return o.model_dump(mode="json")
    if isinstance(o, datetime):
        return o.isoformat()
    return str(o)


def print_json(data: Any) -> None:
    """`data` as one JSON document; a command with an API equivalent passes the API's
    response model (or a list of them), so its JSON is the API's, key for key."""
    typer.echo(json.dumps(data, default=_default, indent=2, sort_keys=True))


def when(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "-"


def destination_status(enabled: bool, paused_until: datetime | None) -> str:
    """A destination's state in a table: paused (until resumed), paused until a time, or
    active (pass it as of now: a timed pause that has run out is active)."""
    if not enabled:
        return "paused"
    if paused_until:
        return f"paused until {when(paused_until)}"
    return "active"


def setting_text(value: Any) -> str:
    """A stored setting as a person reads it, never a Python repr: yes/no, `-` for none, a
    list's items and a mapping's pairs (`Quizzes=cat-1`, as `--align` takes them) separated
    by commas."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        pairs = (f"{k}={setting_text(v)}" for k, v in value.items())
        return ", ".join(pairs) or "-"
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(setting_text(v) for v in value) or "-"
    return str(value)


def short_when(dt: datetime | None) -> str:
    """A time for a narrow table column (UTC, to the minute)."""
    return dt.strftime("%m-%d %H:%M") if dt else "-"


def id_table(key: str, *headers: str, **options: Any) -> Table:
    """A table whose first column (`key`: an id the next command takes) is never cut or
    wrapped, however narrow the terminal (rich would shorten it to `sch_9e…`); the other
    cells wrap, and a word too long for its column folds rather than loses its end."""
    return Table(
        Column(key, no_wrap=True), *(Column(h, overflow="fold") for h in headers), **options
    )


def print_table(table: Table) -> None:
    """The table, or an explicit `none` when it has no rows (nothing printed reads like a
    failure)."""
    if table.row_count:
        console.print(table)
    else:
        console.print(f"{table.title}: none" if table.title else "none", highlight=False)


def flat_counts(
    counts: dict[str, Any], *, brief: bool = False, deleted: Mapping[str, str] | None = None
) -> str:
    """A run's counts on one line, in the order a person reads them (`run_counts`): `sent 3,
    sent so far 2, rejected 2 (unknown_user 2)`, each count in words (the reasons keep their
    codes, which docs/troubleshooting.md names); `brief` keeps the outcomes a list of runs
    shows (`run_counts.BRIEF`) that are not zero, and the destinations deleted while the run
    ran. Those are counted as destinations, each named as `deleted` labels it
    (`RunNames.deleted`; its id without) with what the run sent to it before."""
    parts = []
    for key, value in in_reading_order(counts):
        if brief and (key not in run_counts.LISTED or not value):
            continue
        if key == run_counts.DELETED and value:
            parts.append(f"destinations deleted {run_counts.deleted_words(value, deleted)}")
            continue
        key = key.replace("_", " ")
        if isinstance(value, dict):
            if not value:
                continue
            total = sum(v for v in value.values() if isinstance(v, int | float))
            detail = ", ".join(f"{k} {v}" for k, v in in_reading_order(value))
            parts.append(f"{key} {total:g} ({detail})")
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts) or "-"
