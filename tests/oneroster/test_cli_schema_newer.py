"""An older release's `gradesync sis map-class` on a PostgreSQL database a newer release
upgraded asked the SIS about the class over HTTP, and only then had its commit refused. A
command that writes is refused before it reads or asks a remote anything: the SIS hears
nothing. (On SQLite every command refuses such a schema as it starts.)"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from gradesync.adapters.db.database import Database
from gradesync.sandbox.testing import RunningSandbox
from gradesync.testing import ManualClock
from tests.support.cli import GRADESYNC

from .conftest import CLIENT_ID, CLIENT_SECRET
from .facts import NOW, seed_school

T = ("--tenant", "t1")
NEWER = "0999_a_newer_release"
REFUSED = (
    f"error: this release does not write to a database a newer release upgraded (it is at "
    f"{NEWER}): nothing was changed; run the release that upgraded it"
)


@pytest.fixture
def env(cli_env: dict[str, str], postgres_db: Database) -> dict[str, str]:
    return {**cli_env, "GRADESYNC_DATABASE_URL": postgres_db.url}


@pytest.fixture
def newer(postgres_db: Database) -> Iterator[None]:
    """The schema as a newer release left it; the shared test database gets its own revision
    back afterwards."""
    with postgres_db.engine.begin() as conn:
        (ours,) = conn.execute(text("SELECT version_num FROM alembic_version")).one()
    try:
        yield
    finally:
        with postgres_db.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": ours})


def _gradesync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GRADESYNC, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _refused(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert [line for line in r.stderr.splitlines() if line.startswith("error:")] == [REFUSED]
    assert "Traceback" not in r.stderr, r.stderr


def test_a_write_on_a_newer_schema_is_refused_before_the_sis_is_asked(
    env: dict[str, str], newer: None, postgres_db: Database, sis: RunningSandbox
) -> None:
    seed_school(postgres_db, ManualClock(NOW))
    added = _gradesync(
        env, "sis", "add", "sis", *T, "--name", "Sandbox SIS", "--base-url", sis.base_url,
        "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--no-check",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    with postgres_db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": NEWER})
    sis.admin.reset_counters()

    _refused(_gradesync(env, "sis", "map-class", "sis", "c1", "cls-1", *T, "--school", "sch-1"))
    # a command that writes only when told to is refused once told, before asking the SIS
    _refused(_gradesync(env, "sis", "categories", "sis", *T, "--align", "hw=cat-hw"))
    assert sis.admin.counters() == {}  # no token asked for, no class looked up
    with postgres_db.uow() as uow:
        assert uow.links.course("t1", "sis", "c1") is None
    # reads go on, warning: the SIS is asked for its categories
    listed = _gradesync(env, "sis", "categories", "sis", *T)
    assert listed.returncode == 0, listed.stderr
    assert "newer than this release" in listed.stderr, listed.stderr
    assert sis.admin.counters()["oneroster"]["requests"] >= 1
