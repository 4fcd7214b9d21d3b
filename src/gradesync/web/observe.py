"""Every HTTP request: a request id (the caller's `X-Request-ID` when it is a sensible one),
bound to the log context and echoed in the response; counted by route template and status
(`gradesync_http_requests_total`); one access log line unless `GRADESYNC_ACCESS_LOG=false`.

A plain ASGI middleware, so streamed responses pass through untouched.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gradesync.adapters import metrics
from gradesync.services import log_context

access = logging.getLogger("gradesync.access")

_SENSIBLE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def route_of(scope: Scope, path: str) -> str:
    """The matched route's template (`/api/v1/runs/{run_id}`), never the raw path: ids in
    paths would make a label per learner. Unmatched paths (404s) share one label.

    A route of an included router knows only its own part (`/runs/{run_id}`): the prefix it
    was included under is the part of the path before the route's own part matches."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    regex = getattr(route, "path_regex", None)
    if not isinstance(template, str) or not template:
        return "unmatched"
    if regex is None or regex.match(path):
        return template
    start = path.find("/", 1)
    while start > 0:
        if regex.match(path[start:]):
            return path[:start] + template
        start = path.find("/", start + 1)
    return template


class RequestObserver:
    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SENSIBLE_ID.fullmatch(given) else uuid.uuid4().hex
        status = 500  # what the server answers when the app fails before starting a response

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        path = str(scope.get("path", ""))  # routers may rewrite the scope's path
        started = time.perf_counter()
        with log_context.bound(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                method = str(scope.get("method", ""))
                metrics.count_http(method, route_of(scope, path), status, seconds)
                if self.access_log:
                    access.info(
                        '%s "%s %s" %d %.1f ms',
                        _client(scope),
                        method,
                        path,
                        status,
                        seconds * 1000.0,
                    )


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"
