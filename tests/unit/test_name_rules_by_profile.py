"""Column-name rules are profile data: each LMS profile's limits reach the policy, which
shortens or refuses a name and names the rule it applied."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from gradesync.adapters.destinations.ags_profiles import PROFILES, profile_for
from gradesync.domain.model import Activity, NameRule
from gradesync.domain.names import PEARSON_FORBIDDEN_CHARS
from gradesync.domain.policy import Column, NoResult, ResolvedPolicy, column_for

CHAPTER = Activity(
    tenant_id="t",
    id="a1",
    course_id="c1",
    title="Ch. 3/4 & review!",
    points_possible=10.0,
    due_at=datetime(2025, 3, 8, tzinfo=UTC),
)


def test_brightspace_names_are_cleaned_with_the_rule_named() -> None:
    caps = profile_for("brightspace").capabilities
    assert caps.forbidden_name_chars == PEARSON_FORBIDDEN_CHARS
    col = column_for(CHAPTER, ResolvedPolicy(), caps)
    assert isinstance(col, Column)
    assert col.title == "Ch. 3 4 review"
    assert col.renamed is not None
    assert "Brightspace's name rules" in col.renamed
    assert "at most 128 characters" in col.renamed and "none of \\ / " in col.renamed


def test_brightspace_refusal_names_the_characters_and_the_rule() -> None:
    caps = profile_for("brightspace").capabilities
    col = column_for(CHAPTER, ResolvedPolicy(name_rule=NameRule.REFUSE), caps)
    assert isinstance(col, NoResult)
    assert col.reason.code == "name_forbidden_chars"
    assert "(/ & !)" in col.reason.text and "Brightspace's name rules" in col.reason.text


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_sends_a_name_it_takes(profile: str) -> None:
    caps = profile_for(profile).capabilities
    col = column_for(CHAPTER, ResolvedPolicy(), caps)
    assert isinstance(col, Column)
    assert not set(col.title) & set(caps.forbidden_name_chars)
    limit = caps.name_max_length
    assert limit is None or len(col.title) <= limit
    # a name that needs no change carries no note
    assert (col.renamed is None) == (col.title == CHAPTER.title)


def test_brightspace_length_limit_is_named_when_refused() -> None:
    caps = profile_for("brightspace").capabilities
    col = column_for(
        replace(CHAPTER, title="A" * 129), ResolvedPolicy(name_rule=NameRule.REFUSE), caps
    )
    assert isinstance(col, NoResult) and col.reason.code == "name_too_long"
    assert "at most 128 under Brightspace's name rules" in col.reason.text
