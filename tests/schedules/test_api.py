"""The schedules API under /api/v1/schedules, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Course, RunScope, Schedule, ScheduleKind
from gradesync.testing import ManualClock
from tests.support.api import ApiEnv, Caller


@pytest.fixture
def api(db: Database, tmp_path: Path) -> Iterator[ApiEnv]:
    env = ApiEnv(db, tmp_path)
    env.runtime.clock = ManualClock(datetime(2025, 3, 7, 12, 0, tzinfo=UTC))
    with env.client:
        yield env


def admin(api: ApiEnv, tenant: str = "t1") -> Caller:
    c = Caller(api.client, api.tenant(tenant, "admin"))
    with api.db.uow() as uow:
        uow.courses.upsert(Course(tenant, "c1", "Biology", time_zone="America/New_York"))
        uow.commit()
    api.destination(tenant, "lms")
    return c


def test_admin_manages_a_schedule_end_to_end(api: ApiEnv) -> None:
    c = admin(api)
    r = c.post(
        "/schedules",
        json={"kind": "daily", "spec": "2:30", "course_id": "c1", "destination_id": "lms"},
    )
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["time_zone"] == "America/New_York" and s["spec"] == "02:30"
    assert s["posted_by"].startswith("api-key:")
    # 2025-03-09 is the spring-forward day in New York: 02:30 does not exist, runs at 03:00
    assert s["upcoming"] == [
        "2025-03-08T07:30:00Z",
        "2025-03-09T07:00:00Z",
        "2025-03-10T06:30:00Z",
    ]
    sid = s["id"]
    assert [x["id"] for x in c.get("/schedules").json()] == [sid]

    paused = c.post(f"/schedules/{sid}/pause").json()
    assert paused["paused"] and paused["paused_at"] and paused["next_run_at"] is None
    resumed = c.post(f"/schedules/{sid}/resume").json()
    assert not resumed["paused"] and resumed["next_run_at"] == "2025-03-08T07:30:00Z"

    edited = c.patch(f"/schedules/{sid}", json={"spec": "04:00", "destination_id": None})
    assert edited.status_code == 200, edited.text
    assert edited.json()["spec"] == "04:00" and edited.json()["destination_id"] is None
    assert edited.json()["course_id"] == "c1"

    run = c.post(f"/schedules/{sid}/run-now")
    assert run.status_code == 202, run.text
    assert run.json()["trigger"] == "manual" and run.json()["joined"] is False
    again = c.post(f"/schedules/{sid}/run-now").json()
    assert again["joined"] is True and again["id"] == run.json()["id"]

    history = c.get(f"/schedules/{sid}/history").json()
    assert [h["action"] for h in history] == [
        "run_now",
        "run_now",
        "edited",
        "resumed",
        "paused",
        "created",
    ]
    assert history[0]["joined"] and history[0]["run"]["id"] == run.json()["id"]
    # each line's run as GET /runs/{id} shows it, its stages included
    shown = c.get(f"/runs/{run.json()['id']}").json()
    assert history[0]["run"]["stages"] == shown["stages"] and shown["stages"]
    assert c.get("/schedules/history", params={"limit": 2}).status_code == 200

    all_paused = c.post("/schedules/pause-all").json()
    assert [x["id"] for x in all_paused] == [sid]
    assert c.delete(f"/schedules/{sid}").status_code == 204
    assert c.get(f"/schedules/{sid}").status_code == 404
    assert c.get(f"/schedules/{sid}/history").json()[0]["action"] == "deleted"


def test_preview_shows_runs_across_a_fall_back(api: ApiEnv) -> None:
    c = admin(api)
    r = c.post(
        "/schedules/preview",
        json={
            "kind": "daily",
            "spec": "01:30",
            "time_zone": "Europe/Berlin",
            "count": 2,
            "first_run_at": "2025-10-26T00:00:00",
        },
    )
    assert r.status_code == 200, r.text
    # 26 Oct 2025: 01:30 CEST, then 01:30 CET
    assert r.json()["runs"] == ["2025-10-25T23:30:00Z", "2025-10-27T00:30:00Z"]


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"kind": "daily", "spec": "25:00", "time_zone": "UTC"}, "spec", "time_format"),
        ({"kind": "daily", "spec": "01:00"}, "time_zone", "required"),
        (
            {"kind": "weekly", "spec": "mon 07:00", "time_zone": "Moon/Base"},
            "time_zone",
            "iana_time_zone",
        ),
        ({"kind": "hourly", "spec": "1"}, "kind", "one_of"),
        ({"kind": "interval", "spec": "15m", "course_id": "ghost"}, "course_id", "unknown_course"),
        ({"kind": "interval", "spec": "15m", "colour": "red"}, "colour", "unknown_field"),
    ],
)
def test_bad_input_is_a_422_naming_field_and_rule(
    api: ApiEnv, body: dict[str, object], field: str, rule: str
) -> None:
    c = admin(api)
    r = c.post("/schedules", json=body)
    assert r.status_code == 422, r.text
    assert (r.json()["detail"][0]["field"], r.json()["detail"][0]["rule"]) == (field, rule)
    assert c.get("/schedules").json() == []


def test_every_problem_is_listed_not_only_the_first(api: ApiEnv) -> None:
    """docs/api.md: a body with several problems is refused with all of them, on create and
    on edit alike, and nothing changes."""
    c = admin(api)

    def problems(r: httpx.Response) -> list[tuple[str, str]]:
        assert r.status_code == 422, r.text
        return sorted((p["field"], p["rule"]) for p in r.json()["detail"])

    # a trigger a schedule cannot start is refused by the schema, which lists its two
    manual = {"kind": "daily", "spec": "01:00", "time_zone": "UTC", "trigger": "manual"}
    assert problems(c.post("/schedules", json=manual)) == [("trigger", "one_of")]
    both = {"kind": "daily", "spec": "25:00", "time_zone": "Mars/Base"}
    assert problems(c.post("/schedules", json=both)) == [
        ("spec", "time_format"),
        ("time_zone", "iana_time_zone"),
    ]
    assert c.get("/schedules").json() == []

    made = c.post("/schedules", json={"kind": "daily", "spec": "01:00", "time_zone": "UTC"})
    sid = made.json()["id"]
    edit = {"spec": "99:99", "time_zone": "Mars/Base", "course_id": "ghost"}
    assert problems(c.patch(f"/schedules/{sid}", json=edit)) == [
        ("course_id", "unknown_course"),
        ("spec", "time_format"),
        ("time_zone", "iana_time_zone"),
    ]
    assert c.get(f"/schedules/{sid}").json() == made.json()


def test_needs_an_admin_key_and_stays_in_its_tenant(api: ApiEnv) -> None:
    c = admin(api)
    sid = c.post("/schedules", json={"kind": "interval", "spec": "1h"}).json()["id"]
    sync_only = Caller(api.client, api.tenant("t1", "sync"))
    assert sync_only.get("/schedules").status_code == 403
    assert api.client.get("/api/v1/schedules").status_code == 401
    other = admin(api, "t2")
    assert other.get("/schedules").json() == []
    for method, path in [
        ("get", f"/schedules/{sid}"),
        ("post", f"/schedules/{sid}/pause"),
        ("post", f"/schedules/{sid}/run-now"),
        ("delete", f"/schedules/{sid}"),
        ("get", f"/schedules/{sid}/history"),
    ]:
        assert getattr(other, method)(path).status_code == 404, path
    assert c.get(f"/schedules/{sid}").json()["paused"] is False


def _problems(r: httpx.Response) -> list[tuple[str, str]]:
    assert r.status_code == 422, r.text
    return sorted((p["field"], p["rule"]) for p in r.json()["detail"])


def _stored(api: ApiEnv) -> list[Schedule]:
    with api.db.uow() as uow:
        return uow.schedules.all("t1")


def test_a_first_run_at_the_end_of_year_9999_makes_a_schedule_with_one_run(api: ApiEnv) -> None:
    """Its runs end with the calendar. Such a schedule was answered 500 yet stored, and from
    then on every list of the tenant's schedules failed."""
    c = admin(api)
    daily = {
        "kind": "daily",
        "spec": "23:30",
        "time_zone": "Pacific/Kiritimati",
        "first_run_at": "9999-12-31T00:00:00Z",
    }
    monthly = {"kind": "interval", "spec": "744h", "first_run_at": "9999-12-31T23:00:00Z"}
    made = []
    for body, last in ((daily, "9999-12-31T09:30:00Z"), (monthly, "9999-12-31T23:00:00Z")):
        r = c.post("/schedules", json=body)
        assert r.status_code == 201, r.text
        assert (r.json()["next_run_at"], r.json()["upcoming"]) == (last, [last])
        made.append(r.json())
    listed = c.get("/schedules")
    assert listed.status_code == 200, listed.text
    assert sorted(listed.json(), key=lambda s: s["id"]) == sorted(made, key=lambda s: s["id"])
    for s in made:
        assert c.get(f"/schedules/{s['id']}").json() == s
        assert c.post(f"/schedules/{s['id']}/pause").status_code == 200
        resumed = c.post(f"/schedules/{s['id']}/resume")
        assert resumed.status_code == 200 and resumed.json()["upcoming"] == s["upcoming"]


@pytest.mark.parametrize(
    "body",
    [
        # the rule's last slot (23:30 on 31 December 9999) is before the first run
        {"kind": "daily", "spec": "23:30", "time_zone": "UTC", "first_run_at": "9999-12-31T23:45"},
        # local times that are in year 10000 or year 0 in UTC
        {
            "kind": "daily",
            "spec": "07:00",
            "time_zone": "America/Chicago",
            "first_run_at": "9999-12-31T23:00",
        },
        {
            "kind": "daily",
            "spec": "07:00",
            "time_zone": "Asia/Tokyo",
            "first_run_at": "0001-01-01T00:00",
        },
        {"kind": "interval", "spec": "1h", "first_run_at": "0001-01-01T00:00:00+05:00"},
    ],
)
def test_a_first_run_with_no_run_before_year_10000_is_refused(
    api: ApiEnv, body: dict[str, str]
) -> None:
    c = admin(api)
    assert _problems(c.post("/schedules", json=body)) == [("first_run_at", "range")]
    assert _stored(api) == []
    made = c.post("/schedules", json={"kind": "daily", "spec": "23:30", "time_zone": "UTC"})
    sid = made.json()["id"]
    edit = {k: v for k, v in body.items() if k != "kind" or v != "daily"}
    if body["kind"] != "daily":
        edit["spec"] = body["spec"]
    assert _problems(c.patch(f"/schedules/{sid}", json=edit)) == [("first_run_at", "range")]
    # a paused schedule too: resuming it would find no run
    paused = c.post(f"/schedules/{sid}/pause").json()
    assert _problems(c.patch(f"/schedules/{sid}", json=edit)) == [("first_run_at", "range")]
    assert c.get(f"/schedules/{sid}").json() == paused
    assert made.json()["upcoming"]


def test_one_schedule_that_cannot_be_worked_out_does_not_hide_the_others(api: ApiEnv) -> None:
    """Schedules stored by an earlier version: one whose rule no longer parses is listed as
    stored with no runs to come, and can be deleted; one at the end of year 9999 is listed
    with its last run. Either once made every list of the tenant's schedules fail."""
    c = admin(api)
    good = c.post("/schedules", json={"kind": "interval", "spec": "1h"}).json()
    end = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    old = [
        Schedule(
            "sch_oldrule",
            "t1",
            RunScope("t1"),
            ScheduleKind.DAILY,
            "7pm",
            "UTC",
            "api-key:old",
            first_run_at=datetime(2025, 3, 8, 19, 0, tzinfo=UTC),
            next_run_at=datetime(2025, 3, 8, 19, 0, tzinfo=UTC),
            created_at=datetime(2025, 3, 1, tzinfo=UTC),
        ),
        Schedule(
            "sch_lastrun",
            "t1",
            RunScope("t1"),
            ScheduleKind.INTERVAL,
            "744h",
            "UTC",
            "api-key:old",
            first_run_at=end,
            next_run_at=end,
            created_at=end - timedelta(days=1),
        ),
    ]
    with api.db.uow() as uow:
        for s in old:
            uow.schedules.save(s)
        uow.commit()
    listed = c.get("/schedules")
    assert listed.status_code == 200, listed.text
    by_id = {s["id"]: s for s in listed.json()}
    assert by_id[good["id"]] == good
    assert (by_id["sch_oldrule"]["description"], by_id["sch_oldrule"]["upcoming"]) == (
        "daily 7pm",
        [],
    )
    assert by_id["sch_lastrun"]["upcoming"] == ["9999-12-31T23:00:00Z"]
    assert c.get("/schedules/sch_oldrule").json() == by_id["sch_oldrule"]
    assert c.delete("/schedules/sch_oldrule").status_code == 204
    assert sorted(s["id"] for s in c.get("/schedules").json()) == sorted(
        [good["id"], "sch_lastrun"]
    )


def test_a_first_run_the_schedules_zone_cannot_show_is_said_in_utc(api: ApiEnv) -> None:
    """9999-12-31T23:00Z is already year 10000 in Kiritimati (+14): an edit's log line says
    the first run in UTC (an edit of such a schedule once answered 500)."""
    c = admin(api)
    body = {
        "kind": "interval",
        "spec": "744h",
        "time_zone": "Pacific/Kiritimati",
        "first_run_at": "9999-12-31T23:00:00Z",
    }
    sid = c.post("/schedules", json=body).json()["id"]
    edited = c.patch(f"/schedules/{sid}", json={"first_run_at": "9999-12-31T22:00:00Z"})
    assert edited.status_code == 200, edited.text
    [line, _] = c.get(f"/schedules/{sid}/history").json()
    assert line["message"] == "first run 9999-12-31 23:00 UTC -> 9999-12-31 22:00 UTC"
