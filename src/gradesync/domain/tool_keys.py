"""Where an LTI tool key is in its life, from its times alone.

A key is published the moment it is made, and signs only from `signs_from`: platforms cache
the tool's key set, and a signature with a key missing from their copy is refused. A key stops
signing (`retired_at`) when the next one starts, and stays published for the overlap after
that, so whatever it signed keeps verifying until it expires. A key still waiting to sign
when a newer rotation comes is retired at once: it never signs, and the key signing now signs
until the newer one starts; having signed nothing, it stays published only for a short while
(`replaced_for`), not the overlap. A key revoked (`revoked_at`,
replaced by a forced rotation: it may have leaked) is withdrawn from the key set at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

__all__ = ["KeyState", "key_state", "published_for", "signing_start"]


class KeyState(StrEnum):
    NEXT = "next"  # published, signs from `signs_from`
    CURRENT = "current"  # signs now
    RETIRING = "retiring"  # signs no more, still published until the overlap has passed
    EXPIRED = "expired"  # no longer published; `prune-tool-keys` deletes it
    REVOKED = "revoked"  # withdrawn at once, signs no more; `prune-tool-keys` deletes it


def published_for(
    signs_from: datetime, retired_at: datetime, overlap: timedelta, replaced_for: timedelta
) -> timedelta:
    """How long a retired key stays published after `retired_at`: the overlap for a key that
    signed, `replaced_for` (at most the overlap) for one replaced before it began."""
    return overlap if retired_at > signs_from else min(overlap, replaced_for)


def key_state(
    signs_from: datetime,
    retired_at: datetime | None,
    now: datetime,
    overlap: timedelta,
    revoked_at: datetime | None = None,
    replaced_for: timedelta | None = None,
) -> KeyState:
    if revoked_at is not None and revoked_at <= now:
        return KeyState.REVOKED
    if retired_at is not None and retired_at <= now:
        keep = published_for(signs_from, retired_at, overlap, replaced_for or overlap)
        return KeyState.RETIRING if retired_at > now - keep else KeyState.EXPIRED
    if signs_from > now:
        return KeyState.NEXT
    return KeyState.CURRENT


def signing_start(
    signs_from: datetime, retired_at: datetime | None, revoked_at: datetime | None
) -> datetime | None:
    """When the key signs from; None for a key that never signs (retired or revoked before
    its time came), so no listing shows a start that will not happen."""
    stops = [t for t in (retired_at, revoked_at) if t is not None]
    if stops and min(stops) <= signs_from:
        return None
    return signs_from
