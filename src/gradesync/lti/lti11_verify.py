"""Verifying LTI 1.1 launches: OAuth 1.0a signatures with oauthlib, plus the checks around it
that give a person a clear reason (unknown consumer, clock skew, replayed nonce).

oauthlib's SignatureOnlyEndpoint does the cryptography (base string, HMAC-SHA1, constant-time
compare); the validator below answers its questions about consumers and nonces.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from oauthlib.oauth1 import RequestValidator, SignatureOnlyEndpoint
from oauthlib.oauth1.rfc5849.signature import collect_parameters

from gradesync.services.lti.errors import Lti11Refused as LaunchRefused

TIMESTAMP_WINDOW = 300  # seconds either side of our clock (LTI 1.1 tools commonly use 5 min)
ALLOWED_METHODS = ("HMAC-SHA1", "HMAC-SHA256")

__all__ = ["ALLOWED_METHODS", "TIMESTAMP_WINDOW", "LaunchRefused", "verify_signed_request"]


class _Validator(RequestValidator):  # type: ignore[misc]  # oauthlib is untyped
    """Answers oauthlib's questions from one consumer's secret and our nonce store."""

    enforce_ssl = False  # TLS is the reverse proxy's job; the signature covers the scheme
    dummy_client = "gradesync-unknown-consumer"

    def __init__(self, secrets: Mapping[str, str], nonce_used: Callable[[str, str], bool]):
        super().__init__()
        self._secrets = secrets
        self._nonce_used = nonce_used

    @property
    def allowed_signature_methods(self) -> tuple[str, ...]:
        return ALLOWED_METHODS

    @property
    def timestamp_lifetime(self) -> int:
        return TIMESTAMP_WINDOW

    # LMS consumer keys and nonces come in every shape: only bound their length.
    def check_client_key(self, client_key: str) -> bool:
        return 0 < len(client_key) <= 255

    def check_nonce(self, nonce: str) -> bool:
        return 0 < len(nonce) <= 255

    def validate_client_key(self, client_key: str, request: Any) -> bool:
        return client_key in self._secrets

    def get_client_secret(self, client_key: str, request: Any) -> str:
        # oauthlib computes a signature even for unknown keys, so timing does not tell.
        return self._secrets.get(client_key, "gradesync-dummy-secret")

    def validate_timestamp_and_nonce(
        self, client_key: str, timestamp: str, nonce: str, request: Any, **_: Any
    ) -> bool:
        if self._nonce_used(client_key, nonce):
            request.validator_log["replay"] = True
            return False
        return True


def oauth_params(body: str, headers: Mapping[str, str]) -> dict[str, str]:
    """The oauth_* parameters of a request (form body or Authorization header)."""
    params = collect_parameters(body=body, headers=dict(headers), exclude_oauth_signature=False)
    return {k: v for k, v in params if k.startswith("oauth_")}


def verify_signed_request(
    url: str,
    body: str,
    headers: Mapping[str, str],
    secrets: Mapping[str, str],
    *,
    now: float,
    nonce_used: Callable[[str, str], bool],
) -> dict[str, str]:
    """Check an OAuth 1.0a signed request; return its oauth_* parameters or raise
    LaunchRefused naming the parameter at fault. Does not record the nonce: the caller does
    that in the same transaction as the launch's effects."""
    try:
        oauth = oauth_params(body, headers)
    except (ValueError, TypeError) as exc:
        raise LaunchRefused(
            400, "body", "malformed", f"cannot read the OAuth parameters: {exc}"
        ) from None
    for name in (
        "oauth_consumer_key",
        "oauth_signature",
        "oauth_signature_method",
        "oauth_timestamp",
        "oauth_nonce",
    ):
        if not oauth.get(name):
            raise LaunchRefused(401, name, "required", "is required for an OAuth 1.0a launch")
    key = oauth["oauth_consumer_key"]
    if key not in secrets:
        raise LaunchRefused(
            401, "oauth_consumer_key", "unknown", f"{key!r} is not a consumer registered here"
        )
    if oauth["oauth_signature_method"] not in ALLOWED_METHODS:
        raise LaunchRefused(
            401,
            "oauth_signature_method",
            "unsupported",
            f"must be one of {', '.join(ALLOWED_METHODS)}",
        )
    if oauth.get("oauth_version", "1.0") != "1.0":
        raise LaunchRefused(401, "oauth_version", "unsupported", "must be 1.0")
    try:
        skew = abs(now - int(oauth["oauth_timestamp"]))
    except ValueError:
        raise LaunchRefused(
            401, "oauth_timestamp", "integer", "must be seconds since 1970"
        ) from None
    if skew > TIMESTAMP_WINDOW:
        raise LaunchRefused(
            401,
            "oauth_timestamp",
            "window",
            f"is {int(skew)} s away from this server's clock (at most {TIMESTAMP_WINDOW} s "
            "allowed): check the clocks of the LMS and of gradesync",
        )
    endpoint = SignatureOnlyEndpoint(_Validator(secrets, nonce_used))
    valid, request = endpoint.validate_request(
        url, http_method="POST", body=body, headers=dict(headers)
    )
    if valid:
        return oauth
    if request is not None and request.validator_log.get("replay"):
        raise LaunchRefused(401, "oauth_nonce", "replayed", "was already used: a replayed launch")
    raise LaunchRefused(
        401,
        "oauth_signature",
        "mismatch",
        f"does not verify with the secret of consumer {key!r} for {url}: check the secret, "
        "and that the LMS launches exactly this URL (scheme, host, port, path)",
    )
