"""Activity names as a destination will accept them: a length limit and forbidden characters.

The policy chooses between shortening/cleaning the name and refusing the activity with a
clear reason (an admin may prefer a visible error to a silently renamed column)."""

from __future__ import annotations

from gradesync.domain import reasons
from gradesync.domain.model import NameRule
from gradesync.domain.reasons import Reason

# Pearson's list: names with these break grade sync, especially in Brightspace.
PEARSON_FORBIDDEN_CHARS = '\\/"*<>+=|,%!&'


def name_rules(max_length: int | None, forbidden: str, source: str = "") -> str:
    """The rules a name must meet, in words: "Brightspace's name rules (at most 128
    characters; none of \\ / ...)"."""
    parts = []
    if max_length is not None:
        parts.append(f"at most {max_length} characters")
    if forbidden:
        parts.append("none of " + " ".join(forbidden))
    who = f"{source}'s" if source else "this destination's"
    return f"{who} name rules ({'; '.join(parts) or 'none'})"


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
    title: str, rule: NameRule, max_length: int | None, forbidden: str, source: str = ""
) -> str | Reason:
    """The name to send, or the reason the activity cannot be sent under `rule`. `source`
    names whose rules these are, for the reason."""
    if rule is NameRule.REFUSE:
        rules = name_rules(max_length, forbidden, source)
        bad = forbidden_in(title, forbidden)
        if bad:
            return reasons.name_forbidden_chars(title, bad, rules)
        if max_length is not None and len(title) > max_length:
            return reasons.name_too_long(title, len(title), max_length, rules)
        if not title.strip():
            return reasons.name_empty(title)
        return title
    cleaned = clean_name(title, max_length, forbidden)
    if not cleaned:
        return reasons.name_empty(title)
    return cleaned


def renamed_note(title: str, name: str, max_length: int | None, forbidden: str, source: str) -> str:
    """Why the column is not named as the activity is (the policy's `shorten` rule)."""
    rules = name_rules(max_length, forbidden, source)
    return f"The column is named {name!r}, not {title!r}: the name was shortened to meet {rules}."
