"""One destination client per destination, rebuilt when the destination's settings change,
dropped and closed when the destination is deleted."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import weakref

from gradesync.domain.model import Destination
from gradesync.domain.policy import Capabilities
from gradesync.domain.reasons import Reason
from gradesync.services.compute import destination_unavailable
from gradesync.services.delivery.records import DestKey
from gradesync.services.destination import DestinationClient, DestinationFactory

log = logging.getLogger(__name__)


def settings_fingerprint(d: Destination) -> str:
    """Changes when anything a client is built from changes (settings, secret, kind)."""
    blob = json.dumps(
        [d.kind.value, d.profile, d.config, d.secret], sort_keys=True, default=str
    ).encode()
    return hashlib.sha256(blob).hexdigest()


class Clients:
    """One client per destination, rebuilt when the destination's settings change.
    Thread-safe: computing (in a thread) asks for capabilities too."""

    def __init__(self, factory: DestinationFactory) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._clients: dict[DestKey, tuple[str, DestinationClient]] = {}
        # clients replaced by new settings, closed at shutdown if still in use then: held
        # weakly, so one no send holds any more is dropped (every settings change made one,
        # kept until the process stopped). Clients own nothing to close (the HTTP pool is
        # the context's), so dropping an unused one without closing it loses nothing.
        self._retired: weakref.WeakSet[DestinationClient] = weakref.WeakSet()
        # the destination each client was last asked for: the same (frozen) object needs
        # no fingerprint, and the pass loop asks again for every row it claims
        self._last: dict[DestKey, tuple[Destination, DestinationClient]] = {}
        # clients of deleted destinations (`forget`) not closed yet: a send may still hold
        # one; closed by `close` once none does, or at shutdown
        self._forgotten: set[DestinationClient] = set()

    def held(self) -> set[DestKey]:
        """The destinations a client is held for."""
        with self._lock:
            return set(self._clients)

    def forget(self, key: DestKey) -> DestinationClient | None:
        """The destination is deleted: its client (and the settings it was built from, the
        secret among them) goes from here; returned, for the caller to `close` once no
        send holds it. None when no client was held for it."""
        with self._lock:
            cached = self._clients.pop(key, None)
            self._last.pop(key, None)
            if cached is None:
                return None
            self._forgotten.add(cached[1])
            return cached[1]

    async def close(self, client: DestinationClient) -> None:
        """Close a client `forget` returned."""
        with self._lock:
            if client not in self._forgotten:
                return  # closed already (by `aclose`)
            self._forgotten.discard(client)
        await _close(client)

    def get(self, destination: Destination) -> DestinationClient:
        key = (destination.tenant_id, destination.id)
        last = self._last.get(key)
        if last is not None and last[0] is destination:
            return last[1]
        fp = settings_fingerprint(destination)
        with self._lock:
            cached = self._clients.get(key)
            if cached is not None and cached[0] == fp:
                client = cached[1]
            else:
                client = self._factory(destination)
                if cached is not None:
                    self._retired.add(cached[1])
                self._clients[key] = (fp, client)
            self._last[key] = (destination, client)
            return client

    def capabilities(self, destination: Destination) -> Capabilities | Reason:
        try:
            return self.get(destination).capabilities
        except Exception as exc:  # an unknown kind or unusable settings
            return destination_unavailable(destination, f"{type(exc).__name__}: {exc}")

    async def aclose(self) -> None:
        with self._lock:
            clients = [c for _, c in self._clients.values()]
            clients += list(self._retired) + list(self._forgotten)
            self._clients.clear()
            self._last.clear()
            self._retired = weakref.WeakSet()
            self._forgotten = set()
        for client in clients:
            await _close(client)


async def _close(client: DestinationClient) -> None:
    try:
        await client.aclose()
    except Exception:
        log.exception("closing a destination client failed")
