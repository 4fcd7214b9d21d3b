"""What a log line is about: request id, tenant, run id, destination.

Held in a context variable, so every line logged while handling a request, running a run or
talking to a destination carries them (asyncio tasks and worker threads start with the
context they were started from). The logging setup (`gradesync.logs`) adds them to each
record; nothing here logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import Context, ContextVar, Token, copy_context

FIELDS = ("request_id", "tenant", "run_id", "destination")
PREFIX = "gradesync_"  # of the same fields given with one line (`fields`)

_current: ContextVar[dict[str, str] | None] = ContextVar("gradesync_log_context", default=None)


def current() -> Mapping[str, str]:
    return _current.get() or {}


def bind(**fields: str | None) -> None:
    """Add fields to the innermost `bound` block: seen by the whole of it, also when called
    from a worker thread the block's code waits on (e.g. the tenant an API key names, found
    in a dependency that runs in a thread)."""
    given = {k: v for k, v in fields.items() if v is not None}
    held = _current.get()
    if held is None:
        _current.set(given)
    else:
        held.update(given)


def fields(**given: str | None) -> dict[str, str]:
    """For a line about something other than the current context (a logging call's `extra`):
    `log.warning(..., extra=log_context.fields(destination=d.id))`."""
    return {f"{PREFIX}{k}": v for k, v in given.items() if v is not None}


def detached() -> Context:
    """The current context without log fields, for a task that outlives the block starting it
    and serves every run and request after it (`asyncio.create_task(..., context=detached())`):
    started lazily from inside a run, such a task would otherwise name that run on each line
    it logs for as long as the process lives."""
    ctx = copy_context()
    ctx.run(_current.set, None)
    return ctx


class bound:  # named as the function it replaced: `with log_context.bound(...)`
    """Add fields for the duration of the block (a request, a run, a call to a destination).
    A class rather than a generator: entered for every result sent, where `@contextmanager`
    cost several times as much. Each block makes its own (`with bound(...)`): one holds the
    token of one entry, so entering it again before it is left is refused, not let reset
    another block's fields."""

    __slots__ = ("_given", "_token")

    def __init__(self, **fields: str | None) -> None:
        self._given = {k: v for k, v in fields.items() if v is not None}
        self._token: Token[dict[str, str] | None] | None = None

    def __enter__(self) -> None:
        if self._token is not None:
            raise RuntimeError("log_context.bound is entered once at a time: make one per block")
        self._token = _current.set({**(_current.get() or {}), **self._given})

    def __exit__(self, *exc: object) -> None:
        token, self._token = self._token, None
        assert token is not None  # entered: Python calls __exit__ only after __enter__
        _current.reset(token)
