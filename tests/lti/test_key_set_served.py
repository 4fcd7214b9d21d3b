"""The tool's key set (`/lti/jwks.json`) is served from memory on the event loop: every
platform fetches it, often all at once, and a database read per fetch took a worker thread
each. Concurrent fetches share one read per `KEY_SET_SECONDS`; a key this process rotates
shows on the next fetch, one another process rotates within the window."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.db.repos.lti import ToolKeyRepo
from gradesync.adapters.destinations.ags import CREDENTIAL_RETRY_WAIT
from gradesync.config import Settings
from gradesync.lti import routes
from gradesync.runtime import Runtime
from gradesync.services.lti.keys import KEY_SET_SECONDS, ToolKeyStore
from gradesync.testing import TEST_SECRET, ManualClock
from gradesync.web.app import create_app

JWKS = "/lti/jwks.json"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2025, 6, 1, 12, tzinfo=UTC))


@pytest.fixture
def app(sqlite_db: Database, clock: ManualClock, tmp_path: Path) -> Iterator[Any]:
    settings = Settings(
        database_url=sqlite_db.url,
        secret_key=TEST_SECRET,
        data_dir=tmp_path / "data",
        base_url="http://gradesync.test",
    )
    yield create_app(Runtime(settings=settings, db=sqlite_db, clock=clock))


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per read of the published keys, whichever store or database makes it."""
    counted: list[int] = []
    published = ToolKeyRepo.published

    def counting(self: ToolKeyRepo, *args: Any, **kwargs: Any) -> Any:
        counted.append(1)
        return published(self, *args, **kwargs)

    monkeypatch.setattr(ToolKeyRepo, "published", counting)
    return counted


@pytest.fixture
def no_threadpool(monkeypatch: pytest.MonkeyPatch) -> None:
    """A synchronous endpoint would run in AnyIO's worker threads: refuse it."""

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an endpoint ran in the thread pool")

    monkeypatch.setattr(fastapi.routing, "run_in_threadpool", refused)


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def _kids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {k["kid"] for k in response.json()["keys"]}


def test_the_key_set_is_a_coroutine() -> None:
    assert asyncio.iscoroutinefunction(routes.jwks)


async def test_concurrent_fetches_share_one_read_per_window(
    app: Any, clock: ManualClock, reads: list[int], no_threadpool: None
) -> None:
    async with _client(app) as client:
        first = await asyncio.gather(*(client.get(JWKS) for _ in range(50)))
        assert len(reads) == 1
        assert len({frozenset(_kids(r)) for r in first}) == 1
        assert first[0].headers["cache-control"] == "max-age=300"

        clock.advance(timedelta(seconds=KEY_SET_SECONDS - 0.5))
        await asyncio.gather(*(client.get(JWKS) for _ in range(20)))
        assert len(reads) == 1  # still fresh

        clock.advance(timedelta(seconds=1))
        again = await asyncio.gather(*(client.get(JWKS) for _ in range(20)))
        assert len(reads) == 2  # due: one read for all of them
        assert {frozenset(_kids(r)) for r in again} == {frozenset(_kids(first[0]))}


async def test_a_rotation_here_shows_on_the_next_fetch(app: Any, reads: list[int]) -> None:
    async with _client(app) as client:
        (old,) = _kids(await client.get(JWKS))
        new = app.state.lti.keys.rotate()  # the store serve answers from
        assert _kids(await client.get(JWKS)) == {old, new.kid}


async def test_a_rotation_elsewhere_shows_within_the_window(
    app: Any, sqlite_db: Database, clock: ManualClock, reads: list[int]
) -> None:
    async with _client(app) as client:
        (old,) = _kids(await client.get(JWKS))
        other = Database(sqlite_db.url, TEST_SECRET)  # another process on the same file
        try:
            new = ToolKeyStore(other.uow, clock).rotate()
        finally:
            other.dispose()
        assert _kids(await client.get(JWKS)) == {old}  # still the set read a moment ago
        clock.advance(timedelta(seconds=KEY_SET_SECONDS))
        assert _kids(await client.get(JWKS)) == {old, new.kid}


def test_the_window_is_shorter_than_the_credential_retry() -> None:
    """A platform that refused an assertion signed with a key made elsewhere in the window
    finds it in the key set when the refused request is tried again."""
    assert KEY_SET_SECONDS < CREDENTIAL_RETRY_WAIT


async def test_a_rotation_during_a_read_is_not_answered_by_that_read(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fetch after the rotation does not join a read that started before it."""
    started, release = threading.Event(), threading.Event()
    published = ToolKeyRepo.published

    def held(self: ToolKeyRepo, *args: Any, **kwargs: Any) -> Any:
        found = published(self, *args, **kwargs)
        started.set()
        assert release.wait(10)
        return found

    async with _client(app) as client:
        (old,) = _kids(await client.get(JWKS))
        keys = app.state.lti.keys
        keys._key_set = None  # due
        monkeypatch.setattr(ToolKeyRepo, "published", held)
        before = asyncio.create_task(client.get(JWKS))
        assert await asyncio.to_thread(started.wait, 10)
        monkeypatch.setattr(ToolKeyRepo, "published", published)
        new = await asyncio.to_thread(keys.rotate)
        after = await client.get(JWKS)
        release.set()
        assert _kids(await before) == {old}
        assert _kids(after) == {old, new.kid}
