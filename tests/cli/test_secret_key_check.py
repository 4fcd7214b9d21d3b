"""A process started with another secret key than the one the stored secrets were encrypted
with refuses to start, naming the setting: before, a worker on a new machine without
GRADESYNC_SECRET_KEY generated a key of its own, started, and then failed every grade it
worked out (set aside one by one) and every send. It refuses without leaving a generated
key file behind: the warning that announces one tells the operator to back it up."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

from gradesync.adapters.db.database import Database
from gradesync.domain.model import Destination, DestinationKind, Tenant
from tests.support.cli import GRADESYNC


def _store_a_secret(db: Database) -> None:
    with db.uow() as uow:
        now = datetime.now(UTC)
        uow.tenants.upsert(Tenant("t1", "School"), now)
        uow.destinations.upsert(
            Destination(
                "t1", "lms", DestinationKind.LTI13_AGS, "LMS", secret={"client_secret": "s3"}
            ),
            now,
        )
        uow.commit()


def _refused(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [GRADESYNC, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "cannot be decrypted" in r.stderr, r.stderr
    assert "GRADESYNC_SECRET_KEY" in r.stderr, r.stderr
    return r


def test_serve_with_another_secret_key_refuses_to_start(
    cli_env: dict[str, str], cli_db: Database
) -> None:
    _store_a_secret(cli_db)
    env = {**cli_env, "GRADESYNC_SECRET_KEY": "another key"}
    _refused(["serve", "--port", "0"], env)
    # no key at all: the one generated for this data directory is another key too
    del env["GRADESYNC_SECRET_KEY"]
    r = _refused(["serve", "--port", "0"], env)
    assert not (Path(env["GRADESYNC_DATA_DIR"]) / "secret.key").exists()
    assert "generated one" not in r.stderr, r.stderr


def test_a_worker_with_another_secret_key_refuses_to_start(
    cli_env: dict[str, str], postgres_db: Database
) -> None:
    _store_a_secret(postgres_db)
    env = {**cli_env, "GRADESYNC_DATABASE_URL": postgres_db.url}
    del env["GRADESYNC_SECRET_KEY"]  # a new machine, no key given
    r = _refused(["worker"], env)
    assert not (Path(env["GRADESYNC_DATA_DIR"]) / "secret.key").exists()
    assert "generated one" not in r.stderr, r.stderr


def test_a_database_without_secrets_gets_a_generated_key_kept(
    cli_env: dict[str, str], postgres_db: Database
) -> None:
    env = {**cli_env, "GRADESYNC_DATABASE_URL": postgres_db.url}
    del env["GRADESYNC_SECRET_KEY"]
    r = subprocess.run(
        [GRADESYNC, "db", "current"], env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    key = Path(env["GRADESYNC_DATA_DIR"]) / "secret.key"
    assert key.exists() and "generated one" in r.stderr, r.stderr
    assert key.stat().st_mode & 0o777 == 0o600
