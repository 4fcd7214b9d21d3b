"""Instants on a zone's wall clock, for people to read.

Every stored instant lies in years 1-9999 in UTC, but not always on another zone's clock:
0001-01-01T01:00Z is still in year 0 in America/Chicago, and 9999-12-31T23:00Z already in
year 10000 in Asia/Tokyo. Such an instant is shown in UTC (with its zone named UTC) rather
than not at all, and so is one whose zone is no longer known (an old name tzdata dropped).
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["in_zone", "on_clock", "strftime"]


def on_clock(at: datetime, zone: str | tzinfo) -> datetime | None:
    """`at` (aware) on `zone`'s clock; None when `zone` is not a known zone or its clock
    would read a year outside 1-9999."""
    if isinstance(zone, str):
        try:
            zone = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            return None
    try:
        return at.astimezone(zone)
    except OverflowError:
        return None


def in_zone(at: datetime, zone: str | tzinfo | None) -> datetime:
    """`at` (aware) on `zone`'s clock, else (no zone, or `on_clock` has no answer) in UTC."""
    local = on_clock(at, zone) if zone else None
    return local if local is not None else at.astimezone(UTC)


def strftime(at: datetime, fmt: str) -> str:
    """`at.strftime(fmt)` with `%Y` as four digits: the C library writes year 1 as "1",
    which neither reads as a date nor fills a date field."""
    return at.strftime(fmt.replace("%Y", f"{at.year:04d}"))
