"""Which adapter serves which destination kind.

Each protocol module exposes `build(destination, context) -> DestinationClient`. Modules are
imported lazily so a deployment that uses one protocol does not load the others.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class DestinationContext:
    """Shared by every client of one process: one HTTP connection pool, one token cache."""

    http: httpx.AsyncClient
    tokens: TokenCache = field(default_factory=TokenCache)
    # The process's clock (a file-based SIS stamps the rows it writes with it).
    clock: Clock = field(default_factory=SystemClock)
    # Services an adapter may need (e.g. the LTI tool's signing keys); set by the runtime.
    extras: dict[str, Any] = field(default_factory=dict)


class UnsupportedDestination(Exception):
    pass


def build_client(destination: Destination, context: DestinationContext) -> DestinationClient:
    module_name = BUILDERS.get(destination.kind)
    if module_name is None:
        raise UnsupportedDestination(f"no adapter for destination kind {destination.kind.value!r}")
    module = importlib.import_module(module_name)
    client: DestinationClient = module.build(destination, context)
    return client
