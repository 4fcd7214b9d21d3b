"""OAuth 2 access tokens cached per (destination, scopes) until shortly before expiry.

One token per platform and scope set, not one per request: LMSs throttle and time out
token endpoints that are hit per score. Concurrent callers wait for one fetch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str
    expires_at: float  # monotonic seconds
    scopes: frozenset[str]


Fetch = Callable[[], Awaitable[tuple[str, float, frozenset[str]]]]  # token, expires_in, scopes


class TokenCache:
    def __init__(
        self, *, margin_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._margin = margin_seconds
        self._clock = clock
        self._tokens: dict[Hashable, AccessToken] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}

    async def get(self, key: Hashable, fetch: Fetch) -> AccessToken:
        tok = self._tokens.get(key)
        if tok is not None and tok.expires_at - self._margin > self._clock():
            return tok
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            tok = self._tokens.get(key)  # another caller may have fetched it meanwhile
            if tok is not None and tok.expires_at - self._margin > self._clock():
                return tok
            value, expires_in, scopes = await fetch()
            # a token shorter-lived than the margin is still used once rather than refetched forever
            lifetime = max(float(expires_in), self._margin + 1.0)
            tok = AccessToken(value, self._clock() + lifetime, scopes)
            self._tokens[key] = tok
            return tok

    def invalidate(self, key: Hashable, token: str | None = None) -> None:
        """Forget a token the remote refused (401); only if it is still the cached one."""
        tok = self._tokens.get(key)
        if tok is not None and (token is None or tok.value == token):
            del self._tokens[key]
