"""How the command line names a destination: its name, with its id only where the name does
not say which one (`domain.destination_names.labelled`)."""

from __future__ import annotations

from gradesync.domain.destination_names import NamedThen, labelled, shared_names


def test_a_destination_is_named_with_its_id_only_where_the_name_does_not_say_which() -> None:
    shared = shared_names(["Canvas", "Brightspace", "Brightspace"])
    assert shared == {"Brightspace"}
    assert labelled("lms", NamedThen("Canvas", False), shared) == "Canvas"
    assert labelled("d2l-b", NamedThen("Brightspace", False), shared) == "Brightspace (d2l-b)"
    assert labelled("moodle", NamedThen("Moodle", True), shared) == "Moodle (moodle, deleted)"
    # listed as deleted already: not said twice
    assert labelled("moodle", NamedThen("Moodle", True), marked=False) == "Moodle (moodle)"
    # known by its id alone (deleted before deletions kept names): the id once
    assert labelled("sis5", NamedThen("sis5", True)) == "sis5 (deleted)"
    assert labelled("sis5", NamedThen("sis5", True), marked=False) == "sis5"
