"""Activity names as a destination will accept them: a length limit and forbidden characters.

The policy chooses between shortening/cleaning the name and refusing the activity with a
clear reason (an admin may prefer a visible error to a silently renamed column)."""

from __future__ import annotations

from gradesync.domain import reasons
from gradesync.domain.model import NameRule
from gradesync.domain.reasons import Reason

# Pearson's list: names with these break grade sync, especially in Brightspace.
PEARSON_FORBIDDEN_CHARS = '\\/"*<>+=|,%!&'


def forbidden_in(title: str, forbidden: str) -> str:
    """The forbidden characters present in `title`, each once, in order of appearance."""
    seen: list[str] = []
    for ch in title:
        if ch in forbidden and ch not in seen:
            seen.append(ch)
    return "".join(seen)


def clean_name(title: str, max_length: int | None, forbidden: str) -> str:
    """Replace forbidden characters by spaces, collapse runs of whitespace, then truncate.

    A space keeps words apart ("Ch. 3/4" becomes "Ch. 3 4", not "Ch. 34"). Truncation cuts
    at the limit and drops trailing spaces, so the result is never longer than `max_length`."""
    replaced = "".join(" " if ch in forbidden else ch for ch in title)
    collapsed = " ".join(replaced.split())
    if max_length is not None and len(collapsed) > max_length:
        collapsed = collapsed[:max_length].rstrip()
    return collapsed


def destination_name(
    title: str, rule: NameRule, max_length: int | None, forbidden: str
) -> str | Reason:
    """The name to send, or the reason the activity cannot be sent under `rule`."""
    if rule is NameRule.REFUSE:
        bad = forbidden_in(title, forbidden)
        if bad:
            return reasons.name_forbidden_chars(title, bad)
        if max_length is not None and len(title) > max_length:
            return reasons.name_too_long(title, len(title), max_length)
        if not title.strip():
            return reasons.name_empty(title)
        return title
    cleaned = clean_name(title, max_length, forbidden)
    if not cleaned:
        return reasons.name_empty(title)
    return cleaned
