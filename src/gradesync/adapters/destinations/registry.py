"""Which adapter serves which destination kind.

Each protocol module exposes `build(destination, context) -> DestinationClient`. Modules are
imported lazily so a deployment that uses one protocol does not load the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from gradesync.adapters.destinations.tokens import TokenCache
from gradesync.domain.model import Destination, DestinationKind
from gradesync.services.clock import Clock, SystemClock
from gradesync.services.destination import DestinationClient

BUILDERS: dict[DestinationKind, str] = {
    DestinationKind.LTI13_AGS: "gradesync.adapters.destinations.ags",
    DestinationKind.LTI11_OUTCOMES: "gradesync.adapters.destinations.lti11",
    DestinationKind.ONEROSTER_REST: "gradesync.adapters.destinations.oneroster",
    DestinationKind.ONEROSTER_CSV: "gradesync.adapters.destinations.oneroster_csv",
}


class Signer(Protocol):
    """The tool's current signing key (`gradesync.services.lti.keys.ToolKey` satisfies it)."""

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str: ...


class KeyProvider(Protocol):
    """The LTI tool's signing keys (`gradesync.services.lti.keys.ToolKeyStore`)."""

    def current(self) -> Signer: ...

    def reload(self) -> Signer:
        """The current key read afresh from the store (another process may have rotated)."""
        ...


@dataclass
class DestinationContext:
    """What the destination adapters get from their process, shared by every client of it:
    one HTTP connection pool, one token cache, the clock and the tool's signing keys. The
    runtime builds it (`Runtime.adapter_context`)."""

    http: httpx.AsyncClient
    tokens: TokenCache = field(default_factory=TokenCache)
    # The process's clock (a file-based SIS stamps the rows it writes with it).
    clock: Clock = field(default_factory=SystemClock)
    # Signs the LTI 1.3 client assertions (AGS); None where this process has no tool keys,
    # and an AGS client then says so as a misconfiguration.
    tool_keys: KeyProvider | None = None
    # This installation, as what it writes to a SIS names it (its base URL): another one
    # whose tenant and activity ids are the same does not take its line items for its own.
    installation: str = ""
    # The ids of every connection a tenant has or had here (deleted ones too): a line item
    # written before gradesync named the installation is taken for this one's only under
    # one of their sourcedIds. None: such an item is never taken.
    connection_ids: Callable[[str], Sequence[str]] | None = None


class UnsupportedDestination(Exception):
    pass


def build_client(destination: Destination, context: DestinationContext) -> DestinationClient:
    module_name = BUILDERS.get(destination.kind)
    if module_name is None:
        raise UnsupportedDestination(f"no adapter for destination kind {destination.kind.value!r}")
    module = importlib.import_module(module_name)
    client: DestinationClient = module.build(destination, context)
    return client
