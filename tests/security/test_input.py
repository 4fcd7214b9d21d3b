"""Input no server answer may be a 5xx for: date-times that overflow once in UTC, NUL
characters (PostgreSQL cannot store them; refused on SQLite alike)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import ROSTER, ApiEnv, Caller, attempt


@pytest.fixture
def c(api: ApiEnv) -> Caller:
    caller = Caller(api.client, api.tenant("t1", "ingest"))
    assert caller.post("/ingest", json=ROSTER).status_code == 202
    return caller


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        (attempt("e1", completed_at="9999-12-31T23:59:59-10:00"), "completed_at", "range"),
        (attempt("e1", completed_at="0001-01-01T00:00:00+05:00"), "completed_at", "range"),
        (
            attempt("e1", started_at="0001-01-01T00:00:00+05:00"),
            "started_at",
            "range",
        ),
        (attempt("e\x001"), "source_event_id", "nul_character"),
        (attempt("e1", person_id="p\x001"), "person_id", "nul_character"),
        (attempt("e1", comment="well\x00done"), "comment", "nul_character"),
    ],
)
def test_refused_with_the_field_on_every_backend(
    c: Caller, body: dict[str, Any], field: str, rule: str
) -> None:
    r = c.post("/attempts", json=body)
    assert r.status_code == 422, r.text
    assert (field, rule) in {(d["field"], d["rule"]) for d in r.json()["detail"]}


def test_nul_in_a_roster_name_is_refused(c: Caller) -> None:
    r = c.post("/ingest", json={**ROSTER, "courses": [{"id": "c1", "title": "Bio\x00logy"}]})
    assert r.status_code == 422, r.text
    assert ("courses[0].title", "nul_character") in {
        (d["field"], d["rule"]) for d in r.json()["detail"]
    }
