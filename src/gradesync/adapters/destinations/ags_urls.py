"""URLs an AGS client may call, and the small URL rules AGS needs.

SSRF guard: every URL the tool calls for a platform (token URL, line items container from a
launch claim, line item ids the platform returns, Link next URLs) must be on one of that
platform's registered origins: the scheme, host and port of its issuer, auth, token and key
set URLs, plus the hosts an admin lists in `allowed_hosts` (Canvas cloud serves AGS from the
school's own domain, not from its issuer). Nothing a launch or a response supplies can point
the tool at another address.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

Origin = tuple[str, str, int]  # scheme, lower-case host, port

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REGISTERED_URL_FIELDS = ("issuer", "auth_login_url", "auth_token_url", "key_set_url")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ForeignUrl(ValueError):
    """A URL is not on the platform's registered origins (or is not an http(s) URL)."""

    def __init__(self, url: str, field: str, allowed: Iterable[Origin]) -> None:
        shown = ", ".join(sorted(_fmt(o) for o in allowed)) or "none"
        super().__init__(
            f"{field}: {url!r} is not on the platform's registered origins ({shown}); if the "
            "platform really serves it, add its host to the registration's allowed_hosts"
        )
        self.url = url
        self.field = field


def _fmt(origin: Origin) -> str:
    scheme, host, port = origin
    default = _DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{host}" if port == default else f"{scheme}://{host}:{port}"


def origin_of(url: str) -> Origin | None:
    """(scheme, host, port) of an absolute http(s) URL without credentials; else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def is_loopback(url: str) -> bool:
    origin = origin_of(url)
    return origin is not None and origin[1] in _LOOPBACK


def allowed_origins(config: Mapping[str, Any]) -> frozenset[Origin]:
    """The origins of a platform registration (see the module docstring)."""
    out: set[Origin] = set()
    for name in _REGISTERED_URL_FIELDS:
        value = config.get(name)
        if isinstance(value, str) and (origin := origin_of(value)) is not None:
            out.add(origin)
    for entry in config.get("allowed_hosts") or ():
        origin = parse_allowed_host(str(entry))
        if origin is not None:
            out.add(origin)
    return frozenset(out)


def parse_allowed_host(entry: str) -> Origin | None:
    """`school.instructure.com` (https, port 443) or a full origin `http://127.0.0.1:8080`."""
    entry = entry.strip()
    if "://" in entry:
        origin = origin_of(entry)
        return origin if origin is not None and urlsplit(entry).path in ("", "/") else None
    if not re.fullmatch(r"[A-Za-z0-9.-]+(:\d{1,5})?", entry):
        return None
    return origin_of("https://" + entry)


def check_url(url: str, allowed: frozenset[Origin], field: str) -> str:
    """Return `url` if it is on an allowed origin; raise ForeignUrl otherwise."""
    origin = origin_of(url)
    if origin is None or origin not in allowed:
        raise ForeignUrl(url, field, allowed)
    return url


@lru_cache(maxsize=4096)  # called for every score sent, with one URL per column
def scores_url(line_item_url: str) -> str:
    """`{lineitem}/scores`, with `/scores` inserted before any query string (Canvas)."""
    return _sub_path(line_item_url, "scores")


def results_url(line_item_url: str) -> str:
    return _sub_path(line_item_url, "results")


def _sub_path(url: str, leaf: str) -> str:
    parts = urlsplit(url)
    path = parts.path.rstrip("/") + "/" + leaf
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def with_query(url: str, params: Mapping[str, str]) -> str:
    """Add query parameters to a URL that may already carry some (kept as given)."""
    parts = urlsplit(url)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query and extra else (parts.query or extra)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


# Link: <url>; rel="next", <url>; rel=next. Some platforms emit typographic quotes.
_LINK = re.compile(r"<\s*([^>]*?)\s*>\s*((?:;\s*[^,<]*)*)")
_REL = re.compile(r"""rel\s*=\s*["'\u201c\u201d\u2018\u2019]?([^"'\u201c\u201d\u2018\u2019;,]+)""")


def next_link(header: str | None) -> str | None:
    """The rel="next" URL of a Link header, exactly as given; None when there is none."""
    return link_rel(header, "next")


def link_rel(header: str | None, wanted: str) -> str | None:
    """The URL of a Link header with relation `wanted` (e.g. "differences"), as given."""
    if not header:
        return None
    for match in _LINK.finditer(header):
        url, params = match.group(1), match.group(2)
        for rel in _REL.finditer(params):
            if wanted in rel.group(1).lower().split():
                return url
    return None
