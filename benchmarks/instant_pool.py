"""The shared client's pool answering every request at once, with no connection: what the
benchmarks of the layers above the pool (`http_layer`, `send_layers`) run over. gradesync is
imported when it is called, so that a child process measures the checkout its path names
(`send_layers --src`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

Wrap = Callable[["httpx.AsyncBaseTransport"], "httpx.AsyncBaseTransport"]


def answering_at_once(
    head: tuple[tuple[bytes, bytes], ...], body: bytes, then: Wrap | None = None
) -> Wrap:
    """A `wrap` for `shared_client`: its aiohttp pool answers each request with a 200 of
    `head` and `body` without sending it; `then` wraps the pool further (as the runtime
    does)."""
    from gradesync.adapters.destinations.aiohttp_transport import AiohttpTransport, Answer

    answer = Answer(200, head, body, {"http_version": b"HTTP/1.1", "reason_phrase": b"OK"})

    async def instant(*_: Any) -> Answer:
        return answer

    def wrap(pool: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        assert isinstance(pool, AiohttpTransport)
        pool.exchange = instant  # type: ignore[method-assign,assignment]
        return then(pool) if then is not None else pool

    return wrap
