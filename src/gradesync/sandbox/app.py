"""The sandbox ASGI application: an LMS (LTI 1.3 + AGS + NRPS, LTI 1.1 outcomes) and a SIS
(OneRoster 1.2 gradebook) in one Starlette app, with fault injection in front.

It imports nothing from gradesync outside this package: a bug shared by the sender and this
receiver would hide itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from . import admin, ags, client_storage, lti11, lti13, nrps, oneroster, registration
from .config import SandboxConfig
from .context import Sandbox


class SandboxApp(Starlette):
    """Starlette with the fault layer outermost, so it sees the server's own `send` (needed
    to abort the connection for an injected reset)."""

    sandbox: Sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        await self.sandbox.faults.handle(scope, receive, send, super().__call__)


def create_app(config: SandboxConfig | None = None) -> SandboxApp:
    """Build a sandbox. Without `config.base_url` the issuer follows the request's Host."""
    sandbox = Sandbox(config or SandboxConfig())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        sandbox.faults.release.set()  # let held requests finish so shutdown is prompt

    app = SandboxApp(
        routes=[
            *lti13.routes,
            *client_storage.routes,
            *ags.routes,
            *nrps.routes,
            *registration.routes,
            *lti11.routes,
            *oneroster.routes,
            *admin.routes,
        ],
        lifespan=lifespan,
    )
    app.sandbox = sandbox
    app.state.sandbox = sandbox
    return app
