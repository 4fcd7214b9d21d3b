"""`/metrics` served by a process without the web app (`gradesync worker`): its delivery
counters are its own, so Prometheus scrapes every worker as well as `serve`.

A small threaded WSGI server from the standard library: a scrape is one GET a few times a
minute, and the exposition is the one `serve` gives (`Runtime.metrics_text`).
"""

from __future__ import annotations

import hmac
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress never holds up the process's exit


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """One line per scrape to stderr would drown the worker's own log."""


def metrics_app(render: Callable[[], bytes], token: str | None) -> Callable[..., Iterable[bytes]]:
    """A WSGI app answering GET /metrics with `render()`, behind the bearer token if set."""

    def app(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: scrape /metrics\n"]
        if token:
            given = environ.get("HTTP_AUTHORIZATION", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                start("401 Unauthorized", [("WWW-Authenticate", "Bearer")])
                return [b""]
        body = render()
        start("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [body]

    return app


class MetricsServer:
    """Serves `/metrics` from a thread of its own until `close`."""

    def __init__(
        self, host: str, port: int, render: Callable[[], bytes], token: str | None
    ) -> None:
        self._server = make_server(
            host,
            port,
            metrics_app(render, token),
            server_class=_Server6 if ":" in host else _Server,
            handler_class=_Quiet,
        )
        host, port = self._server.socket.getsockname()[:2]
        # where it answers (the port chosen when asked for 0)
        self.url = (
            f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="gradesync-metrics", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
