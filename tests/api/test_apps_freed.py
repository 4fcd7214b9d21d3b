"""The apps a test builds are freed when it ends: a test process builds hundreds, and each
kept would keep its Runtime and database too (tests/conftest.py, `_apps_not_kept`)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from gradesync.adapters.db.database import Database
from gradesync.runtime import Runtime
from tests.support.api import ApiEnv, bearer


@pytest.fixture(scope="module")
def built() -> Iterator[list[weakref.ref[Runtime]]]:
    """Checked after the module's test has ended, its function fixtures torn down."""
    runtimes: list[weakref.ref[Runtime]] = []
    yield runtimes
    gc.collect()
    assert runtimes and all(ref() is None for ref in runtimes), "an app outlived its test"


def test_an_app_and_its_runtime_are_freed_after_the_test(
    built: list[weakref.ref[Runtime]], sqlite_db: Database, tmp_path: Path
) -> None:
    env = ApiEnv(sqlite_db, tmp_path)
    with env.client:
        assert env.client.get("/api/v1/courses", headers=bearer(env.tenant("t1"))).is_success
        assert env.client.get("/docs").status_code == 200
    built.append(weakref.ref(env.runtime))
