"""LTI 1.3 fixtures: the sandbox LMS and gradesync's app, each on loopback over real HTTP,
and a browser-like client that walks the OIDC login and launch the way an LMS iframe does."""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from html import unescape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.destinations.registry import DestinationContext
from gradesync.config import Settings
from gradesync.domain.model import Activity, Course, Destination, Tenant
from gradesync.lti import registration as reg
from gradesync.lti.claims import AGS_SCOPES
from gradesync.runtime import Runtime
from gradesync.sandbox.config import SandboxConfig
from gradesync.sandbox.testing import RunningSandbox, bind, running_sandbox, serve_in_thread
from gradesync.services.lti.keys import ToolKeyStore
from gradesync.web.app import create_app
from tests.conftest import TEST_SECRET

_ids = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_ids)}"


@pytest.fixture(scope="module")
def lms() -> Iterator[RunningSandbox]:
    """One generic-mode sandbox per module; tests use unique course, user and client ids."""
    with running_sandbox(SandboxConfig(page_size=2)) as sandbox:
        yield sandbox


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


def add_tenant(db: Database, tenant_id: str) -> None:
    with db.uow() as uow:
        if uow.tenants.get(tenant_id) is None:
            uow.tenants.upsert(Tenant(tenant_id, tenant_id.upper()), datetime.now(UTC))
            uow.commit()


def add_course(
    db: Database, tenant_id: str, course_id: str, *activities: tuple[str, str, float]
) -> None:
    with db.uow() as uow:
        uow.courses.upsert(Course(tenant_id, course_id, f"Course {course_id}"))
        for aid, title, points in activities:
            uow.activities.upsert(Activity(tenant_id, aid, course_id, title, points))
        uow.commit()


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
    add_tenant(gs.db, tenant_id)
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
        dest = reg.save_platform(uow, tenant_id, data, datetime.now(UTC))
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


_INPUT = re.compile(r"""<input[^>]*name=["']([^"']+)["'][^>]*value=["']([^"']*)["']""")
_ACTION = re.compile(r"""<form[^>]*action=["']([^"']+)["']""")


def parse_form(page: str) -> tuple[str, dict[str, str]]:
    action = _ACTION.search(page)
    assert action is not None, page[:500]
    return unescape(action.group(1)), {unescape(k): unescape(v) for k, v in _INPUT.findall(page)}


class Browser:
    """Follows the LMS's launch the way a browser would: GET the tool's login URL, follow the
    redirect to the platform, submit the auto-posting form back to the tool."""

    def __init__(self) -> None:
        self.http = httpx.Client(timeout=10.0, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def login(self, login_url: str) -> tuple[str, dict[str, str]]:
        """Returns the form the platform auto-posts to the tool (action, fields)."""
        resp = self.http.get(login_url)
        assert resp.status_code == 302, resp.text
        auth = self.http.get(resp.headers["location"])
        assert auth.status_code == 200, auth.text
        return parse_form(auth.text)

    def post(self, url: str, data: dict[str, Any]) -> httpx.Response:
        return self.http.post(url, data=data, headers={"Accept": "application/json"})

    def launch(self, lms: RunningSandbox, **spec: Any) -> httpx.Response:
        started = lms.admin.start_launch(**spec)
        action, fields = self.login(started["url"])
        return self.post(action, fields)


@pytest.fixture
def browser() -> Iterator[Browser]:
    b = Browser()
    yield b
    b.close()
