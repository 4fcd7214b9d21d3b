"""Two processes first started together on a fresh data directory (`serve` and a local
`worker`) each generate a secret key, check it against the database, then keep it. The one
that comes second used to crash on `FileExistsError` (a traceback, its database left open);
it now takes the key the first one kept, so both encrypt with one key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.secretbox import SecretBox
from gradesync.config import Settings

THEIRS = "the key the other process kept"


def test_the_second_process_takes_the_key_the_first_kept(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(database_url=sqlite_db.url, data_dir=tmp_path / "data", secret_key=None)
    path = settings.data_dir / "secret.key"
    checked = Database.check_secret_key

    def check_while_the_other_keeps_its_key(db: Database) -> None:
        checked(db)
        if not path.exists():  # between our key's check and our keeping it
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(THEIRS)

    monkeypatch.setattr(Database, "check_secret_key", check_while_the_other_keeps_its_key)
    db = Database.from_settings(settings)
    try:
        assert path.read_text() == THEIRS
        assert db.box.decrypt(SecretBox(THEIRS).encrypt(b"s3")) == b"s3"
        assert settings.resolved_secret_key() == THEIRS
    finally:
        db.dispose()
    assert [p.name for p in settings.data_dir.iterdir()] == ["secret.key"]  # no draft left


def test_a_generated_key_is_kept_when_no_other_process_kept_one(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", secret_key=None)
    key, path = settings.secret_key_or_new()
    assert path is not None
    assert settings.keep_secret_key(key, path) == key
    assert path.read_text() == key and path.stat().st_mode & 0o777 == 0o600
    assert settings.keep_secret_key("another", path) == key  # the first kept stays
    assert [p.name for p in settings.data_dir.iterdir()] == ["secret.key"]
