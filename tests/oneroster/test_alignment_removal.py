"""Removing a group's alignment that was never set answered 200 as if it had removed one:
it is a 404 naming what was not found (an alignment), as a DELETE of anything else, and
`sis categories --unalign` exits 3 (not found) naming its option. Nothing changes."""

from __future__ import annotations

from typer.testing import CliRunner

from gradesync.cli import app
from tests.support.api import ApiEnv

from .test_api_refusals import _files, _stored

GROUP = "/sis/connections/sis/alignments/Quizzes"


def test_removing_an_alignment_never_set_is_not_found(api: ApiEnv) -> None:
    admin = _files(api)
    r = admin.delete(GROUP)
    assert r.status_code == 404 and r.json() == {"detail": "alignment not found"}
    assert admin.put(GROUP, json={"category_id": "cat-quiz"}).status_code == 200
    # the course has no alignment of its own: the connection's is not it
    r = admin.delete(GROUP, params={"course_id": "c1"})
    assert r.status_code == 404, r.text
    assert _stored(api)[0]["category_map"] == {"Quizzes": "cat-quiz"}
    r = admin.delete(GROUP)
    assert r.status_code == 200 and r.json() == {}
    assert admin.delete(GROUP).status_code == 404
    # a course's own alignment is removed the same way
    assert admin.put(GROUP, json={"category_id": "cat-q", "course_id": "c1"}).is_success
    assert admin.delete(GROUP, params={"course_id": "c1"}).status_code == 200
    assert admin.delete(GROUP, params={"course_id": "c1"}).status_code == 404
    # an unknown course is still bad input, not a missing alignment
    r = admin.delete(GROUP, params={"course_id": "nope"})
    assert r.status_code == 422 and r.json()["detail"][0]["rule"] == "unknown_course"


def test_the_cli_says_the_alignment_is_not_found(api: ApiEnv, api_cli: CliRunner) -> None:
    _files(api)
    categories = ["sis", "categories", "sis", "-t", "t1", "--offline"]
    r = api_cli.invoke(app, [*categories, "--unalign", "Quizzes", "--align", "Homework=cat-hw"])
    assert r.exit_code == 3, r.output
    assert r.output.startswith("error: --unalign: alignment 'Quizzes' not found"), r.output
    assert "category_map" not in _stored(api)[0]  # the --align went neither
    r = api_cli.invoke(app, [*categories, "--align", "Quizzes=cat-quiz"])
    assert r.exit_code == 0, r.output
    r = api_cli.invoke(app, [*categories, "--unalign", "Quizzes"])
    assert r.exit_code == 0, r.output
    assert _stored(api)[0]["category_map"] == {}
