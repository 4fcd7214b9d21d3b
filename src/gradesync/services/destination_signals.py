"""News that a destination changed (paused, resumed, edited, deleted), told to the sync
engines at once instead of each engine re-reading the destination before every send.

In one process, the unit of work tells `SIGNALS` of each destination it wrote (an admin's
pause, an edited registration, a SIS connection's new mapping, a breaker's pause) after its
commit, and every engine of the process re-reads that destination before its next send.
Across processes on PostgreSQL, the write itself sends a notification (NOTIFY, delivered at
commit) that a listener in each worker process (`adapters.db.notifications`) passes to its
own `SIGNALS`. Engines still re-read every destination on a slow fallback poll, for a
change no signal reached (a listener reconnecting, a CLI command on SQLite in a second
process).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Listener = Callable[[str, str], None]


class DestinationSignals:
    """Listeners are called in the thread that announces a change: they must only hand the
    news to their own event loop (`loop.call_soon_threadsafe`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        # Whether a change made by another process reaches this one (a PostgreSQL listener
        # is connected, or no other process sends). While False, engines re-read before
        # sends as if there were no signals.
        self.other_processes_heard = False

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Hear every change; returns the function that stops it."""
        with self._lock:
            self._listeners.append(listener)

        def stop() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return stop

    def changed(self, tenant_id: str, destination_id: str) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(tenant_id, destination_id)


# The process's signals: one per process, as there is one set of engines per process.
SIGNALS = DestinationSignals()
