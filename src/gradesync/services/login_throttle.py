"""Sign-in throttling: after a few failed sign-ins, an account (and, more leniently, an address)
must wait before the next try, the wait doubling with every further failure up to a cap.

An account is a school and a username: a try counts against the account its password was
checked against (the school named, or the one school holding the name when none is named),
whatever was typed in the school field, and waits while it waits. A try that checks no
account (an unknown name, or one held in several schools with no school named) counts under
the name alone.

Kept in the process's memory: a restart forgets it, and each `gradesync serve` process counts
on its own (with N processes an attacker gets at most N times the tries).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gradesync.services.clock import Clock

MAX_TRACKED = 10_000  # keys kept at most; the oldest are forgotten first


@dataclass
class _Record:
    failures: int = 0
    until: datetime | None = None  # no try before this


@dataclass(frozen=True, slots=True)
class Limit:
    free: int  # failures allowed before waiting
    base_seconds: float = 1.0
    cap_seconds: float = 900.0

    def wait(self, failures: int) -> float:
        over = failures - self.free
        if over < 0:
            return 0.0
        return min(self.cap_seconds, self.base_seconds * 2.0**over)


ACCOUNT = Limit(free=5)
ADDRESS = Limit(free=20)


class LoginThrottle:
    def __init__(self, clock: Clock, account: Limit = ACCOUNT, address: Limit = ADDRESS) -> None:
        self.clock = clock
        self.limits = {"account": account, "address": address}
        self._records: dict[tuple[str, str], _Record] = {}

    @staticmethod
    def keys(username: str, tenants: Sequence[str], address: str | None) -> list[tuple[str, str]]:
        """The counts a try touches: the account of `username` in each of `tenants` (the
        schools whose account the password is checked against), and the address."""
        name = username.strip().lower()
        out = [("account", f"{tenant}\x1f{name}") for tenant in tenants]
        if address:
            out.append(("address", address))
        return out

    def wait_seconds(self, keys: list[tuple[str, str]]) -> int:
        """Whole seconds to wait before another try is heard (0: go ahead)."""
        now = self.clock.now()
        waits = [
            (r.until - now).total_seconds()
            for k in keys
            if (r := self._records.get(k)) is not None and r.until is not None
        ]
        return max(0, math.ceil(max(waits, default=0.0)))

    def failed(self, keys: list[tuple[str, str]]) -> None:
        now = self.clock.now()
        for key in keys:
            record = self._records.pop(key, None) or _Record()
            record.failures += 1
            wait = self.limits[key[0]].wait(record.failures)
            record.until = now + timedelta(seconds=wait) if wait else None
            self._records[key] = record  # last used goes to the end
        while len(self._records) > MAX_TRACKED:
            self._records.pop(next(iter(self._records)))

    def succeeded(self, keys: list[tuple[str, str]]) -> None:
        """A right password clears the account's count (not the address's)."""
        for key in keys:
            if key[0] == "account":
                self._records.pop(key, None)
