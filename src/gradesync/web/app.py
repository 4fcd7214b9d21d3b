"""The FastAPI application: JSON API, LTI endpoints, console, health and metrics."""

from __future__ import annotations

from fastapi import FastAPI

from gradesync import __version__
from gradesync.runtime import Runtime
from gradesync.web import health


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="gradesync", version=__version__, docs_url="/docs")
    app.state.runtime = runtime
    app.include_router(health.router)
    return app
