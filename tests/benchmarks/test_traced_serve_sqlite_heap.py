"""`--malloc-stats` (benchmarks/traced_serve.py): SQLite's own heap is read from the library
the sqlite3 module is linked against, and is said unavailable (None, not 0) when the library
reached is not the one the module reports."""

from __future__ import annotations

import sqlite3

import pytest

from benchmarks import traced_serve


def test_sqlite_heap_is_read_from_the_library_the_module_uses() -> None:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t (x)")
        conn.executemany("INSERT INTO t VALUES (?)", [("x" * 1000,)] * 2000)
        used = traced_serve._sqlite_memory_mb()
        assert used is not None and used > 0  # this connection's page cache, at least
    finally:
        conn.close()


def test_sqlite_heap_is_unavailable_when_the_library_is_not_the_modules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the library reached answers its own version: one the module does not report is
    # another copy, whose heap is not the module's
    monkeypatch.setattr(sqlite3, "sqlite_version", "0.0.1")
    assert traced_serve._sqlite_memory_mb() is None
