"""Property-based: next-run computation across daylight-saving changes in several zones."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from gradesync.domain.schedule_rules import next_run, parse_rule, resolve_local

ZONES = [
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Australia/Sydney",
    "America/Santiago",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "Australia/Lord_Howe",  # 30-minute shift
    "UTC",
]

zones = st.sampled_from(ZONES).map(ZoneInfo)
clock_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 1, 15, 30, 44, 45, 59]))
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 1), timezones=st.just(UTC)
)
years = st.integers(2000, 2036)


def transition_days(zone: ZoneInfo, year: int) -> list[date]:
    """Local dates in `year` on which the zone's UTC offset changes."""
    out = []
    day = date(year, 1, 1)
    while day.year == year:
        a = datetime.combine(day, time(0), tzinfo=zone).utcoffset()
        b = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).utcoffset()
        if a != b:
            out.append(day)
        day += timedelta(days=1)
    return out


def transition_instant(zone: ZoneInfo, day: date) -> datetime:
    """The UTC instant of the offset change that happens on local `day` (to the minute)."""
    lo = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    hi = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    before = lo.astimezone(zone).utcoffset()
    while hi - lo > timedelta(minutes=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(zone).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi.replace(second=0, microsecond=0)


def exists(wall: datetime, zone: ZoneInfo) -> bool:
    return resolve_local(wall, zone).astimezone(zone).replace(tzinfo=None) == wall


@settings(max_examples=300, deadline=None)
@given(zones, clock_times, instants)
def test_daily_next_run_is_after_and_at_the_requested_wall_time(
    zone: ZoneInfo, at: time, after: datetime
) -> None:
    rule = parse_rule("daily", at.strftime("%H:%M"))
    nxt = next_run(rule, zone, after)
    assert nxt > after
    assert nxt.tzinfo is UTC
    loc = nxt.astimezone(zone)
    wall = datetime.combine(loc.date(), at)
    if exists(wall, zone):
        assert loc.replace(tzinfo=None) == wall
        # ambiguous: the first occurrence
        assert nxt == wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    else:
        # skipped: the first instant after the gap (a second earlier is before the gap)
        assert loc.replace(tzinfo=None) > wall
        assert (nxt - timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None) < wall
    # nothing was skipped: no earlier slot exists between `after` and the result
    earlier_day = loc.date() - timedelta(days=1)
    earlier = resolve_local(datetime.combine(earlier_day, at), zone)
    assert earlier <= after


@settings(max_examples=60, deadline=None)
@given(zones, clock_times, years)
def test_daily_runs_exactly_once_per_local_day_through_a_whole_year(
    zone: ZoneInfo, at: time, year: int
) -> None:
    rule = parse_rule("daily", at.strftime("%H:%M"))
    start = datetime(year, 1, 1, tzinfo=zone).astimezone(UTC)
    after = start
    days: list[date] = []
    while True:
        after = next_run(rule, zone, after)
        d = after.astimezone(zone).date()
        if d.year != year:
            break
        days.append(d)
    expected = [date(year, 1, 1) + timedelta(days=i) for i in range(len(days))]
    # the 1 January slot may precede `start` (it is local midnight); every other day once
    if days and days[0] == date(year, 1, 2):
        expected = [d + timedelta(days=1) for d in expected]
    assert days == expected
    assert days[-1] == date(year, 12, 31)
    for day in transition_days(zone, year):
        assert days.count(day) == 1


@settings(max_examples=300, deadline=None)
@given(
    zones,
    years,
    st.integers(0, 3),
    st.integers(-150, 150),
    st.sampled_from(["00:00", "00:30", "01:00", "01:30", "02:00", "02:30", "02:45", "03:00"]),
)
def test_daily_from_any_instant_near_a_transition(
    zone: ZoneInfo, year: int, which: int, minutes: int, at: str
) -> None:
    """`after` falls in or next to the skipped or repeated hour (where mistakes hide)."""
    days = transition_days(zone, year)
    if not days:
        return  # a zone without DST that year: the other tests cover it
    rule = parse_rule("daily", at)
    after = transition_instant(zone, days[which % len(days)]) + timedelta(minutes=minutes)
    nxt = next_run(rule, zone, after)
    assert nxt > after
    wall = datetime.combine(nxt.astimezone(zone).date(), time.fromisoformat(at))
    assert nxt == resolve_local(wall, zone)
    # the slot of the local day before the result is not after `after` (nothing skipped)
    assert resolve_local(wall - timedelta(days=1), zone) <= after


@settings(max_examples=80, deadline=None)
@given(zones, years, st.sampled_from(["00:00", "00:30", "01:30", "02:00", "02:30", "03:00"]))
def test_transition_days_get_one_run(zone: ZoneInfo, year: int, at: str) -> None:
    rule = parse_rule("daily", at)
    for day in transition_days(zone, year):
        before = datetime.combine(day - timedelta(days=1), time(12), tzinfo=zone)
        first = next_run(rule, zone, before.astimezone(UTC))
        second = next_run(rule, zone, first)
        assert first.astimezone(zone).date() == day
        assert second.astimezone(zone).date() == day + timedelta(days=1)


@settings(max_examples=200, deadline=None)
@given(
    zones,
    st.sets(st.integers(0, 6), min_size=1, max_size=7),
    clock_times,
    instants,
)
def test_weekly_runs_only_on_chosen_days_once_each(
    zone: ZoneInfo, days: set[int], at: time, after: datetime
) -> None:
    names = ",".join(["mon", "tue", "wed", "thu", "fri", "sat", "sun"][d] for d in sorted(days))
    rule = parse_rule("weekly", f"{names} {at:%H:%M}")
    seen = []
    for _ in range(2 * len(days)):
        nxt = next_run(rule, zone, after)
        assert nxt > after
        seen.append(nxt.astimezone(zone).date())
        after = nxt
    assert all(d.weekday() in days for d in seen)
    assert len(set(seen)) == len(seen)  # never twice on one local day
    assert all(b - a <= timedelta(days=7) for a, b in pairwise(seen))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 24 * 60 * 3),
    instants,
    st.integers(-(10**6), 10**6),
)
def test_interval_slots_stay_on_the_anchor_grid(minutes: int, anchor: datetime, k: int) -> None:
    every = timedelta(minutes=minutes)
    rule = parse_rule("interval", f"{minutes}m")
    after = anchor + k * timedelta(seconds=37)
    nxt = next_run(rule, ZoneInfo("Europe/Berlin"), after, anchor=anchor)
    assert nxt > after
    assert nxt >= anchor
    assert (nxt - anchor) % every == timedelta(0)
    assert nxt == anchor or nxt - every <= after


CRON_MINUTES = st.sampled_from(["0", "30", "*/15", "5,35", "*/7", "59"])
CRON_HOURS = st.sampled_from(["*", "0", "1", "2", "1-3", "0-2", "*/6", "23"])
CRON_DOW = st.sampled_from(["*", "0", "1-5", "6,0"])


def reference_next(expr: str, zone: ZoneInfo, after: datetime) -> datetime:
    """Brute force: every matching local minute from a little before `after`, resolved with
    the DST rules, earliest one strictly after `after`. Matching uses croniter's expanded
    field sets (day of month and month are always `*` here)."""
    (mins, hours, _dom, _mon, dows), _ = croniter.expand(expr)

    def matches(w: datetime) -> bool:
        cron_dow = (w.weekday() + 1) % 7  # cron counts from Sunday = 0
        return (
            (mins == ["*"] or w.minute in mins)
            and (hours == ["*"] or w.hour in hours)
            and (dows == ["*"] or cron_dow in dows or (cron_dow == 0 and 7 in dows))
        )

    start = after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
    wall = start - timedelta(hours=3)
    best = None
    while wall < start + timedelta(days=8):
        if matches(wall):
            at = resolve_local(wall, zone)
            if at > after and (best is None or at < best):
                best = at
            if best is not None and wall > start + timedelta(hours=3):
                break
        wall += timedelta(minutes=1)
    assert best is not None
    return best


@settings(max_examples=60, deadline=None)
@given(
    zones,
    CRON_MINUTES,
    CRON_HOURS,
    CRON_DOW,
    years,
    st.integers(-30, 30),
    st.integers(0, 2),
)
def test_cron_matches_a_brute_force_reference_near_transitions(
    zone: ZoneInfo, minute: str, hour: str, dow: str, year: int, offset_min: int, which: int
) -> None:
    expr = f"{minute} {hour} * * {dow}"
    rule = parse_rule("cron", expr)
    days = transition_days(zone, year)
    if days:  # an instant within a few hours of the change
        after = transition_instant(zone, days[which % len(days)])
    else:
        after = datetime(year, 6, 1, tzinfo=zone).astimezone(UTC)
    after += timedelta(minutes=offset_min * 5 + which)
    for _ in range(3):
        nxt = next_run(rule, zone, after)
        assert nxt == reference_next(expr, zone, after)
        after = nxt
