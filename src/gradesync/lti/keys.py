"""The tool's own RSA signing keys: created on first use, rotated on demand, published as JWKS.

Private keys are stored PEM-encoded and encrypted with the database's SecretBox; the plaintext
only ever exists in memory. Rotation makes a new current key and retires the old one, which
stays in the JWKS for `overlap` so platforms that cached the old key (or tokens signed just
before the rotation) keep verifying.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import delete, insert, select, update

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.database import Database
from gradesync.adapters.db.mapping import utc
from gradesync.services.clock import Clock, SystemClock

DEFAULT_OVERLAP = timedelta(days=7)
KEY_BITS = 2048
_CACHE_SECONDS = 30.0  # other processes see a rotation within this; the old key still verifies


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


@dataclass(frozen=True, slots=True)
class ToolKeyInfo:
    """A key as listed to an operator: never the private half."""

    kid: str
    created_at: datetime
    retired_at: datetime | None
    published: bool


def _public_jwk(private_key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig", "kty": "RSA"})
    return jwk


class ToolKeyStore:
    """Tool keys in the `tool_keys` table. Thread-safe; caches the current key briefly."""

    def __init__(
        self, db: Database, clock: Clock | None = None, overlap: timedelta = DEFAULT_OVERLAP
    ) -> None:
        self.db = db
        self.clock = clock or SystemClock()
        self.overlap = overlap
        self._lock = threading.Lock()
        self._cached: tuple[ToolKey, float] | None = None

    # --- reading ---

    def current(self) -> ToolKey:
        """The key that signs now; the first call on an empty store creates it."""
        cached = self._cached
        if cached is not None and time.monotonic() - cached[1] < _CACHE_SECONDS:
            return cached[0]
        with self._lock:
            key = self._load_current()
            if key is None:
                key = self._create()
            self._cached = (key, time.monotonic())
            return key

    def _load_current(self) -> ToolKey | None:
        c = t.tool_keys.c
        with self.db.engine.connect() as conn:
            row = (
                conn.execute(
                    select(t.tool_keys)
                    .where(c.retired_at.is_(None))
                    .order_by(c.created_at.desc(), c.kid.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        pem = self.db.box.decrypt(row["private_ciphertext"])
        private = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(private, rsa.RSAPrivateKey)
        return ToolKey(
            kid=row["kid"],
            private_key=private,
            public_jwk=dict(row["public_jwk"]),
            created_at=utc(row["created_at"]) or self.clock.now(),
            retired_at=None,
        )

    def _published_cutoff(self) -> datetime:
        return self.clock.now() - self.overlap

    def jwks(self) -> dict[str, Any]:
        """The JWKS document: the current key and keys retired less than `overlap` ago."""
        self.current()  # a platform fetching the JWKS before any launch still gets a key
        c = t.tool_keys.c
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                select(c.public_jwk)
                .where((c.retired_at.is_(None)) | (c.retired_at > self._published_cutoff()))
                .order_by(c.created_at.desc(), c.kid.desc())
            ).all()
        return {"keys": [dict(r[0]) for r in rows]}

    def list(self) -> list[ToolKeyInfo]:
        c = t.tool_keys.c
        cutoff = self._published_cutoff()
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                select(c.kid, c.created_at, c.retired_at).order_by(c.created_at.desc(), c.kid)
            ).all()
        out = []
        for kid, created, retired in rows:
            retired = utc(retired)
            out.append(
                ToolKeyInfo(
                    kid, utc(created) or cutoff, retired, retired is None or retired > cutoff
                )
            )
        return out

    # --- changing ---

    def _create(self) -> ToolKey:
        private = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        kid = f"{self.clock.now():%Y%m%d}-{secrets.token_hex(6)}"
        jwk = _public_jwk(private, kid)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        now = self.clock.now()
        with self.db.engine.begin() as conn:
            conn.execute(
                insert(t.tool_keys).values(
                    kid=kid,
                    private_ciphertext=self.db.box.encrypt(pem),
                    public_jwk=jwk,
                    created_at=utc(now),
                    retired_at=None,
                )
            )
        return ToolKey(kid=kid, private_key=private, public_jwk=jwk, created_at=now)

    def rotate(self) -> ToolKey:
        """Make a new current key; the previous ones are retired now and stay published for
        `overlap`. Returns the new key."""
        with self._lock:
            self._cached = None
            c = t.tool_keys.c
            with self.db.engine.begin() as conn:
                conn.execute(
                    update(t.tool_keys)
                    .where(c.retired_at.is_(None))
                    .values(retired_at=utc(self.clock.now()))
                )
            key = self._create()
            self._cached = (key, time.monotonic())
            return key

    def prune(self) -> int:
        """Delete keys retired longer than `overlap` ago (no longer published)."""
        c = t.tool_keys.c
        with self.db.engine.begin() as conn:
            res = conn.execute(
                delete(t.tool_keys).where(
                    c.retired_at.is_not(None), c.retired_at <= self._published_cutoff()
                )
            )
        return int(res.rowcount or 0)
