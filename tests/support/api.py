"""The JSON API in-process: a Runtime on the `db` database (SQLite and PostgreSQL), the app
behind FastAPI's TestClient, and helpers that create tenants with API keys.

The `api` fixture is shared by every test directory (tests/conftest.py loads this module);
build `ApiEnv(db, tmp_path)` yourself for other set-ups. `api_cli` runs the command line in
this process on the same database.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from gradesync.adapters.db.database import Database
from gradesync.config import Settings
from gradesync.domain.model import CourseLink, Destination, DestinationKind, RunScope, UserRole
from gradesync.runtime import Runtime
from gradesync.services import auth, sis
from gradesync.services.accounts import create_user
from gradesync.services.tenants import create_tenant
from gradesync.testing import TEST_SECRET
from gradesync.web.app import create_app
from tests.support.console import sign_in

SIS_BASE = "https://sis.example.org/ims/oneroster/gradebook/v1p2"


@dataclass
class RecordingWaker:
    """Counts wake-ups so tests can check a wake-up follows the commit, not precedes it."""

    db: Database
    keys_calls: int = 0
    delivery_calls: int = 0
    dirty_seen_at_wake: list[int] = field(default_factory=list)
    runs: list[tuple[str, RunScope]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wake_keys(self) -> None:
        # read through a separate connection: only committed rows are visible
        with self.db.uow() as uow:
            n = uow.dirty.count()
        with self.lock:
            self.keys_calls += 1
            self.dirty_seen_at_wake.append(n)

    def wake_run(self, run_id: str, scope: RunScope) -> None:
        with self.lock:
            self.runs.append((run_id, scope))

    def wake_delivery(self) -> None:
        with self.lock:
            self.delivery_calls += 1


class ApiEnv:
    def __init__(self, db: Database, tmp_path: Path) -> None:
        settings = Settings(database_url=db.url, secret_key=TEST_SECRET, data_dir=tmp_path / "data")
        self.db = db
        self.waker = RecordingWaker(db)
        self.runtime = Runtime(settings=settings, db=db, waker=self.waker)
        self.app = create_app(self.runtime)
        self.client = TestClient(self.app)

    def tenant(self, tenant_id: str, *scopes: str) -> str:
        """Create a tenant (if needed) and return a new key with `scopes` (default admin)."""
        rt = self.runtime
        with rt.db.uow() as uow:
            exists = uow.tenants.get(tenant_id) is not None
        if not exists:
            create_tenant(rt.db.uow, rt.clock, tenant_id, tenant_id.title())
        issued = auth.create_key(
            rt.db.uow,
            rt.clock,
            tenant_id,
            f"test-{'-'.join(scopes) or 'admin'}",
            scopes or ("admin",),
        )
        return issued.token

    def console_admin(self, tenant_id: str) -> None:
        """Sign the client in to the console as `ops`, an admin of `tenant_id` (a new user)."""
        create_user(
            self.db.uow, self.runtime.clock, tenant_id=tenant_id, username="ops",
            password="a-long-password-1", role=UserRole.ADMIN,
        )  # fmt: skip
        assert sign_in(self.client, "ops", "a-long-password-1").status_code == 200

    def district_sis(self, **settings: Any) -> str:
        """Tenant t1 with the OneRoster connection `sis`, District SIS, at SIS_BASE, with the
        client gradesync and its secret s3cret, and `settings` besides. Returns an admin key."""
        key = self.tenant("t1", "admin")
        rt = self.runtime
        sis.add_connection(
            rt.db.uow, rt.clock, tenant_id="t1", destination_id="sis", name="District SIS",
            base_url=SIS_BASE, client_id="gradesync", client_secret="s3cret", guard=rt.outbound,
            **settings,
        )  # fmt: skip
        return key

    def destination(self, tenant_id: str, dest_id: str, **config: Any) -> Destination:
        d = Destination(
            tenant_id=tenant_id,
            id=dest_id,
            kind=DestinationKind.LTI13_AGS,
            name=f"LMS {dest_id}",
            config={"issuer": "https://lms.example", **config},
            secret={"client_secret": "s3cret-value"},
        )
        with self.db.uow() as uow:
            uow.destinations.upsert(d, self.runtime.clock.now())
            uow.commit()
        return d

    def link(self, tenant_id: str, dest_id: str, course_id: str) -> None:
        """Connect a course to a destination, as a launch from the LMS course does."""
        with self.db.uow() as uow:
            uow.links.save_course(
                CourseLink(tenant_id, dest_id, course_id, f"https://lms.example/{course_id}")
            )
            uow.commit()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Caller:
    """A client bound to one API key: `c.post("/attempts", json=...)` under /api/v1."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.headers = bearer(token)

    def __getattr__(self, method: str) -> Any:
        def call(path: str, **kw: Any) -> httpx.Response:
            headers = {**self.headers, **kw.pop("headers", {})}
            return getattr(self.client, method)(f"/api/v1{path}", headers=headers, **kw)

        return call


@pytest.fixture
def api(db: Database, tmp_path: Path) -> Iterator[ApiEnv]:
    env = ApiEnv(db, tmp_path)
    with env.client:
        yield env


@pytest.fixture
def api_cli(api: ApiEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    """A runner for `gradesync` in this process on the `api`'s database: its environment as
    an admin's shell would set it (the database, the secret key, a data directory of the
    test's own), and no SIS client secret from the shell's, which `sis add` would read."""
    monkeypatch.setenv("GRADESYNC_DATABASE_URL", api.db.url)
    monkeypatch.setenv("GRADESYNC_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("GRADESYNC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("GRADESYNC_SIS_CLIENT_SECRET", raising=False)
    return CliRunner()


ROSTER: dict[str, Any] = {
    "courses": [
        {"id": "c1", "title": "Biology 101", "time_zone": "America/Chicago"},
    ],
    "activities": [
        {"id": "a1", "course_id": "c1", "title": "Quiz 1", "points_possible": 10},
        {"id": "a2", "course_id": "c1", "title": "Quiz 2", "points_possible": 20},
    ],
    "people": [{"id": "p1", "name": "Ada"}, {"id": "p2", "name": "Grace"}],
    "enrollments": [
        {"course_id": "c1", "person_id": "p1"},
        {"course_id": "c1", "person_id": "p2"},
    ],
}


def attempt(event: str, score: float | None = 7, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source_event_id": event,
        "activity_id": "a1",
        "person_id": "p1",
        "score_given": score,
        "score_maximum": 10,
        "completed_at": "2025-03-01T10:00:00Z",
    }
    body.update(kw)
    return body
