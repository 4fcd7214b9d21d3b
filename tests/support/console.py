"""Signing in to the console the way a browser does: the sign-in form first (it carries the
session's CSRF token), then the post."""

from __future__ import annotations

import re
from typing import Any, Protocol


class _Client(Protocol):
    def get(self, url: str, **kwargs: Any) -> Any: ...

    def post(self, url: str, **kwargs: Any) -> Any: ...


def form_token(html: str) -> str:
    """The CSRF token a console form carries."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "console forms carry a CSRF token"
    return found.group(1)


def sign_in(
    client: _Client,
    username: str,
    password: str,
    *,
    tenant: str = "",
    next_url: str | None = None,
    **kwargs: Any,
) -> Any:
    """Open the sign-in form, then post it with its token. Returns the post's response."""
    form = client.get("/console/login", params={"next": next_url} if next_url else None)
    data = {"username": username, "password": password, "tenant": tenant}
    if next_url:
        data["next"] = next_url
    return client.post("/console/login", data={**data, "csrf": form_token(form.text)}, **kwargs)
