"""The context every `gradesync` command runs in (`cli._settle` gives it to each): its help
wrapped between words only, and the running command's context for the helpers that are not
handed one (`current_context`).

Through typer's public API only: typer (0.26 and later) carries its own copy of click, whose
module its maintainers keep private and free to change (fastapi/typer#1774), and exports of
it `Context`, `BadParameter` and the base of its errors, `TyperException`. The help formatter's
class is the one `typer.Context` names (`formatter_class`), and the running context is kept
here, as each context is entered and left (`with ctx:`, which click does around parsing a
command line and running its callbacks).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import typer

# U+2011, a hyphen no line is broken at: stands in for each "-" while the help is wrapped
_NO_BREAK = "\u2011"

# the help formatter `typer.Context` makes (typer does not export the class itself)
_Formatter: Any = typer.Context.formatter_class


class HelpFormatter(_Formatter):  # type: ignore[misc]  # typer's own, named by its Context
    """click's help, except that a line is never broken at a hyphen: a name typed as it
    reads (`--clear`'s `name-max-length`, `run-now`, a flag's default `no-offline`) stays
    whole at any width."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog.replace("-", _NO_BREAK), args.replace("-", _NO_BREAK), prefix)

    def write_text(self, text: str) -> None:
        super().write_text(text.replace("-", _NO_BREAK))

    def write_dl(
        self, rows: Sequence[tuple[str, str]], col_max: int = 30, col_spacing: int = 2
    ) -> None:
        whole = [(a.replace("-", _NO_BREAK), b.replace("-", _NO_BREAK)) for a, b in rows]
        super().write_dl(whole, col_max, col_spacing)

    def getvalue(self) -> str:
        return str(super().getvalue()).replace(_NO_BREAK, "-")


# the contexts entered in this thread, innermost last (as click keeps its own)
_entered = threading.local()


def _stack() -> list[CommandContext]:
    found: list[CommandContext] | None = getattr(_entered, "stack", None)
    if found is None:
        found = _entered.stack = []
    return found


class CommandContext(typer.Context):
    formatter_class = HelpFormatter

    def __enter__(self) -> CommandContext:
        super().__enter__()
        _stack().append(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            return super().__exit__(exc_type, exc_value, tb)
        finally:
            _stack().pop()


def current_context() -> CommandContext | None:
    """The context of the command running in this thread; None outside one."""
    stack = _stack()
    return stack[-1] if stack else None
