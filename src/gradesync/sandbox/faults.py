"""Fault injection per endpoint group, in front of every protocol endpoint.

Order for one request: rate limit, concurrency cap, then a scripted or random outcome (error,
throttle, reset, timeout), then added latency, then the real handler. Random decisions come
from one seeded RNG per group, so a run with the same seed and the same request order per
group makes the same decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from .config import FAULT_GROUPS, FaultSpec

log = logging.getLogger(__name__)

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def group_for(path: str) -> str | None:
    """Which fault group a request path belongs to (None: never faulted, e.g. admin)."""
    if path.startswith("/api/lti/"):
        if path.endswith("/scores"):
            return "scores"
        if path.endswith("/results"):
            return "results"
        if path.endswith("/memberships"):
            return "memberships"
        return "lineitems"
    if path == "/login/oauth2/token":
        return "token"
    if path.startswith("/ims/oneroster/"):
        return "oneroster"
    if path.startswith("/lti11/"):
        return "lti11"
    if path.startswith("/lti/"):
        return "launch"
    return None


@dataclass
class _Group:
    name: str
    spec: FaultSpec
    rng: random.Random
    script: list[str] = field(default_factory=list)
    tokens: float = 0.0
    refilled_at: float = 0.0
    inflight: int = 0
    open: int = 0  # requests arrived and not answered yet, waiting for the cap included
    semaphore: asyncio.Semaphore | None = None
    counters: Counter[str] = field(default_factory=Counter)


class FaultInjector:
    def __init__(self, faults: dict[str, FaultSpec], rng_seed: int, mode: Callable[[], str]):
        self._mode = mode
        self._seed = rng_seed
        self.groups: dict[str, _Group] = {}
        for name in FAULT_GROUPS:
            self.groups[name] = self._new_group(name, faults.get(name, FaultSpec()))
        # Set on shutdown so held requests (latency, timeouts) end promptly.
        self.release = asyncio.Event()

    def _new_group(self, name: str, spec: FaultSpec) -> _Group:
        group = _Group(name=name, spec=spec, rng=random.Random(f"{self._seed}/{name}"))
        self._apply(group, spec)
        return group

    def _apply(self, group: _Group, spec: FaultSpec) -> None:
        group.spec = spec
        group.script = list(spec.script)
        group.tokens = float(spec.rate_limit_burst)
        group.refilled_at = time.monotonic()
        group.semaphore = asyncio.Semaphore(spec.max_concurrency) if spec.max_concurrency else None

    def set(self, faults: dict[str, FaultSpec], *, replace: bool, rng_seed: int | None) -> None:
        if rng_seed is not None:
            self._seed = rng_seed
        for name, group in self.groups.items():
            if name in faults:
                self._apply(group, faults[name])
            elif replace:
                self._apply(group, FaultSpec())
            if rng_seed is not None:
                group.rng = random.Random(f"{self._seed}/{name}")

    def describe(self) -> dict[str, Any]:
        return {
            name: {
                "spec": g.spec.model_dump(exclude_defaults=True),
                "script_left": list(g.script),
                "inflight": g.inflight,
            }
            for name, g in self.groups.items()
        }

    def counters(self) -> dict[str, dict[str, int]]:
        return {name: dict(g.counters) for name, g in self.groups.items() if g.counters}

    def reset_counters(self) -> None:
        for group in self.groups.values():
            group.counters.clear()

    # ---- the ASGI layer ----

    async def handle(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        name = group_for(scope["path"])
        if name is None:
            await app(scope, receive, send)
            return
        group = self.groups[name]
        counters = group.counters
        counters["requests"] += 1
        spec = group.spec

        if spec.rate_limit_per_second and not self._take_token(group):
            counters["rate_limited"] += 1
            wait = math.ceil((1 - group.tokens) / spec.rate_limit_per_second)
            await self._rate_limited(name, spec, max(wait, 1), send)
            return

        # what clients have in flight, as this endpoint sees it (`max_open`), before the
        # cap makes any of it wait: a client that keeps to the cap never gets above it
        group.open += 1
        counters["max_open"] = max(counters["max_open"], group.open)
        try:
            await self._capped(group, scope, receive, send, app)
        finally:
            group.open -= 1

    async def _capped(
        self, group: _Group, scope: Scope, receive: Receive, send: Send, app: ASGIApp
    ) -> None:
        name, spec, counters = group.name, group.spec, group.counters
        semaphore = group.semaphore
        if semaphore is not None:
            if spec.over_capacity == "reject" and semaphore.locked():
                counters["concurrency_rejected"] += 1
                await _refuse(send, name, 429, "concurrency limit reached", spec.retry_after)
                return
            if semaphore.locked():
                counters["queued"] += 1
            await semaphore.acquire()
        group.inflight += 1
        counters["max_inflight"] = max(counters["max_inflight"], group.inflight)
        try:
            outcome = self._decide(group)
            if outcome != "ok":
                counters[outcome] += 1
            if outcome == "error":
                await _refuse(send, name, spec.error_status, "injected server error", None)
                return
            if outcome == "throttle":
                await _refuse(send, name, 429, "too many requests", spec.retry_after)
                return
            if outcome == "reset":
                await _reset(scope, receive, send)
                return
            if outcome == "timeout":
                await self._hold(spec.timeout_seconds)
                await _refuse(send, name, 504, "gateway timeout", None)
                return
            delay = spec.latency_ms
            if spec.latency_jitter_ms:
                delay += group.rng.uniform(0, spec.latency_jitter_ms)
            if delay:
                await self._hold(delay / 1000)
            counters["served"] += 1
            try:
                await app(scope, receive, _counting(send, counters))
            except ClientDisconnect:
                # the client gave up first (often while the latency held it): nobody to
                # answer, and nothing wrong with the sandbox
                counters["client_gone"] += 1
                log.info("%s: the client disconnected before its answer", name)
        finally:
            group.inflight -= 1
            if semaphore is not None:
                semaphore.release()

    def _decide(self, group: _Group) -> str:
        if group.script:
            return group.script.pop(0)
        spec = group.spec
        for outcome, rate in (
            ("error", spec.error_rate),
            ("throttle", spec.throttle_rate),
            ("reset", spec.reset_rate),
            ("timeout", spec.timeout_rate),
        ):
            # Draw only for enabled faults so unrelated settings do not shift the sequence.
            if rate and group.rng.random() < rate:
                return outcome
        return "ok"

    def _take_token(self, group: _Group) -> bool:
        spec = group.spec
        assert spec.rate_limit_per_second
        now = time.monotonic()
        group.tokens = min(
            float(spec.rate_limit_burst),
            group.tokens + (now - group.refilled_at) * spec.rate_limit_per_second,
        )
        group.refilled_at = now
        if group.tokens >= 1:
            group.tokens -= 1
            return True
        return False

    async def _rate_limited(self, name: str, spec: FaultSpec, wait: int, send: Send) -> None:
        style = spec.rate_limit_response
        if style == "403" or (style == "auto" and self._mode() == "canvas"):
            # Canvas reports its throttle as a 403 with this body and no Retry-After.
            await _plain(send, 403, b"403 Forbidden (Rate Limit Exceeded)", [])
            return
        await _refuse(send, name, 429, "rate limit exceeded", wait)

    async def _hold(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):  # not wait_for: it can lose a cancel
                await self.release.wait()


def _counting(send: Send, counters: Counter[str]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            counters[f"status_{message['status']}"] += 1
        await send(message)

    return wrapped


async def _plain(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _refuse(send: Send, group: str, status: int, text: str, retry_after: int | None) -> None:
    if group == "oneroster":
        minor = "server_busy" if status == 429 else "internal_server_error"
        payload: dict[str, Any] = {
            "imsx_codeMajor": "failure",
            "imsx_severity": "error",
            "imsx_description": text,
            "imsx_CodeMinor": {
                "imsx_codeMinorField": [
                    {
                        "imsx_codeMinorFieldName": "TargetEndSystem",
                        "imsx_codeMinorFieldValue": minor,
                    }
                ]
            },
        }
    else:
        payload = {"errors": [{"message": text}]}
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _reset(scope: Scope, receive: Receive, send: Send) -> None:
    """Drop the connection with a TCP RST and no response at all.

    ASGI has no "abort" message, and uvicorn answers 500 if the app raises before starting a
    response, so we reach uvicorn's transport through its bound `send` and abort it with
    SO_LINGER 0 (RST, not FIN). Then we wait for uvicorn to notice the disconnect, so it does
    not try to send its own 500.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionAbortedError("injected connection reset (server does not expose transport)")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    while (await receive())["type"] != "http.disconnect":
        pass
