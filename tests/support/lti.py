"""The LMS side of LTI 1.3 for tests: the sandbox LMS on loopback and a browser-like client
that walks the OIDC login and launch the way an LMS iframe does.

Fixtures shared by every test directory (tests/conftest.py loads this module): `lms` (one
sandbox per module; tests use unique course, user and client ids) and `browser`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import httpx
import pytest

from gradesync.sandbox.config import SandboxConfig
from gradesync.sandbox.testing import RunningSandbox, running_sandbox


@pytest.fixture(scope="module")
def lms() -> Iterator[RunningSandbox]:
    """One generic-mode sandbox per module (two line items a page, so paging is used)."""
    with running_sandbox(SandboxConfig(page_size=2)) as sandbox:
        yield sandbox


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
