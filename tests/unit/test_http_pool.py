"""The shared destination HTTP client (httpx over aiohttp's pool): connections are reused and
one the server closed is dropped, a name is resolved by the guard and the connection goes to
the address it checked (Host kept), what the guard refuses never connects, and aiohttp's
failures reach the adapters as httpx's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from gradesync.adapters.destinations.http_pool import shared_client
from gradesync.adapters.outbound_http import SystemResolver
from gradesync.services.outbound import (
    LOOPBACK_NETWORKS,
    FixedResolver,
    OutboundGuard,
    OutboundPolicy,
    OutboundRefused,
)


class _Server:
    """HTTP/1.1 on loopback: answers each request with keep-alive (echoing the Host header
    and the body's length), and hangs up after its first response when `hang_up` is set;
    `stall` makes it never answer."""

    def __init__(self) -> None:
        self.connections = 0
        self.hosts: list[str] = []
        self.targets: list[str] = []
        self.cookies: list[str] = []
        self.hang_up = False
        self.stall = False
        self.closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode().split("\r\n")
                fields = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
                self.hosts.append(fields.get("host", ""))
                self.targets.append(lines[0].split()[1])
                length = int(fields.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                if self.stall:
                    await asyncio.Event().wait()
                text = f"{lines[0].split()[0]} {len(body)}".encode()
                self.cookies.append(fields.get("cookie", ""))
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: s=1; Path=/\r\n"
                    + f"Content-Length: {len(text)}\r\nX-Twice: a\r\nX-Twice: b\r\n\r\n".encode()
                    + text
                )
                await writer.drain()
                if self.hang_up:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()
        self.closed.set()


@pytest.fixture
async def server() -> AsyncIterator[tuple[_Server, int]]:
    s = _Server()
    srv = await asyncio.start_server(s.handle, "127.0.0.1", 0)
    async with srv:
        yield s, srv.sockets[0].getsockname()[1]


def _client(guard: OutboundGuard, timeout: float = 5.0) -> httpx.AsyncClient:
    return shared_client(timeout=httpx.Timeout(timeout), limits=httpx.Limits(), guard=guard)


def _loopback() -> OutboundGuard:
    return OutboundGuard(OutboundPolicy.allowing(LOOPBACK_NETWORKS), SystemResolver())


async def test_reuses_connections_and_drops_one_the_server_closed(
    server: tuple[_Server, int],
) -> None:
    s, port = server
    url = f"http://127.0.0.1:{port}/"
    async with _client(_loopback()) as http:
        first = await http.post(url, content=b"12345", headers={"Content-Type": "text/plain"})
        assert first.status_code == 200 and first.text == "POST 5"
        assert first.headers.get_list("x-twice") == ["a", "b"]  # repeated headers kept
        assert first.http_version == "HTTP/1.1"
        assert (await http.get(url)).text == "GET 0"
        assert s.connections == 1  # kept alive and reused
        s.hang_up = True
        assert (await http.get(url)).text == "GET 0"
        await s.closed.wait()  # the server has closed the pooled, idle connection
        s.hang_up = False
        assert (await http.get(url)).text == "GET 0"  # a new connection, not the dead one
        assert s.connections == 2
        # the URL goes out as httpx encoded it (an escaped slash stays escaped)
        await http.get(url + "items/a%2Fb?tag=x%2By&q=1+2")
        assert s.targets[-1] == "/items/a%2Fb?tag=x%2By&q=1+2"
        # every answer sets a cookie; none is kept or sent back (one client, every platform)
        assert s.cookies and set(s.cookies) == {""}
        assert not http.cookies


async def test_a_name_connects_to_the_address_the_guard_checked(
    server: tuple[_Server, int],
) -> None:
    s, port = server
    asked: list[str] = []

    class Counting(FixedResolver):
        async def resolve(self, host: str, port: int) -> list[str]:
            asked.append(host)
            return await super().resolve(host, port)

    g = OutboundGuard(
        OutboundPolicy.allowing(["127.0.0.1/32"]),
        Counting({"lms.example.edu": ["127.0.0.1"]}),
    )
    async with _client(g) as http:
        assert (await http.get(f"http://lms.example.edu:{port}/a")).text == "GET 0"
        assert (await http.get(f"http://lms.example.edu:{port}/b")).text == "GET 0"
    assert s.hosts == [f"lms.example.edu:{port}"] * 2  # the URL's Host, not the address
    assert asked == ["lms.example.edu"]  # resolved by the guard, once per new connection


@pytest.mark.parametrize(
    "url",
    [
        "http://inside.example.edu:{port}/",  # a name that resolves inside
        "http://mixed.example.edu:{port}/",  # one of its addresses is inside
        "http://10.0.0.5:{port}/",  # a literal inside
        "http://2130706433:{port}/",  # 127.0.0.1 in decimal, outside the allowed /32
        "ftp://127.0.0.1:{port}/",
    ],
)
async def test_refused_without_connecting(server: tuple[_Server, int], url: str) -> None:
    s, port = server
    g = OutboundGuard(
        OutboundPolicy.allowing(["127.0.0.2/32"]),
        FixedResolver(
            {"inside.example.edu": ["127.0.0.1"], "mixed.example.edu": ["127.0.0.2", "10.0.0.5"]}
        ),
    )
    async with _client(g) as http:
        with pytest.raises(OutboundRefused):
            await http.get(url.format(port=port))
    assert s.connections == 0


async def test_plain_http_only_to_an_allowed_network(server: tuple[_Server, int]) -> None:
    s, port = server
    # nothing allowed: loopback is refused, over http and https alike
    g = OutboundGuard(OutboundPolicy.allowing([]), FixedResolver({"a.example.edu": ["127.0.0.1"]}))
    async with _client(g) as http:
        for url in (f"http://a.example.edu:{port}/", f"https://a.example.edu:{port}/"):
            with pytest.raises(OutboundRefused):
                await http.get(url)
    assert s.connections == 0


async def test_failures_are_httpx_errors(server: tuple[_Server, int]) -> None:
    s, port = server
    g = OutboundGuard(OutboundPolicy.allowing(LOOPBACK_NETWORKS), FixedResolver({}))
    async with _client(g, timeout=0.3) as http:
        with pytest.raises(httpx.ConnectError):  # the name does not resolve
            await http.get(f"http://nowhere.example.edu:{port}/")
        with pytest.raises(httpx.ConnectError):  # nothing listens there
            await http.get("http://127.0.0.1:9/")
        s.stall = True
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"http://127.0.0.1:{port}/")
