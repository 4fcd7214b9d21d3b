"""One serving process per SQLite file.

The embedded worker assumes it is the only one on its database (it takes back every lease on
start), so a second `gradesync serve` on the same file would undo the first one's work. An
advisory lock on a file beside the database, held while the worker runs, makes the second
refuse to start; the kernel releases it when the process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO


class DatabaseInUse(RuntimeError):
    """Another process already serves this SQLite database (`holder`: its pid)."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


class ServerLock:
    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = database.with_name(database.name + ".serve-lock")
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        fh = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise DatabaseInUse(
                f"another gradesync serve (pid {holder}) is using {self.database}."
                " Stop it, or give this one its own database (GRADESYNC_DATABASE_URL or"
                " GRADESYNC_DATA_DIR); several processes need PostgreSQL.",
                holder,
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._file = fh

    def release(self) -> None:
        fh, self._file = self._file, None
        if fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
