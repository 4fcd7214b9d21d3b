"""A section mapped to its own SIS class can be unmapped (`DELETE
/sis/connections/{id}/classes/{course_id}/sections/{section_id}`, `gradesync sis
unmap-section`): there was no way to remove one. Its learners' results go to the course's
class again, sent at once; a section with no class of its own is not found."""

from __future__ import annotations

from typer.testing import CliRunner

from gradesync.cli import app
from gradesync.domain.oneroster_csv import ExportMode
from gradesync.services import sis
from tests.support.api import ApiEnv

from .test_api_refusals import _files, _problems
from .test_csv_export import School, school  # noqa: F401  (the fixture)

SECTION = "/sis/connections/sis/classes/c1/sections/sec-b"


async def test_the_section_s_learners_go_back_to_the_course_s_class(school: School) -> None:  # noqa: F811
    first = await school.export()
    items = {r["sourcedId"]: r["classSourcedId"] for r in first.rows["lineItems"]}
    stu3 = {r["studentSourcedId"]: r for r in first.rows["results"]}["stu-3"]
    assert items[stu3["lineItemSourcedId"]] == "cls-2"

    link = sis.unmap_section(
        school.db.uow,
        tenant_id="t1",
        destination_id="files",
        course_id="c1",
        section_id="sec-b",
        clock=school.clock,
    )
    assert "sections" not in link.data and link.remote_id == "cls-1"
    with school.db.uow() as uow:
        p3 = uow.links.people("t1", "files", "c1")["p3"]
    assert p3.remote_id == "stu-3" and "class" not in p3.data

    school.clock.advance(60)
    delta = await school.export(mode=ExportMode.DELTA)
    items = {r["sourcedId"]: r["classSourcedId"] for r in delta.rows["lineItems"]}
    results = {r["studentSourcedId"]: r for r in delta.rows["results"]}
    # sent again, now to the course's class: a delta would have left it in the old one
    assert set(results) == {"stu-3"}, results
    assert results["stu-3"]["classSourcedId"] == "cls-1"
    assert set(items.values()) <= {"cls-1"}


def test_the_api_removes_it_and_names_one_not_there(api: ApiEnv) -> None:
    admin = _files(api)
    r = admin.delete(SECTION)
    assert r.status_code == 404 and r.json() == {"detail": "section mapping not found"}
    body = {"class_id": "cls-2", "section_id": "sec-b"}
    assert admin.put("/sis/connections/sis/classes/c1", json=body).status_code == 200
    r = admin.delete(SECTION)
    assert r.status_code == 200, r.text
    assert r.json()["class_id"] == "cls-1" and "sections" not in r.json()["data"]
    with api.db.uow() as uow:
        link = uow.links.course("t1", "sis", "c1")
    assert link is not None and "sections" not in link.data
    assert admin.delete(SECTION).status_code == 404
    assert admin.delete("/sis/connections/sis/classes/nope/sections/sec-b").status_code == 404
    r = admin.delete("/sis/connections/sis/classes/c1/sections/sec%00b")
    assert _problems(r) == [("section_id", "nul_character")]


def test_a_section_id_holding_a_slash_is_unmapped_through_the_api(api: ApiEnv) -> None:
    """A section id may hold '/' (a sourcedId rule allows it), and one can be mapped from
    the body: the URL gives it percent-encoded, or as it is."""
    admin = _files(api)
    classes = "/sis/connections/sis/classes/c1"
    for given in ("sec%2Fb", "sec/b"):
        body = {"class_id": "cls-2", "section_id": "sec/b", "new_section": True}
        assert admin.put(classes, json=body).status_code == 200
        r = admin.delete(f"{classes}/sections/{given}")
        assert r.status_code == 200, (given, r.text)
        assert "sections" not in r.json()["data"]
        r = admin.delete(f"{classes}/sections/{given}")
        assert r.status_code == 404 and r.json() == {"detail": "section mapping not found"}


def test_a_path_course_id_is_checked_by_the_rule_of_ids_and_changes_nothing(
    api: ApiEnv,
) -> None:
    """A NUL in the URL's course id reached PostgreSQL (a 500 there, a 404 elsewhere)."""
    admin = _files(api)
    with api.db.uow() as uow:
        before = uow.links.course("t1", "sis", "c1")
    r = admin.delete("/sis/connections/sis/classes/c%001/sections/sec-b")
    assert _problems(r) == [("course_id", "nul_character")]
    assert r.json()["detail"][0]["loc"][0] == "path"
    r = admin.put("/sis/connections/sis/classes/c%001", json={"class_id": "cls-9"})
    assert _problems(r) == [("course_id", "nul_character")]
    r = admin.put("/sis/connections/sis/classes/" + "c" * 256, json={"class_id": "cls-9"})
    assert _problems(r) == [("course_id", "too_long")]
    with api.db.uow() as uow:
        assert uow.links.course("t1", "sis", "c1") == before


def test_a_new_section_without_its_section_is_refused(api: ApiEnv) -> None:
    """`new_section: true` (`--new-section`) with no section_id was ignored: the course's
    own class was mapped again instead."""
    admin = _files(api)
    with api.db.uow() as uow:
        before = uow.links.course("t1", "sis", "c1")
    body = {"class_id": "cls-2", "new_section": True}
    r = admin.put("/sis/connections/sis/classes/c1", json=body)
    assert _problems(r) == [("new_section", "requires_section")]
    assert "section_id" in r.json()["detail"][0]["msg"]
    with api.db.uow() as uow:
        assert uow.links.course("t1", "sis", "c1") == before


def test_the_cli_unmaps_a_section(api: ApiEnv, api_cli: CliRunner) -> None:
    _files(api)
    unmap = ["sis", "unmap-section", "sis", "c1", "sec-b", "-t", "t1"]
    r = api_cli.invoke(app, unmap)
    assert r.exit_code == 3, r.output
    assert r.output.startswith("error: SECTION_ID: section mapping 'sec-b' not found"), r.output
    r = api_cli.invoke(
        app, ["sis", "map-class", "sis", "c1", "cls-2", "--section", "sec-b", "-t", "t1"]
    )
    assert r.exit_code == 0, r.output
    r = api_cli.invoke(app, unmap)
    assert r.exit_code == 0 and "the course's" in r.output, r.output
    with api.db.uow() as uow:
        link = uow.links.course("t1", "sis", "c1")
    assert link is not None and "sections" not in link.data
