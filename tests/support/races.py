"""Two writers in a set order on PostgreSQL: the first holds its transaction open while the
second runs in a thread until it is done, or waits on a lock the first holds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
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
    """Run `fn` in a thread; return once it finished or waits on a database lock."""
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
