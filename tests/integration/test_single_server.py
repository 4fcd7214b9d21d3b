"""One process serves a SQLite file: a second embedded worker on it refuses to start, and
can start once the first has stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradesync.config import Settings
from gradesync.runtime import DatabaseInUse, Runtime
from gradesync.testing import TEST_SECRET


def _runtime(folder: Path) -> Runtime:
    return Runtime.create(Settings(data_dir=folder, secret_key=TEST_SECRET), migrate=True)


async def test_a_second_worker_on_one_sqlite_file_refuses_until_the_first_stops(
    tmp_path: Path,
) -> None:
    first, second = _runtime(tmp_path), _runtime(tmp_path)
    try:
        await first.start_worker()
        with pytest.raises(DatabaseInUse, match=r"another gradesync serve \(pid \d+\)"):
            await second.start_worker()
        assert second.worker is None  # refused before it took anything
        await first.stop_worker()
        await second.start_worker()
        assert second.worker is not None
    finally:
        await first.stop_worker()
        await second.stop_worker()
        first.close()
        second.close()


def test_other_sqlite_files_and_postgres_are_not_claimed(tmp_path: Path) -> None:
    a, b = _runtime(tmp_path / "a"), _runtime(tmp_path / "b")
    try:
        a.claim_database()
        b.claim_database()  # another file: no conflict
    finally:
        a.close()
        b.close()
