"""An older release on a database a newer release upgraded: `db current` said "behind: run
`gradesync db upgrade`", /readyz said "schema behind", and that release's `db upgrade`
failed with Alembic's traceback. Each now says the schema is newer than the release, and a
command refuses in one line."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from gradesync.adapters.db.database import Database
from gradesync.config import Settings
from gradesync.domain.model import Tenant
from gradesync.runtime import Runtime
from gradesync.testing import TEST_SECRET
from tests.support.cli import GRADESYNC

NEWER = "0999_a_newer_release"


def _gradesync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GRADESYNC, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _upgraded_by_a_newer_release(env: dict[str, str]) -> Path:
    path = Path(env["GRADESYNC_DATABASE_URL"].removeprefix("sqlite:///"))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (NEWER,))
    return path


def test_an_older_release_says_the_schema_is_newer(cli_env: dict[str, str]) -> None:
    _upgraded_by_a_newer_release(cli_env)

    r = _gradesync(cli_env, "db", "current")
    assert r.returncode == 0, r.stderr
    assert f"{NEWER} (newer than this release" in r.stdout, r.stdout

    r = _gradesync(cli_env, "db", "upgrade")
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith(f"error: the database is at {NEWER}, newer than"), r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) <= 2, r.stderr

    # serve on SQLite migrates as it starts: it refuses the same way, without a traceback
    r = _gradesync(cli_env, "serve", "--port", "0")
    assert r.returncode == 1 and "newer than this release" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr


@pytest.fixture
def newer_postgres(cli_env: dict[str, str], postgres_db: Database) -> Iterator[dict[str, str]]:
    """The environment of an older release on a PostgreSQL schema a newer one upgraded; the
    shared test database gets its own revision back afterwards."""
    with postgres_db.engine.begin() as conn:
        (ours,) = conn.execute(text("SELECT version_num FROM alembic_version")).one()
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": NEWER})
    try:
        yield {**cli_env, "GRADESYNC_DATABASE_URL": postgres_db.url}
    finally:
        with postgres_db.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": ours})


@pytest.mark.parametrize("command", [["worker"], ["serve", "--port", "0"]])
def test_an_older_release_does_not_deliver_on_a_newer_postgres_schema(
    newer_postgres: dict[str, str], command: list[str]
) -> None:
    # before, it warned and went on: computing, claiming and settling on unknown columns
    r = _gradesync(newer_postgres, *command)
    assert r.returncode == 1, r.stderr
    error = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert error == [
        f"error: the database is at {NEWER}, newer than this release's migrations: "
        "run the release that upgraded it (or restore a backup taken before)"
    ], r.stderr
    assert "Traceback" not in r.stderr, r.stderr


def test_an_older_release_still_reads_a_newer_postgres_schema(
    newer_postgres: dict[str, str],
) -> None:
    r = _gradesync(newer_postgres, "db", "current")
    assert r.returncode == 0, r.stderr
    assert f"{NEWER} (newer than this release" in r.stdout, r.stdout


def test_readiness_names_a_newer_schema(cli_env: dict[str, str]) -> None:
    url = cli_env["GRADESYNC_DATABASE_URL"]
    runtime = Runtime.create(Settings(database_url=url, secret_key=TEST_SECRET), migrate=False)
    try:
        assert runtime.readiness() == (True, {"status": "ready"})
        _upgraded_by_a_newer_release(cli_env)
        ready, said = runtime.readiness()
        assert not ready and said == {"status": f"schema newer than this release ({NEWER})"}
    finally:
        runtime.close()


def _write_refused(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 1, (r.stdout, r.stderr)
    error = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert error == [
        f"error: this release does not write to a database a newer release upgraded (it is "
        f"at {NEWER}): nothing was changed; run the release that upgraded it"
    ], r.stderr
    assert "Traceback" not in r.stderr, r.stderr


def test_an_older_release_refuses_to_write_to_a_newer_postgres_schema(
    newer_postgres: dict[str, str], postgres_db: Database
) -> None:
    # before, a write command warned and wrote rows in tables whose columns it did not know
    with postgres_db.uow() as uow:
        uow.tenants.upsert(Tenant("uni", "Uni"), datetime.now(UTC))
        uow.commit()

    _write_refused(_gradesync(newer_postgres, "tenants", "create", "other", "--no-key"))
    add = ["sis", "add", "sis", "-t", "uni", "--file-based", "--no-check"]
    _write_refused(_gradesync(newer_postgres, *add))
    r = _gradesync(newer_postgres, *add, "--json")
    assert json.loads(r.stdout)["error"]["message"].startswith("this release does not write")
    # --json is read as parsed: as the value of --name it asks no JSON (the command line was
    # scanned for it), and before -t it is read all the same
    r = _gradesync(newer_postgres, *add, "--name", "--json")
    _write_refused(r)
    assert r.stdout == "", r.stdout
    r = _gradesync(newer_postgres, "sis", "add", "sis", "--json", "-t", "uni", "--no-check")
    assert json.loads(r.stdout)["error"]["message"].startswith("this release does not write")
    r = _gradesync(newer_postgres, "sis", "add", "sis", "-t", "nope", "--no-check", "--json")
    assert json.loads(r.stdout)["error"]["message"].startswith("this release does not write")

    with postgres_db.uow() as uow:
        assert [t.id for t in uow.tenants.all()] == ["uni"]
        assert uow.destinations.all("uni") == []
    # reads go on, warning
    r = _gradesync(newer_postgres, "destinations", "list", "-t", "uni", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == [], r.stderr
    assert "newer than this release" in r.stderr, r.stderr
