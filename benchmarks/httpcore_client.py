"""The HTTP client gradesync's destination adapters used before aiohttp's pool: httpx over
httpcore's pool, behind the outbound guard, with a cheaper idle-connection check. Kept as the
comparison in `benchmarks/http_clients.py`.

httpcore asks every idle pooled connection whether the server has closed it each time it
hands out or takes back a connection (several times per request), and its anyio stream
answers by building anyio's whole socket attribute map (a `getpeername()` system call and a
dozen closures) only to reach the raw socket. The stream below keeps the raw socket and
makes the same `poll()` test httpcore makes; everything else goes to httpcore unchanged.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx

from gradesync.adapters.outbound_http import guard_transport
from gradesync.services.outbound import OutboundGuard


def _readable(sock: socket.socket) -> bool:
    """httpcore's `is_socket_readable`: data (or the server's EOF) waits to be read."""
    fd = sock.fileno()
    if fd < 0:  # closed: as readable, so the connection is dropped
        return True
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(0))


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._sock: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._sock is not None:
            return _readable(self._sock)
        return self._inner.get_extra_info(info)


class _Backend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(
            await self._inner.connect_tcp(
                host,
                port,
                timeout=timeout,
                local_address=local_address,
                socket_options=socket_options,
            )
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(
            await self._inner.connect_unix_socket(
                path, timeout=timeout, socket_options=socket_options
            )
        )

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def httpcore_client(
    *,
    timeout: httpx.Timeout,
    limits: httpx.Limits,
    guard: OutboundGuard,
    wrap: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` (no redirects followed) that sends only where the outbound
    `guard` allows and whose pool checks idle connections cheaply. Should httpx or httpcore
    ever be laid out differently, the cheap check is left out: slower, never wrong. `wrap`
    puts a transport around the pool (e.g. one that counts)."""
    transport = httpx.AsyncHTTPTransport(limits=limits)
    pool = getattr(transport, "_pool", None)
    cheap = hasattr(select, "poll") and isinstance(pool, httpcore.AsyncConnectionPool)
    guarded = guard_transport(transport, guard, wrap_backend=_Backend if cheap else None)
    outer: httpx.AsyncBaseTransport = guarded if wrap is None else wrap(guarded)
    return httpx.AsyncClient(
        timeout=timeout, limits=limits, follow_redirects=False, transport=outer
    )
