"""Optimistic concurrency the HTTP way (RFC 9110): a GET answers the version of what it shows
as an `ETag`; a change sent with `If-Match` is made only while the stored version is one it
names, else `412 Precondition Failed` and nothing changes. `If-Match` is optional: a client
that sends none changes what is stored now, as before."""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi import HTTPException

from gradesync.answers.problems import UrlProblem, problem_json
from gradesync.domain.errors import Conflict, FieldProblem, InvalidInput

HEADER = "If-Match"
ANY = "*"  # as services.sis.ANY_VERSION: any version stored (the object exists)
# one entity-tag of the list, and the comma after it (RFC 9110 8.8.3: etagc is any visible
# character but a double quote)
_TAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*(?:,|$)')
# an empty element of the list, which a recipient ignores (RFC 9110 5.6.1: `"a", , "b"`)
_EMPTY = re.compile(r"\s*,")


def etag(version: str) -> str:
    """A version as an ETag header's value (strong: the same version is the same bytes)."""
    return f'"{version}"'


def if_match(header: str | None) -> frozenset[str] | None:
    """The versions an `If-Match` header accepts (None without one; {ANY} for `*`). A weak
    tag (`W/"..."`) never matches: If-Match compares strongly. A malformed header is refused
    (`etag`), never read as no precondition."""
    if header is None:
        return None
    text = header.strip()
    if text == ANY:
        return frozenset({ANY})
    tags: set[str] = set()
    seen = False  # a tag, weak or strong: a list of empty elements alone names none
    pos = 0
    while pos < len(text):
        empty = _EMPTY.match(text, pos)
        if empty is not None:
            pos = empty.end()
            continue
        m = _TAG.match(text, pos)
        if m is None:
            break
        seen = True
        if not m.group(1):
            tags.add(m.group(2))
        pos = m.end()
    if not seen or pos < len(text):
        raise InvalidInput(
            [
                UrlProblem(
                    HEADER,
                    "etag",
                    'If-Match takes the ETag a GET answered, in its double quotes ("...", '
                    'several separated by commas), or "*".',
                    "header",
                )
            ]
        )
    return frozenset(tags)  # weak tags only: empty, which no version matches


def versions_of(tags: frozenset[str] | None, refused: Callable[[str], FieldProblem | None]) -> None:
    """Refuse strong tags that hold no version of this kind, as the use case's check of a
    version (`refused`) says to an API client, located at the header: a typo or a cut copy is
    told apart from a version changed since (`412 changed`), as the command line does."""
    for tag in sorted(tags or ()):
        if tag != ANY and (problem := refused(tag)) is not None:
            raise InvalidInput([UrlProblem(HEADER, problem.rule, problem.message, "header")])


def stale(exc: Conflict) -> HTTPException:
    """The 412 of a change whose If-Match names a version no longer stored."""
    problem = UrlProblem(
        HEADER,
        "changed",
        f"{exc} Nothing was changed: GET it again (its ETag is the version now), and make "
        "the change from there.",
        "header",
    )
    return HTTPException(status_code=412, detail=[problem_json(problem)])
