"""The outbound-request guard on the HTTP side: every client gradesync sends requests with.

The host name of a request is resolved once, every address is checked against the policy
(`gradesync.services.outbound`), and the connection is made to a checked address: a name
cannot resolve to a public address for the check and to a private one for the connection
(DNS rebinding). TLS still verifies the certificate for the host name (SNI) and the Host
header is the URL's, because only the address the socket connects to changes.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx

from gradesync.config import Settings
from gradesync.services.outbound import OutboundGuard, OutboundPolicy, OutboundRefused

# Set around each request by GuardedTransport: the connection opened for it (if any) carries
# plain http. httpcore opens a request's connection in the request's own task.
_PLAIN_HTTP: contextvars.ContextVar[bool] = contextvars.ContextVar("plain_http", default=False)


class SystemResolver:
    """The operating system's resolver (getaddrinfo), TCP addresses only."""

    async def resolve(self, host: str, port: int) -> list[str]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    def resolve_now(self, host: str, port: int) -> list[str]:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


def guard_from_settings(settings: Settings) -> OutboundGuard:
    return OutboundGuard(
        OutboundPolicy.allowing(settings.outbound_allowed_networks), SystemResolver()
    )


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the guard accepts, to the very address it checked."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, guard: OutboundGuard) -> None:
        self._inner = inner
        self.guard = guard

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self.guard.addresses(host, port, plain_http=_PLAIN_HTTP.get())
        except OSError as exc:  # the name does not resolve (now): a connection failure
            raise httpcore.ConnectError(f"{host}: {exc}") from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None  # `addresses` is never empty
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused(path, "unix sockets are not an outbound destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncBaseTransport):
    """Refuses what is not http(s) and tells the backend whether a request is plain http."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        scheme = request.url.scheme
        if scheme not in ("http", "https"):
            raise OutboundRefused(str(request.url), f"{scheme} is not http(s)")
        token = _PLAIN_HTTP.set(scheme == "http")
        try:
            return await self._inner.handle_async_request(request)
        finally:
            _PLAIN_HTTP.reset(token)

    async def aclose(self) -> None:
        await self._inner.aclose()


def guard_transport(
    transport: httpx.AsyncHTTPTransport,
    guard: OutboundGuard,
    wrap_backend: Any = None,
) -> GuardedTransport:
    """Put the guard into an httpx transport's connection pool (fails closed: a transport
    laid out otherwise is an error, never an unguarded client)."""
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if not isinstance(backend, httpcore.AsyncNetworkBackend):
        raise RuntimeError("httpx's transport has no network backend to guard")
    if wrap_backend is not None:
        backend = wrap_backend(backend)
    pool._network_backend = GuardedBackend(backend, guard)  # type: ignore[union-attr]
    return GuardedTransport(transport)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The one TLS context of the process's one-off clients (httpx's default: certificates
    verified against certifi's bundle, or SSL_CERT_FILE / SSL_CERT_DIR). Each context holds
    the whole CA bundle in OpenSSL's memory (about 830 kB) and takes milliseconds of CPU to
    load it: made per client, every console check, roster read or registration made one."""
    return httpx.create_ssl_context()


def guarded_client(
    guard: OutboundGuard,
    *,
    timeout: float | httpx.Timeout = 15.0,
    limits: httpx.Limits | None = None,
    wrap: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
) -> httpx.AsyncClient:
    """A one-off client (no redirects followed) that sends only where the guard allows.
    `wrap` puts a transport around the guarded one (e.g. one that counts the requests)."""
    limits = limits or httpx.Limits()
    transport: httpx.AsyncBaseTransport = guard_transport(
        httpx.AsyncHTTPTransport(limits=limits, verify=tls_context()), guard
    )
    if wrap is not None:
        transport = wrap(transport)
    return httpx.AsyncClient(
        timeout=timeout, limits=limits, follow_redirects=False, transport=transport
    )
