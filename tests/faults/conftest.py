from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.postgres_server import PostgresServer


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server these tests alone use, and may restart or stop (each test takes
    a database of its own with `new_database()`)."""
    server = PostgresServer()
    try:
        yield server
    finally:
        server.close()
