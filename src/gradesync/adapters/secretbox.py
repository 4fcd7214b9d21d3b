"""Encryption of secrets at rest (client secrets, private keys) with Fernet.

The configured secret key may be any string: it is stretched with HKDF into a Fernet key, so
operators can use a passphrase or a random token. Several keys may be given, newest first,
separated by commas: the first encrypts, all decrypt (rotation without downtime).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretBoxError(Exception):
    pass


def _fernet(secret: str) -> Fernet:
    raw = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"gradesync-secrets-v1"
    ).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(raw))


class SecretBox:
    def __init__(self, secret_key: str) -> None:
        keys = [k.strip() for k in secret_key.split(",") if k.strip()]
        if not keys:
            raise SecretBoxError("the secret key is empty")
        self._box = MultiFernet([_fernet(k) for k in keys])

    def encrypt(self, plaintext: bytes) -> str:
        return self._box.encrypt(plaintext).decode("ascii")

    def decrypt(self, token: str) -> bytes:
        try:
            return self._box.decrypt(token.encode("ascii"))
        except InvalidToken as exc:
            raise SecretBoxError(
                "a stored secret cannot be decrypted: GRADESYNC_SECRET_KEY differs from the key "
                "it was encrypted with"
            ) from exc

    def encrypt_json(self, value: dict[str, Any]) -> str:
        return self.encrypt(json.dumps(value, sort_keys=True).encode())

    def decrypt_json(self, token: str | None) -> dict[str, Any]:
        if not token:
            return {}
        data = json.loads(self.decrypt(token))
        if not isinstance(data, dict):
            raise SecretBoxError("a stored secret is not a JSON object")
        return data
