"""A course's links following new SIS ids are settled as one set (`settle_moves`): every
move is made unless its learner would still share a student with another once the others
are made."""

from __future__ import annotations

from gradesync.domain.passback import settle_moves


def test_a_chain_and_a_swap_are_made_whatever_the_order() -> None:
    now = {"a": "s1", "b": "s2"}
    assert settle_moves(now, {"a": "s2", "b": "s3"}) == ({"a", "b"}, {})
    assert settle_moves(now, {"a": "s2", "b": "s1"}) == ({"a", "b"}, {})
    three = {"a": "s1", "b": "s2", "c": "s3"}
    assert settle_moves(three, {"a": "s2", "b": "s3", "c": "s1"}) == ({"a", "b", "c"}, {})


def test_a_move_onto_a_student_still_taken_is_refused_and_so_is_what_hung_on_it() -> None:
    # b stays on s2: a is refused, and c, moving onto a's s1 that a keeps, is refused too
    now = {"a": "s1", "b": "s2", "c": "s3"}
    assert settle_moves(now, {"a": "s2", "c": "s1"}) == (set(), {"a": "b", "c": "a"})
    # two moving onto one new student: both refused, each naming the other
    assert settle_moves(now, {"a": "s9", "b": "s9"}) == (set(), {"a": "b", "b": "a"})
    # a student two learners shared already is not this set's doing: the others move
    shared = {"a": "s1", "b": "s1", "c": "s3"}
    assert settle_moves(shared, {"c": "s4"}) == ({"c"}, {})
