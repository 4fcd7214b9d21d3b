"""`gradesync policy`: tenant defaults, course and activity overrides, where each setting
comes from, and refusals that name the field and change nothing."""

from __future__ import annotations

import json

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Activity, Course, Enrollment, Person
from gradesync.services.clock import SystemClock
from gradesync.services.ingest import IngestBatch, ingest
from gradesync.services.tenants import create_tenant
from tests.support.cli import Run


def _school(db: Database) -> None:
    clock = SystemClock()
    create_tenant(db.uow, clock, "t1", "School")
    ingest(
        db.uow,
        clock,
        None,
        "t1",
        IngestBatch(
            courses=[Course("t1", "c1", "Biology")],
            activities=[
                Activity("t1", "a1", "c1", "Quiz 1", 10.0),
                Activity("t1", "a2", "c1", "Quiz 2", 10.0),
            ],
            people=[Person("t1", "p1", "Ada")],
            enrollments=[Enrollment("t1", "c1", "p1")],
        ),
    )


def _sources(out: str, activity: str | None = None) -> dict[str, tuple[object, str]]:
    """Each setting's value and source: the tenant's or course's, or one activity's (as in
    the API's answer)."""
    doc = json.loads(out)
    if activity is not None:
        [doc] = [a for a in doc["activities"] if a["activity_id"] == activity]
    return {s["name"]: (s["value"], s["source"]) for s in doc["effective"]}


def test_policy_layers_from_the_command_line(gradesync: Run, cli_db: Database) -> None:
    _school(cli_db)
    done = gradesync("policy", "set", "-t", "t1", "attempt_selection=latest", "past_due_zeros=on")
    assert "attempt_selection, past_due_zeros changed; 2 grade(s) to recompute" in done.stdout
    gradesync("policy", "set", "-t", "t1", "--course", "c1", "past_due_zeros=off")
    gradesync("policy", "set", "-t", "t1", "--activity", "a2", "attempt_selection=first")

    course = gradesync("policy", "show", "-t", "t1", "--course", "c1", "--json").stdout
    assert _sources(course)["attempt_selection"] == ("latest", "tenant")
    assert _sources(course)["past_due_zeros"] == ("off", "course")
    assert _sources(course)["extra_credit"] == ("cap", "default")
    own = {a["activity_id"]: a["policy"] for a in json.loads(course)["activities"]}
    assert own == {"a1": {}, "a2": {"attempt_selection": "first"}}
    act = gradesync("policy", "show", "-t", "t1", "--activity", "a2", "--json").stdout
    assert [a["activity_id"] for a in json.loads(act)["activities"]] == ["a2"]
    assert _sources(act, "a2")["attempt_selection"] == ("first", "activity")
    # the answer's own `effective` is the activity's, as a script reading it expects
    assert _sources(act)["attempt_selection"] == ("first", "activity")
    assert _sources(act)["past_due_zeros"] == ("off", "course")
    table = gradesync("policy", "show", "-t", "t1", "--activity", "a2").stdout
    rows = {line.split("│")[1].strip(): line for line in table.splitlines() if "│" in line}
    assert "this activity" in rows["attempt_selection"]
    assert "this course" in rows["past_due_zeros"]
    both = gradesync("policy", "show", "-t", "t1", "--course", "c1", "--activity", "a2", ok=False)
    assert both.returncode == 2 and "--activity" in both.stderr
    missing = gradesync("policy", "show", "-t", "t1", "--activity", "nope", ok=False)
    assert missing.returncode == 3 and "nope" in missing.stderr

    table = gradesync("policy", "show", "-t", "t1", "--course", "c1").stdout
    assert "institution default" in table and "this course" in table
    assert "activity a2 (Quiz 2) overrides: attempt_selection=first" in table

    # 'inherit' clears the course's value: the tenant's default applies again
    gradesync("policy", "set", "-t", "t1", "--course", "c1", "past_due_zeros=inherit")
    course = gradesync("policy", "show", "-t", "t1", "--course", "c1", "--json").stdout
    assert _sources(course)["past_due_zeros"] == ("on", "tenant")


def test_the_table_says_each_value_in_words_and_an_override_as_policy_set_takes_it(
    gradesync: Run, cli_db: Database
) -> None:
    """`policy show` printed `True (Keep the LMS edit)`, `1.0 (1)`: Python's values before
    the words. It prints the words, as `sis show` and `destinations show` do; an activity's
    own overrides stay `name=value` as `policy set` takes them, not `keep_lms_edits=False`."""
    _school(cli_db)
    gradesync("policy", "set", "-t", "t1", "--activity", "a2", "keep_lms_edits=false")
    table = gradesync("policy", "show", "-t", "t1", "--course", "c1").stdout
    rows = {
        cells[1].strip(): cells[2].strip()
        for cells in (line.split("│") for line in table.splitlines())
        if len(cells) > 2
    }
    assert rows == {
        "attempt_selection": "Highest score",
        "extra_credit": "Capped at the maximum",
        "past_due_zeros": "Off",
        "grace_period_minutes": "0",
        "minimum_points": "1",
        "name_rule": "Shorten and clean the name",
        "keep_lms_edits": "Keep the LMS edit",
    }, table
    assert "activity a2 (Quiz 2) overrides: keep_lms_edits=false" in table, table
    table = gradesync("policy", "show", "-t", "t1", "--activity", "a2").stdout
    assert "gradesync wins" in table and "False" not in table, table


def test_setting_the_value_that_applied_says_it_is_set_here(
    gradesync: Run, cli_db: Database
) -> None:
    """It was stored (the tenant became the source) while the command said nothing changed:
    a layer's change is what it stores, at every layer, whether a grade changes or not."""
    _school(cli_db)
    said = gradesync("policy", "set", "-t", "t1", "keep_lms_edits=true").stdout
    assert "keep_lms_edits changed; 0 grade(s) to recompute" in said, said
    shown = gradesync("policy", "show", "-t", "t1", "--json").stdout
    assert _sources(shown)["keep_lms_edits"][1] == "tenant"
    again = gradesync("policy", "set", "-t", "t1", "keep_lms_edits=true").stdout
    assert "nothing changed" in again, again
    cleared = gradesync("policy", "set", "-t", "t1", "keep_lms_edits=inherit").stdout
    assert "keep_lms_edits changed; 0 grade(s) to recompute" in cleared, cleared
    shown = gradesync("policy", "show", "-t", "t1", "--json").stdout
    assert _sources(shown)["keep_lms_edits"][1] == "default"


def test_bad_values_are_refused_naming_the_setting(gradesync: Run, cli_db: Database) -> None:
    _school(cli_db)
    bad = gradesync("policy", "set", "-t", "t1", "grace_period_minutes=-3", ok=False)
    assert bad.returncode == 2
    assert "grace_period_minutes" in bad.stderr and "not_negative" in bad.stderr
    unknown = gradesync("policy", "set", "-t", "t1", "colour=red", ok=False)
    assert unknown.returncode == 2 and "unknown_setting" in unknown.stderr
    # the tenant's roster matching is no grade setting: the answer says where it is set
    roster = gradesync("policy", "set", "-t", "t1", "roster_match=email", ok=False)
    assert roster.returncode == 2 and "[not_in_policy]" in roster.stderr
    assert "gradesync tenants roster-match" in roster.stderr
    shape = gradesync("policy", "set", "-t", "t1", "latest", ok=False)
    assert shape.returncode == 2 and "name=value" in shape.stderr
    # a setting given twice is refused, not the last one taken
    twice = ("attempt_selection=latest", "attempt_selection=first")
    r = gradesync("policy", "set", "-t", "t1", "--course", "c1", *twice, "--json", ok=False)
    assert r.returncode == 2
    assert [(p["field"], p["rule"]) for p in json.loads(r.stdout)["error"]["problems"]] == [
        ("attempt_selection", "duplicate")
    ]
    # a malformed argument hides none of the others
    r = gradesync(
        "policy", "set", "-t", "t1", "novalue", "colour=red", "grace_period_minutes=-3", ok=False
    )
    assert r.returncode == 2
    for said in ("SETTINGS: 'novalue'", "colour:", "[unknown_setting]", "[not_negative]"):
        assert said in r.stderr, r.stderr
    missing = gradesync("policy", "set", "-t", "t1", "--course", "zz", "name_rule=refuse", ok=False)
    assert missing.returncode == 3
    tenant = gradesync("policy", "show", "-t", "t1", "--json").stdout
    assert json.loads(tenant)["tenant"] == {}
