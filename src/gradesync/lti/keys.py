"""The tool's RSA signing keys as the protocol sees them: a key signs RS256 JWTs with its
`kid` in the header and publishes its public half as a JWK. Storing, rotating and publishing
them is `gradesync.services.lti.keys`."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

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
