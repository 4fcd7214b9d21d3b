"""Small dependencies shared by the API routers."""

from __future__ import annotations

from fastapi import Request

from gradesync.runtime import Runtime


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt
