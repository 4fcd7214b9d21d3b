"""The tool's signing keys: created on first use, rotated on demand, published as JWKS.

Private keys are stored encrypted (the repository's business); the plaintext only ever exists
in memory. Rotation makes a new current key and retires the old one, which stays in the JWKS
for `overlap` so platforms that cached the old key (or tokens signed just before the rotation)
keep verifying.

Every key has a generation, unique in the store. A process that finds no key (or rotates)
stores the generation after the one it read; when another process got there first, the insert
stores nothing and the store reads the winner's key. So `serve` and workers started together
on an empty database sign with one key.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gradesync.services.clock import Clock, SystemClock
from gradesync.services.ports import UnitOfWorkFactory
from gradesync.services.ports.lti import StoredToolKey

DEFAULT_OVERLAP = timedelta(days=7)
KEY_BITS = 2048


@dataclass(frozen=True, slots=True)
class ToolKey:
    kid: str
    private_key: rsa.RSAPrivateKey
    public_jwk: dict[str, Any]
    created_at: datetime
    retired_at: datetime | None = None

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        """An RS256 JWT with this key's `kid` in the header."""
        return jwt.encode(
            claims,
            self.private_key,
            algorithm="RS256",
            headers={**(headers or {}), "kid": self.kid},
        )

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


@dataclass(frozen=True, slots=True)
class ToolKeyInfo:
    """A key as listed to an operator: never the private half."""

    kid: str
    created_at: datetime
    retired_at: datetime | None
    published: bool


def public_jwk(private_key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig", "kty": "RSA"})
    return jwk


def new_key(now: datetime) -> ToolKey:
    """A fresh RSA key with a `kid` that says when it was made."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    kid = f"{now:%Y%m%d}-{secrets.token_hex(6)}"
    return ToolKey(
        kid=kid, private_key=private, public_jwk=public_jwk(private, kid), created_at=now
    )


def load_key(kid: str, private_pem: bytes, jwk: dict[str, Any], created_at: datetime) -> ToolKey:
    private = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ValueError(f"tool key {kid!r} is not an RSA key")
    return ToolKey(kid=kid, private_key=private, public_jwk=jwk, created_at=created_at)


_CACHE_SECONDS = 30.0  # other processes see a rotation within this; the old key still verifies

# `serve` answers the key set from memory for this long: every platform fetches it, and a
# read per fetch took a worker thread each. A key another process adds shows within it; it
# must stay below the credential retry's wait (6 s, adapters/destinations/ags.py), so a
# platform that refused an assertion signed with a key made meanwhile finds it on the retry.
KEY_SET_SECONDS = 3.0


def _tool_key(stored: StoredToolKey) -> ToolKey:
    return load_key(stored.kid, stored.private_pem, stored.public_jwk, stored.created_at)


class ToolKeyStore:
    """Thread-safe; caches the current key briefly."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock | None = None,
        overlap: timedelta = DEFAULT_OVERLAP,
        *,
        reads: UnitOfWorkFactory | None = None,
    ) -> None:
        self._uow = uow
        # the JWKS and the current key are read without a write lock (on SQLite): a
        # platform fetching the JWKS never queues behind grades being written
        self._reads = reads or uow
        self.clock = clock or SystemClock()
        self.overlap = overlap
        self._lock = threading.Lock()
        self._cached: tuple[ToolKey, float] | None = None
        # the key set as served: (document, read at, changes when read); a rotation or prune
        # made here counts, so the next request reads the store again (a first key needs
        # no count: no key set was served without one)
        self._changes = 0
        self._key_set: tuple[dict[str, Any], datetime, int] | None = None
        self._flight: Future[dict[str, Any]] | None = None
        self._flight_lock = threading.Lock()

    def _changed(self) -> None:
        with self._flight_lock:  # a read on its way may predate the change: not joined
            self._changes += 1
            self._key_set, self._flight = None, None

    # --- reading ---

    def current(self) -> ToolKey:
        """The key that signs now; the first call on an empty store creates it."""
        cached = self._cached
        if cached is not None and time.monotonic() - cached[1] < _CACHE_SECONDS:
            return cached[0]
        with self._lock:
            with self._reads() as uow:
                stored = uow.tool_keys.current()
                latest = uow.tool_keys.latest_generation()
            key = _tool_key(stored) if stored is not None else self._make(latest, retire=False)
            self._cached = (key, time.monotonic())
            return key

    def reload(self) -> ToolKey:
        """The current key read from the store now, not from this process's cache: after a
        platform refused a signature, the key another process rotated to is the one to use."""
        self._cached = None
        return self.current()

    def _published_cutoff(self) -> datetime:
        return self.clock.now() - self.overlap

    def jwks(self) -> dict[str, Any]:
        """The JWKS document: the current key and keys retired less than `overlap` ago."""
        self.current()  # a platform fetching the JWKS before any launch still gets a key
        with self._reads() as uow:
            return {"keys": uow.tool_keys.published(self._published_cutoff())}

    async def key_set(self) -> dict[str, Any]:
        """The JWKS as `jwks()`, from memory for `KEY_SET_SECONDS`, on the event loop. When
        it is due, one read of the store runs in a thread and every request meanwhile waits
        for that read (any event loop: the flight is a thread-safe future)."""
        held = self._key_set
        if held is not None and held[2] == self._changes:
            age = (self.clock.now() - held[1]).total_seconds()
            if 0 <= age < KEY_SET_SECONDS:  # a clock set back reads again
                return held[0]
        with self._flight_lock:
            flight, lead = self._flight, self._flight is None
            if flight is None:
                flight = self._flight = Future()
                flight.set_running_or_notify_cancel()  # a waiter cancelled cannot cancel it
        if lead:  # not awaited: a cancelled request must not cancel the read others wait for
            asyncio.get_running_loop().run_in_executor(None, self._read_key_set, flight)
        return await asyncio.wrap_future(flight)

    def _read_key_set(self, flight: Future[dict[str, Any]]) -> None:
        try:
            changes, at = self._changes, self.clock.now()
            document = self.jwks()
        except BaseException as exc:  # every waiter gets the failure, the next request retries
            flight.set_exception(exc)
        else:
            self._key_set = (document, at, changes)
            flight.set_result(document)
        finally:
            with self._flight_lock:
                if self._flight is flight:
                    self._flight = None

    def list(self) -> list[ToolKeyInfo]:
        cutoff = self._published_cutoff()
        with self._uow() as uow:
            rows = uow.tool_keys.listing()
        return [
            ToolKeyInfo(kid, created, retired, retired is None or retired > cutoff)
            for kid, created, retired in rows
        ]

    # --- changing ---

    def _make(self, after: int, *, retire: bool) -> ToolKey:
        """Store a new key of generation `after + 1` (retiring older ones when `retire`), or
        when another process stored that generation first, return the current key."""
        key = new_key(self.clock.now())
        with self._uow() as uow:
            made = uow.tool_keys.add(
                after + 1, key.kid, key.private_pem(), key.public_jwk, key.created_at
            )
            if made and retire:
                uow.tool_keys.retire_before(after + 1, self.clock.now())
            uow.commit()
        if made:
            return key
        with self._uow() as uow:
            stored = uow.tool_keys.current()
        if stored is None:  # the winner's key was retired and pruned meanwhile: try again
            return self._make(after + 1, retire=retire)
        return _tool_key(stored)

    def rotate(self) -> ToolKey:
        """Make a new current key; the previous ones are retired now and stay published for
        `overlap`. Returns the new key."""
        with self._lock:
            self._cached = None
            with self._uow() as uow:
                latest = uow.tool_keys.latest_generation()
            key = self._make(latest, retire=True)
            self._cached = (key, time.monotonic())
        self._changed()
        return key

    def prune(self) -> int:
        """Delete keys retired longer than `overlap` ago (no longer published)."""
        with self._uow() as uow:
            count = uow.tool_keys.prune(self._published_cutoff())
            uow.commit()
        self._changed()
        return count
