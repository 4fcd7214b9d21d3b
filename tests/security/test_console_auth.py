"""Console sign-in: an unknown user costs what a known one does (one scrypt), and the session
cookie is `Secure` when gradesync is served over https."""

from __future__ import annotations

import hashlib
import threading
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


def test_tries_sent_at_once_get_no_more_password_checks(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tries at once, each sent while the one before is still having its password checked
    (none has failed yet), are heard as if sent in turn: five are checked, the sixth waits,
    rather than every one sent being checked before the first failure counts."""
    rt = _runtime(db, tmp_path)
    rt.clock = ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    app = create_app(rt)
    answers: list[int] = []
    checked: list[int] = []
    real = accounts.verify_password

    def try_once() -> None:
        # a client of its own: a browser, or a script's connection, per try
        answers.append(sign_in(TestClient(app), "ada", "wrong-password-99").status_code)

    def while_checking(password: str, stored: str) -> bool:
        checked.append(1)
        if len(checked) < 10:  # the next try arrives during this check, which waits for it
            other = threading.Thread(target=try_once)
            other.start()
            other.join(30)
            assert not other.is_alive()
        return real(password, stored)

    monkeypatch.setattr(accounts, "verify_password", while_checking)
    try_once()
    assert len(checked) == 5
    # the innermost answers first: the sixth waits, the five checked fail
    assert answers == [429, 401, 401, 401, 401, 401]
    monkeypatch.setattr(accounts, "verify_password", real)
    with TestClient(app) as client:  # their five failures count as any five do
        refused = sign_in(client, "ada", "a-long-password-1")
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"


def test_a_username_in_two_schools_must_name_the_school(db: Database, tmp_path: Path) -> None:
    """Adding `ada` to a second school must not lock the first one's `ada` out: naming the
    school opens either. Without a school id no account of a name held in several schools is
    tried: even the right password fails, asking for the school in the words an unknown name
    or a wrong password gets, naming no school. A name held in one school needs no school."""
    rt = _runtime(db, tmp_path)
    create_tenant(rt.uow, rt.clock, "northwind", "Northwind")
    accounts.create_user(rt.uow, rt.clock, tenant_id="northwind", username="ada",
                         password="northwind-password", role=UserRole.ADMIN)  # fmt: skip
    accounts.create_user(rt.uow, rt.clock, tenant_id="northwind", username="grace",
                         password="grace-password-1", role=UserRole.ADMIN)  # fmt: skip
    with rt.uow() as uow:
        uow.courses.upsert(Course("uni", "bio", "Uni Biology"))
        uow.courses.upsert(Course("northwind", "chem", "Northwind Chemistry"))
        uow.commit()
    app = create_app(rt)

    def who(client: TestClient) -> str:
        page = client.get("/console/")
        assert page.status_code == 200, page.text
        return "northwind" if "Northwind Chemistry" in page.text else "uni"

    with TestClient(app) as uni, TestClient(app) as north, TestClient(app) as grace:
        r = sign_in(uni, "ada", "a-long-password-1", tenant="uni", follow_redirects=False)
        assert r.status_code == 303
        assert who(uni) == "uni"
        r = sign_in(north, "ada", "northwind-password", tenant="northwind", follow_redirects=False)
        assert r.status_code == 303
        assert who(north) == "northwind"
        assert (
            sign_in(grace, "grace", "grace-password-1", follow_redirects=False).status_code == 303
        )
        assert who(grace) == "northwind"
    with TestClient(app) as client:
        nobody = sign_in(client, "nobody", "wrong-password-99")
        assert nobody.status_code == 401
        assert (
            "That username and password do not match. If your username is an account in "
            "several schools on this server, enter your school id below." in nobody.text
        )
        assert "<details open>" in nobody.text
        for username, password in [
            ("ada", "a-long-password-1"),
            ("ada", "northwind-password"),
            ("ada", "wrong-password-99"),
            ("grace", "wrong-password-99"),
        ]:
            failed = sign_in(client, username, password)
            assert failed.status_code == 401, (username, password)
            same = failed.text.replace(f'value="{username}"', 'value="nobody"')
            assert same == nobody.text, (username, password)
            assert "northwind" not in failed.text.lower()
        named = sign_in(client, "ada", "a-long-password-1", tenant="uni")
        assert named.status_code == 200 and who(client) == "uni"
        wrong = sign_in(client, "ada", "wrong-password-99", tenant="uni")
        assert wrong.status_code == 401
        assert "That username and password do not match." in wrong.text
        assert "enter your school id" not in wrong.text


@pytest.mark.parametrize("password", ["wrong-password-99", "a-long-password-1", "school-4-pass"])
@pytest.mark.parametrize("username", ["ada", "nobody"])
def test_a_sign_in_hashes_once_however_many_schools_hold_the_name(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, username: str, password: str
) -> None:
    """A name held in five schools, signed in without a school id, costs one password hash,
    as an unknown name does, whether the password is right in one school, in none, or in
    several: choosing a common name does not multiply the work of a try."""
    rt = _runtime(db, tmp_path)
    for n in range(1, 5):
        create_tenant(rt.uow, rt.clock, f"school{n}", f"School {n}")
        own = "a-long-password-1" if n < 3 else f"school-{n}-pass"
        accounts.create_user(rt.uow, rt.clock, tenant_id=f"school{n}", username="ada", password=own)
    accounts._unknown_user_hash()  # made once per process, before any attempt
    verified: list[str] = []
    real = accounts.verify_password

    def counting(password: str, stored: str) -> bool:
        verified.append(stored)
        return real(password, stored)

    monkeypatch.setattr(accounts, "verify_password", counting)
    calls: list[int] = []
    real_scrypt = hashlib.scrypt

    def scrypt(*args: Any, **kw: Any) -> bytes:
        calls.append(1)
        return real_scrypt(*args, **kw)

    monkeypatch.setattr(accounts.hashlib, "scrypt", scrypt)
    assert accounts.authenticate(rt.uow, username, password) is None
    assert (len(verified), len(calls)) == (1, 1)
    assert verified == [accounts._unknown_user_hash()]
    verified.clear()
    calls.clear()
    named = accounts.authenticate(rt.uow, username, password, "school4")
    assert (named is not None) == (username == "ada" and password == "school-4-pass")
    assert (len(verified), len(calls)) == (1, 1)


def test_a_username_in_two_schools_is_throttled_without_the_school(
    db: Database, tmp_path: Path
) -> None:
    """Without a school id, failures on a name held in two schools count under the name, as
    for an unknown name: after five the sixth try waits, whatever its password."""
    rt = _runtime(db, tmp_path)
    create_tenant(rt.uow, rt.clock, "northwind", "Northwind")
    accounts.create_user(rt.uow, rt.clock, tenant_id="northwind", username="ada",
                         password="northwind-password")  # fmt: skip
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
    in by naming her school. Without a school id no account is tried: she is asked for it."""
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
        asked = sign_in(ada, "ada", "a-long-password-1")
        assert asked.status_code == 401 and "enter your school id below" in asked.text
        assert sign_in(ada, "ada", "a-long-password-1", tenant="uni").status_code == 200
