"""Bad input to the SIS admin API: every problem named with its field and rule, at once, and
nothing changed (docs/api.md)."""

from __future__ import annotations

from typing import Any

import httpx

from gradesync.sandbox.testing import RunningSandbox
from tests.lti.test_units import GOOD
from tests.support.api import ApiEnv, Caller

from .conftest import CLIENT_ID, CLIENT_SECRET
from .facts import ADA, ALGEBRA, BO, QUIZ_1


def _problems(r: httpx.Response) -> list[tuple[str, str]]:
    assert r.status_code == 422, r.text
    return [(p["field"], p["rule"]) for p in r.json()["detail"]]


def _connected(api: ApiEnv, sis: RunningSandbox) -> Caller:
    admin = Caller(api.client, api.tenant("t1", "admin"))
    body = {"base_url": sis.base_url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    r = admin.put("/sis/connections/sis", json=body)
    assert r.status_code == 200, r.text
    return admin


def _stored(api: ApiEnv) -> tuple[dict[str, Any], dict[str, Any]]:
    with api.db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
    assert dest is not None
    return dict(dest.config), dict(dest.secret)


def test_a_url_with_credentials_or_a_nul_is_refused_and_not_echoed(
    api: ApiEnv, sis: RunningSandbox
) -> None:
    """A token URL with `user:pw@` was stored in the plain config and shown to every reader;
    a NUL in the client secret replaced the working one."""
    admin = _connected(api, sis)
    before = _stored(api)
    for url in (
        "https://user:pw@sis.example.org/t",
        "http://user:pw@127.0.0.1:9/t",
        "ftp://user:pw@sis.example.org/t",
    ):
        r = admin.put("/sis/connections/sis", json={"token_url": url})
        assert _problems(r) == [("token_url", "url")], url
        assert "pw" not in r.text, url
        r = admin.put("/sis/connections/sis", json={"base_url": url})
        assert _problems(r) == [("base_url", "url")], url
        assert "pw" not in r.text, url
    nul = {"client_secret": "a\u0000b", "client_id": "x\u0000"}
    r = admin.put("/sis/connections/sis", json=nul)
    assert _problems(r) == [("client_id", "nul_character"), ("client_secret", "nul_character")]
    # a blank base URL is one problem, not two
    assert _problems(admin.put("/sis/connections/sis", json={"base_url": ""})) == [
        ("base_url", "required")
    ]
    assert _stored(api) == before
    assert "pw" not in admin.get("/destinations/sis").text


def test_an_lms_registration_url_is_checked_alike(api: ApiEnv) -> None:
    admin = Caller(api.client, api.tenant("t1", "admin"))
    body = {**GOOD, "auth_token_url": "https://lms.example.edu/tok\u0000en"}
    assert _problems(admin.post("/platforms", json=body)) == [("auth_token_url", "nul_character")]
    body = {**GOOD, "key_set_url": "https://user:pw@lms.example.edu/jwks"}
    r = admin.post("/platforms", json=body)
    assert _problems(r) == [("key_set_url", "url")] and "pw" not in r.text
    assert admin.get("/platforms").json() == []


ROSTER: dict[str, Any] = {
    "courses": [ALGEBRA],
    "activities": [QUIZ_1],
    "people": [ADA, BO],
    "enrollments": [
        {"course_id": "c1", "person_id": "p1"},
        {"course_id": "c1", "person_id": "p2", "section_id": "sec-b"},
    ],
}


def _files(api: ApiEnv) -> Caller:
    """A file-based SIS with course c1 mapped to its class."""
    admin = Caller(api.client, api.tenant("t1", "admin", "ingest"))
    assert admin.post("/ingest", json=ROSTER).status_code == 202
    assert admin.put("/sis/connections/sis", json={"file_based": True}).status_code == 200
    r = admin.put("/sis/connections/sis/classes/c1", json={"class_id": "cls-1", "school_id": "s"})
    assert r.status_code == 200, r.text
    return admin


def test_unknown_blank_and_repeated_activity_ids_are_each_named(api: ApiEnv) -> None:
    """They answered a bare `404 activity not found`: no field, one problem, the blank and
    the repeated id called "not found"."""
    admin = _files(api)
    for selected in (True, False):
        body = {"activity_ids": ["q1", "zzz", "yyy"], "selected": selected}
        r = admin.put("/sis/connections/sis/selection", json=body)
        assert _problems(r) == [
            ("activity_ids[1]", "unknown_activity"),
            ("activity_ids[2]", "unknown_activity"),
        ]
        assert "'zzz'" in r.text and "'yyy'" in r.text
        body = {"activity_ids": ["q1", "q1", " "], "selected": selected}
        r = admin.put("/sis/connections/sis/selection", json=body)
        assert _problems(r) == [("activity_ids[1]", "unique"), ("activity_ids[2]", "required")]
    r = admin.post("/sis/connections/sis/courses/c1/post", json={"activity_ids": ["q1", "zzz"]})
    assert _problems(r) == [("activity_ids[1]", "unknown_activity")]
    with api.db.uow() as uow:
        assert uow.links.items("t1", "sis", ["q1"]) == {}
        assert uow.runs.history("t1") == []


def test_a_whole_course_post_with_nothing_ticked_names_every_activity(api: ApiEnv) -> None:
    """`POST .../courses/c1/post` with `{}` and nothing ticked answered only
    `nothing_to_post`; `activity_ids` named got every reason of each (docs/api.md)."""
    admin = _files(api)
    r = admin.post("/sis/connections/sis/courses/c1/post", json={})
    assert _problems(r) == [
        ("activity_ids", "nothing_to_post"),
        ("activities[q1].sync_to_sis", "not_selected_for_sis"),
    ]
    assert "PUT /api/v1/sis/connections/sis/selection" in r.json()["detail"][1]["msg"]
    assert admin.get("/runs").json() == []


def test_aligning_for_a_course_the_tenant_does_not_have_is_unknown_course(api: ApiEnv) -> None:
    admin = _files(api)
    r = admin.put(
        "/sis/connections/sis/alignments/Quizzes", json={"category_id": "cat", "course_id": "nope"}
    )
    assert _problems(r) == [("course_id", "unknown_course")]


def test_a_section_the_course_does_not_have_is_refused(api: ApiEnv) -> None:
    """`PUT .../classes/c1` with an unknown `section_id` was stored on the course's link."""
    admin = _files(api)
    body = {"class_id": "cls-2", "section_id": "nosec"}
    r = admin.put("/sis/connections/sis/classes/c1", json=body)
    assert _problems(r) == [("section_id", "unknown_section")]
    assert "'sec-b'" in r.text
    with api.db.uow() as uow:
        link = uow.links.course("t1", "sis", "c1")
    assert link is not None and "sections" not in link.data
    body = {"class_id": "cls-2", "section_id": "sec-b"}
    assert admin.put("/sis/connections/sis/classes/c1", json=body).status_code == 200


def test_an_export_names_each_unknown_or_blank_course_at_its_place(api: ApiEnv) -> None:
    """`"course_ids": ["nope", ""]` named `course_ids` without the index and called the blank
    id `unknown_course` ("No course ''.")."""
    admin = _files(api)
    r = admin.post("/sis/connections/sis/exports", json={"course_ids": ["nope", ""]})
    assert _problems(r) == [("course_ids[0]", "unknown_course"), ("course_ids[1]", "required")]
    assert admin.get("/runs").json() == []


def test_an_allowed_host_with_credentials_is_not_repeated(api: ApiEnv) -> None:
    admin = Caller(api.client, api.tenant("t1", "admin"))
    body = {**GOOD, "allowed_hosts": ["https://user:pw@school.instructure.com", "bad host"]}
    r = admin.post("/platforms", json=body)
    assert _problems(r) == [("allowed_hosts", "host")]
    assert "pw" not in r.text and "bad host" in r.text
    assert admin.get("/platforms").json() == []


def test_a_url_stored_with_credentials_is_hidden_and_named_as_stored(
    api: ApiEnv, sis: RunningSandbox
) -> None:
    """A token URL saved with `user:pw@` before such URLs were refused: readers no longer see
    the credentials, and a change that does not replace it names the stored value as what to
    mend (it blocked even rotating the secret, saying only `[url]`)."""
    from dataclasses import replace
    from datetime import UTC, datetime

    admin = _connected(api, sis)
    with api.db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
        assert dest is not None
        leaky = {**dest.config, "token_url": "https://user:s3cr3t@sis.example.org/token"}
        uow.destinations.upsert(replace(dest, config=leaky), datetime.now(UTC))
        uow.commit()
    shown = admin.get("/destinations/sis")
    assert shown.status_code == 200 and "s3cr3t" not in shown.text, shown.text
    assert shown.json()["config"]["token_url"] == "https://***@sis.example.org/token"
    r = admin.put("/sis/connections/sis", json={"client_secret": "rotated-secret-0123"})
    assert _problems(r) == [("token_url", "url")]
    assert "stored" in r.text and "s3cr3t" not in r.text
    fixed = {"client_secret": "rotated-secret-0123", "token_url": sis.base_url + "/token"}
    assert admin.put("/sis/connections/sis", json=fixed).status_code == 200


def test_a_section_no_enrollment_names_yet_is_mapped_when_said_to_be_new(api: ApiEnv) -> None:
    """A section whose learners are not enrolled yet (a district maps its classes before the
    roster arrives) could not be mapped at all; now it can, said to be new, and a typo that
    is not said to be new is still refused."""
    admin = _files(api)
    body = {"class_id": "cls-3", "section_id": "sec-c"}
    assert _problems(admin.put("/sis/connections/sis/classes/c1", json=body)) == [
        ("section_id", "unknown_section")
    ]
    r = admin.put("/sis/connections/sis/classes/c1", json={**body, "new_section": True})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["sections"] == {"sec-c": "cls-3"}
    with api.db.uow() as uow:
        link = uow.links.course("t1", "sis", "c1")
    assert link is not None and link.data["sections"] == {"sec-c": "cls-3"}
    # a flag that is not a boolean is bad input, named
    r = admin.put("/sis/connections/sis/classes/c1", json={**body, "new_section": "yes"})
    assert _problems(r) == [("new_section", "boolean")]
