"""Small helpers shared by the sandbox's endpoints: responses, bearer tokens, times."""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response


def json_response(
    payload: Any, status: int = 200, media_type: str = "application/json", **headers: str
) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")),
        status_code=status,
        media_type=media_type,
        headers=headers or None,
    )


def error(status: int, message: str, **headers: str) -> Response:
    """An LMS-style JSON error: `{"errors": [{"message": ...}]}` (Canvas shape)."""
    return json_response({"errors": [{"message": message}]}, status, **headers)


class HTTPProblem(Exception):
    """Raised inside a handler to answer with `response` straight away."""

    def __init__(self, response: Response) -> None:
        self.response = response


def parse_timestamp(value: Any, field: str) -> datetime:
    """ISO 8601 with a zone, e.g. 2024-05-01T10:00:00.123Z; naive times are refused."""
    if not isinstance(value, str):
        raise ValueError(f"{field}: must be an ISO 8601 string with a time zone")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{field}: {value!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None or "T" not in value:
        raise ValueError(f"{field}: {value!r} must be a date-time with a time zone")
    return parsed


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class AccessToken:
    client_id: str
    scopes: frozenset[str]
    expires_at: float


class TokenStore:
    """Opaque bearer tokens: random strings mapped to who holds them and what they may do."""

    def __init__(self) -> None:
        self._tokens: dict[str, AccessToken] = {}
        # tokens issued since start, per client and scope set: what a test or benchmark
        # checks "one token per platform" against (purging expired tokens keeps these)
        self.issued: Counter[tuple[str, frozenset[str]]] = Counter()

    def issue(self, client_id: str, scopes: frozenset[str], ttl: int) -> str:
        if len(self._tokens) > 10_000:
            self._purge()
        token = secrets.token_urlsafe(32)
        self._tokens[token] = AccessToken(client_id, scopes, time.time() + ttl)
        self.issued[(client_id, scopes)] += 1
        return token

    def issued_list(self) -> list[dict[str, Any]]:
        return [
            {"client_id": client, "scopes": sorted(scopes), "count": n}
            for (client, scopes), n in sorted(self.issued.items(), key=lambda kv: kv[0][0])
        ]

    def _purge(self) -> None:
        cutoff = time.time() - 60
        self._tokens = {k: v for k, v in self._tokens.items() if v.expires_at > cutoff}

    def expire(self, client_id: str | None = None) -> int:
        """Make tokens expired (all, or one client's) so tests see a real 401 'expired'."""
        count = 0
        for key, token in list(self._tokens.items()):
            if client_id is None or token.client_id == client_id:
                self._tokens[key] = AccessToken(token.client_id, token.scopes, 0.0)
                count += 1
        return count

    def check(
        self,
        request: Request,
        needed: tuple[str, ...],
        fail: Callable[..., Response] = error,
    ) -> AccessToken | Response:
        """The token, or the 401/403 a real platform would send. `needed`: any of these."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return fail(
                401,
                "Authorization: a Bearer access token is required",
                **{"WWW-Authenticate": 'Bearer realm="sandbox"'},
            )
        token = self._tokens.get(value.strip())
        if token is None:
            return fail(
                401,
                "Invalid access token",
                **{"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if token.expires_at <= time.time():
            return fail(
                401,
                "Access token expired",
                **{"WWW-Authenticate": 'Bearer error="invalid_token", error_description="expired"'},
            )
        if needed and token.scopes.isdisjoint(needed):
            return fail(
                403,
                f"Access token does not grant any of the scopes {list(needed)}",
                **{"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
            )
        return token
