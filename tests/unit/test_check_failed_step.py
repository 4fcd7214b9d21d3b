"""A destination check's failed step keeps the adapter's remedy held as a code, so each
reader (the console, the API) reads it in its own words, not the command line's."""

from __future__ import annotations

from gradesync.domain.remedies import Reader, Remedy
from gradesync.services.check_test_result import failed_step
from gradesync.services.destination import FailureClass, RemoteFailure


def test_a_failed_steps_remedy_held_as_a_code_is_worded_for_each_reader() -> None:
    refused = RemoteFailure(
        FailureClass.MISCONFIGURED,
        "class_not_mapped",
        "The course has no SIS class.",
        status=None,
        fix=Remedy("class_not_mapped", "sis", course="c1"),
    )
    step = failed_step("The course's gradebook is reachable", refused)
    assert step.code == "class_not_mapped" and not step.passed
    cli = step.read_over(Reader.CLI).remedy
    console = step.read_over(Reader.CONSOLE).remedy
    assert cli is not None and "gradesync sis map-class sis c1" in cli
    assert console is not None and "gradesync" not in console, console


def test_an_unexpected_error_is_a_check_error() -> None:
    step = failed_step("Results can be read back", ValueError("boom"))
    assert (step.code, step.evidence, step.fix) == ("check_error", "ValueError: boom", None)
