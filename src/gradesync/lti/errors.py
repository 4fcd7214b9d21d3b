"""Why a login or launch was refused: a stable code, a sentence naming the claim and the rule,
and what we knew about who sent it (for the rejection record)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LaunchRefused(Exception):
    code: str  # bad_signature, wrong_audience, expired, nonce_replayed, unknown_deployment, ...
    message: str
    status: int = 400
    tenant_id: str | None = None
    destination_id: str | None = None
    issuer: str | None = None
    client_id: str | None = None
    deployment_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(f"{self.code}: {self.message}")
