"""Console sign-in over HTTP: wrong password refused, right one lands on the course list."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from gradesync.adapters.db.database import Database
from gradesync.config import Settings
from gradesync.domain.model import Course, Tenant, UserRole
from gradesync.runtime import Runtime
from gradesync.services.accounts import create_user, verify_password
from gradesync.testing import TEST_SECRET
from gradesync.web.app import create_app
from tests.support.console import sign_in


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    runtime = Runtime(settings=Settings(database_url=db.url, secret_key=TEST_SECRET), db=db)
    now = runtime.clock.now()
    with db.uow() as uow:
        uow.tenants.upsert(Tenant("t1", "School"), now)
        uow.courses.upsert(Course("t1", "bio", "Biology 101"))
        uow.courses.upsert(Course("t1", "chem", "Chemistry"))
        uow.commit()
    create_user(
        db.uow,
        runtime.clock,
        tenant_id="t1",
        username="ada",
        password="correct horse battery",
        role=UserRole.ADMIN,
    )
    with TestClient(create_app(runtime)) as c:
        yield c


def test_login_required_redirects(client: TestClient) -> None:
    r = client.get("/console/", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/console/login")


def test_a_sign_in_form_from_another_site_is_refused(client: TestClient) -> None:
    """Login CSRF: a page elsewhere posting the right password into this browser must not
    sign it in. Without the token of this site's own form, the post is refused."""
    r = client.post("/console/login", data={"username": "ada", "password": "correct horse battery"})
    assert r.status_code == 403 and "did not come from this site" in r.text
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_wrong_password_refused(client: TestClient) -> None:
    r = sign_in(client, "ada", "wrong password!!")
    assert r.status_code == 401
    assert "do not match" in r.text
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_sign_in_lists_courses(client: TestClient) -> None:
    r = sign_in(client, "ada", "correct horse battery")
    assert r.status_code == 200
    assert "Biology 101" in r.text and "Chemistry" in r.text
    # signing out is a form of this site's: without its token it is refused
    assert client.post("/console/logout").status_code == 403
    assert client.get("/console/", follow_redirects=False).status_code == 200
    token = re.search(r'name="csrf" value="([^"]+)"', r.text)
    assert token is not None
    client.post("/console/logout", data={"csrf": token.group(1)})
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_open_redirect_refused(client: TestClient) -> None:
    r = sign_in(
        client,
        "ada",
        "correct horse battery",
        next_url="https://evil.example/",
        follow_redirects=False,
    )
    assert r.headers["location"] == "/console/"


def test_password_hash_is_salted_and_verifies() -> None:
    from gradesync.services.accounts import hash_password

    a, b = hash_password("same password"), hash_password("same password")
    assert a != b
    assert verify_password("same password", a) and not verify_password("other password", a)


def test_a_new_password_or_a_deletion_ends_the_session(client: TestClient) -> None:
    """The session is checked against the account on every request: a password set since
    (even the same one again) or the account's deletion sends the browser to sign in."""
    from gradesync.services.accounts import delete_user

    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    assert sign_in(client, "ada", "correct horse battery").status_code == 200
    assert client.get("/console/courses/bio", follow_redirects=False).status_code == 200
    create_user(runtime.uow, runtime.clock, tenant_id="t1", username="ada",
                password="correct horse battery")  # fmt: skip
    r = client.get("/console/courses/bio", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")
    assert sign_in(client, "ada", "correct horse battery").status_code == 200
    delete_user(runtime.uow, "t1", "ada")
    assert client.get("/console/", follow_redirects=False).status_code == 303
    assert sign_in(client, "ada", "correct horse battery").status_code == 401
