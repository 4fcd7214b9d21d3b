"""One running sandbox: its state, keys, tokens, faults and the URLs it answers on."""

from __future__ import annotations

import time

from starlette.requests import Request

from .common import TokenStore
from .config import SandboxConfig
from .faults import FaultInjector
from .keys import PlatformKey, ToolKeys
from .state import LineItem, SandboxState

AGS_PREFIX = "/api/lti/courses"
TOKEN_PATH = "/login/oauth2/token"
AUTHORIZE_PATH = "/lti/authorize"
LOGIN_START_PATH = "/lti/launch"
DEEP_LINK_RETURN_PATH = "/lti/deep_links"
JWKS_PATH = "/.well-known/jwks.json"
LTI11_OUTCOMES_PATH = "/lti11/outcomes"
ONEROSTER_BASE = "/ims/oneroster/gradebook/v1p2"
ONEROSTER_TOKEN_PATH = "/ims/oneroster/oauth2/token"


class ReplayCache:
    """Values seen before (jti, nonces), remembered until they expire."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def add(self, value: str, expires_at: float) -> bool:
        """Remember `value`; False if it was already seen (a replay)."""
        now = time.time()
        if len(self._seen) > 50_000:
            self._seen = {k: v for k, v in self._seen.items() if v > now}
        previous = self._seen.get(value)
        if previous is not None and previous > now:
            return False
        self._seen[value] = max(expires_at, now + 60)
        return True


class Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.state = SandboxState(config)
        self.platform_key = PlatformKey()
        self.tool_keys = ToolKeys()
        self.lti_tokens = TokenStore()
        self.sis_tokens = TokenStore()
        self.faults = FaultInjector(config.faults, config.rng_seed, lambda: self.state.mode)
        self.jtis = ReplayCache()
        self.nonces = ReplayCache()
        self.lti11_nonces = ReplayCache()
        # lti_message_hint -> launch description; deep-link `data` -> session
        self.launch_hints: dict[str, dict[str, object]] = {}
        self.deep_link_sessions: dict[str, dict[str, object]] = {}
        # LTI Dynamic Registration: one-time tokens an admin handed out, and what registered
        self.registration_tokens: set[str] = set()
        self.registrations: list[dict[str, object]] = []

    def base(self, request: Request | None = None) -> str:
        """Public base URL (also the issuer). From config, else from the request's host."""
        if self.config.base_url:
            return self.config.base_url
        if request is None:
            return "http://127.0.0.1"
        return str(request.base_url).rstrip("/")

    def line_items_url(self, base: str, course_id: str) -> str:
        return f"{base}{AGS_PREFIX}/{course_id}/line_items"

    def line_item_path(self, base: str, item: LineItem) -> str:
        return f"{base}{AGS_PREFIX}/{item.course_id}/line_items/{item.id}"

    def line_item_url(self, base: str, item: LineItem) -> str:
        # Canvas line item URLs carry a query string: senders must put /scores before it.
        path = self.line_item_path(base, item)
        return f"{path}?tool=1" if self.state.mode == "canvas" else path
