"""Shared fixtures. Storage tests run on SQLite and on PostgreSQL (`db` is parametrised).

Fixtures more than one test directory uses live here or in the modules of tests/support
loaded below (the JSON API, the CLI, the sandbox LMS with a browser, a served gradesync);
test modules import their helper classes from tests.support, never from another
directory's conftest. Clocks, waiting, the destination double and seeding come from
`gradesync.testing`.

PostgreSQL comes from GRADESYNC_TEST_POSTGRES_URL (`make test` starts a local server when one
is installed). Without it PostgreSQL cases are skipped, unless GRADESYNC_REQUIRE_POSTGRES=1
(as in CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import fastapi.dependencies.models
import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from gradesync.adapters.db.database import Database
from gradesync.adapters.db.schema import metadata
from gradesync.testing import TEST_SECRET

# pytest-xdist's workers start with COLUMNS=80, and rich reads it once, when the CLI's
# consoles are made at import: every table printed in-process would stay 80 wide whatever a
# test sets. Without it the consoles read COLUMNS when they print (tests that need a width
# set it, in-process or in a subprocess's environment).
os.environ.pop("COLUMNS", None)

pytest_plugins = [
    "tests.support.api",
    "tests.support.cli",
    "tests.support.lti",
    "tests.support.served",
]

# The tests' LMSs and SISs (the sandbox, the doubles) listen on this machine: every test
# process and the servers it starts may send requests to loopback, and nowhere else that is
# not public. The outbound guard's own tests set their policy explicitly.
os.environ.setdefault("GRADESYNC_OUTBOUND_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")


# FastAPI remembers what kind of function each endpoint is, in caches keyed by the function
# (up to 4096 entries each). An app's own closures (its API reference pages, the LTI launch
# route) are new functions per app and keep the app alive, with its Runtime and database: a
# process serves one app, but the tests build hundreds, about 3 MB each.
_ENDPOINT_CACHES = (
    fastapi.dependencies.models._is_gen_callable_cached,
    fastapi.dependencies.models._is_async_gen_callable_cached,
    fastapi.dependencies.models._is_coroutine_callable_cached,
)


@pytest.fixture(autouse=True)
def _apps_not_kept() -> Iterator[None]:
    """The apps a test built are freed when it ends."""
    yield
    for cache in _ENDPOINT_CACHES:
        cache.cache_clear()


def _postgres_url_or_skip() -> str:
    url = os.environ.get("GRADESYNC_TEST_POSTGRES_URL")
    if url:
        return url
    if os.environ.get("GRADESYNC_REQUIRE_POSTGRES") == "1":
        pytest.fail("GRADESYNC_REQUIRE_POSTGRES=1 but GRADESYNC_TEST_POSTGRES_URL is not set")
    pytest.skip("PostgreSQL not available (set GRADESYNC_TEST_POSTGRES_URL)")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """Each pytest-xdist worker gets a database of its own, made beside the configured one."""
    url = _postgres_url_or_skip()
    worker_id = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker_id:
        return url
    base = make_url(url)
    name = f"{base.database}_{worker_id}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            if exists is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite:///{path}", TEST_SECRET)
    db.upgrade()
    db.dispose()
    return path


@pytest.fixture(scope="session")
def _postgres_migrated(postgres_url: str) -> str:
    db = Database(postgres_url, TEST_SECRET)
    with db.engine.begin() as conn:  # start from nothing: drop what an earlier run left
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    db.upgrade()
    db.dispose()
    return postgres_url


def _truncate_postgres(db: Database) -> None:
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    try:
        with db.engine.begin() as conn:
            # a session an earlier test left in a transaction would make this wait for ever
            conn.execute(text("SET LOCAL lock_timeout = '60s'"))
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    except OperationalError as exc:
        with db.engine.connect() as conn:
            others = conn.execute(
                text(
                    "SELECT pid, state, xact_start, left(query, 200) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).all()
        pytest.fail(f"emptying the test database waited on other sessions: {others}\n{exc}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database URL on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "gradesync.db"
        shutil.copy(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("_postgres_migrated")
        db = Database(url, TEST_SECRET)
        _truncate_postgres(db)
        db.dispose()
        yield url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url, TEST_SECRET)
    yield database
    database.dispose()


@pytest.fixture
def postgres_db(_postgres_migrated: str) -> Iterator[Database]:
    """PostgreSQL only, empty, for tests of its locking."""
    database = Database(_postgres_migrated, TEST_SECRET)
    _truncate_postgres(database)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path, _sqlite_template: Path) -> Iterator[Database]:
    """SQLite only, for tests that are not about storage."""
    path = tmp_path / "gradesync.db"
    shutil.copy(_sqlite_template, path)
    database = Database(f"sqlite:///{path}", TEST_SECRET)
    yield database
    database.dispose()
