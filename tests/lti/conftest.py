"""LTI 1.3 fixtures: gradesync's app on loopback over real HTTP, registered with the sandbox
LMS (`lms`) as two admins would; the LMS and the browser are shared (tests/support/lti.py)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.destinations.registry import DestinationContext
from gradesync.config import Settings
from gradesync.domain.model import Destination
from gradesync.lti import registration as reg
from gradesync.lti.claims import AGS_SCOPES
from gradesync.runtime import Runtime
from gradesync.sandbox.testing import RunningSandbox, bind, serve_in_thread
from gradesync.services.lti import platforms
from gradesync.services.lti.keys import ToolKeyStore
from gradesync.testing import TEST_SECRET, add_tenant, seeding, unique
from gradesync.web.app import create_app
from tests.support.lti import Browser, parse_form

__all__ = ["Browser", "parse_form", "unique"]  # what this directory's tests import from here


@dataclass
class Gradesync:
    base_url: str
    db: Database
    runtime: Runtime
    app: Any = None

    @property
    def keys(self) -> ToolKeyStore:
        return ToolKeyStore(self.db.uow)

    def rejections(self, tenant_id: str | None = None) -> list[Any]:
        with self.db.uow() as uow:
            return list(uow.launches.refusals(tenant_id=tenant_id))


def start_gradesync(db: Database, tmp_path: Path) -> Iterator[Gradesync]:
    sock = bind()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        database_url=db.url, secret_key=TEST_SECRET, data_dir=tmp_path / "data", base_url=base
    )
    runtime = Runtime(settings=settings, db=db)
    app = create_app(runtime)
    with serve_in_thread(app, sock=sock) as handle:
        yield Gradesync(handle.base_url, db, runtime, app)


@pytest.fixture
def gradesync(db: Database, tmp_path: Path) -> Iterator[Gradesync]:
    """gradesync on `db` (SQLite and PostgreSQL)."""
    yield from start_gradesync(db, tmp_path)


@pytest.fixture
def gradesync_lite(sqlite_db: Database, tmp_path: Path) -> Iterator[Gradesync]:
    """gradesync on SQLite only, for tests that are about the protocol, not storage."""
    yield from start_gradesync(sqlite_db, tmp_path)


@pytest.fixture
async def context(gradesync_lite: Gradesync) -> AsyncIterator[DestinationContext]:
    async with httpx.AsyncClient() as http:
        yield DestinationContext(http=http, tool_keys=gradesync_lite.keys)


def add_course(
    db: Database, tenant_id: str, course_id: str, *activities: tuple[str, str, float]
) -> None:
    seeding.add_course(db.uow, tenant_id, course_id, *activities)


@dataclass
class Setup:
    tenant_id: str
    platform_id: str
    client_id: str
    deployment_id: str
    platform: Destination


def connect(
    lms: RunningSandbox,
    gs: Gradesync,
    *,
    tenant_id: str | None = None,
    profile: str = "generic",
    scopes: list[str] | None = None,
    tool_scopes: list[str] | None = None,
    **extra: Any,
) -> Setup:
    """Register gradesync in the sandbox LMS and the LMS in gradesync, as two admins would."""
    tenant_id = tenant_id or unique("t")
    client_id = unique("client-")
    deployment_id = unique("dep-")
    add_tenant(gs.db.uow, tenant_id)
    lms.admin.register_tool(
        client_id=client_id,
        deployment_id=deployment_id,
        jwks_url=gs.base_url + "/lti/jwks.json",
        oidc_login_url=gs.base_url + "/lti/login",
        redirect_uris=[gs.base_url + "/lti/launch"],
        target_link_uri=gs.base_url + "/lti/launch",
        deep_link_url=gs.base_url + "/lti/launch",
        scopes=tool_scopes or list(AGS_SCOPES),
    )
    cfg = lms.admin.config()
    data = {
        "id": unique("lms-"),
        "issuer": cfg["issuer"],
        "client_id": client_id,
        "deployment_ids": [deployment_id],
        "auth_login_url": cfg["authorization_url"],
        "auth_token_url": cfg["token_url"],
        "key_set_url": cfg["jwks_url"],
        "profile": profile,
        **({"scopes": scopes} if scopes else {}),
        **extra,
    }
    with gs.db.uow() as uow:
        dest = platforms.save_platform(uow, reg.platform_of(tenant_id, data), datetime.now(UTC))
        uow.commit()
    return Setup(tenant_id, dest.id, client_id, deployment_id, dest)


class KeysProxy:
    """A platform's key set URL in front of the sandbox's. `hang`: it answers 503 only once
    released (a hung key set). `hold`: it serves the keys only once released (a platform slow
    to serve them). `requests` counts the fetches."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.hang = False
        self.hold = False
        self.requests = 0
        self.release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.requests += 1
                if proxy.hang:
                    proxy.release.wait(10.0)  # longer than gradesync waits
                    body, status = b"{}", 503
                else:
                    if proxy.hold:
                        proxy.release.wait(30.0)
                    upstream = httpx.get(proxy.upstream, timeout=5.0)
                    body, status = upstream.content, upstream.status_code
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # gradesync gave up waiting and closed the connection

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
