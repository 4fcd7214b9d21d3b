"""A request the database cannot serve for now (an outage, a restart, no connection free,
SQLite's file held by another writer) is answered 503 with `Retry-After`, not a 500: the
client should send it again as it was (an attempt with the same `source_event_id`), and the
log gets one line when the outage starts and one when it ends (`OutageNotice`), not a
traceback per request. Any other error still reaches the server's handler as a bug, the
database's own about this request included (a missing table, a full disk, a cancelled
statement): sent again, it would fail again.

A plain ASGI middleware inside `RequestObserver`, so the 503 is counted and logged with its
request id like any answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gradesync.services.database_lost import OutageNotice, database_outage

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5  # PostgreSQL restarts in seconds; a failover takes a few more

_DETAIL = (
    "The database is unavailable for now. Send the same request again after "
    f"{RETRY_AFTER_SECONDS} s: an attempt with the same source_event_id is stored once."
)


class DatabaseUnavailableAnswer:
    """`answers` tells whether the database takes work again (`Runtime.database_answers`:
    on SQLite its write lock, which a read does not need). During an outage a request that
    goes through may not have needed the database (`/healthz`) or only read it, so it alone
    does not say the outage ended: after it, `answers` is asked in a task of its own (the
    request is neither held nor timed by it), one at a time."""

    def __init__(self, app: ASGIApp, *, answers: Callable[[], bool]) -> None:
        self.app = app
        self._answers = answers
        self._outage = OutageNotice(
            log, "serving requests", f"answering 503 with Retry-After: {RETRY_AFTER_SECONDS}"
        )
        self._asking: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started or not database_outage(exc):
                raise
            self._outage.failed(exc)
            await _answer_503(scope, send)
        else:
            self._ask_if_down()

    def _ask_if_down(self) -> None:
        """Once the response is sent: while an outage was said, whether it has ended."""
        if not self._outage.down or (self._asking is not None and not self._asking.done()):
            return
        # kept: the loop holds its tasks only weakly
        self._asking = asyncio.create_task(self._ask(self._outage.outages))

    async def _ask(self, since: int) -> None:
        if await asyncio.to_thread(self._answers):
            self._outage.answered(since)


async def _answer_503(scope: Scope, send: Send) -> None:
    if str(scope.get("path", "")).startswith("/api/"):
        body = json.dumps({"detail": _DETAIL}).encode()
        kind = b"application/json"
    else:  # the console, LTI launches: a person reads it
        body = _DETAIL.encode()
        kind = b"text/plain; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", kind),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
