"""Names in a console list in natural order: numbers within a name by their value."""

from __future__ import annotations

from gradesync.domain.natural_order import natural_key


def test_numbers_within_names_sort_by_value_and_letters_without_case() -> None:
    names = ["P 100", "P 10", "p 2", "P 1", "P 0", "Ada", "P", "P 2b", "P 2a", "3", "²"]
    assert sorted(names, key=natural_key) == [
        "3",
        "Ada",
        "P",
        "P 0",
        "P 1",
        "p 2",
        "P 2a",
        "P 2b",
        "P 10",
        "P 100",
        "²",
    ]


def test_a_number_and_text_at_the_same_place_compare_without_error() -> None:
    assert sorted(["a1", "ab", "a"], key=natural_key) == ["a", "a1", "ab"]
