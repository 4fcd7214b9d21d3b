"""A rotated tool key is published before it signs.

Platforms cache the tool's key set (`Cache-Control: max-age`) and `serve` holds it in memory
for `KEY_SET_SECONDS`: a key that signed the moment it was made would be refused by every
platform holding a copy from before it, for up to 5 minutes. A rotation adds the key to the
key set at once, every process signs with it only once both caches have been read again, and
the old key stays published for the overlap after it stops signing. `--now` (a compromised
key) signs at once and withdraws the keys it replaces from the key set at once. The state
lives in the database, so every process agrees on which key signs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import jwt
import pytest

from gradesync.adapters.db.database import Database
from gradesync.config import Settings
from gradesync.domain.tool_keys import KeyState
from gradesync.runtime import Runtime
from gradesync.services.lti.keys import (
    KEY_SET_SECONDS,
    PUBLISH_LEAD,
    REPLACED_PUBLISHED,
    ToolKey,
    ToolKeyStore,
)
from gradesync.testing import TEST_SECRET, ManualClock
from gradesync.web.app import create_app

JWKS = "/lti/jwks.json"
T0 = datetime(2025, 6, 1, 12, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def runtime(sqlite_db: Database, clock: ManualClock, tmp_path: Path) -> Runtime:
    settings = Settings(
        database_url=sqlite_db.url,
        secret_key=TEST_SECRET,
        data_dir=tmp_path / "data",
        base_url="http://gradesync.test",
    )
    return Runtime(settings=settings, db=sqlite_db, clock=clock)


@pytest.fixture
def other(sqlite_db: Database, clock: ManualClock) -> Iterator[ToolKeyStore]:
    """The store of another process on the same database (`gradesync keys ...`)."""
    database = Database(sqlite_db.url, TEST_SECRET)
    yield ToolKeyStore(database.uow, clock)
    database.dispose()


def _client(runtime: Runtime, app: Any = None) -> httpx.AsyncClient:
    app = app or create_app(runtime)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def _kids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {k["kid"] for k in response.json()["keys"]}


def _signs_with(store: ToolKeyStore) -> str:
    """The kid of an assertion this store signs now."""
    return str(jwt.get_unverified_header(store.current().sign({"iss": "gs"}))["kid"])


def _published(store: ToolKeyStore) -> set[str]:
    return {k["kid"] for k in store.jwks()["keys"]}


class _Processes(NamedTuple):
    clock: ManualClock
    rotating: ToolKeyStore
    signing: ToolKeyStore  # another process (its own engine), holding `old` in its cache
    old: ToolKey


@contextmanager
def _two_processes(db: Database, db_url: str) -> Iterator[_Processes]:
    clock = ManualClock(T0)
    rotating = ToolKeyStore(db.uow, clock)
    old = rotating.current()
    database = Database(db_url, TEST_SECRET)
    try:
        signing = ToolKeyStore(database.uow, clock)
        assert signing.current().kid == old.kid  # cached from here on
        yield _Processes(clock, rotating, signing, old)
    finally:
        database.dispose()


async def test_platforms_hold_every_key_gradesync_signs_with_through_a_rotation(
    runtime: Runtime, other: ToolKeyStore, clock: ManualClock
) -> None:
    """A platform caches the key set as long as `max-age` allows, fetched at the worst moment
    (serve's copy read just before the rotation). Second by second until well after the new
    key starts signing, serve's process signs only with keys in the platform's copy."""
    signer = runtime.tool_keys  # what serve's AGS clients sign with
    async with _client(runtime) as client:
        first = await client.get(JWKS)  # serve reads the key set now
        (old,) = _kids(first)
        max_age = int(first.headers["cache-control"].removeprefix("max-age="))
        assert timedelta(seconds=KEY_SET_SECONDS + max_age) < PUBLISH_LEAD  # both caches
        assert _signs_with(signer) == old

        new = other.rotate().kid  # another process
        clock.advance(timedelta(seconds=KEY_SET_SECONDS - 0.5))
        platform, fetched = _kids(await client.get(JWKS)), clock.now()
        assert platform == {old}  # serve's copy from before the rotation

        end = clock.now() + PUBLISH_LEAD + timedelta(seconds=30)
        while clock.now() < end:
            clock.advance(timedelta(seconds=1))
            if (clock.now() - fetched).total_seconds() >= max_age:
                platform, fetched = _kids(await client.get(JWKS)), clock.now()
            assert _signs_with(signer) in platform, clock.now()
            assert signer.reload().kid in platform  # what a refused credential's retry uses
        assert _signs_with(signer) == new  # from its cache: switched when due, unprompted
        assert platform == {old, new}


async def test_the_key_set_holds_the_next_key_at_once(
    runtime: Runtime, other: ToolKeyStore, clock: ManualClock
) -> None:
    async with _client(runtime) as client:
        (old,) = _kids(await client.get(JWKS))
        here = runtime.tool_keys.rotate()  # serve's own store: the next answer has it
        assert _kids(await client.get(JWKS)) == {old, here.kid}
        assert _signs_with(runtime.tool_keys) == old

        there = other.rotate()  # another process: within serve's window
        clock.advance(timedelta(seconds=KEY_SET_SECONDS))
        assert _kids(await client.get(JWKS)) == {old, here.kid, there.kid}
        assert _signs_with(runtime.tool_keys) == old


def test_a_second_process_signs_with_the_old_key_until_the_new_one_is_published_long_enough(
    db: Database, db_url: str
) -> None:
    """On SQLite and PostgreSQL: the time a key starts signing is the database's."""
    with _two_processes(db, db_url) as (clock, rotating, signing, old):
        new = rotating.rotate()
        assert new.signs_from == T0 + PUBLISH_LEAD
        assert rotating.current().kid == old.kid  # the rotating process waits too
        clock.advance(PUBLISH_LEAD - timedelta(seconds=1))
        assert signing.current().kid == old.kid
        assert signing.reload().kid == old.kid
        clock.advance(timedelta(seconds=1))
        assert signing.current().kid == new.kid
        assert _published(signing) == {old.kid, new.kid}

        # the old key stays published for the overlap after it stopped signing
        clock.advance(signing.overlap - timedelta(seconds=1))
        assert _published(signing) == {old.kid, new.kid}
        assert signing.prune() == 0
        clock.advance(timedelta(seconds=1))
        assert _published(signing) == {new.kid}
        assert signing.prune() == 1


def test_a_forced_rotation_signs_at_once_everywhere_and_withdraws_the_old_key(
    db: Database, db_url: str
) -> None:
    """`--now` is for a key that leaked: a platform must stop trusting it at once, or whoever
    holds it signs assertions the platform answers with grade tokens for the overlap."""
    with _two_processes(db, db_url) as (_, rotating, signing, old):
        new = rotating.rotate(immediately=True)
        assert new.signs_from == T0
        assert rotating.current().kid == new.kid
        assert signing.reload().kid == new.kid  # a refused credential's retry reads it
        assert _published(signing) == _published(rotating) == {new.kid}
        assert {k.kid: (k.state, k.published) for k in signing.list()} == {
            new.kid: (KeyState.CURRENT, True),
            old.kid: (KeyState.REVOKED, False),
        }
        assert signing.prune() == 1  # nothing to keep it for
        assert [k.kid for k in signing.list()] == [new.kid]


async def test_a_forced_rotation_withdraws_the_old_keys_from_the_served_key_set(
    runtime: Runtime, other: ToolKeyStore, clock: ManualClock
) -> None:
    """The key set `serve` answers over HTTP: at once after a forced rotation in its own
    process, within its refresh after one in another process."""
    async with _client(runtime) as client:
        (old,) = _kids(await client.get(JWKS))
        waiting = runtime.tool_keys.rotate()  # from the same leaked store: withdrawn too
        assert _kids(await client.get(JWKS)) == {old, waiting.kid}
        here = runtime.tool_keys.rotate(immediately=True)
        assert _kids(await client.get(JWKS)) == {here.kid}

        there = other.rotate(immediately=True)
        clock.advance(timedelta(seconds=KEY_SET_SECONDS - 0.5))
        assert _kids(await client.get(JWKS)) == {here.kid}  # serve's copy, read before
        clock.advance(timedelta(seconds=0.5))
        assert _kids(await client.get(JWKS)) == {there.kid}


def test_each_key_states_where_it_is_and_when_the_next_one_signs(db: Database) -> None:
    clock = ManualClock(T0)
    store = ToolKeyStore(db.uow, clock, overlap=timedelta(days=7))
    first = store.current()
    assert store.next_start() is None
    second = store.rotate()

    def states() -> dict[str, KeyState]:
        return {k.kid: k.state for k in store.list()}

    assert states() == {first.kid: KeyState.CURRENT, second.kid: KeyState.NEXT}
    assert store.next_start() == T0 + PUBLISH_LEAD
    (listed,) = (k for k in store.list() if k.kid == first.kid)
    assert listed.retired_at == T0 + PUBLISH_LEAD  # stops signing when the next one starts
    assert listed.published_until == T0 + PUBLISH_LEAD + timedelta(days=7)

    clock.advance(PUBLISH_LEAD)
    assert states() == {first.kid: KeyState.RETIRING, second.kid: KeyState.CURRENT}
    assert store.next_start() is None
    clock.advance(timedelta(days=7))
    assert states()[first.kid] is KeyState.EXPIRED
    assert [k.published for k in store.list()] == [True, False]


def test_a_forced_rotation_while_a_key_waits_to_sign_skips_the_waiting_key(
    db: Database,
) -> None:
    """The key waiting to sign came from the same compromised store: it never signs."""
    clock = ManualClock(T0)
    store = ToolKeyStore(db.uow, clock)
    first = store.current()
    waiting = store.rotate()
    clock.advance(timedelta(seconds=60))
    forced = store.rotate(immediately=True)
    assert store.current().kid == forced.kid
    assert store.next_start() is None
    clock.advance(PUBLISH_LEAD)
    assert store.reload().kid == forced.kid
    assert {k.kid: k.state for k in store.list()} == {
        first.kid: KeyState.REVOKED,
        waiting.kid: KeyState.REVOKED,
        forced.kid: KeyState.CURRENT,
    }


def test_a_rotation_while_a_key_waits_replaces_the_waiting_key(db: Database) -> None:
    """The newer rotation wins: the waiting key never signs, and the key signing now signs
    until the newer key starts (not until the replaced key's time, then the replaced key)."""
    clock = ManualClock(T0)
    store = ToolKeyStore(db.uow, clock)
    first = store.current()
    second = store.rotate()
    clock.advance(timedelta(seconds=60))
    done = store.rotation()
    third = done.key
    assert (done.signing_until, done.replaced, done.revoked) == (first.kid, (second.kid,), ())
    assert store.next_start() == third.signs_from == T0 + timedelta(seconds=60) + PUBLISH_LEAD
    clock.advance(PUBLISH_LEAD - timedelta(seconds=60))  # the replaced key's time
    assert store.current().kid == first.kid
    assert ToolKeyStore(db.uow, clock).current().kid == first.kid  # another process too
    listed = {k.kid: k for k in store.list()}
    assert listed[second.kid].signs_from is None  # never signs
    assert listed[second.kid].state is KeyState.RETIRING
    assert listed[first.kid].retired_at == third.signs_from
    assert second.kid in _published(store)  # a process ahead may have read it as current
    clock.advance(timedelta(seconds=60))
    assert store.current().kid == third.kid
    assert ToolKeyStore(db.uow, clock).current().kid == third.kid


async def test_one_store_signs_and_serves_in_a_process(runtime: Runtime) -> None:
    """The LTI endpoints and the destination adapters share the process's store: a key
    rotated (`--now`) through one signs at once through the other, not after a cache of its
    own expired."""
    app = create_app(runtime)
    async with _client(runtime, app) as client, httpx.AsyncClient() as http:
        await client.get(JWKS)
        context = runtime.adapter_context(http)
        assert context.tool_keys is not None
        old = context.tool_keys.current()  # cached by the adapters' store
        new = app.state.lti.keys.rotate(immediately=True)  # the LTI endpoints' store
        signed = context.tool_keys.current().sign({"iss": "gs"})
        assert jwt.get_unverified_header(signed)["kid"] == new.kid != old.kid


async def test_a_replaced_key_leaves_the_key_set_soon_after_it_is_replaced(
    runtime: Runtime, clock: ManualClock
) -> None:
    """A key replaced while it waited signed nothing: it stays published only as long as a
    process that read it as current just before may sign with it, not the overlap, so
    repeated rotations do not grow the key set every platform downloads."""
    store = runtime.tool_keys
    async with _client(runtime) as client:
        first = store.current()
        second = store.rotate()
        clock.advance(timedelta(seconds=60))
        third = store.rotate()
        assert _kids(await client.get(JWKS)) == {first.kid, second.kid, third.kid}
        listed = {k.kid: k for k in store.list()}
        assert listed[second.kid].published_until == T0 + timedelta(seconds=60) + (
            REPLACED_PUBLISHED
        )
        clock.advance(REPLACED_PUBLISHED - timedelta(seconds=1))
        assert second.kid in _kids(await client.get(JWKS))
        clock.advance(timedelta(seconds=KEY_SET_SECONDS))  # serve's copy read again
        assert _kids(await client.get(JWKS)) == {first.kid, third.kid}
        listed = {k.kid: k for k in store.list()}
        assert listed[second.kid].state is KeyState.EXPIRED
        assert listed[first.kid].state is KeyState.RETIRING  # it signed: the overlap
        assert store.prune() == 1
        assert [k.kid for k in store.list()] == [third.kid, first.kid]
