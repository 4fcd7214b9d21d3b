"""Console sign-in: an unknown user costs what a known one does (one scrypt), and the session
cookie is `Secure` when gradesync is served over https."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gradesync.adapters.db.database import Database
from gradesync.config import Settings
from gradesync.domain.model import Course, UserRole
from gradesync.runtime import Runtime
from gradesync.services import accounts
from gradesync.services.tenants import create_tenant
from gradesync.testing import TEST_SECRET, ManualClock
from gradesync.web.app import create_app
from tests.support.console import sign_in


def _runtime(db: Database, tmp_path: Path, **settings: Any) -> Runtime:
    rt = Runtime(
        settings=Settings(
            database_url=db.url, secret_key=TEST_SECRET, data_dir=tmp_path / "d", **settings
        ),
        db=db,
    )
    create_tenant(rt.uow, rt.clock, "uni", "Uni")
    accounts.create_user(
        rt.uow, rt.clock, tenant_id="uni", username="ada", password="a-long-password-1",
        role=UserRole.ADMIN,
    )  # fmt: skip
    return rt


@pytest.mark.parametrize(
    ("username", "password"),
    [("nobody", "whatever-it-is"), ("ada", "wrong-password-99"), ("ada", "a-long-password-1")],
)
def test_every_sign_in_attempt_hashes_once(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, username: str, password: str
) -> None:
    rt = _runtime(db, tmp_path)
    accounts._unknown_user_hash()  # made once per process, before any attempt
    calls: list[int] = []
    real = hashlib.scrypt

    def counting(*args: Any, **kw: Any) -> bytes:
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(accounts.hashlib, "scrypt", counting)
    user = accounts.authenticate(rt.uow, username, password)
    assert (user is not None) == (password == "a-long-password-1")
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("settings", "secure"),
    [
        ({"base_url": "https://grades.example.edu"}, True),
        ({"base_url": "http://127.0.0.1:8000"}, False),
        ({"base_url": "http://127.0.0.1:8000", "secure_cookies": True}, True),
        ({"base_url": "https://grades.example.edu", "secure_cookies": False}, False),
    ],
)
def test_session_cookie_is_secure_over_https(
    db: Database, tmp_path: Path, settings: dict[str, Any], secure: bool
) -> None:
    rt = _runtime(db, tmp_path, **settings)
    with TestClient(create_app(rt), base_url="https://testserver") as client:
        r = sign_in(client, "ada", "a-long-password-1", follow_redirects=False)
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"]
    assert "gradesync_session=" in cookie
    assert ("secure" in cookie.lower()) is secure


def test_sign_in_is_throttled_per_account_with_backoff(db: Database, tmp_path: Path) -> None:
    rt = _runtime(db, tmp_path)
    clock = ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    rt.clock = clock

    def attempt(password: str) -> Any:
        return sign_in(client, "ada", password, follow_redirects=False)

    with TestClient(create_app(rt)) as client:
        for _ in range(5):
            assert attempt("wrong-password-99").status_code == 401
        refused = attempt("a-long-password-1")  # after five: even the right one waits
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert "Too many failed sign-ins: try again in 1 second." in refused.text
        clock.advance(timedelta(seconds=1))
        assert attempt("wrong-password-99").status_code == 401
        assert attempt("a-long-password-1").headers["retry-after"] == "2"  # doubled
        clock.advance(timedelta(seconds=2))
        assert attempt("a-long-password-1").status_code == 303
        # a right password clears the account's count
        assert attempt("wrong-password-99").status_code == 401


def test_a_username_in_two_schools_signs_in_by_its_password(db: Database, tmp_path: Path) -> None:
    """Adding `ada` to a second school must not lock the first one's `ada` out: without a
    school id the password picks the account. Only a password valid in both asks for the
    school; a wrong one gets the answer an unknown user gets, naming no school."""
    rt = _runtime(db, tmp_path)
    create_tenant(rt.uow, rt.clock, "northwind", "Northwind")
    accounts.create_user(rt.uow, rt.clock, tenant_id="northwind", username="ada",
                         password="northwind-password", role=UserRole.ADMIN)  # fmt: skip
    with rt.uow() as uow:
        uow.courses.upsert(Course("uni", "bio", "Uni Biology"))
        uow.courses.upsert(Course("northwind", "chem", "Northwind Chemistry"))
        uow.commit()
    app = create_app(rt)

    def who(client: TestClient) -> str:
        page = client.get("/console/")
        assert page.status_code == 200, page.text
        return "northwind" if "Northwind Chemistry" in page.text else "uni"

    with TestClient(app) as uni, TestClient(app) as north:
        assert sign_in(uni, "ada", "a-long-password-1", follow_redirects=False).status_code == 303
        assert who(uni) == "uni"
        assert (
            sign_in(north, "ada", "northwind-password", follow_redirects=False).status_code == 303
        )
        assert who(north) == "northwind"
    with TestClient(app) as client:
        wrong = sign_in(client, "ada", "wrong-password-99")
        nobody = sign_in(client, "nobody", "wrong-password-99")
        assert wrong.status_code == nobody.status_code == 401
        assert "That username and password do not match." in wrong.text
        assert wrong.text.replace('value="ada"', 'value="nobody"') == nobody.text
        # the same password in both schools: the school must be named
        accounts.create_user(rt.uow, rt.clock, tenant_id="northwind", username="ada",
                             password="a-long-password-1")  # fmt: skip
        asked = sign_in(client, "ada", "a-long-password-1")
        assert asked.status_code == 400
        assert "valid in several schools: enter the school id" in asked.text
        assert "<details open>" in asked.text and "northwind" not in asked.text.lower()
        named = sign_in(client, "ada", "a-long-password-1", tenant="northwind")
        assert named.status_code == 200 and who(client) == "northwind"


def test_a_username_in_two_schools_is_throttled_and_hashed_alike(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a school id, failures on a name held in two schools count as for one account,
    and each try hashes once per account whether the password is right or not."""
    rt = _runtime(db, tmp_path)
    create_tenant(rt.uow, rt.clock, "northwind", "Northwind")
    accounts.create_user(rt.uow, rt.clock, tenant_id="northwind", username="ada",
                         password="northwind-password")  # fmt: skip
    calls: list[int] = []
    real = hashlib.scrypt

    def counting(*args: Any, **kw: Any) -> bytes:
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(accounts.hashlib, "scrypt", counting)
    for password in ("wrong-password-99", "northwind-password"):
        calls.clear()
        accounts.authenticate(rt.uow, "ada", password)
        assert len(calls) == 2
    monkeypatch.undo()
    rt.clock = ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    with TestClient(create_app(rt)) as client:
        for _ in range(5):
            assert sign_in(client, "ada", "wrong-password-99").status_code == 401
        refused = sign_in(client, "ada", "northwind-password")
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"


def test_varying_the_school_field_gives_no_more_tries(db: Database, tmp_path: Path) -> None:
    """Five failures on `ada` lock her account whatever is typed in the school field: empty,
    her school's id, or it padded with spaces."""
    rt = _runtime(db, tmp_path)
    rt.clock = ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    with TestClient(create_app(rt)) as client:
        for school in ("", "uni", "", " uni ", ""):
            assert sign_in(client, "ada", "wrong-password-99", tenant=school).status_code == 401
        for school in ("", "uni", " uni"):
            refused = sign_in(client, "ada", "a-long-password-1", tenant=school)
            assert refused.status_code == 429, (school, refused.text)
    with TestClient(create_app(rt)) as client:
        for _ in range(5):
            assert sign_in(client, "ada", "wrong-password-99").status_code == 401
        assert sign_in(client, "ada", "a-long-password-1", tenant="uni").status_code == 429


def test_one_schools_failures_leave_a_namesake_in_another_school_open(
    db: Database, tmp_path: Path
) -> None:
    """Failures aimed at Northwind's `ada` lock that account, not Uni's: Uni's `ada` still signs
    in by naming her school. Without a school id the try waits, as it would test both."""
    rt = _runtime(db, tmp_path)
    create_tenant(rt.uow, rt.clock, "northwind", "Northwind")
    accounts.create_user(rt.uow, rt.clock, tenant_id="northwind", username="ada",
                         password="northwind-password")  # fmt: skip
    rt.clock = ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    app = create_app(rt)
    with TestClient(app) as attacker:
        for _ in range(5):
            r = sign_in(attacker, "ada", "wrong-password-99", tenant="northwind")
            assert r.status_code == 401
        assert sign_in(attacker, "ada", "northwind-password", tenant="northwind").status_code == 429
    with TestClient(app) as ada:
        waits = sign_in(ada, "ada", "a-long-password-1")
        assert waits.status_code == 429 and "enter your school id" in waits.text
        assert sign_in(ada, "ada", "a-long-password-1", tenant="uni").status_code == 200
