"""Run the sandbox (or any ASGI app) on loopback in a background thread, for tests and demos.

with running_sandbox(SandboxConfig(mode="canvas")) as sandbox:
    sandbox.admin.add_course(id="c1", learners=["u1"])
    httpx.get(sandbox.base_url + "/_sandbox/inspect")
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from .app import SandboxApp, create_app
from .config import SandboxConfig
from .context import Sandbox
from .state import SandboxState

STARTUP_TIMEOUT = 10.0


class _Server(uvicorn.Server):
    """uvicorn.Server that signals a threading.Event once it accepts connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.loop = asyncio.get_running_loop()
        self.ready.set()


@dataclass
class ServerHandle:
    base_url: str
    port: int
    server: uvicorn.Server


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


@contextmanager
def serve_in_thread(
    app: Any, host: str = "127.0.0.1", port: int = 0, sock: socket.socket | None = None
) -> Iterator[ServerHandle]:
    """Serve `app` with uvicorn in a daemon thread; yields once it accepts connections.

    Pass an already bound `sock` when the app must know its own URL before it starts.
    """
    sock = sock or bind(host, port)
    host, bound = sock.getsockname()[:2]
    server = _Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=3,
            timeout_keep_alive=30,
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline_left = STARTUP_TIMEOUT
        while not server.ready.wait(timeout=0.05):
            deadline_left -= 0.05
            if not thread.is_alive() or deadline_left <= 0:
                raise RuntimeError("the server did not start (see its log above)")
        yield ServerHandle(base_url=f"http://{host}:{bound}", port=bound, server=server)
    finally:
        release = getattr(getattr(app, "sandbox", None), "faults", None)
        if release is not None and server.loop is not None and not server.loop.is_closed():
            # Held requests (latency, timeouts) end now rather than at their deadline.
            server.loop.call_soon_threadsafe(release.release.set)
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


class AdminError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class SandboxAdmin:
    """A thin client for the /_sandbox admin endpoints (sync httpx)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=10.0)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = self.http.request(method, "/_sandbox" + path, json=body, params=params or None)
        data = response.json() if response.content else None
        if response.status_code >= 400:
            raise AdminError(response.status_code, data)
        return data

    # LMS
    def config(self) -> dict[str, Any]:
        return self.call("GET", "/config")  # type: ignore[no-any-return]

    def set_mode(self, mode: str) -> dict[str, Any]:
        return self.call("PATCH", "/config", {"mode": mode})  # type: ignore[no-any-return]

    def configure(self, **fields: Any) -> dict[str, Any]:
        """PATCH /config: `mode`, `max_page_size`, `line_item_filters`."""
        return self.call("PATCH", "/config", fields)  # type: ignore[no-any-return]

    def seed(self, **seed: Any) -> Any:
        return self.call("POST", "/seed", seed)

    def add_user(self, **user: Any) -> Any:
        return self.call("POST", "/users", user)

    def add_course(self, **course: Any) -> Any:
        return self.call("POST", "/courses", course)

    def patch_course(self, course_id: str, **fields: Any) -> Any:
        return self.call("PATCH", f"/courses/{course_id}", fields)

    def enroll(self, course_id: str, user: str, role: str = "learner") -> Any:
        return self.call("POST", f"/courses/{course_id}/enrollments", {"user": user, "role": role})

    def unenroll(self, course_id: str, user: str, status: str = "Deleted") -> Any:
        """End a membership: the roster lists the member as `status` (Inactive or Deleted)."""
        return self.call("DELETE", f"/courses/{course_id}/enrollments/{user}", status=status)

    def add_resource_link(self, course_id: str, **link: Any) -> Any:
        return self.call("POST", f"/courses/{course_id}/resource_links", link)

    def add_line_item(self, course_id: str, **item: Any) -> dict[str, Any]:
        return self.call("POST", f"/courses/{course_id}/line_items", item)  # type: ignore[no-any-return]

    def patch_line_item(self, course_id: str, item: int, **fields: Any) -> dict[str, Any]:
        return self.call("PATCH", f"/courses/{course_id}/line_items/{item}", fields)  # type: ignore[no-any-return]

    def instructor_grade(
        self, course_id: str, item: int, user: str, score: float | None, comment: str | None = None
    ) -> Any:
        return self.call(
            "POST",
            f"/courses/{course_id}/line_items/{item}/grades",
            {"user": user, "score": score, "comment": comment},
        )

    def registration_token(self) -> dict[str, Any]:
        """A one-time Dynamic Registration token and the OpenID configuration URL."""
        return dict(self.call("POST", "/registration_tokens"))

    def register_tool(self, **tool: Any) -> dict[str, Any]:
        return self.call("POST", "/tools", tool)  # type: ignore[no-any-return]

    def start_launch(self, **launch: Any) -> dict[str, Any]:
        return self.call("POST", "/launches", launch)  # type: ignore[no-any-return]

    def expire_tokens(self, client_id: str | None = None, service: str = "all") -> Any:
        return self.call("POST", "/tokens/expire", {"client_id": client_id, "service": service})

    # LTI 1.1
    def add_lti11_consumer(self, key: str, secret: str) -> Any:
        return self.call("POST", "/lti11/consumers", {"key": key, "secret": secret})

    def lti11_launch(self, **launch: Any) -> dict[str, Any]:
        return self.call("POST", "/lti11/launches", launch)  # type: ignore[no-any-return]

    # SIS
    def add_sis(self, kind: str, **obj: Any) -> Any:
        """kind: clients, terms, students, classes or categories."""
        return self.call("POST", f"/sis/{kind}", obj)

    def set_sis_profile(self, **profile: Any) -> Any:
        return self.call("PUT", "/sis/profile", profile)

    # faults and inspection
    def set_faults(
        self, faults: dict[str, Any], *, replace: bool = True, rng_seed: int | None = None
    ) -> Any:
        body = dict(faults)
        if rng_seed is not None:
            body["rng_seed"] = rng_seed
        return self.call("PUT" if replace else "PATCH", "/faults", body)

    def clear_faults(self) -> Any:
        return self.call("DELETE", "/faults")

    def counters(self) -> dict[str, dict[str, int]]:
        return self.call("GET", "/counters")  # type: ignore[no-any-return]

    def reset_counters(self) -> Any:
        return self.call("POST", "/counters/reset")

    def tokens_issued(self) -> dict[str, list[dict[str, Any]]]:
        """Access tokens issued since the sandbox started, per client and scope set."""
        return self.call("GET", "/tokens/issued")  # type: ignore[no-any-return]

    def inspect(self, course: str | None = None) -> dict[str, Any]:
        params = {"course": course} if course else {}
        return self.call("GET", "/inspect", **params)  # type: ignore[no-any-return]


@dataclass
class RunningSandbox:
    base_url: str
    app: SandboxApp
    admin: SandboxAdmin

    @property
    def sandbox(self) -> Sandbox:
        return self.app.sandbox

    @property
    def state(self) -> SandboxState:
        """Live state, owned by the server thread: read it, change it through `admin`."""
        return self.app.sandbox.state


@contextmanager
def running_sandbox(config: SandboxConfig | None = None) -> Iterator[RunningSandbox]:
    """A sandbox on 127.0.0.1 with a free port; the issuer is its URL unless configured."""
    config = config or SandboxConfig()
    sock = bind()
    port = sock.getsockname()[1]
    if config.base_url is None:
        config = config.model_copy(update={"base_url": f"http://127.0.0.1:{port}"})
    app = create_app(config)
    with serve_in_thread(app, sock=sock) as handle:
        admin = SandboxAdmin(handle.base_url)
        try:
            yield RunningSandbox(base_url=handle.base_url, app=app, admin=admin)
        finally:
            admin.close()
