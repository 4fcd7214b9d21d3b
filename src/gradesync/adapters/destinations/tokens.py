"""OAuth 2 access tokens cached per (destination, scopes) until shortly before expiry.

One token per platform and scope set, not one per request: LMSs throttle and time out
token endpoints that are hit per score. Concurrent callers wait for one fetch.

Bounded: a vendor's thousands of platforms would otherwise each leave a token and a lock
behind for good. An expired token is dropped (swept once a margin's time at most), at most
`size` tokens are kept (the least recently used goes first: its platform fetches a new one
when it next sends), and a key's lock lives only while a fetch holds or awaits it.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

CACHED = 4096  # tokens kept at most (one per platform and scope set sending now)


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str
    expires_at: float  # monotonic seconds
    scopes: frozenset[str]


Fetch = Callable[[], Awaitable[tuple[str, float, frozenset[str]]]]  # token, expires_in, scopes


class TokenCache:
    def __init__(
        self,
        *,
        margin_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        size: int = CACHED,
    ) -> None:
        self._margin = margin_seconds
        self._clock = clock
        self._size = size
        self._tokens: OrderedDict[Hashable, AccessToken] = OrderedDict()
        self._locks: weakref.WeakValueDictionary[Hashable, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._swept_at = clock()

    def fresh(self, key: Hashable) -> AccessToken | None:
        """The key's token when one is cached and fresh, without waiting: `get` needs an
        await only to fetch one."""
        return self._fresh(key)

    def _fresh(self, key: Hashable) -> AccessToken | None:
        tok = self._tokens.get(key)
        if tok is not None and tok.expires_at - self._margin > self._clock():
            self._tokens.move_to_end(key)
            return tok
        return None

    async def get(self, key: Hashable, fetch: Fetch) -> AccessToken:
        tok = self._fresh(key)
        if tok is not None:
            return tok
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            tok = self._fresh(key)  # another caller may have fetched it meanwhile
            if tok is not None:
                return tok
            value, expires_in, scopes = await fetch()
            # a token shorter-lived than the margin is still used once rather than refetched forever
            lifetime = max(float(expires_in), self._margin + 1.0)
            tok = AccessToken(value, self._clock() + lifetime, scopes)
            self._store(key, tok)
            return tok

    def _store(self, key: Hashable, tok: AccessToken) -> None:
        self._tokens[key] = tok
        self._tokens.move_to_end(key)
        now = self._clock()
        if now - self._swept_at >= self._margin:
            self._swept_at = now
            for stale in [k for k, t in self._tokens.items() if t.expires_at <= now]:
                del self._tokens[stale]
        while len(self._tokens) > self._size:
            self._tokens.popitem(last=False)

    def __len__(self) -> int:
        """Tokens held (expired ones not yet swept included)."""
        return len(self._tokens)

    def locks_held(self) -> int:
        """Keys with a lock alive: those a fetch holds or awaits."""
        return len(self._locks)

    def invalidate(self, key: Hashable, token: str | None = None) -> None:
        """Forget a token the remote refused (401); only if it is still the cached one."""
        tok = self._tokens.get(key)
        if tok is not None and (token is None or tok.value == token):
            del self._tokens[key]
