"""Canonical JSON and its sha256: hashes that are equal across processes and machines.

Keys sorted, no whitespace, numbers as floats (so 5 and 5.0 hash alike), datetimes as UTC ISO
8601 with microseconds. Python's float repr is the shortest round-tripping form on every
platform, so the text, and the hash, is stable."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with microseconds; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def number(value: float) -> float:
    # -0.0 and 0.0 are the same grade; give them one spelling.
    return float(value) + 0.0


def digest(payload: dict[str, Any]) -> str:
    text = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
