"""Natural order for names a person reads in a list: numbers within a name by their value,
so "P 2" comes before "P 10" (string order puts "P 10" and "P 100" first), and letters
without regard to case."""

from __future__ import annotations

import re

_NUMBERS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key: the text's runs of digits by value, the rest case-folded. Each part is
    tagged (0 a number, 1 text) so a number and text at the same place compare by tag,
    never by value."""
    # re.split with a group alternates text (even places) and digits (odd places)
    return tuple(
        (0, int(part)) if i % 2 else (1, part.casefold())
        for i, part in enumerate(_NUMBERS.split(text))
        if part
    )
