"""The shared destination HTTP client: its cheaper idle-connection check answers as
httpcore's does, and the pool still drops a connection the server closed."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpcore
import httpx
import pytest

from gradesync.adapters.destinations.http_pool import _Stream, shared_client
from gradesync.adapters.outbound_http import SystemResolver
from gradesync.services.outbound import LOOPBACK_NETWORKS, OutboundGuard, OutboundPolicy


class _Inner(httpcore.AsyncNetworkStream):
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def get_extra_info(self, info: str) -> Any:
        return self.sock if info == "socket" else f"inner:{info}"


def test_is_readable_follows_the_socket() -> None:
    ours, peer = socket.socketpair()
    try:
        stream = _Stream(_Inner(ours))
        assert stream.get_extra_info("is_readable") is False  # idle, nothing pending
        assert stream.get_extra_info("server_addr") == "inner:server_addr"  # passed on
        peer.close()  # the server hangs up: the next read would return b""
        assert stream.get_extra_info("is_readable") is True
        ours.close()
        assert stream.get_extra_info("is_readable") is True  # no descriptor: drop it
    finally:
        ours.close()
        peer.close()


class _Server:
    """HTTP/1.1 on loopback: answers each request with keep-alive, and hangs up on a
    connection after its first response when `hang_up` is set."""

    def __init__(self) -> None:
        self.connections = 0
        self.hang_up = False
        self.closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                if self.hang_up:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()
        await writer.wait_closed()
        self.closed.set()


@pytest.fixture
async def server() -> AsyncIterator[tuple[_Server, str]]:
    s = _Server()
    srv = await asyncio.start_server(s.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    async with srv:
        yield s, f"http://127.0.0.1:{port}/"


async def test_client_reuses_connections_and_drops_one_the_server_closed(
    server: tuple[_Server, str],
) -> None:
    s, url = server
    guard = OutboundGuard(OutboundPolicy.allowing(LOOPBACK_NETWORKS), SystemResolver())
    async with shared_client(
        timeout=httpx.Timeout(5.0), limits=httpx.Limits(), guard=guard
    ) as http:
        first = await http.get(url)
        assert isinstance(first.extensions["network_stream"], _Stream)
        assert (await http.get(url)).text == "ok"
        assert s.connections == 1  # kept alive and reused
        s.hang_up = True
        assert (await http.get(url)).text == "ok"
        await s.closed.wait()  # the server has closed the pooled, idle connection
        s.hang_up = False
        # without the readability check this request would go to the dead connection and
        # fail with "server disconnected"
        assert (await http.get(url)).text == "ok"
        assert s.connections == 2
