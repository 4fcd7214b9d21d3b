"""aiohttp's connection pool under httpx, behind the outbound guard.

The outbound guard: a host name is resolved by the guard (`OutboundGuard.addresses`, once
per new connection) and aiohttp connects to the very addresses the guard returned, never
resolving the name itself (no DNS rebinding between the check and the connection). TLS
still checks the certificate against the URL's host name, and the Host header is the URL's.
A literal address in a URL is checked here before the request, since aiohttp connects to a
literal without asking a resolver.

`AiohttpTransport.exchange` is the one place a request meets aiohttp: the guard, the call and
the mapping of aiohttp's failures to httpx's. httpx's client reaches it through
`handle_async_request`; the shared client's fast path (`http_pool`) calls it directly.

One behaviour differs from httpcore's: aiohttp sends an idempotent request (GET, PUT,
DELETE) once more when the kept-alive connection it went out on turns out to be closed
before any answer (RFC 9112, 9.3.1). A POST is never sent twice; a failure is classified by
the adapter and retried by the engine's own policy, as before.
"""

from __future__ import annotations

import contextvars
import socket
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import aiohttp
import httpx
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

if TYPE_CHECKING:
    from aiohttp.client_proto import ResponseHandler
    from aiohttp.client_reqrep import ConnectionKey

from gradesync.services.outbound import OutboundGuard, OutboundRefused, literal_address

# Set around each request: whether it is plain http (the guard allows plain http only to
# allowed networks). aiohttp resolves a new connection's host inside the request's task.
_PLAIN_HTTP: contextvars.ContextVar[bool] = contextvars.ContextVar("aiohttp_plain", default=False)


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver: the guard's checked addresses, nothing else."""

    def __init__(self, guard: OutboundGuard) -> None:
        self.guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await self.guard.addresses(host, port, plain_http=_PLAIN_HTTP.get())
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        return None


class IdleBoundConnector(aiohttp.TCPConnector):
    """aiohttp's connector with at most `max_idle` connections kept alive while idle, over
    every origin together (httpx's `max_keepalive_connections`); the least recently used
    goes first. aiohttp bounds only the connections in use and closes an idle one after its
    keep-alive expiry: with every platform at its own origin, each kept its own idle
    connections for that long, so a vendor's thousand platforms held thousands of sockets
    (and their buffers) open at once."""

    def __init__(self, *, max_idle: int | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_idle = max_idle
        # every connection released to the pool, the most recent last; one taken again,
        # closed or expired meanwhile is skipped when it comes up
        self._released: OrderedDict[ResponseHandler, ConnectionKey] = OrderedDict()

    def _release(
        self, key: ConnectionKey, protocol: ResponseHandler, *, should_close: bool = False
    ) -> None:
        super()._release(key, protocol, should_close=should_close)
        if self._max_idle is None:
            return
        released = self._released
        idle = self._conns.get(key)
        if not idle or idle[-1][0] is not protocol:
            return  # closed, not kept
        released[protocol] = key
        released.move_to_end(protocol)
        while len(released) > self._max_idle:
            oldest, where = released.popitem(last=False)
            conns = self._conns.get(where)
            if not conns:
                continue
            for entry in conns:
                if entry[0] is oldest:  # still idle in the pool: closed now
                    conns.remove(entry)
                    if not conns:
                        del self._conns[where]
                    oldest.close()
                    break

    def _cleanup(self) -> None:
        super()._cleanup()
        if not self._conns:
            self._released.clear()

    async def close(self, *, abort_ssl: bool = False) -> None:
        self._released.clear()
        await super().close(abort_ssl=abort_ssl)


class Answer(NamedTuple):
    """What came back: the status, the header lines as received, the whole body."""

    status: int
    headers: Sequence[tuple[bytes, bytes]]
    content: bytes
    extensions: dict[str, bytes]  # httpx's http_version and reason_phrase


class _Body(httpx.AsyncByteStream):
    def __init__(self, content: bytes) -> None:
        self._content = content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._content


_TIMEOUTS: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}


def _timeout(t: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
    """httpx's timeout (as in a request's extensions) in aiohttp's terms; a process uses a
    handful of them, so each is made once."""
    connect, read, pool = t.get("connect"), t.get("read"), t.get("pool")
    key = (connect, read, pool)
    found = _TIMEOUTS.get(key)
    if found is None:
        waiting = None if connect is None or pool is None else connect + pool
        found = aiohttp.ClientTimeout(
            total=None, connect=waiting, sock_connect=connect, sock_read=read
        )
        if len(_TIMEOUTS) < 64:
            _TIMEOUTS[key] = found
    return found


_MAX_HOSTS = 4096  # hosts checked, over every platform of the process
_EXTENSIONS: dict[tuple[Any, str | None], dict[str, bytes]] = {}


def _extensions(version: Any, reason: str | None) -> dict[str, bytes]:
    """httpx's `http_version` and `reason_phrase` of an answer, made once per pair (every
    answer is "HTTP/1.1" and one of a few reasons); the response copies them."""
    found = _EXTENSIONS.get((version, reason))
    if found is None:
        http_version = b"HTTP/%d.%d" % (version.major, version.minor) if version else b"HTTP/1.1"
        found = {"http_version": http_version, "reason_phrase": (reason or "").encode()}
        if len(_EXTENSIONS) < 64:
            _EXTENSIONS[(version, reason)] = found
    return found


def _failure(exc: Exception, request: httpx.Request) -> httpx.TransportError:
    """aiohttp's failure as the httpx error httpcore would have raised."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(str(exc), request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return httpx.ReadTimeout(str(exc) or "timed out", request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(str(exc), request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.ConnectError(f"invalid URL: {exc}", request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(str(exc), request=request)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.ReadError(str(exc), request=request)
    return httpx.NetworkError(f"{type(exc).__name__}: {exc}", request=request)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests sent over one aiohttp session (its pool shared by every request)."""

    def __init__(self, guard: OutboundGuard, limits: httpx.Limits) -> None:
        self.guard = guard
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._hosts_ok: set[tuple[str, int, bool]] = set()  # hosts checked (`_check_host`)

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use, inside the event loop that uses it.
        if self._session is None or self._session.closed:
            connector = IdleBoundConnector(
                max_idle=self._limits.max_keepalive_connections,
                resolver=GuardedResolver(self.guard),
                use_dns_cache=False,  # every new connection's name goes through the guard
                limit=self._limits.max_connections or 0,
                limit_per_host=0,
                keepalive_timeout=self._limits.keepalive_expiry or 5.0,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx decodes the body by its Content-Encoding
                cookie_jar=aiohttp.DummyCookieJar(),  # no cookies kept between platforms
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
                trust_env=False,
            )
        return self._session

    async def _check_host(self, key: tuple[str, int, bool]) -> None:
        """A literal address is checked by the guard (aiohttp connects to one without asking
        the resolver); a name is checked by the resolver for each new connection. Either is
        then known (`_hosts_ok`): telling a name from a literal costs a failed parse."""
        host, port, plain = key
        if literal_address(host) is not None:
            await self.guard.addresses(host, port, plain_http=plain)  # raises when refused
        if len(self._hosts_ok) >= _MAX_HOSTS:
            self._hosts_ok.clear()
        self._hosts_ok.add(key)

    async def exchange(
        self,
        method: str,
        url: httpx.URL,
        wire: yarl.URL | None,
        headers: Sequence[tuple[str, str]],
        content: bytes | None,
        timeout: Mapping[str, float | None],
        request: Callable[[], httpx.Request],
    ) -> Answer:
        """Send `method` to `url` with exactly `headers`; httpx's errors on failure, each
        given `request()`, made only then. `wire` is the URL as aiohttp sends it, when the
        caller keeps one."""
        if url.scheme not in ("http", "https"):
            raise OutboundRefused(str(url), f"{url.scheme} is not http(s)")
        plain = url.scheme == "http"
        port = url.port or (80 if plain else 443)
        host = (url.host, port, plain)
        if host not in self._hosts_ok:
            await self._check_host(host)
        if wire is None:
            wire = yarl.URL(str(url), encoded=True)  # as httpx encoded it, byte for byte
        body = content if method not in ("GET", "HEAD") else None
        if self._closed:  # closed while this request's host was checked
            raise httpx.ConnectError("the connection pool is closed", request=request())
        session = self._open()
        token = _PLAIN_HTTP.set(plain)
        try:
            # awaited, not entered: `async with` adds four coroutines per request (the
            # context manager's and the response's enter and exit) to what `read` does,
            # which reads the whole answer and gives the connection back (`release` below
            # only ends an answer not read)
            resp = await session.request(
                method,
                wire,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=_timeout(timeout),
            )
            try:
                received = await resp.read()
            finally:
                resp.release()
            status, raw, reason, version = resp.status, resp.raw_headers, resp.reason, resp.version
        except (aiohttp.ClientError, OSError) as exc:  # TimeoutError is an OSError
            raise _failure(exc, request()) from exc
        finally:
            _PLAIN_HTTP.reset(token)
        return Answer(status, raw, received, _extensions(version, reason))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        answer = await self.exchange(
            request.method,
            url,
            None,
            request.headers.multi_items(),
            request.content,
            request.extensions.get("timeout") or {},
            lambda: request,
        )
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=_Body(answer.content),
            extensions=answer.extensions,
        )

    async def aclose(self) -> None:
        # Closed for good: a request in flight would otherwise open a new session that
        # nothing closes (the process drops the pool once it is closed).
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
