"""Destination changes told across processes through PostgreSQL's notifications.

A write that pauses, resumes, edits or deletes a destination also sends
`NOTIFY gradesync_destinations` in its own transaction (PostgreSQL delivers it at commit,
and not at all on rollback). Each worker process listens on one connection of its own and
passes every notification to its `DestinationSignals`, so its engines re-read that
destination before their next send instead of before every send.
"""

from __future__ import annotations

import json
import logging
import threading

import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from gradesync.services.database_lost import OutageNotice
from gradesync.services.destination_signals import DestinationSignals

log = logging.getLogger(__name__)

CHANNEL = "gradesync_destinations"


def notify_destination(conn: Connection, tenant_id: str, destination_id: str) -> None:
    """Announce, at this transaction's commit, that the destination changed (PostgreSQL;
    nothing elsewhere: a SQLite database has one server process)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": CHANNEL, "payload": json.dumps([tenant_id, destination_id])},
        )


class DestinationListener:
    """LISTENs on its own connection in a thread; reconnects after a failure. While it is
    not listening, `signals.other_processes_heard` is False (engines re-read before sends)."""

    def __init__(self, url: str, signals: DestinationSignals, *, retry_seconds: float = 2.0):
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.signals = signals
        self._retry = retry_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()  # set while LISTEN is in force

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="gradesync-destination-listener", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def _run(self) -> None:
        outage = OutageNotice(log, "listening for destination changes")
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.signals.other_processes_heard = True
                    self.listening.set()
                    outage.answered()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._pass_on(note.payload)
            except Exception as exc:
                if self._stop.is_set():
                    break
                outage.failed(exc)  # one line an outage, not one a retry
            finally:
                self.signals.other_processes_heard = False
                self.listening.clear()
            self._stop.wait(self._retry)

    def _pass_on(self, payload: str) -> None:
        try:
            tenant_id, destination_id = json.loads(payload)
        except (ValueError, TypeError):
            log.warning("a destination notification that is not [tenant, id]: %r", payload)
            return
        self.signals.changed(str(tenant_id), str(destination_id))
