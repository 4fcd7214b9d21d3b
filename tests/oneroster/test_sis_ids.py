"""SIS sourcedIds (students, classes, schools, sections, categories) follow the rule of ids
(docs/api.md): not blank, at most 255 characters, no NUL, and no control character. A NUL
was a 500 on PostgreSQL (its text cannot hold one); an id over 255 characters, or with a line
break, was stored and sent. Refused with the field and the rule, nothing changed, on every
backend and from the API as from the CLI."""

from __future__ import annotations

from typer.testing import CliRunner

from gradesync.cli import app
from gradesync.domain.identifiers import is_sis_id
from tests.support.api import ApiEnv, Caller

from .test_api_refusals import _files, _problems

BAD_IDS = [
    ("a\u0000b", "nul_character"),
    ("s" * 256, "too_long"),
    ("stu\n1", "control_character"),
    ("stu\u00011", "control_character"),
    ("stu\u0085", "control_character"),
    (" ", "required"),
]


def _links(api: ApiEnv) -> tuple[object, ...]:
    with api.db.uow() as uow:
        return (
            tuple(uow.links.person_links("t1", "sis", "p1")),
            uow.links.course("t1", "sis", "c1"),
            uow.destinations.get("t1", "sis"),
        )


def test_a_bad_student_id_is_refused_and_changes_nothing(api: ApiEnv) -> None:
    admin = _files(api)
    assert admin.put("/sis/connections/sis/students/p1", json={"student_id": "stu-1"}).is_success
    before = _links(api)
    for student_id, rule in BAD_IDS:
        r = admin.put("/sis/connections/sis/students/p1", json={"student_id": student_id})
        assert _problems(r) == [("student_id", rule)], student_id
    assert _links(api) == before
    # at the limit, and with letters beyond ASCII, it is a student id
    for good in ("s" * 255, "élève-1 (Zoë)"):
        r = admin.put("/sis/connections/sis/students/p1", json={"student_id": good})
        assert r.status_code == 200, r.text


def test_bad_class_school_and_section_ids_are_named_at_once(api: ApiEnv) -> None:
    admin = _files(api)
    before = _links(api)
    body = {"class_id": "cls\u0000", "school_id": "s" * 300}
    r = admin.put("/sis/connections/sis/classes/c1", json=body)
    assert _problems(r) == [("class_id", "nul_character"), ("school_id", "too_long")]
    body = {"class_id": "cls-2", "section_id": "sec\u0000b"}
    r = admin.put("/sis/connections/sis/classes/c1", json=body)
    assert _problems(r) == [("section_id", "nul_character")]
    body = {"class_id": "cls\t2", "section_id": "sec-b"}
    r = admin.put("/sis/connections/sis/classes/c1", json=body)
    assert _problems(r) == [("class_id", "control_character")]
    assert _links(api) == before


def test_a_bad_category_or_group_is_refused(api: ApiEnv) -> None:
    admin = _files(api)
    before = _links(api)
    for category, rule in BAD_IDS[:4]:
        r = admin.put("/sis/connections/sis/alignments/Quizzes", json={"category_id": category})
        assert _problems(r) == [("category_id", rule)], category
    r = admin.put("/sis/connections/sis/alignments/Qu%00iz", json={"category_id": "cat"})
    assert _problems(r) == [("group", "nul_character")]
    assert r.json()["detail"][0]["loc"] == ["path", "group"]
    assert _links(api) == before


def test_ingest_refuses_a_sis_id_or_section_no_sis_could_take(api: ApiEnv) -> None:
    caller = Caller(api.client, api.tenant("t1", "ingest"))
    body = {
        "courses": [{"id": "c9", "title": "C"}],
        "people": [{"id": "p9", "name": "P", "sis_id": "stu\n9"}],
        "enrollments": [{"course_id": "c9", "person_id": "p9", "section_id": "sec\u00009"}],
    }
    assert _problems(caller.post("/ingest", json=body)) == [
        ("people[0].sis_id", "control_character"),
        ("enrollments[0].section_id", "nul_character"),
    ]
    with api.db.uow() as uow:
        assert uow.people.get("t1", "p9") is None


def test_the_cli_refuses_alike(api: ApiEnv, api_cli: CliRunner) -> None:
    _files(api)
    before = _links(api)
    for student_id, rule in BAD_IDS:
        r = api_cli.invoke(app, ["sis", "map-student", "sis", "p1", student_id, "-t", "t1"])
        assert r.exit_code == 2, r.output
        assert "student_id:" in r.output and f"[{rule}]" in r.output, r.output
    r = api_cli.invoke(app, ["sis", "map-class", "sis", "c1", "cls\u0000", "-t", "t1"])
    assert r.exit_code == 2 and "CLASS_ID:" in r.output and "[nul_character]" in r.output
    r = api_cli.invoke(app, ["sis", "categories", "sis", "--align", "Quizzes=c\u0000", "-t", "t1"])
    assert r.exit_code == 2 and "--align:" in r.output and "[nul_character]" in r.output
    assert _links(api) == before


def test_a_launch_keeps_no_sis_id_that_could_not_be_one() -> None:
    assert is_sis_id("stu-1") and is_sis_id("s" * 255)
    assert not any(is_sis_id(v) for v in (None, "", "s" * 256, "a\u0000", "a\nb"))
