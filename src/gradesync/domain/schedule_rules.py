"""Schedule rules: parse a schedule's spec and compute when it runs next.

Pure: no clock, no storage. Every instant in and out is a timezone-aware `datetime`; results
are in UTC. Local wall times are interpreted in the schedule's IANA zone with these rules,
which keep "daily at 01:30" meaning *once per local day* on both daylight-saving days:

- a local time that does not exist (spring forward: 02:30 in New York on the March change) runs
  at the first valid instant after the gap (03:00 local);
- a local time that happens twice (fall back: 01:30 in New York on the November change) runs
  once, at its first occurrence;
- interval schedules ("every 15 minutes") ignore the wall clock: slots are anchored at the
  first run in absolute time, so they neither drift nor bunch up across a change.

A slot after the last instant a date-time can hold (the end of year 9999, in UTC or in the
schedule's zone) does not exist: a schedule whose next slot would be there has no next run.

Spec syntax per kind (canonical form after parsing in brackets):

- INTERVAL: "15m", "2h", "1h30m", "90 minutes", "every 2 hours"; a bare number means minutes
  ["15m", "2h", "1h30m"]. From 1 minute to 31 days.
- DAILY: "HH:MM" in 24-hour local time ["01:30"].
- WEEKLY: "<days> HH:MM" where days are "mon", "mon,wed,fri", "mon-fri" or full names
  ["mon,wed,fri 07:00"].
- CRON: five fields (minute hour day-of-month month day-of-week) or an alias such as
  "@daily", evaluated in the schedule's zone with the same DST rules ["0 7 * * 1-5"].
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import ScheduleKind

__all__ = [
    "MAX_INTERVAL",
    "MIN_INTERVAL",
    "ScheduleRule",
    "count_slots",
    "describe",
    "next_run",
    "parse_kind",
    "parse_rule",
    "parse_time_zone",
    "resolve_local",
    "upcoming",
]

MIN_INTERVAL = timedelta(minutes=1)
MAX_INTERVAL = timedelta(days=31)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = {
    "monday": 0,
    "tuesday": 1,
    "wednesday": 2,
    "thursday": 3,
    "friday": 4,
    "saturday": 5,
    "sunday": 6,
}
# Candidates skipped because they fall in a repeated hour are at most a few hours of minutes;
# this bound only guards against a bug turning into an endless loop.
_MAX_CANDIDATES = 10_000
_FIRST_INSTANT = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ScheduleRule:
    """A parsed, validated schedule spec. `spec` is the canonical text to store."""

    kind: ScheduleKind
    spec: str
    interval: timedelta | None = None  # INTERVAL
    at: time | None = None  # DAILY, WEEKLY: local wall time
    weekdays: tuple[int, ...] = ()  # WEEKLY: 0 = Monday
    cron: str | None = None  # CRON


# --- parsing ----------------------------------------------------------------------------------


def parse_time_zone(name: str, field: str = "time_zone") -> ZoneInfo:
    """An IANA zone such as "America/New_York" (the zone's own daylight-saving rules apply)."""
    if not name or not name.strip():
        raise InvalidInput.one(field, "required", "a time zone is required, e.g. Europe/Berlin")
    name = name.strip()
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        zone = None
    if zone is None or name.lower() == "localtime":
        raise InvalidInput.one(
            field,
            "iana_time_zone",
            f"{name!r} is not an IANA time zone name (e.g. America/New_York, Europe/London)",
        )
    return zone


def parse_kind(kind: ScheduleKind | str) -> ScheduleKind:
    try:
        return ScheduleKind(kind)
    except ValueError:
        allowed = ", ".join(x.value for x in ScheduleKind)
        raise InvalidInput.one(
            "kind", "one_of", f"{kind!r} is not a schedule kind; use one of {allowed}"
        ) from None


def parse_rule(kind: ScheduleKind | str, spec: str) -> ScheduleRule:
    """Validate `spec` for `kind`; raise InvalidInput naming the field and the rule."""
    k = parse_kind(kind)
    text = " ".join((spec or "").strip().lower().split())
    if not text:
        raise InvalidInput.one("spec", "required", f"a {k.value} schedule needs a spec")
    if k is ScheduleKind.INTERVAL:
        return _parse_interval(text)
    if k is ScheduleKind.DAILY:
        at = _parse_clock(text)
        return ScheduleRule(k, at.strftime("%H:%M"), at=at)
    if k is ScheduleKind.WEEKLY:
        return _parse_weekly(text)
    return _parse_cron(text)


_INTERVAL_SHORT = re.compile(r"^(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?$")
_INTERVAL_WORDS = re.compile(
    r"^(?:every\s+)?(\d+)\s*(m|min|mins|minute|minutes|h|hr|hrs|hour|hours)$"
)


def _parse_interval(text: str) -> ScheduleRule:
    hours = minutes = 0
    if text.isdigit():
        minutes = int(text)
    elif m := _INTERVAL_WORDS.match(text):
        n = int(m.group(1))
        hours, minutes = (n, 0) if m.group(2).startswith("h") else (0, n)
    elif (m := _INTERVAL_SHORT.match(text)) and (m.group(1) or m.group(2)):
        hours, minutes = int(m.group(1) or 0), int(m.group(2) or 0)
    else:
        raise InvalidInput.one(
            "spec",
            "interval_format",
            f"{text!r} is not an interval; write e.g. 15m, 2h or 1h30m",
        )
    every = timedelta(hours=hours, minutes=minutes)
    if every < MIN_INTERVAL:
        raise InvalidInput.one("spec", "interval_min", "the interval must be at least 1 minute")
    if every > MAX_INTERVAL:
        raise InvalidInput.one("spec", "interval_max", "the interval must be at most 31 days")
    return ScheduleRule(ScheduleKind.INTERVAL, _interval_text(every), interval=every)


def _interval_text(every: timedelta) -> str:
    total = int(every.total_seconds()) // 60
    h, m = divmod(total, 60)
    return (f"{h}h" if h else "") + (f"{m}m" if m or not h else "")


_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")


def _parse_clock(text: str) -> time:
    m = _CLOCK.match(text)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise InvalidInput.one(
            "spec", "time_format", f"{text!r} is not a 24-hour local time HH:MM such as 01:30"
        )
    return time(int(m.group(1)), int(m.group(2)))


def _weekday(name: str) -> int:
    if name in WEEKDAYS:
        return WEEKDAYS.index(name)
    if name in _FULL_DAYS:
        return _FULL_DAYS[name]
    raise InvalidInput.one(
        "spec", "weekday", f"{name!r} is not a day of the week; use mon, tue, ... sun"
    )


def _parse_weekly(text: str) -> ScheduleRule:
    days_text, _, clock = text.rpartition(" ")
    if not days_text:
        raise InvalidInput.one(
            "spec",
            "weekly_format",
            f"{text!r} is not a weekly spec; write days and a time, e.g. 'mon 07:00' or "
            "'mon,wed,fri 07:00'",
        )
    at = _parse_clock(clock)
    days: set[int] = set()
    for part in days_text.replace(" ", "").split(","):
        first, dash, last = part.partition("-")
        if not dash:
            days.add(_weekday(first))
            continue
        a, b = _weekday(first), _weekday(last)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    ordered = tuple(sorted(days))
    spec = ",".join(WEEKDAYS[d] for d in ordered) + " " + at.strftime("%H:%M")
    return ScheduleRule(ScheduleKind.WEEKLY, spec, at=at, weekdays=ordered)


def _parse_cron(text: str) -> ScheduleRule:
    if not (text.startswith("@") or len(text.split()) == 5):
        raise InvalidInput.one(
            "spec",
            "cron_fields",
            "a cron expression has five fields: minute hour day-of-month month day-of-week "
            "(e.g. '0 7 * * 1-5')",
        )
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterError as exc:
        rule = "cron_never_matches" if "find next" in str(exc) else "cron_invalid"
        msg = (
            "the cron expression never matches a date"
            if rule == "cron_never_matches"
            else f"{text!r} is not a valid cron expression"
        )
        raise InvalidInput.one("spec", rule, msg) from None
    except (ValueError, KeyError, TypeError, IndexError):
        raise InvalidInput.one(
            "spec", "cron_invalid", f"{text!r} is not a valid cron expression"
        ) from None
    return ScheduleRule(ScheduleKind.CRON, text, cron=text)


def describe(rule: ScheduleRule) -> str:
    """A short sentence for lists: "every 15 minutes", "daily at 01:30", ..."""
    if rule.interval is not None:
        total = int(rule.interval.total_seconds()) // 60
        h, m = divmod(total, 60)
        parts = [f"{h} hour{'s' * (h != 1)}"] if h else []
        parts += [f"{m} minute{'s' * (m != 1)}"] if m else []
        return "every " + " ".join(parts)
    if rule.kind is ScheduleKind.DAILY and rule.at is not None:
        return f"daily at {rule.at:%H:%M}"
    if rule.kind is ScheduleKind.WEEKLY and rule.at is not None:
        days = ", ".join(WEEKDAYS[d].capitalize() for d in rule.weekdays)
        return f"weekly on {days} at {rule.at:%H:%M}"
    return f"cron {rule.cron}"


# --- local time -> instant ----------------------------------------------------------------------


def resolve_local(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant at which the naive local time `wall` happens in `zone`: its first
    occurrence when the clock passes it twice, the end of the gap when it is skipped."""
    wall = wall.replace(tzinfo=None, fold=0)
    first = wall.replace(tzinfo=zone).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap, fold=0 and fold=1 map to instants on either side of the transition; the
    # transition is the first instant whose local time is past `wall`. Bisect on seconds.
    other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    lo, hi = min(first, other), max(first, other)
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid.astimezone(zone).replace(tzinfo=None) > wall:
            hi = mid
        else:
            lo = mid
    return hi


def _wall_candidates(rule: ScheduleRule, start: datetime) -> Iterator[datetime]:
    """Naive local times matching the rule, strictly after naive `start`, increasing; they
    end with the calendar (year 9999)."""
    if rule.cron is not None:
        it = croniter(rule.cron, start)
        while True:
            try:
                yield it.get_next(datetime)
            except (OverflowError, ValueError, CroniterError):
                # croniter's ways of saying the next match is after year 9999 (the
                # expression itself was checked when it was parsed)
                return
    assert rule.at is not None
    day: date = start.date()
    while True:
        if not rule.weekdays or day.weekday() in rule.weekdays:
            wall = datetime.combine(day, rule.at)
            if wall > start:
                yield wall
        if day == date.max:
            return
        day += timedelta(days=1)


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def next_run(
    rule: ScheduleRule, zone: ZoneInfo, after: datetime, *, anchor: datetime | None = None
) -> datetime | None:
    """The first slot strictly after `after` and not before `anchor` (the first run); None
    when that slot would fall after the end of year 9999 (there is no next run).

    Interval slots are `anchor + k * interval` (with no anchor, `after + interval`); the other
    kinds are local wall times in `zone` resolved by `resolve_local`."""
    _require_aware("after", after)
    after = after.astimezone(UTC)
    if anchor is not None:
        _require_aware("anchor", anchor)
        anchor = anchor.astimezone(UTC)
    if rule.interval is not None:
        try:
            if anchor is None:
                return after + rule.interval
            if after < anchor:
                return anchor
            return anchor + ((after - anchor) // rule.interval + 1) * rule.interval
        except OverflowError:
            return None  # the slot is after year 9999
    if anchor is not None and after < anchor and anchor > _FIRST_INSTANT:
        after = anchor - timedelta(microseconds=1)
    try:
        local_after = after.astimezone(zone).replace(tzinfo=None)
    except OverflowError:
        if after.year > 1:
            return None  # already past year 9999 in the zone: no wall time follows
        local_after = datetime.min  # still before year 1 in the zone: every wall time follows
    # resolve_local is non-decreasing in wall time, and every wall time up to `local_after`
    # resolves to `after` or earlier, so the answer is among the candidates after it.
    tried = 0
    for wall in _wall_candidates(rule, local_after):
        tried += 1
        if tried > _MAX_CANDIDATES:
            raise RuntimeError(f"no run found for {rule.spec!r} after {after.isoformat()}")
        try:
            at = resolve_local(wall, zone)
        except OverflowError:
            if wall.year == 1:
                continue  # before year 1 in UTC: earlier than `after`
            return None  # after year 9999 in UTC, and so is every later wall time
        if at > after:
            return at
    return None  # the calendar ends (year 9999) before the next slot


def upcoming(
    rule: ScheduleRule,
    zone: ZoneInfo,
    after: datetime,
    count: int,
    *,
    anchor: datetime | None = None,
) -> list[datetime]:
    """The next `count` slots after `after` (for previews: "next runs"); fewer when the
    rest would fall after year 9999."""
    out: list[datetime] = []
    at = after
    for _ in range(count):
        nxt = next_run(rule, zone, at, anchor=anchor)
        if nxt is None:
            break  # no slot after year 9999: fewer than `count`
        out.append(nxt)
        at = nxt
    return out


def count_slots(
    rule: ScheduleRule,
    zone: ZoneInfo,
    start: datetime,
    end: datetime,
    *,
    anchor: datetime | None = None,
    cap: int = 1000,
) -> int:
    """How many slots fall in [start, end], counting at most `cap` (for "missed N runs")."""
    _require_aware("start", start)
    n = 0
    at = start - timedelta(microseconds=1)
    while n < cap:
        nxt = next_run(rule, zone, at, anchor=anchor)
        if nxt is None or nxt > end:
            break
        n += 1
        at = nxt
    return n
