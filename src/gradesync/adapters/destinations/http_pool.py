"""The HTTP client every destination client of a process shares (one connection pool).

The adapters speak httpx (requests, responses, errors); underneath, the connections are
aiohttp's (`aiohttp_transport.py`, behind the outbound guard). Chosen by measurement
(`benchmarks/http_clients.py`, docs/benchmarks.md): on the delivery path, with the same AGS
adapter on top, httpx over httpcore's pool spent about twice the CPU per delivered result of
httpx over aiohttp's pool, most of it in httpcore's pool bookkeeping; aiohttp's pool and
HTTP/1.1 parser (C) do the same work for less.

The fast path: httpx's client layer above the pool (building the request, merging headers,
auth, redirects, event hooks, reading the stream) then cost about as much CPU as the pool.
A call shaped as the adapters send each score (`content=` bytes or nothing, `headers=` a
dict, `timeout=`; `follow_redirects=False` too, the client's own setting) skips it: the
header lines httpx would send are put together directly, the request goes straight to
`AiohttpTransport.exchange` (the guard, aiohttp, httpx's errors: the code httpx's path
reaches too) and the answer is an `httpx.Response` made from the status, the header lines
and the body. Kept: the bytes on the wire (`tests/unit/test_http_pool.py` compares them),
the observers (the request counter) and httpx's log line. The response's `request` is made
only when asked for (it costs twice the whole fast path); `next_request` is not set on a
redirect (nothing reads it). Any other call (a form, JSON, query parameters, auth,
extensions) is httpx's own, unchanged. Measured by `benchmarks/http_layer.py`: 200 against
323 µs of CPU per request (median) to a local server, CPU pressure under 10 %; the client
layer alone 22 against 122 µs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx

from gradesync.adapters.destinations.aiohttp_transport import AiohttpTransport, Answer
from gradesync.adapters.destinations.http_fast import Heads, Response, Target, Targets, with_length
from gradesync.services.outbound import OutboundGuard

_HTTPX_LOG = logging.getLogger("httpx")  # the line httpx logs for each request, kept
_DEFAULT = httpx.USE_CLIENT_DEFAULT

Observer = Callable[[int | None], None]
_Route = tuple[AiohttpTransport, tuple[Observer, ...]]


class ObservingTransport(httpx.AsyncBaseTransport):
    """A transport wrapper that only watches outcomes: `observe` gets each request's status,
    None when no answer came (a timeout, a refused or reset connection). The shared client's
    fast path, which bypasses the transports, calls `observe` itself."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    def observe(self, status: int | None) -> None:
        """What a subclass does with each outcome (`CountingTransport` counts it)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self.inner.handle_async_request(request)
        except httpx.TransportError:
            self.observe(None)
            raise
        self.observe(response.status_code)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing: the adapters authenticate with bearer tokens and
    signed requests, and one client serves every platform of the process."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None  # httpx would parse every response's headers into a urllib jar


_NO_COOKIES = _NoCookies()


class _Client(httpx.AsyncClient):
    """httpx's client with no cookie jar (about a tenth of its CPU per request went to
    offering each response to one) and the fast path for the adapters' plain calls."""

    def __init__(self, *, fast: _Route | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fast = fast
        self._targets = Targets()
        self._heads = Heads()
        # a call's own timeout (the adapters pass their setting, score after score) made an
        # httpx.Timeout once per value, not once per request
        self._timeouts: dict[Any, dict[str, float | None]] = {}

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        return None

    async def request(  # the parameters are httpx's; only the plain shape takes the fast path
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: Any = None,
        data: Any = None,
        files: Any = None,
        json: Any = None,
        params: Any = None,
        headers: Any = None,
        cookies: Any = None,
        auth: Any = _DEFAULT,
        follow_redirects: Any = _DEFAULT,
        timeout: Any = _DEFAULT,
        extensions: Any = None,
    ) -> httpx.Response:
        fast = self._fast
        if (
            fast is not None
            and data is None
            and files is None
            and json is None
            and params is None
            and cookies is None
            and extensions is None
            and (content is None or type(content) is bytes)
            and (headers is None or type(headers) is dict)
            and (auth is _DEFAULT or auth is None)
            and (follow_redirects is False or follow_redirects is _DEFAULT)
            and self._plain()
            and (target := self._targets.get(url)) is not None
        ):
            verb = method.upper()
            head = self._heads.get(self.headers, headers, target.host, verb, bool(content))
            if head is not None:
                lines = with_length(head, content)

                def made() -> httpx.Request:  # what httpx's path would have sent
                    return self.build_request(
                        method, target.url, content=content, headers=headers, timeout=timeout
                    )

                # the fast path's send, here rather than in a coroutine of its own
                if self.is_closed:
                    raise RuntimeError("Cannot send a request, as the client has been closed.")
                transport, observers = fast
                start = time.perf_counter()
                try:
                    answer = await transport.exchange(
                        verb,
                        target.url,
                        target.wire,
                        lines,
                        content,
                        self._timeout_of(timeout),
                        made,
                    )
                except httpx.TransportError:
                    for observe in observers:
                        observe(None)
                    raise
                return self._received(verb, target, answer, observers, start, made)
        return await super().request(
            method,
            url,
            content=content,
            data=data,
            files=files,
            json=json,
            params=params,
            headers=headers,
            cookies=cookies,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
            extensions=extensions,
        )

    def _plain(self) -> bool:
        """Nothing set on the client that httpx's path would add to a request."""
        hooks = self.event_hooks
        return (
            self.auth is None
            and not self.follow_redirects
            and not self.params
            and not hooks["request"]
            and not hooks["response"]
        )

    def _received(
        self,
        method: str,
        target: Target,
        answer: Answer,
        observers: tuple[Observer, ...],
        start: float,
        made: Callable[[], httpx.Request],
    ) -> Response:
        """A fast-path answer: observed, made an `httpx.Response`, logged as httpx logs it."""
        for observe in observers:
            observe(answer.status)
        response = Response.received(*answer)
        response.made = made
        response.elapsed = timedelta(seconds=time.perf_counter() - start)
        if _HTTPX_LOG.isEnabledFor(logging.INFO):
            _HTTPX_LOG.info(
                'HTTP Request: %s %s "%s %d %s"',
                method,
                target.url,
                response.http_version,
                response.status_code,
                response.reason_phrase,
            )
        return response

    def _timeout_of(self, timeout: Any) -> dict[str, float | None]:
        """The call's timeout as httpx would apply it (the client's when not given)."""
        if timeout is _DEFAULT:
            return self.timeout.as_dict()  # the client's may be set anew between calls
        try:
            found = self._timeouts.get(timeout)
        except TypeError:  # an httpx.Timeout (not hashable)
            return httpx.Timeout(timeout).as_dict()
        if found is None:
            found = httpx.Timeout(timeout).as_dict()
            if len(self._timeouts) < 64:
                self._timeouts[timeout] = found
        return found


def _route(outer: httpx.AsyncBaseTransport, inner: AiohttpTransport) -> _Route | None:
    """How the fast path reaches the pool: the observers `outer` puts around it, innermost
    first; None when another kind of wrapper sits between (every request then goes through
    httpx and that wrapper)."""
    observers: list[Observer] = []
    while isinstance(outer, ObservingTransport):
        observers.append(outer.observe)
        outer = outer.inner
    return (inner, tuple(reversed(observers))) if outer is inner else None


def shared_client(
    *,
    timeout: httpx.Timeout,
    limits: httpx.Limits,
    guard: OutboundGuard,
    wrap: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
    fast: bool = True,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` (no redirects followed) over aiohttp's pool that sends only
    where the outbound `guard` allows. `wrap` puts a transport around the pool (e.g. one
    that counts); an `ObservingTransport` keeps the fast path, any other turns it off, as
    does `fast=False` (every call through httpx's client: to compare the two)."""
    inner = AiohttpTransport(guard, limits)
    outer = inner if wrap is None else wrap(inner)
    return _Client(
        timeout=timeout,
        limits=limits,
        follow_redirects=False,
        transport=outer,
        fast=_route(outer, inner) if fast else None,
    )
