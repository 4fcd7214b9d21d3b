"""The API reference in Chromium: /redoc and /docs ask nothing of any other host (docs/api.md:
"from assets gradesync serves itself, so they work without internet")."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import LiveConsole

pytestmark = pytest.mark.browser

RENDERED = 30_000  # ms: Redoc parses a 1 MB bundle and the document; slow on a busy machine


def _elsewhere(page: Any, console: LiveConsole) -> list[str]:
    """Requests to another host, recorded and refused (as offline) while the page is open."""
    ours = urlsplit(console.base_url).netloc
    asked: list[str] = []

    def route(r: Any) -> None:
        url = r.request.url
        if urlsplit(url).scheme in ("http", "https") and urlsplit(url).netloc != ours:
            asked.append(url)
            r.abort()
        else:
            r.continue_()

    page.route("**/*", route)
    return asked


@pytest.mark.parametrize("path", ["/redoc", "/docs"])
def test_the_api_reference_loads_nothing_from_another_host(
    page: Any, live_console: LiveConsole, path: str
) -> None:
    asked = _elsewhere(page, live_console)
    page.goto(live_console.url(path))
    # rendered: the operations are listed (Redoc's menu and footer, Swagger UI's sections)
    expect(page.get_by_text("/api/v1/ingest").first).to_be_attached(timeout=RENDERED)
    if path == "/redoc":
        expect(page.get_by_role("link", name="API docs by Redocly")).to_be_visible(timeout=RENDERED)
    # the footer's logo, fetched once the menu is drawn, is a request like any other: wait
    # until the page asks for nothing more
    page.wait_for_load_state("networkidle")
    assert asked == []
