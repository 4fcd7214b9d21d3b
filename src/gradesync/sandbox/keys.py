"""Platform signing key (RSA + kid, published as JWKS) and a cache of tools' public keys."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from .config import ToolSeed


class ToolKeyError(Exception):
    """The tool's key could not be found or loaded (message says why)."""


class PlatformKey:
    """The sandbox LMS's own RSA key: signs id_tokens, published at the JWKS URL."""

    def __init__(self) -> None:
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex
        jwk = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update({"kid": self.kid, "alg": "RS256", "use": "sig"})
        self.jwks: dict[str, Any] = {"keys": [jwk]}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid})


def _load_public_key(value: str | dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return RSAAlgorithm.from_jwk(json.dumps(value))
    return serialization.load_pem_public_key(value.encode())


class ToolKeys:
    """Public keys of registered tools, fetched once and cached.

    A JWKS is re-fetched only when a JWT names a kid we have not seen, and then at most once
    per `refetch_interval` seconds per tool, so a flood of bad tokens cannot make us hammer
    the tool's JWKS URL. A request that arrives while a fetch is on its way waits for it
    (two token requests at once for a new key both get the key), as a platform's cache does.
    """

    def __init__(self, refetch_interval: float = 5.0) -> None:
        self._keys: dict[str, dict[str | None, Any]] = {}
        self._fetched_at: dict[str, float] = {}
        self._fetching: dict[str, asyncio.Lock] = {}
        self._refetch_interval = refetch_interval

    def forget(self, client_id: str) -> None:
        self._keys.pop(client_id, None)
        self._fetched_at.pop(client_id, None)

    async def key_for(self, tool: ToolSeed, kid: str | None) -> Any:
        if tool.public_key is not None and not tool.jwks_url:
            cached = self._keys.get(tool.client_id)
            if cached is None:
                try:
                    cached = {None: _load_public_key(tool.public_key)}
                except (ValueError, TypeError) as exc:
                    raise ToolKeyError(f"registered public_key cannot be loaded: {exc}") from None
                self._keys[tool.client_id] = cached
            return cached[None]
        key = _pick(self._keys.get(tool.client_id, {}), kid)
        if key is not None:
            return key
        async with self._fetching.setdefault(tool.client_id, asyncio.Lock()):
            keys = self._keys.get(tool.client_id, {})  # what a fetch just now brought
            last = self._fetched_at.get(tool.client_id)
            if _pick(keys, kid) is None and (
                last is None or time.monotonic() - last >= self._refetch_interval
            ):
                keys = await self._fetch(tool)
        key = _pick(keys, kid)
        if key is None:
            raise ToolKeyError(f"no key with kid {kid!r} in the tool's JWKS at {tool.jwks_url}")
        return key

    async def _fetch(self, tool: ToolSeed) -> dict[str | None, Any]:
        assert tool.jwks_url
        self._fetched_at[tool.client_id] = time.monotonic()
        try:
            # a tool on a loaded machine may take seconds to answer: a key read failed for
            # time alone refuses a token the tool signed right (the tool asks again 6 s later)
            async with httpx.AsyncClient(timeout=15.0) as client:
                response = await client.get(tool.jwks_url)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ToolKeyError(
                f"cannot fetch the tool's JWKS from {tool.jwks_url}: {exc}"
            ) from None
        keys: dict[str | None, Any] = {}
        for jwk in document.get("keys", []) if isinstance(document, dict) else []:
            try:
                keys[jwk.get("kid")] = RSAAlgorithm.from_jwk(json.dumps(jwk))
            except (ValueError, TypeError, jwt.InvalidKeyError):
                continue  # skip keys we cannot use (other key types) rather than fail all
        self._keys[tool.client_id] = keys
        return keys


def _pick(keys: dict[str | None, Any], kid: str | None) -> Any:
    """The key a JWT's kid names; without a kid, the only key (None: not there)."""
    if kid in keys:
        return keys[kid]
    if kid is None and len(keys) == 1:
        return next(iter(keys.values()))
    return None
