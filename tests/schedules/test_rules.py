"""Schedule specs: parsing, canonical forms, errors, and worked DST examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import ScheduleKind
from gradesync.domain.schedule_rules import (
    count_slots,
    describe,
    next_run,
    parse_rule,
    parse_time_zone,
    resolve_local,
    upcoming,
)

NY = ZoneInfo("America/New_York")


def local(at: datetime, zone: ZoneInfo) -> str:
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


@pytest.mark.parametrize(
    ("kind", "spec", "canonical", "words"),
    [
        ("interval", "15m", "15m", "every 15 minutes"),
        ("interval", "15", "15m", "every 15 minutes"),
        ("interval", "90 minutes", "1h30m", "every 1 hour 30 minutes"),
        ("interval", "every 2 hours", "2h", "every 2 hours"),
        ("interval", "1h30m", "1h30m", "every 1 hour 30 minutes"),
        ("interval", "60m", "1h", "every 1 hour"),
        ("daily", "1:30", "01:30", "daily at 01:30"),
        ("daily", " 23:59 ", "23:59", "daily at 23:59"),
        ("weekly", "Mon 07:00", "mon 07:00", "weekly on Mon at 07:00"),
        ("weekly", "fri,mon,wed 7:00", "mon,wed,fri 07:00", "weekly on Mon, Wed, Fri at 07:00"),
        ("weekly", "mon-fri 06:15", "mon,tue,wed,thu,fri 06:15", None),
        ("weekly", "sat-mon 06:15", "mon,sat,sun 06:15", None),
        ("weekly", "sunday 22:00", "sun 22:00", None),
        ("cron", "0 7 * * 1-5", "0 7 * * 1-5", "cron 0 7 * * 1-5"),
        ("cron", "@daily", "@daily", None),
    ],
)
def test_specs_parse_to_a_canonical_form(
    kind: str, spec: str, canonical: str, words: str | None
) -> None:
    rule = parse_rule(kind, spec)
    assert rule.kind is ScheduleKind(kind)
    assert rule.spec == canonical
    assert parse_rule(kind, rule.spec) == rule  # canonical text parses to the same rule
    if words:
        assert describe(rule) == words


@pytest.mark.parametrize(
    ("kind", "spec", "field", "rule"),
    [
        ("hourly", "1", "kind", "one_of"),
        ("interval", "", "spec", "required"),
        ("interval", "0", "spec", "interval_min"),
        ("interval", "0h0m", "spec", "interval_min"),
        ("interval", "745h", "spec", "interval_max"),
        ("interval", "soon", "spec", "interval_format"),
        ("interval", "15s", "spec", "interval_format"),
        ("daily", "24:00", "spec", "time_format"),
        ("daily", "7am", "spec", "time_format"),
        ("daily", "07:60", "spec", "time_format"),
        ("weekly", "07:00", "spec", "weekly_format"),
        ("weekly", "mon", "spec", "weekly_format"),
        ("weekly", "mon 7", "spec", "time_format"),
        ("weekly", "funday 07:00", "spec", "weekday"),
        ("cron", "* * *", "spec", "cron_fields"),
        ("cron", "0 0 * * * *", "spec", "cron_fields"),
        ("cron", "61 * * * *", "spec", "cron_invalid"),
        ("cron", "0 0 30 2 *", "spec", "cron_never_matches"),
    ],
)
def test_bad_specs_name_the_field_and_rule(kind: str, spec: str, field: str, rule: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_rule(kind, spec)
    assert [(p.field, p.rule) for p in err.value.problems] == [(field, rule)]


@pytest.mark.parametrize("name", ["", "  ", "Mars/Olympus_Mons", "../../etc/passwd", "localtime"])
def test_bad_time_zones_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_time_zone(name)
    assert err.value.problems[0].field == "time_zone"


def test_time_zone_is_the_iana_zone() -> None:
    assert parse_time_zone(" Europe/Berlin ").key == "Europe/Berlin"


def test_daily_0130_runs_once_on_both_new_york_transition_days() -> None:
    rule = parse_rule("daily", "01:30")
    # fall back 2024-11-03: 01:30 happens twice; runs at the first (EDT) only
    runs = upcoming(rule, NY, datetime(2024, 11, 2, 12, tzinfo=UTC), 3)
    assert [local(r, NY) for r in runs] == [
        "2024-11-03 01:30 EDT",
        "2024-11-04 01:30 EST",
        "2024-11-05 01:30 EST",
    ]
    # spring forward 2024-03-10: 01:30 exists; the hour that vanishes is 02:00-03:00
    runs = upcoming(rule, NY, datetime(2024, 3, 9, 12, tzinfo=UTC), 2)
    assert [local(r, NY) for r in runs] == ["2024-03-10 01:30 EST", "2024-03-11 01:30 EDT"]


def test_a_time_in_the_spring_gap_runs_when_the_gap_ends() -> None:
    rule = parse_rule("daily", "02:30")
    runs = upcoming(rule, NY, datetime(2024, 3, 9, 12, tzinfo=UTC), 3)
    assert [local(r, NY) for r in runs] == [
        "2024-03-10 03:00 EDT",
        "2024-03-11 02:30 EDT",
        "2024-03-12 02:30 EDT",
    ]


def test_after_the_second_occurrence_does_not_fire_again_the_same_day() -> None:
    rule = parse_rule("daily", "01:30")
    # 01:20 EST is inside the repeated hour, after 01:30 EDT already happened
    after = datetime(2024, 11, 3, 6, 20, tzinfo=UTC)
    assert local(after, NY) == "2024-11-03 01:20 EST"
    assert local(next_run(rule, NY, after), NY) == "2024-11-04 01:30 EST"


def test_chatham_45_minute_offset_and_gap() -> None:
    zone = ZoneInfo("Pacific/Chatham")  # 2024-09-29 02:45 -> 03:45
    runs = upcoming(parse_rule("daily", "03:00"), zone, datetime(2024, 9, 28, tzinfo=UTC), 2)
    assert [r.astimezone(zone).strftime("%m-%d %H:%M") for r in runs] == [
        "09-29 03:45",
        "09-30 03:00",
    ]


def test_santiago_midnight_gap() -> None:
    zone = ZoneInfo("America/Santiago")  # 2024-09-08 00:00 -> 01:00
    runs = upcoming(parse_rule("daily", "00:30"), zone, datetime(2024, 9, 7, 12, tzinfo=UTC), 2)
    assert [r.astimezone(zone).strftime("%m-%d %H:%M") for r in runs] == [
        "09-08 01:00",
        "09-09 00:30",
    ]


def test_cron_every_15_minutes_collapses_the_gap_and_skips_the_repeat() -> None:
    rule = parse_rule("cron", "*/15 1-3 * * *")
    spring = upcoming(rule, NY, datetime(2024, 3, 10, 6, 40, tzinfo=UTC), 3)
    assert [local(r, NY) for r in spring] == [
        "2024-03-10 01:45 EST",
        "2024-03-10 03:00 EDT",  # 02:00..02:45 do not exist: one run when the gap ends
        "2024-03-10 03:15 EDT",
    ]
    fall = upcoming(rule, NY, datetime(2024, 11, 3, 5, 40, tzinfo=UTC), 3)
    assert [local(r, NY) for r in fall] == [
        "2024-11-03 01:45 EDT",
        "2024-11-03 02:00 EST",  # the repeated 01:00..01:45 run once
        "2024-11-03 02:15 EST",
    ]


def test_weekly_several_days() -> None:
    rule = parse_rule("weekly", "mon,fri 07:00")
    runs = upcoming(rule, NY, datetime(2024, 6, 5, tzinfo=UTC), 4)  # a Wednesday
    assert [local(r, NY) for r in runs] == [
        "2024-06-07 07:00 EDT",
        "2024-06-10 07:00 EDT",
        "2024-06-14 07:00 EDT",
        "2024-06-17 07:00 EDT",
    ]


def test_interval_is_anchored_in_absolute_time_across_dst() -> None:
    rule = parse_rule("interval", "2h")
    anchor = datetime(2024, 11, 2, 23, 0, tzinfo=UTC)
    runs = upcoming(rule, NY, anchor - timedelta(seconds=1), 5, anchor=anchor)
    assert [r - anchor for r in runs] == [timedelta(hours=2 * k) for k in range(5)]
    # an instant between slots goes to the next slot of the anchor's grid
    assert next_run(rule, NY, anchor + timedelta(minutes=61), anchor=anchor) == anchor + (
        timedelta(hours=2)
    )


def test_first_run_is_not_before_the_anchor() -> None:
    rule = parse_rule("daily", "07:00")
    anchor = datetime(2024, 6, 10, 12, tzinfo=UTC)
    assert local(next_run(rule, NY, datetime(2024, 6, 1, tzinfo=UTC), anchor=anchor), NY) == (
        "2024-06-11 07:00 EDT"
    )


def test_resolve_local_gap_and_repeat() -> None:
    assert local(resolve_local(datetime(2024, 3, 10, 2, 30), NY), NY) == "2024-03-10 03:00 EDT"
    assert local(resolve_local(datetime(2024, 11, 3, 1, 30), NY), NY) == "2024-11-03 01:30 EDT"
    assert resolve_local(datetime(2024, 1, 1, 12), NY) == datetime(2024, 1, 1, 17, tzinfo=UTC)


def test_count_slots_counts_a_closed_window() -> None:
    rule = parse_rule("interval", "15m")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    assert count_slots(rule, NY, start, start + timedelta(hours=1), anchor=start) == 5
    assert count_slots(rule, NY, start, start + timedelta(days=30), anchor=start, cap=100) == 100


def test_naive_instants_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_run(parse_rule("daily", "01:00"), NY, datetime(2024, 1, 1))


END = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "spec", "zone", "last"),
    [
        ("interval", "744h", "UTC", datetime(9999, 12, 31, 23, 0, tzinfo=UTC)),
        # 23:30 on 31 December 9999 in Kiritimati (+14) is 09:30 UTC: there is no later day
        ("daily", "23:30", "Pacific/Kiritimati", datetime(9999, 12, 31, 9, 30, tzinfo=UTC)),
        # 20:00 in Chicago (-6) on 31 December 9999 is 02:00 UTC in year 10000
        ("daily", "20:00", "America/Chicago", datetime(9999, 12, 31, 2, 0, tzinfo=UTC)),
        ("weekly", "fri 07:00", "UTC", datetime(9999, 12, 31, 7, 0, tzinfo=UTC)),
        ("cron", "0 7 * * *", "UTC", datetime(9999, 12, 31, 7, 0, tzinfo=UTC)),
    ],
)
def test_a_slot_after_year_9999_is_no_next_run(
    kind: str, spec: str, zone: str, last: datetime
) -> None:
    """The calendar ends with year 9999: a schedule whose next slot would lie beyond has no
    next run (the schedule list once failed for the whole tenant with OverflowError)."""
    rule, tz = parse_rule(kind, spec), ZoneInfo(zone)
    anchor = last if kind == "interval" else None
    before = last - timedelta(hours=12)
    assert next_run(rule, tz, before, anchor=anchor) == last
    assert next_run(rule, tz, last, anchor=anchor) is None
    assert next_run(rule, tz, END, anchor=anchor) is None
    assert upcoming(rule, tz, before, 3, anchor=anchor) == [last]
    assert count_slots(rule, tz, before, END, anchor=anchor) == 1


def test_a_first_run_in_year_1_still_finds_its_slots() -> None:
    """The first instant of year 1 in UTC is still in year 0 west of UTC: the first slot is
    the first local time of the rule, not an error."""
    rule, minus9 = parse_rule("daily", "07:00"), ZoneInfo("Etc/GMT+9")
    first = datetime(1, 1, 1, tzinfo=UTC)
    assert next_run(rule, minus9, first, anchor=first) == datetime(1, 1, 1, 16, 0, tzinfo=UTC)
