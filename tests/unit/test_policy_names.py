"""Activity names per destination (length, forbidden characters) and gradebook columns."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from gradesync.domain.model import Activity, ActivityKind, NameRule, ScoreForm
from gradesync.domain.names import (
    PEARSON_FORBIDDEN_CHARS,
    clean_name,
    destination_name,
    forbidden_in,
)
from gradesync.domain.policy import (
    Capabilities,
    Column,
    NoResult,
    ResolvedPolicy,
    column_for,
    column_hash,
)
from gradesync.domain.reasons import Reason

SIS = Capabilities(name_max_length=30, forbidden_name_chars=PEARSON_FORBIDDEN_CHARS)
BRIGHTSPACE = Capabilities(name_max_length=128, forbidden_name_chars=PEARSON_FORBIDDEN_CHARS)
ACTIVITY = Activity(
    tenant_id="t",
    id="a1",
    course_id="c1",
    title="Quiz 1",
    points_possible=10.0,
    due_at=datetime(2025, 3, 8, tzinfo=UTC),
    category="Quizzes",
)


def test_pearson_list_is_the_documented_one() -> None:
    assert set(PEARSON_FORBIDDEN_CHARS) == set('\\/"*<>+=|,%!&')


@pytest.mark.parametrize(
    ("title", "max_length", "expected"),
    [
        ("Quiz 1", 30, "Quiz 1"),
        ("Ch. 3/4 & review!", None, "Ch. 3 4 review"),
        ('a\\b/c"d*e<f>g+h=i|j,k%l!m&n', None, "a b c d e f g h i j k l m n"),
        ("Chapter 12: Cell Division and the Cell Cycle", 30, "Chapter 12: Cell Division and"),
        ("x" * 40, 30, "x" * 30),
        ("  spaced   out  ", None, "spaced out"),
        ("Unit 1, Quiz 2", 7, "Unit 1"),  # cut falls on a space: no trailing space
        ("Café Übung", 128, "Café Übung"),  # non-ASCII is not forbidden
    ],
)
def test_clean_name(title: str, max_length: int | None, expected: str) -> None:
    assert clean_name(title, max_length, PEARSON_FORBIDDEN_CHARS) == expected


@pytest.mark.parametrize(
    ("title", "caps", "expected"),
    [
        ("Quiz 1", SIS, "Quiz 1"),
        ("Quiz 1/2", SIS, "name_forbidden_chars"),
        ("A" * 31, SIS, "name_too_long"),
        ("A" * 30, SIS, "A" * 30),
        ("A" * 128, BRIGHTSPACE, "A" * 128),
        ("A" * 129, BRIGHTSPACE, "name_too_long"),
        ("   ", Capabilities(), "name_empty"),
        ("Quiz 1/2", Capabilities(), "Quiz 1/2"),  # no rule at this destination
    ],
)
def test_refuse_rule(title: str, caps: Capabilities, expected: str) -> None:
    out = destination_name(title, NameRule.REFUSE, caps.name_max_length, caps.forbidden_name_chars)
    if isinstance(out, Reason):
        assert out.code == expected
        assert title.strip() in out.text
    else:
        assert out == expected


def test_refuse_names_the_offending_characters() -> None:
    out = destination_name("Q&A: 50% off!", NameRule.REFUSE, None, PEARSON_FORBIDDEN_CHARS)
    assert isinstance(out, Reason)
    assert "& % !" in out.text
    assert forbidden_in("Q&A: 50% off!&", PEARSON_FORBIDDEN_CHARS) == "&%!"


def test_shorten_rule_never_exceeds_the_limit_or_keeps_forbidden_chars() -> None:
    title = "Homework: Forces, Motion & Energy <Part 2> — extra/credit! " * 3
    out = destination_name(title, NameRule.SHORTEN, 30, PEARSON_FORBIDDEN_CHARS)
    assert isinstance(out, str)
    assert len(out) <= 30
    assert forbidden_in(out, PEARSON_FORBIDDEN_CHARS) == ""
    assert out.startswith("Homework: Forces Motion Energy")


def test_shorten_to_nothing_is_refused() -> None:
    out = destination_name("!!!", NameRule.SHORTEN, 30, PEARSON_FORBIDDEN_CHARS)
    assert isinstance(out, Reason) and out.code == "name_empty"


def test_column_for_shortens_by_default() -> None:
    act = replace(ACTIVITY, title="Chapter 12: Cell Division / Mitosis & Meiosis")
    col = column_for(act, ResolvedPolicy(), SIS)
    assert col == Column(
        title="Chapter 12: Cell Division Mito",
        score_maximum=10.0,
        due_at=ACTIVITY.due_at,
        category="Quizzes",
        activity_id="a1",
    )


def test_column_for_refuses_when_told() -> None:
    act = replace(ACTIVITY, title="Chapter 12: Cell Division and the Cell Cycle")
    col = column_for(act, ResolvedPolicy(name_rule=NameRule.REFUSE), SIS)
    assert isinstance(col, NoResult) and col.reason.code == "name_too_long"


@pytest.mark.parametrize(
    ("activity", "code"),
    [
        (replace(ACTIVITY, kind=ActivityKind.PRACTICE), "practice_item"),
        (replace(ACTIVITY, points_possible=0), "practice_item"),
        (replace(ACTIVITY, points_possible=0.5), "below_minimum_points"),
        (replace(ACTIVITY, published=False), "not_published"),
        (replace(ACTIVITY, sync_enabled=False), "sync_disabled"),
    ],
)
def test_no_column_for_items_that_are_not_synced(activity: Activity, code: str) -> None:
    col = column_for(activity, ResolvedPolicy(), Capabilities())
    assert isinstance(col, NoResult) and col.reason.code == code


def test_percent_destinations_get_the_activity_points_as_column_size() -> None:
    col = column_for(ACTIVITY, ResolvedPolicy(), Capabilities(score_form=ScoreForm.PERCENT))
    assert isinstance(col, Column) and col.score_maximum == 10.0


def test_column_hash_changes_with_every_detail_and_only_then() -> None:
    col = column_for(ACTIVITY, ResolvedPolicy(), Capabilities())
    assert isinstance(col, Column)
    h = column_hash(col)
    assert h == column_hash(replace(col, score_maximum=10))  # 10 and 10.0 are one value
    variants = [
        replace(col, title="Quiz 2"),
        replace(col, score_maximum=12.0),
        replace(col, due_at=None),
        replace(col, due_at=datetime(2025, 3, 9, tzinfo=UTC)),
        replace(col, category=None),
        replace(col, activity_id="a2"),
    ]
    hashes = {column_hash(v) for v in variants}
    assert h not in hashes and len(hashes) == len(variants)


def test_column_hash_is_a_stable_sha256() -> None:
    # A pinned value: the hash is stored and compared across processes and releases, so a
    # change to the canonical form must be a deliberate one (it makes every column pending).
    col = Column("Quiz 1", 10, datetime(2025, 3, 8, tzinfo=UTC), "Quizzes", "a1")
    assert column_hash(col) == "04ea4f6e5fa461f0070ccaf01a401b7d0aefbdfa85382dff7a83c80dcdc42353"


def test_column_for_rescales_to_whole_points() -> None:
    act = Activity("t", "a1", "c1", "Quiz", 2.25)
    col = column_for(act, ResolvedPolicy(), Capabilities(integer_points=True))
    assert isinstance(col, Column) and col.score_maximum == 9
    refused = column_for(
        replace(act, points_possible=3.123), ResolvedPolicy(), Capabilities(integer_points=True)
    )
    assert isinstance(refused, NoResult) and refused.reason.code == "fractional_points"
