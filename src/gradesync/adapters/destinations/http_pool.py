"""The HTTP client every destination client of a process shares (one connection pool).

The adapters speak httpx (requests, responses, errors); underneath, the connections are
aiohttp's. Chosen by measurement (`benchmarks/http_clients.py`, docs/benchmarks.md): on the
delivery path, with the same AGS adapter on top, httpx over httpcore's pool spent about
twice the CPU per delivered result of httpx over aiohttp's pool, most of it in httpcore's
pool bookkeeping; aiohttp's pool and HTTP/1.1 parser (C) do the same work for less.

The outbound guard: a host name is resolved by the guard (`OutboundGuard.addresses`, once
per new connection) and aiohttp connects to the very addresses the guard returned, never
resolving the name itself (no DNS rebinding between the check and the connection). TLS
still checks the certificate against the URL's host name, and the Host header is the URL's.
A literal address in a URL is checked here before the request, since aiohttp connects to a
literal without asking a resolver.

One behaviour differs from httpcore's: aiohttp sends an idempotent request (GET, PUT,
DELETE) once more when the kept-alive connection it went out on turns out to be closed
before any answer (RFC 9112, 9.3.1). A POST is never sent twice; a failure is classified by
the adapter and retried by the engine's own policy, as before.
"""

from __future__ import annotations

import contextvars
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import httpx
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

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


class _Body(httpx.AsyncByteStream):
    def __init__(self, content: bytes) -> None:
        self._content = content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._content


def _timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    t = request.extensions.get("timeout") or {}
    connect, read, pool = t.get("connect"), t.get("read"), t.get("pool")
    waiting = None if connect is None or pool is None else connect + pool
    return aiohttp.ClientTimeout(total=None, connect=waiting, sock_connect=connect, sock_read=read)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests sent over one aiohttp session (its pool shared by every request)."""

    def __init__(self, guard: OutboundGuard, limits: httpx.Limits) -> None:
        self.guard = guard
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None
        self._literals_ok: set[tuple[str, int, bool]] = set()  # literal hosts checked

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use, inside the event loop that uses it.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
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

    async def _check_literal(self, host: str, port: int, plain: bool) -> None:
        key = (host, port, plain)
        if key in self._literals_ok or literal_address(host) is None:
            return
        await self.guard.addresses(host, port, plain_http=plain)  # raises when refused
        self._literals_ok.add(key)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise OutboundRefused(str(url), f"{url.scheme} is not http(s)")
        plain = url.scheme == "http"
        port = url.port or (80 if plain else 443)
        await self._check_literal(url.host, port, plain)
        body = request.content if request.method not in ("GET", "HEAD") else None
        session = self._open()
        token = _PLAIN_HTTP.set(plain)
        try:
            async with session.request(
                request.method,
                yarl.URL(str(url), encoded=True),  # as httpx encoded it, byte for byte
                headers=list(request.headers.multi_items()),
                data=body or None,
                allow_redirects=False,
                timeout=_timeout(request),
            ) as resp:
                content = await resp.read()
                headers = [(k.decode(), v.decode()) for k, v in resp.raw_headers]
                reason = resp.reason or ""
                version = resp.version
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc), request=request) from exc
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except aiohttp.InvalidURL as exc:
            raise httpx.ConnectError(f"invalid URL: {exc}", request=request) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except aiohttp.ClientPayloadError as exc:
            raise httpx.ReadError(str(exc), request=request) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx.NetworkError(f"{type(exc).__name__}: {exc}", request=request) from exc
        finally:
            _PLAIN_HTTP.reset(token)
        http_version = f"HTTP/{version.major}.{version.minor}" if version else "HTTP/1.1"
        return httpx.Response(
            resp.status,
            headers=headers,
            stream=_Body(content),
            extensions={"http_version": http_version.encode(), "reason_phrase": reason.encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing: the adapters authenticate with bearer tokens and
    signed requests, and one client serves every platform of the process."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None  # httpx would parse every response's headers into a urllib jar


class _Client(httpx.AsyncClient):
    """httpx's client with no cookie jar (about a tenth of its CPU per request went to
    offering each response to one)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        return None


_NO_COOKIES = _NoCookies()


def shared_client(
    *,
    timeout: httpx.Timeout,
    limits: httpx.Limits,
    guard: OutboundGuard,
    wrap: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` (no redirects followed) over aiohttp's pool that sends only
    where the outbound `guard` allows. `wrap` puts a transport around the pool (e.g. one
    that counts)."""
    inner: httpx.AsyncBaseTransport = AiohttpTransport(guard, limits)
    outer = inner if wrap is None else wrap(inner)
    return _Client(timeout=timeout, limits=limits, follow_redirects=False, transport=outer)
