"""Two writers in a set order: the first holds its transaction open while the second runs in
a thread until it is done, or waits on a lock the first holds. On PostgreSQL (READ
COMMITTED) the second commits in the middle of the first unless a lock the first holds makes
it wait; on SQLite the first's transaction holds the write lock from its first statement
(BEGIN IMMEDIATE), and the second always runs after it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from gradesync.adapters.db.database import Database

_WAITING = text(
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


@dataclass
class Second:
    """The second writer: what it returned or raised once `finish` has joined it."""

    thread: threading.Thread
    done: threading.Event
    blocked: bool  # it was waiting on a lock when the first went on
    outcome: dict[str, Any] = field(default_factory=dict)

    def finish(self) -> Any:
        self.thread.join(30)
        assert self.done.is_set(), "the second writer never finished"
        if "error" in self.outcome:
            raise self.outcome["error"]
        return self.outcome.get("value")


def start_second(db: Database, fn: Callable[[], Any]) -> Second:
    """Run `fn` in a thread; return once it finished or waits on a database lock. On SQLite
    at once, its thread started: called inside a write transaction that has run a statement,
    whose write lock the second's statements wait for, whenever its thread gets to them."""
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the test by `finish`
            outcome["error"] = exc
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if db.is_sqlite:
        return Second(thread, done, False, outcome)
    deadline = time.monotonic() + 30
    blocked = False
    # autocommit: pg_stat_activity is read afresh by each statement, not once per transaction
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        while not done.wait(0.01):
            if conn.execute(_WAITING).scalar_one():
                blocked = True
                break
            assert time.monotonic() < deadline, "the second writer neither ended nor waited"
    return Second(thread, done, blocked, outcome)


class AfterFirstRead:
    """A unit-of-work factory whose first call of `repo.method` (say `destinations.get`) is
    followed, before the unit of work's next statement, by another process's change
    (`other`, run by `start_second`): the interleaving PostgreSQL's READ COMMITTED allows
    between a read and the write decided from it. `method` may name several (the read a
    change made before its fix, the statement it makes now): the first called is followed;
    with `nth`, the nth call of them (an earlier one only checks, say). `second` holds that
    writer, to `finish` once the first has committed."""

    def __init__(
        self,
        db: Database,
        repo: str,
        method: str | tuple[str, ...],
        other: Callable[[], Any],
        *,
        nth: int = 1,
    ) -> None:
        self.db, self.repo, self.other, self.left = db, repo, other, nth
        self.methods = (method,) if isinstance(method, str) else method
        self.second: Second | None = None

    @contextmanager
    def __call__(self) -> Iterator[Any]:
        with self.db.uow() as uow:
            inner, outer = getattr(uow, self.repo), self

            def followed(read: Callable[..., Any]) -> Callable[..., Any]:
                def then(*args: Any, **kwargs: Any) -> Any:
                    result = read(*args, **kwargs)
                    outer.left -= 1
                    if outer.left == 0:
                        outer.second = start_second(outer.db, outer.other)
                    return result

                return then

            for name in self.methods:
                setattr(inner, name, followed(getattr(inner, name)))
            try:
                yield uow
            finally:
                for name in self.methods:
                    vars(inner).pop(name, None)

    def finish(self) -> Any:
        assert self.second is not None, f"none of {self.repo}.{self.methods} was called"
        return self.second.finish()
