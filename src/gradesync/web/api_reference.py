"""ReDoc (`/redoc`) from the bundle fastapi-offline ships, served by gradesync itself without
the one thing in it that reaches another host: the "API docs by Redocly" footer loads its logo
from cdn.redoc.ly, and no Redoc option turns that footer off. The bundle is served with the
logo image left out (the footer's words and link stay), so the page asks nothing of any other
host and works offline, as Swagger UI (`/docs`) does."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse, Response

BUNDLE = Path(fastapi_offline.__file__).parent / "static" / "redoc.standalone.js"
BUNDLE_URL = "/docs/redoc/redoc.standalone.js"

# The footer's logo in the bundle: `shown ? createElement("img", {..., src: <cdn>}) : null`.
_LOGO = re.compile(r'\w+\?\w+\.createElement\("img",\{alt:"redocly logo",[^}]*\}\):null')


@cache
def redoc_bundle() -> bytes:
    """The Redoc bundle without its footer logo. Raises RuntimeError when a new Redoc loads
    something from its CDN that this does not remove (a test serves it: found at once)."""
    text = _LOGO.sub("null", BUNDLE.read_text(encoding="utf-8"), count=1)
    if "cdn.redoc.ly" in text:
        raise RuntimeError(f"{BUNDLE} still loads from cdn.redoc.ly: update {__name__}")
    return text.encode("utf-8")


def build_router(title: str, openapi_url: str, favicon_url: str) -> APIRouter:
    """`/redoc` and its bundle. URLs are taken below the request's root path, as
    fastapi-offline's `/docs` does."""
    router = APIRouter(include_in_schema=False)

    @router.get("/redoc")
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{title} - ReDoc",
            redoc_js_url=f"{root}{BUNDLE_URL}",
            with_google_fonts=False,
            redoc_favicon_url=f"{root}{favicon_url}",
        )

    @router.get(BUNDLE_URL)
    def redoc_js() -> Response:
        return Response(redoc_bundle(), media_type="text/javascript; charset=utf-8")

    return router
