"""A mapping that keeps only its most recently used entries: the delivery caches hold what
a process is sending to now, not every course and column it ever served (a vendor's
thousands of platforms would otherwise keep each one's links in memory for good)."""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Recent(OrderedDict[K, V]):
    """At most `size` entries; reading or writing one makes it the most recent, and a new
    entry beyond `size` pushes out the least recent. An entry pushed out is read again
    from the database (or asked of the destination) when it is next needed."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        if key not in self:
            return default
        self.move_to_end(key)
        return super().__getitem__(key)

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
