"""Platforms' public keys, fetched from their key set URL and cached.

A key set is re-fetched when it is older than `max_age`, or when a token names a `kid` we do
not hold (the platform rotated) but at most once per `min_refetch` per URL, so a flood of
forged tokens with random kids cannot make us hammer the platform.

A fetch that times out or meets a server error is temporary (`temporary=True`): the launch
says "try again", a key set fetched before keeps serving the keys it holds, and until the
next attempt is allowed the same temporary error is answered (not "unknown kid").
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from jwt.algorithms import RSAAlgorithm

from gradesync.services.outbound import OutboundRefused


class KeySetError(Exception):
    """The key could not be obtained; the message says why (shown to support)."""

    def __init__(self, code: str, message: str, *, temporary: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.temporary = temporary  # the platform may answer in a moment: try again


@dataclass
class _Entry:
    keys: dict[str | None, Any] = field(default_factory=dict)
    fetched_at: float | None = None  # the last successful fetch
    attempted_at: float | None = None  # the last attempt, successful or not
    error: KeySetError | None = None  # why the last attempt failed


class PlatformKeyCache:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        max_age: float = 3600.0,
        min_refetch: float = 10.0,
        fetch_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self.fetch_timeout = fetch_timeout  # seconds to wait for a platform's key set
        self._max_age = max_age
        self._min_refetch = min_refetch
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.fetches = 0  # how many times a key set was downloaded (tests, metrics)

    def forget(self, url: str) -> None:
        self._entries.pop(url, None)

    async def key(self, url: str, kid: str | None) -> Any:
        entry = self._entries.get(url)
        now = self._clock()
        fresh = (
            entry is not None
            and entry.fetched_at is not None
            and now - entry.fetched_at < self._max_age
        )
        if fresh and entry is not None and (found := _pick(entry.keys, kid)) is not None:
            return found
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            entry = self._entries.get(url)
            recently = (
                entry is not None
                and entry.attempted_at is not None
                and self._clock() - entry.attempted_at < self._min_refetch
            )
            if entry is None or not recently:
                try:
                    entry = await self._fetch(url)
                except KeySetError as exc:
                    stale = self._entries[url]
                    found = _pick(stale.keys, kid) if exc.temporary else None
                    if found is not None:
                        return found  # the platform is slow: the keys it had still verify
                    raise
        found = _pick(entry.keys, kid)
        if found is None:
            if entry.error is not None:
                raise entry.error  # the last fetch failed: say why, not "unknown kid"
            raise KeySetError(
                "unknown_kid", f"kid: no key {kid!r} in the platform's key set at {url}"
            )
        return found

    async def _fetch(self, url: str) -> _Entry:
        self.fetches += 1
        entry = self._entries.setdefault(url, _Entry())
        entry.attempted_at = self._clock()  # failures count too: no hammering a broken URL
        try:
            resp = await self._http.get(
                url, headers={"Accept": "application/json"}, timeout=self.fetch_timeout
            )
            resp.raise_for_status()
            document = resp.json()
        except OutboundRefused as exc:
            entry.error = KeySetError(
                "key_set_refused", f"key_set_url: {exc.message} {exc.remedy}", temporary=False
            )
            raise entry.error from None
        except httpx.TimeoutException:
            entry.error = KeySetError(
                "key_set_timeout",
                f"key_set_url: the platform's keys at {url} did not arrive in time. This is "
                "usually temporary: try again in a moment.",
                temporary=True,
            )
            raise entry.error from None
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            temporary = status >= 500 or status == 429
            entry.error = KeySetError(
                "key_set_unreachable" if temporary else "key_set_unavailable",
                f"key_set_url: the platform answered HTTP {status} for its keys at {url}"
                + (". This is usually temporary: try again in a moment." if temporary else ""),
                temporary=temporary,
            )
            raise entry.error from None
        except httpx.TransportError as exc:
            entry.error = KeySetError(
                "key_set_unreachable",
                f"key_set_url: cannot reach the platform's keys at {url} ({type(exc).__name__}). "
                "Try again in a moment.",
                temporary=True,
            )
            raise entry.error from None
        except (httpx.HTTPError, ValueError) as exc:
            entry.error = KeySetError(
                "key_set_unavailable",
                f"key_set_url: cannot fetch the platform's keys from {url}: {exc}",
            )
            raise entry.error from None
        keys: dict[str | None, Any] = {}
        for jwk in document.get("keys", []) if isinstance(document, dict) else []:
            if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
                continue
            try:
                keys[jwk.get("kid")] = RSAAlgorithm.from_jwk(json.dumps(jwk))
            except (ValueError, TypeError, jwt.InvalidKeyError):
                continue  # one unusable key must not hide the others
        entry.keys = keys
        entry.error = None
        entry.fetched_at = entry.attempted_at
        return entry


def _pick(keys: dict[str | None, Any], kid: str | None) -> Any:
    if kid in keys:
        return keys[kid]
    if kid is None and len(keys) == 1:
        return next(iter(keys.values()))
    return None
