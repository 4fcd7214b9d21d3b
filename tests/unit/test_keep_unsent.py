"""`keep_unsent`: an update keeps the stored value of every field it did not send;
`written_fields`: the fields it writes over the stored row; `fill_blanks`: an update that
only fills blanks keeps every value stored."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gradesync.domain.model import (
    Activity,
    AttemptSelection,
    Course,
    Person,
    PolicySettings,
    fill_blanks,
    keep_unsent,
    written_fields,
)

STORED = Activity(
    "t1",
    "a1",
    "c1",
    "Quiz",
    10,
    sync_enabled=False,
    policy=PolicySettings(attempt_selection=AttemptSelection.LATEST),
)


def test_fields_left_out_keep_their_stored_values() -> None:
    sent = Activity("t1", "a1", "c1", "Quiz renamed", 10)  # sync and policy: the defaults
    kept = keep_unsent(STORED, sent, {"id", "course_id", "title", "points_possible"})
    assert kept == replace(STORED, title="Quiz renamed")


def test_fields_sent_set_even_to_their_defaults() -> None:
    sent = Activity("t1", "a1", "c1", "Quiz", 10, sync_enabled=True)
    kept = keep_unsent(STORED, sent, {"title", "sync_enabled", "policy"})
    assert kept.sync_enabled is True and kept.policy == PolicySettings()


def test_a_new_object_or_one_sent_whole_is_as_sent() -> None:
    sent = Course("t1", "c1", "Bio")
    assert keep_unsent(None, sent, {"title"}) is sent
    stored = Person("t1", "p1", "Ada", "ada@example.edu")
    whole = Person("t1", "p1")
    assert keep_unsent(stored, whole, None) is whole
    assert keep_unsent(stored, whole, set()) == stored


def test_a_field_that_is_none_of_the_objects_is_refused() -> None:
    with pytest.raises(AttributeError):
        keep_unsent(Person("t1", "p1"), Person("t1", "p1"), {"title"})


def test_an_update_writes_the_fields_it_names_unless_it_names_them_all() -> None:
    person = Person("t1", "p1", "Ada")
    assert written_fields(person, {"id", "name"}) == {"name"}
    assert written_fields(person, set()) == frozenset()
    assert written_fields(person, {"id", "name", "email", "sis_id"}) is None
    assert written_fields(person, None) is None


def test_filling_blanks_sets_only_the_fields_sent_that_are_none_or_empty() -> None:
    stored = Person("t1", "p1", "", "ada@school.example.edu", None)
    sent = Person("t1", "p1", "Ada", "ada@lms.example.edu", "S-1")
    assert fill_blanks(stored, sent, {"name", "email", "sis_id"}) == replace(
        stored, name="Ada", sis_id="S-1"
    )
    assert fill_blanks(stored, sent, None) == replace(stored, name="Ada", sis_id="S-1")
    assert fill_blanks(stored, sent, {"email"}) == stored
    assert fill_blanks(None, sent, {"name"}) is sent
