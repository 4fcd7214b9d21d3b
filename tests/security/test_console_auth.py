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
from gradesync.domain.model import UserRole
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
