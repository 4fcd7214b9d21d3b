from __future__ import annotations

from collections.abc import Iterator

import pytest

from gradesync.adapters.db.database import Database
from gradesync.testing import TEST_SECRET
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


@pytest.fixture
def outage_db(own_postgres: PostgresServer) -> Iterator[Database]:
    """A migrated database on `own_postgres`, which the test may stop (started again after)."""
    db = Database(own_postgres.new_database(), TEST_SECRET)
    db.upgrade()
    try:
        yield db
    finally:
        if not own_postgres.running:
            own_postgres.start()
        db.dispose()
