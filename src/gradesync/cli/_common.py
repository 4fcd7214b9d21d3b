"""Shared bits of the admin CLI groups: the runtime, error reporting, JSON output.

These commands run where `gradesync serve` runs (an admin on the server, with the same
GRADESYNC_DATABASE_URL and GRADESYNC_SECRET_KEY) and call the same use cases through the
runtime as the API and the console.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gradesync.domain.errors import Conflict, GradesyncError, InvalidInput, NotFound
from gradesync.runtime import Runtime

console = Console()
err = Console(stderr=True)
T = TypeVar("T")

TENANT = typer.Option(..., "--tenant", "-t", help="Tenant id.", envvar="GRADESYNC_TENANT")
JSON_OUT = typer.Option(False, "--json", help="Print JSON instead of a table.")


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name in some containers
        return "cli"


@contextmanager
def runtime() -> Iterator[Runtime]:
    """The runtime of a CLI command. It runs no worker: its waker reaches the workers of
    `gradesync serve`/`gradesync worker` (procrastinate on PostgreSQL; on SQLite the serve
    process finds queued work within its poll interval)."""
    rt = Runtime.create()
    if rt.waker is None:
        rt.waker = rt.remote_waker()
    try:
        yield rt
    finally:
        rt.close()


def fail(message: str, code: int = 2) -> typer.Exit:
    # soft_wrap: one message stays one line, whatever the terminal's width
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def guarded(fn: Callable[[], T]) -> T:
    """Run `fn`, turning gradesync's errors into a clear message and exit code 2
    (3 for something not found, 4 for a conflict)."""
    try:
        return fn()
    except InvalidInput as exc:
        for p in exc.problems:
            err.print(
                f"[red]error:[/red] {escape(f'{p.field}: {p.message} [{p.rule}]')}",
                highlight=False,
            )
        raise typer.Exit(2) from exc
    except NotFound as exc:
        raise fail(str(exc), 3) from exc
    except Conflict as exc:
        raise fail(str(exc), 4) from exc
    except GradesyncError as exc:
        raise fail(str(exc)) from exc


def _default(o: Any) -> Any:
    if isinstance(o, datetime):
        return o.isoformat()
    return str(o)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, default=_default, indent=2, sort_keys=True))


def when(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "-"


def short_when(dt: datetime | None) -> str:
    """A time for a narrow table column (UTC, to the minute)."""
    return dt.strftime("%m-%d %H:%M") if dt else "-"


def print_table(table: Table) -> None:
    """The table, or an explicit `none` when it has no rows (nothing printed reads like a
    failure)."""
    if table.row_count:
        console.print(table)
    else:
        console.print(f"{table.title}: none" if table.title else "none", highlight=False)


# what a person looks for in a list of runs (`runs show` and --json give every count)
BRIEF_COUNTS = ("sent", "unchanged", "pending", "retrying", "skipped", "rejected", "differs")


def flat_counts(counts: dict[str, Any], *, brief: bool = False) -> str:
    """A run's counts on one line: `sent 3, rejected 2 (unknown_user 2)`; `brief` keeps the
    outcomes in BRIEF_COUNTS that are not zero."""
    parts = []
    for key, value in sorted(counts.items()):
        if brief and (key not in BRIEF_COUNTS or not value):
            continue
        if isinstance(value, dict):
            if not value:
                continue
            total = sum(v for v in value.values() if isinstance(v, int | float))
            detail = ", ".join(f"{k} {v}" for k, v in sorted(value.items()))
            parts.append(f"{key} {total:g} ({detail})")
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts) or "-"
