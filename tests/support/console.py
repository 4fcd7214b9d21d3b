"""Signing in to the console the way a browser does: the sign-in form first (it carries the
session's CSRF token), then the post."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any, Protocol


class _Client(Protocol):
    def get(self, url: str, **kwargs: Any) -> Any: ...

    def post(self, url: str, **kwargs: Any) -> Any: ...


def form_token(html: str) -> str:
    """The CSRF token a console form carries."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "console forms carry a CSRF token"
    return found.group(1)


class _Fields(HTMLParser):
    """The named fields of a page's forms, each with the value a browser would send."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.select: str | None = None
        self.textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "input" and "name" in a:
            self.fields[a["name"]] = a.get("value", "")
        elif tag == "select":
            self.select = a["name"]
        elif tag == "option" and self.select:
            # the first option unless another is selected
            if "selected" in a or self.select not in self.fields:
                self.fields[self.select] = a["value"]
        elif tag == "textarea":
            self.textarea = a["name"]
            self.fields[self.textarea] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None

    def handle_data(self, data: str) -> None:
        if self.textarea:
            self.fields[self.textarea] += data


def form_fields(html: str) -> dict[str, str]:
    """What the page's forms send as the page fills them (a browser sends every field): the
    page should hold one form with fields, besides Sign out's token."""
    parser = _Fields()
    parser.feed(html)
    return parser.fields


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
