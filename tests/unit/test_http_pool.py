"""The shared destination HTTP client (httpx over aiohttp's pool): connections are reused and
one the server closed is dropped, a name is resolved by the guard and the connection goes to
the address it checked (Host kept), what the guard refuses never connects, and aiohttp's
failures reach the adapters as httpx's. The fast path sends the very bytes httpx's client
sends, answers with httpx's responses and errors, and is counted; other calls are httpx's."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gradesync.adapters import metrics
from gradesync.adapters.destinations.http_fast import Response
from gradesync.adapters.destinations.http_pool import shared_client
from gradesync.adapters.destinations.lti11 import sign_request
from gradesync.adapters.destinations.observed import CountingTransport
from gradesync.adapters.outbound_http import SystemResolver
from gradesync.services import log_context
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
    `stall` makes it never answer, `drop` hang up without answering; `answer` replaces the
    answer. Each request's head is kept as it came (`heads`)."""

    def __init__(self) -> None:
        self.connections = 0
        self.hosts: list[str] = []
        self.targets: list[str] = []
        self.cookies: list[str] = []
        self.hang_up = False
        self.stall = False
        self.drop = False
        self.answer: bytes | None = None
        self.heads: list[bytes] = []
        self.closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.heads.append(head)
                lines = head.decode().split("\r\n")
                fields = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
                self.hosts.append(fields.get("host", ""))
                self.targets.append(lines[0].split()[1])
                length = int(fields.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                if self.stall:
                    await asyncio.Event().wait()
                if self.drop:
                    break
                if self.answer is not None:
                    writer.write(self.answer)
                    await writer.drain()
                    continue
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


def _client(guard: OutboundGuard, timeout: float = 5.0, **kw: Any) -> httpx.AsyncClient:
    return shared_client(timeout=httpx.Timeout(timeout), limits=httpx.Limits(), guard=guard, **kw)


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


# --- the fast path: the adapters' plain calls skip httpx's client layer ----------------------


def _metric(status: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "gradesync_outbound_requests_total",
        {"tenant": "t-fast", "destination": "d-fast", "status": status},
    )
    return value or 0.0


async def test_the_fast_path_sends_the_same_bytes_as_httpx(server: tuple[_Server, int]) -> None:
    s, port = server
    base = f"http://127.0.0.1:{port}/"
    calls: list[tuple[str, str, dict[str, Any]]] = [
        (
            "POST",
            base + "items/a%2Fb?tag=x%2By&q=1+2",
            {
                "content": b'{"scoreGiven": 1}',
                "headers": {"Authorization": "Bearer t", "Content-Type": "application/json"},
                "timeout": 5.0,
            },
        ),
        ("post", base + "x", {"headers": {"ACCEPT": "application/json", "User-Agent": "gs"}}),
        ("PUT", base + "x", {"content": b""}),
        ("GET", base + "x?q=%C3%A9", {"headers": {"Accept": "application/json"}}),
        ("DELETE", httpx.URL(base + "x"), {"timeout": httpx.Timeout(5.0)}),
    ]
    for fast in (False, True):
        async with _client(_loopback(), fast=fast) as http:
            for method, url, kw in calls:
                resp = await http.request(method, url, **kw)
                assert isinstance(resp, Response) is fast  # the path taken
    n = len(calls)
    slow, quick = s.heads[:n], s.heads[n:]
    assert quick == slow  # request line and header lines, byte for byte
    first = slow[0].decode().split("\r\n")
    assert first[0] == "POST /items/a%2Fb?tag=x%2By&q=1+2 HTTP/1.1"
    names = {line.split(":")[0] for line in first[1:] if line}
    assert {"host", "user-agent", "accept", "accept-encoding", "connection"} <= names
    assert f"host: 127.0.0.1:{port}" in first and "content-length: 17" in first
    assert "content-length: 0" in slow[1].decode() and "user-agent: gs" in slow[1].decode()


async def test_the_fast_path_puts_repeated_headers_together_once(
    server: tuple[_Server, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Header lines are kept by what they depend on: calls that repeat them send what httpx
    sends, a changed token, body length or client default included, and the client's
    defaults are read out once for each set of them, not once a call."""
    s, port = server
    url = f"http://127.0.0.1:{port}/scores"
    one, other = {"Authorization": "Bearer one"}, {"Authorization": "Bearer two"}
    steps: list[tuple[bytes | None, dict[str, str], dict[str, str]]] = [
        (b'{"a":1}', one, {}),
        (b'{"a":12}', one, {}),  # another length
        (b'{"a":1}', other, {}),  # another token
        (None, other, {}),  # no body: Content-Length 0
        (b'{"a":1}', one, {"X-Extra": "1"}),  # the client's defaults changed in between
        (b'{"a":1}', one, {"X-Extra": "2"}),
    ]
    for fast in (False, True):
        async with _client(_loopback(), fast=fast) as http:
            for content, headers, defaults in steps:
                http.headers.update(defaults)
                resp = await http.request("POST", url, content=content, headers=dict(headers))
                assert isinstance(resp, Response) is fast
    n = len(steps)
    assert s.heads[n:] == s.heads[:n]  # byte for byte
    assert b"x-extra: 2" in s.heads[-1] and b"content-length: 8" in s.heads[n + 1]

    read: list[object] = []
    real = httpx.Headers.multi_items

    def counting(self: httpx.Headers) -> list[tuple[str, str]]:
        read.append(self)
        return real(self)

    monkeypatch.setattr(httpx.Headers, "multi_items", counting)
    async with _client(_loopback()) as http:
        for _ in range(5):
            await http.request("POST", url, content=b"{}", headers=dict(one))
    assert len(read) == 1


async def test_a_signed_call_leaves_the_header_lines_kept_as_they_were(
    server: tuple[_Server, int],
) -> None:
    """An LTI 1.1 call is signed on its own (OAuth 1.0a: nonce, timestamp, signature): its
    lines are made for it and not kept, so the bearer calls' entries stay and no signed
    Authorization is held. It still takes the fast path and sends what httpx sends."""
    s, port = server
    url = f"http://127.0.0.1:{port}/pox"
    body = b"<imsx_POXEnvelopeRequest/>"
    signed = [sign_request(url, body, "key", "secret") for _ in range(3)]
    for fast in (False, True):
        async with _client(_loopback(), fast=fast) as http:
            await http.post(url, content=b"{}", headers={"Authorization": "Bearer t"})
            heads = http._heads._made  # type: ignore[attr-defined]
            kept = dict(heads)
            for headers in signed:
                resp = await http.post(url, content=body, headers=headers)
                assert isinstance(resp, Response) is fast
            assert heads == kept and len(kept) == fast
            assert "OAuth " not in repr(heads)
    n = 1 + len(signed)
    assert s.heads[n:] == s.heads[:n]  # byte for byte
    assert b"authorization: OAuth " in s.heads[-1]


async def test_fast_path_answers_are_httpx_responses(server: tuple[_Server, int]) -> None:
    s, port = server
    url = f"http://127.0.0.1:{port}/a"
    async with _client(_loopback()) as http:
        resp = await http.post(url, content=b"12345", headers={"Authorization": "Bearer t"})
        assert isinstance(resp, Response)
        assert resp.is_success and resp.text == "POST 5"
        assert resp.headers.get_list("x-twice") == ["a", "b"]
        assert resp.http_version == "HTTP/1.1" and resp.reason_phrase == "OK"
        assert resp.elapsed.total_seconds() > 0
        # the request httpx would have sent, made when asked for
        assert resp.request.method == "POST" and resp.request.url == url
        assert resp.request.headers["authorization"] == "Bearer t"
        assert resp.request.content == b"12345"

        s.answer = (  # the charset is the Content-Type's
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
            + b"Content-Length: 4\r\n\r\n"
            + "café".encode("latin-1")
        )
        assert (await http.get(url)).text == "café"
        s.answer = (
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
            + b"Content-Length: 13\r\n\r\n"
            + b'{"word": "a"}'
        )
        resp = await http.get(url)
        assert resp.json() == {"word": "a"} and not resp.is_success
        with pytest.raises(httpx.HTTPStatusError) as refused:
            resp.raise_for_status()
        assert refused.value.request.url == url

        packed = gzip.compress(b'{"ok": true}')
        s.answer = (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(packed)
            + packed
        )
        assert (await http.get(url)).json() == {"ok": True}  # decoded as httpx decodes


async def test_other_calls_take_httpx_path(server: tuple[_Server, int]) -> None:
    s, port = server
    url = f"http://127.0.0.1:{port}/"
    async with _client(_loopback()) as http:
        for resp in (
            await http.post(url, data={"grant_type": "client_credentials"}),
            await http.post(url, json={"a": 1}),
            await http.get(url, params={"q": "1"}),
            await http.get(url, headers=httpx.Headers({"Accept": "text/plain"})),
            await http.post(url, content="text"),
            await http.get(url, follow_redirects=True),
        ):
            assert resp.is_success and not isinstance(resp, Response)
        assert s.targets[2] == "/?q=1"
        with pytest.raises(UnicodeEncodeError):  # not ASCII: refused by httpx, as before
            await http.get(url, headers={"X-Name": "café"})


async def test_fast_path_failures_are_the_same_httpx_errors(server: tuple[_Server, int]) -> None:
    s, port = server
    g = OutboundGuard(OutboundPolicy.allowing(LOOPBACK_NETWORKS), FixedResolver({}))
    async with _client(g, timeout=30.0) as http:
        with pytest.raises(httpx.ConnectError) as failed:
            await http.post("http://127.0.0.1:9/x", content=b"1", headers={"A": "b"})
        assert failed.value.request.url == "http://127.0.0.1:9/x"  # made for the error
        assert failed.value.request.headers["a"] == "b"
        s.drop = True
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(f"http://127.0.0.1:{port}/", content=b"1")
        s.drop, s.stall = False, True
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.ReadTimeout):  # the call's own timeout, not the client's
            await http.post(f"http://127.0.0.1:{port}/", content=b"1", timeout=0.3)
        assert asyncio.get_running_loop().time() - started < 5


async def test_counted_on_both_paths(server: tuple[_Server, int]) -> None:
    _, port = server
    url = f"http://127.0.0.1:{port}/"
    ok, error = _metric("200"), _metric("error")
    async with _client(_loopback(), wrap=CountingTransport) as http:
        with log_context.bound(tenant="t-fast", destination="d-fast"):
            assert isinstance(await http.post(url, content=b"1"), Response)
            assert _metric("200") == ok + 1
            await http.post(url, data={"a": "1"})  # httpx's path, through the transport
            assert _metric("200") == ok + 2
            with pytest.raises(httpx.ConnectError):
                await http.post("http://127.0.0.1:9/", content=b"1")
            assert _metric("error") == error + 1


async def test_any_other_wrapper_sees_every_request(server: tuple[_Server, int]) -> None:
    _, port = server
    seen: list[str] = []

    class Recording(httpx.AsyncBaseTransport):
        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self.inner = inner

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request.method)
            return await self.inner.handle_async_request(request)

    async with _client(_loopback(), wrap=Recording) as http:
        resp = await http.post(f"http://127.0.0.1:{port}/", content=b"1")
        assert resp.text == "POST 1" and not isinstance(resp, Response)
    assert seen == ["POST"]


@pytest.mark.parametrize("fast", [True, False])
async def test_a_request_in_flight_when_the_pool_closes_fails_and_sends_nothing(
    server: tuple[_Server, int], fast: bool
) -> None:
    """A request still checking its host when the process closes the pool (another caller's
    request in flight as the pool is dropped) must not open a new pool of its own, which
    nothing would ever close."""
    s, port = server
    entered, gate = asyncio.Event(), asyncio.Event()

    class Gated(OutboundGuard):  # holds the check of the host until the gate opens
        async def addresses(self, host: str, port: int, *, plain_http: bool) -> list[str]:
            entered.set()
            await gate.wait()
            return await super().addresses(host, port, plain_http=plain_http)

    guard = Gated(OutboundPolicy.allowing(LOOPBACK_NETWORKS), SystemResolver())
    http = _client(guard, fast=fast)
    sent = asyncio.create_task(http.get(f"http://127.0.0.1:{port}/"))
    await entered.wait()
    await http.aclose()
    gate.set()
    with pytest.raises(httpx.ConnectError, match="closed"):
        await sent
    assert s.connections == 0


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        'text/plain; CHARSET="ISO-8859-1"',
        "text/plain;charset=windows-1252; format=flowed",
        "text/plain; charset*=us-ascii''latin-1",
        "",
    ],
)
def test_the_charset_is_the_one_httpx_reads(content_type: str) -> None:
    # read once per distinct Content-Type, and as httpx's own answer reads it
    headers = {"Content-Type": content_type}
    ours = Response(200, headers=headers, content=b"x").charset_encoding
    assert ours == httpx.Response(200, headers=headers, content=b"x").charset_encoding
    assert Response(200, headers=headers).charset_encoding == ours


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"resultUrl": "https://lms/r/1"}'),
        ("application/json; charset=utf-8", '{"a": "café"}'.encode()[:-3]),  # cut mid-character
        ("text/plain; charset=iso-8859-1", "café".encode("latin-1")),
        ("text/plain; charset=utf-16", "déjà".encode("utf-16")),
        ("text/plain; charset=x-no-such-codec", "naïve".encode()),
        (None, b"\xff\xfe plain"),
        ("application/json", b""),
    ],
)
def test_the_text_is_the_one_httpx_reads(content_type: str | None, body: bytes) -> None:
    """A fast-path answer's text and encoding are httpx's own, read in one call."""
    raw = [(b"content-length", b"%d" % len(body))]
    if content_type is not None:
        raw.insert(0, (b"Content-Type", content_type.encode()))
    ext = {"http_version": b"HTTP/1.1", "reason_phrase": b"OK"}
    ours = Response.received(200, raw, body, ext)
    theirs = httpx.Response(200, headers=raw, content=body)
    assert (ours.text, ours.encoding) == (theirs.text, theirs.encoding)
    again = Response.received(200, raw, body, ext)
    again.encoding = "latin-1"  # set before the text is read, as httpx allows
    assert again.text == body.decode("latin-1")
    with pytest.raises(ValueError):
        again.encoding = "utf-8"  # and refuses once it is


def test_an_answer_is_made_as_httpx_makes_it_but_its_headers_when_read() -> None:
    """`Response.received` sets what httpx's own constructor sets (a new httpx that sets
    another attribute fails here), its headers made from the lines only when read."""
    lines = [(b"Content-Type", b"application/json"), (b"X-Twice", b"a"), (b"x-twice", b"b")]
    body = b'{"resultUrl": "https://lms/r/1"}'
    ext = {"http_version": b"HTTP/1.1", "reason_phrase": b"OK"}
    ours = Response.received(201, lines, body, ext)
    theirs = httpx.Response(201, headers=lines, stream=httpx.ByteStream(body), extensions=ext)
    made = dict(vars(theirs))  # what httpx's constructor sets
    mine = {k: v for k, v in vars(ours).items() if k not in ("_lines", "_content_type")}
    # the body is read at once (`_content`, the stream consumed and closed); no headers yet
    assert set(mine) == set(made) - {"headers"} | {"_content"}
    for name, value in made.items():
        if name not in ("stream", "headers", "is_closed", "is_stream_consumed"):
            assert mine[name] == value, name
    assert ours.extensions is not ext  # copied, as httpx copies it
    theirs.read()
    assert (ours.status_code, ours.text, ours.json()) == (201, theirs.text, theirs.json())
    assert ours.is_closed and ours.is_stream_consumed
    assert ours.headers.raw == theirs.headers.raw and ours.headers.get_list("x-twice") == [
        "a",
        "b",
    ]
    ours.headers = httpx.Headers({"a": "1"})  # set as on any httpx answer
    assert ours.headers["a"] == "1"


@pytest.mark.parametrize(
    "lines",
    [
        [(b"Content-Type", b"text/plain; charset=iso-8859-1"), (b"content-type", b"text/html")],
        [(b"Content-Type", "text/plain; charset=iso-8859-1; x=é".encode())],
        [(b"X-Other", "é".encode()), (b"Content-Type", b"text/plain; charset=iso-8859-1")],
    ],
    ids=["two-lines", "not-ascii", "other-not-ascii"],
)
def test_an_unusual_content_type_is_read_as_httpx_reads_it(
    lines: list[tuple[bytes, bytes]],
) -> None:
    body = "café".encode("latin-1")
    ext = {"http_version": b"HTTP/1.1", "reason_phrase": b"OK"}
    ours = Response.received(200, lines, body, ext)
    theirs = httpx.Response(200, headers=lines, content=body)
    assert (ours.text, ours.encoding) == (theirs.text, theirs.encoding)


class _Counting:
    """Keep-alive HTTP/1.1 server that counts the connections open to it now."""

    def __init__(self) -> None:
        self.opened = 0
        self.open = 0
        self.target: int | None = None
        self.down_to = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        self.open += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        self.open -= 1
        if self.target is not None and self.open <= self.target:
            self.down_to.set()
        writer.close()


async def test_idle_connections_are_bounded_over_all_platforms_and_reused() -> None:
    """Sixty platforms (each its own origin) sent to once leave at most the pool's
    `max_keepalive_connections` open while idle, not one each until the keep-alive expiry;
    the most recently used stay open and are reused."""
    s = _Counting()
    srv = await asyncio.start_server(s.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    names = [f"lms{k}.test" for k in range(60)]
    guard = OutboundGuard(
        OutboundPolicy.allowing(LOOPBACK_NETWORKS),
        FixedResolver({n: ["127.0.0.1"] for n in names}),
    )
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=10, keepalive_expiry=60)
    async with srv, shared_client(timeout=httpx.Timeout(5.0), limits=limits, guard=guard) as http:
        for name in names:
            assert (await http.get(f"http://{name}:{port}/")).text == "ok"
        assert s.opened == 60
        s.target = 10
        if s.open > 10:
            await asyncio.wait_for(s.down_to.wait(), 5.0)  # the server saw them closed
        assert s.open == 10
        for name in names[-10:]:  # the ten most recent: reused, no new connection
            assert (await http.get(f"http://{name}:{port}/")).text == "ok"
        assert s.opened == 60
        assert (await http.get(f"http://{names[0]}:{port}/")).text == "ok"  # a new one
        assert s.opened == 61
