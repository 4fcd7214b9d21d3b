"""The tool's signing keys: created on first use, rotated on demand, published as JWKS.

Private keys are stored encrypted (the repository's business); the plaintext only ever exists
in memory. A key is published before it signs: rotation adds a key to the JWKS at once, and
it starts signing `PUBLISH_LEAD` later, once every copy of the key set cached before the
rotation (serve's, then a platform's) has been read again. The old key signs until then and
stays in the JWKS for `overlap` after, so what it signed keeps verifying. A forced rotation
(a key that must not sign any more: it may have leaked) signs at once and withdraws the keys
it replaces from the key set at once: platforms refuse them as soon as they read the set
again, and refuse the new key's signatures until then.

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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gradesync.domain.errors import Conflict
from gradesync.domain.tool_keys import KeyState, key_state, published_for, signing_start
from gradesync.services.clock import Clock, SystemClock
from gradesync.services.ports import UnitOfWorkFactory
from gradesync.services.ports.lti import StoredToolKey, ToolKeyRow

DEFAULT_OVERLAP = timedelta(days=7)
KEY_BITS = 2048


@dataclass(frozen=True, slots=True)
class ToolKey:
    kid: str
    private_key: rsa.RSAPrivateKey
    public_jwk: dict[str, Any]
    created_at: datetime
    retired_at: datetime | None = None
    signs_from: datetime | None = None  # None: from `created_at`

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
    signs_from: datetime | None  # None: it never signs (replaced or revoked before it began)
    retired_at: datetime | None
    state: KeyState
    published_until: datetime | None  # None: while it signs or is due to
    revoked_at: datetime | None = None

    @property
    def published(self) -> bool:
        return self.state not in (KeyState.EXPIRED, KeyState.REVOKED)


@dataclass(frozen=True, slots=True)
class Rotation:
    """What a rotation did: the new key, the key that signs until it starts (`--now`: the one
    it revoked), the waiting keys it replaced (they never sign) and the keys it revoked."""

    key: ToolKey
    signing_until: str | None  # the kid signing when the rotation was made
    replaced: tuple[str, ...] = ()
    revoked: tuple[str, ...] = ()


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


def load_key(
    kid: str,
    private_pem: bytes,
    jwk: dict[str, Any],
    created_at: datetime,
    signs_from: datetime | None = None,
) -> ToolKey:
    private = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ValueError(f"tool key {kid!r} is not an RSA key")
    return ToolKey(
        kid=kid, private_key=private, public_jwk=jwk, created_at=created_at, signs_from=signs_from
    )


# A process reads the key that signs at most this often, and at once when the next key is due
# to start; a forced rotation elsewhere reaches it within this (a platform that read the key
# set again refuses the revoked key meanwhile: a refused credential's retry reads afresh).
_CACHE_SECONDS = 30.0

# `serve` answers the key set from memory for this long: every platform fetches it, and a
# read per fetch took a worker thread each. A key another process adds shows within it; it
# must stay below the credential retry's wait (6 s, adapters/destinations/ags.py), so a
# platform that refused an assertion signed with a key made meanwhile finds it on the retry.
KEY_SET_SECONDS = 3.0

# How long platforms may keep the key set (`Cache-Control: max-age` of `/lti/jwks.json`).
KEY_SET_MAX_AGE = 300

# Hosts' clocks differ a little: the time a key starts signing is written by one process and
# read against the clock of another.
CLOCK_MARGIN = 15.0

# A rotated key signs this long after it is published: serve's copy of the key set, then a
# platform's copy read just before serve's was renewed, have both been read again by then.
PUBLISH_LEAD = timedelta(seconds=KEY_SET_SECONDS + KEY_SET_MAX_AGE + CLOCK_MARGIN)

# A key replaced while it waited signed nothing, yet a process whose clock runs ahead may have
# read it as current just before: it stays published for the lead plus that process's cache,
# not the overlap (rotations repeated would otherwise grow every platform's key set).
REPLACED_PUBLISHED = PUBLISH_LEAD + timedelta(seconds=_CACHE_SECONDS)

# Rotations through the API and the console (`limited`), which an admin's key or a script
# can repeat: a key waiting to sign is replaced only when asked, and no sooner than this
# after it was made; a rotation with `now` (every platform refuses gradesync until it reads
# the key set again) no sooner than this after the previous one.
REPLACE_INTERVAL = timedelta(seconds=60)
FORCED_INTERVAL = PUBLISH_LEAD


class RotationRefused(Conflict):
    """A limited rotation refused; nothing was changed. `rule`: `key_waiting` (a key waits
    to sign: replace it only when asked) or `too_soon` (`retry_after` seconds)."""

    def __init__(
        self, message: str, *, rule: str, waiting: str | None = None, retry_after: int = 0
    ) -> None:
        super().__init__(message, rule=rule)
        self.waiting = waiting
        self.retry_after = retry_after


def _seconds(left: timedelta) -> int:
    return max(1, int(left.total_seconds() + 0.999))


def _refusal(
    before: list[ToolKeyRow], now: datetime, *, immediately: bool, replace: bool
) -> RotationRefused | None:
    """Why a limited rotation must not be made now, from the keys before it."""
    if immediately:
        forced = max((r.revoked_at for r in before if r.revoked_at), default=None)
        if forced is not None and now - forced < FORCED_INTERVAL:
            until = forced + FORCED_INTERVAL
            return RotationRefused(
                f"too soon: a rotation with now was made at {forced:%H:%M:%S} UTC, and "
                f"another is refused until {until:%H:%M:%S} UTC (platforms are still reading "
                "the key set again); the operator can force one with `gradesync keys "
                "rotate-tool-key --now`",
                rule="too_soon",
                retry_after=_seconds(until - now),
            )
        return None
    waiting = [
        r
        for r in before
        if r.signs_from > now
        and r.revoked_at is None
        and (r.retired_at is None or r.retired_at > now)
    ]
    if not waiting:
        return None
    key = waiting[0]
    if not replace:
        return RotationRefused(
            f"tool key {key.kid} is waiting to sign (from {key.signs_from:%Y-%m-%d %H:%M:%S} "
            "UTC): a rotation now would replace it, and it would never sign. Ask for that "
            'with "replace": true, or rotate after it starts signing',
            rule="key_waiting",
            waiting=key.kid,
        )
    if now - key.created_at < REPLACE_INTERVAL:
        until = key.created_at + REPLACE_INTERVAL
        return RotationRefused(
            f"too soon: tool key {key.kid}, waiting to sign, was made at "
            f"{key.created_at:%H:%M:%S} UTC; a key is replaced at most once a minute, so not "
            f"before {until:%H:%M:%S} UTC",
            rule="too_soon",
            waiting=key.kid,
            retry_after=_seconds(until - now),
        )
    return None


def _tool_key(stored: StoredToolKey) -> ToolKey:
    return load_key(
        stored.kid,
        stored.private_pem,
        stored.public_jwk,
        stored.created_at,
        stored.signs_from or stored.created_at,
    )


class ToolKeyStore:
    """Thread-safe; caches the current key briefly (never past the next key's start). One
    per process (`Runtime.tool_keys`): a rotation here is seen by all that sign here."""

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
        # (key, read at (monotonic), when the next key starts signing)
        self._cached: tuple[ToolKey, float, datetime | None] | None = None
        # keys decrypted and parsed, by kid (a stored key never changes): parsing one takes
        # milliseconds, and every read of the current key would otherwise do it again
        self._loaded: dict[str, ToolKey] = {}
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
        if cached is not None and self._fresh(cached):
            return cached[0]
        with self._lock:
            now = self.clock.now()
            with self._reads() as uow:
                # the generation first: on PostgreSQL each read sees what was committed
                # before it, and a first key committed between the two reads must be found
                # by the second, not followed by this process's own generation
                latest = uow.tool_keys.latest_generation()
                stored = uow.tool_keys.current(now)
                switch = uow.tool_keys.next_start(now)
            # an empty store: the first key signs at once (no key set was served without it)
            key = self._load(stored) if stored is not None else self._first(latest)
            self._cached = (key, time.monotonic(), switch)
            return key

    def _load(self, stored: StoredToolKey) -> ToolKey:
        key = self._loaded.get(stored.kid)
        if key is None:
            if len(self._loaded) >= 8:  # a handful are ever in use: the ones kept are old
                self._loaded.clear()
            key = self._loaded[stored.kid] = _tool_key(stored)
        return key

    def _fresh(self, cached: tuple[ToolKey, float, datetime | None]) -> bool:
        _, read_at, switch = cached
        if time.monotonic() - read_at >= _CACHE_SECONDS:
            return False
        return switch is None or self.clock.now() < switch

    def _first(self, latest: int) -> ToolKey:
        made = self._make(latest, signs_from=None)
        if made is not None:
            return made.key
        with self._uow() as uow:  # another process made it first
            stored = uow.tool_keys.current(self.clock.now())
        if stored is None:  # the winner's key was retired and pruned meanwhile: try again
            return self._first(latest + 1)
        return self._load(stored)

    def reload(self) -> ToolKey:
        """The current key read from the store now, not from this process's cache: after a
        platform refused a signature, the key another process rotated to is the one to use."""
        self._cached = None
        return self.current()

    def _published_cutoffs(self) -> tuple[datetime, datetime]:
        """Keys retired before these are no longer published: one that signed, one replaced
        before it began."""
        now = self.clock.now()
        return now - self.overlap, now - min(self.overlap, REPLACED_PUBLISHED)

    def jwks(self) -> dict[str, Any]:
        """The JWKS document: the current key, the next one, and keys retired less than
        `overlap` ago (`REPLACED_PUBLISHED` for one replaced before it signed) and not
        revoked."""
        self.current()  # a platform fetching the JWKS before any launch still gets a key
        with self._reads() as uow:
            return {"keys": uow.tool_keys.published(*self._published_cutoffs())}

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
        # the flight is let go before its waiters are answered: a request that comes once
        # they have their answer (the clock moved on) starts a read, not joins this one
        try:
            changes, at = self._changes, self.clock.now()
            document = self.jwks()
        except BaseException as exc:  # every waiter gets the failure, the next request retries
            self._land(flight)
            flight.set_exception(exc)
        else:
            self._key_set = (document, at, changes)
            self._land(flight)
            flight.set_result(document)

    def _land(self, flight: Future[dict[str, Any]]) -> None:
        with self._flight_lock:
            if self._flight is flight:
                self._flight = None

    def list(self) -> list[ToolKeyInfo]:
        """Every key, newest first, with its state now."""
        now = self.clock.now()
        with self._uow() as uow:
            rows = uow.tool_keys.listing()
        return [
            ToolKeyInfo(
                kid=r.kid,
                created_at=r.created_at,
                signs_from=signing_start(r.signs_from, r.retired_at, r.revoked_at),
                retired_at=r.retired_at,
                state=key_state(
                    r.signs_from,
                    r.retired_at,
                    now,
                    self.overlap,
                    r.revoked_at,
                    REPLACED_PUBLISHED,
                ),
                published_until=r.revoked_at
                or (
                    r.retired_at
                    + published_for(r.signs_from, r.retired_at, self.overlap, REPLACED_PUBLISHED)
                    if r.retired_at
                    else None
                ),
                revoked_at=r.revoked_at,
            )
            for r in rows
        ]

    # --- changing ---

    def _make(
        self,
        after: int,
        *,
        signs_from: datetime | None,
        revoke: bool = False,
        limited: bool = False,
        replace_waiting: bool = False,
    ) -> Rotation | None:
        """Store a new key of generation `after + 1`, signing from `signs_from` (None: now),
        the key signing now retiring then and any key waiting to sign retiring now (with
        `revoke`, all withdrawn from the key set now). None when another process stored that
        generation first. `limited`: the limits of `rotation` are checked in the same
        transaction (RotationRefused, and nothing stored)."""
        now = self.clock.now()
        key = new_key(now)
        starts = signs_from or now
        with self._uow() as uow:
            made = uow.tool_keys.add(
                after + 1, key.kid, key.private_pem(), key.public_jwk, key.created_at, starts
            )
            if not made:
                return None
            # read in the same transaction as the change: what this rotation replaced
            before = [r for r in uow.tool_keys.listing() if r.kid != key.kid]
            if limited:
                refused = _refusal(before, now, immediately=revoke, replace=replace_waiting)
                if refused is not None:
                    raise refused  # rolled back: the new key is not stored
            uow.tool_keys.retire_before(after + 1, now, starts)
            if revoke:
                uow.tool_keys.revoke_before(after + 1, now)
            uow.commit()
        live = [
            r
            for r in before
            if r.revoked_at is None and (r.retired_at is None or r.retired_at > now)
        ]
        signing = [r.kid for r in live if r.signs_from <= now]
        waiting = tuple(r.kid for r in live if r.signs_from > now)
        return Rotation(
            key=replace(key, signs_from=starts),
            signing_until=signing[0] if signing else None,  # newest first
            replaced=waiting,
            revoked=tuple(
                r.kid
                for r in before
                if revoke
                and r.revoked_at is None
                and (
                    r.retired_at is None
                    or r.retired_at
                    + published_for(r.signs_from, r.retired_at, self.overlap, REPLACED_PUBLISHED)
                    > now
                )
            ),
        )

    def rotate(self, *, immediately: bool = False) -> ToolKey:
        """The new key of `rotation`."""
        return self.rotation(immediately=immediately).key

    def rotation(
        self,
        *,
        immediately: bool = False,
        limited: bool = False,
        replace_waiting: bool = False,
    ) -> Rotation:
        """Make a new key, published at once. It signs from `PUBLISH_LEAD` from now, when
        every cached copy of the key set holds it; the key signing now signs until then, and
        the keys it replaces stay published for `overlap` after they stop signing. A key still
        waiting to sign is replaced: retired now, it never signs. With
        `immediately` (a key that must stop signing: it may have leaked) it signs at once and
        the keys it replaces are revoked, withdrawn from the key set at once (serve's copy
        here now, in other processes within `KEY_SET_SECONDS`): platforms refuse them once
        they read the set again, and refuse the new key until then.

        `limited` (the API's and the console's, which may be repeated by a script): refused
        (RotationRefused, nothing changed) while a key waits to sign unless `replace_waiting`, when
        that key was made less than `REPLACE_INTERVAL` ago, and with `immediately` less than
        `FORCED_INTERVAL` after the previous rotation with it."""
        self.current()  # an empty store: the first key, which this rotation then replaces
        with self._lock:
            self._cached = None
            while True:  # a rotation elsewhere at the same moment: this one follows it
                with self._uow() as uow:
                    latest = uow.tool_keys.latest_generation()
                starts = self.clock.now() + (timedelta(0) if immediately else PUBLISH_LEAD)
                made = self._make(
                    latest,
                    signs_from=starts,
                    revoke=immediately,
                    limited=limited,
                    replace_waiting=replace_waiting,
                )
                if made is not None:
                    break
        self._changed()
        return made

    def next_start(self) -> datetime | None:
        """When the next key starts signing, if one is due."""
        now = self.clock.now()
        with self._uow() as uow:
            return uow.tool_keys.next_start(now)

    def prune(self) -> int:
        """Delete keys retired longer than `overlap` ago (`REPLACED_PUBLISHED` for a key
        replaced before it signed), and revoked keys (none is published)."""
        with self._uow() as uow:
            count = uow.tool_keys.prune(*self._published_cutoffs())
            uow.commit()
        self._changed()
        return count
