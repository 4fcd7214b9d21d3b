"""The token cache keeps a token per platform while it is good, and nothing for good: a
vendor's thousands of platforms each sending once must not leave a token and a lock behind
in the process for ever."""

from __future__ import annotations

import asyncio

from gradesync.adapters.destinations.tokens import TokenCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fetcher(name: str, calls: list[str], lifetime: float = 3600.0):  # type: ignore[no-untyped-def]
    async def fetch() -> tuple[str, float, frozenset[str]]:
        calls.append(name)
        return f"token-of-{name}", lifetime, frozenset({"score"})

    return fetch


def test_each_platform_keeps_its_own_token_and_fetches_it_once() -> None:
    async def go() -> None:
        cache = TokenCache(clock=Clock())
        calls: list[str] = []
        for _ in range(3):
            for k in range(5):
                tok = await cache.get(("t", f"lms{k}"), fetcher(f"lms{k}", calls))
                assert tok.value == f"token-of-lms{k}"  # never another platform's
        assert calls == [f"lms{k}" for k in range(5)]

    asyncio.run(go())


def test_platforms_that_sent_once_leave_no_token_or_lock_once_their_tokens_expire() -> None:
    async def go() -> None:
        clock = Clock()
        cache = TokenCache(clock=clock)
        calls: list[str] = []
        for k in range(500):
            await cache.get(("t", f"lms{k}"), fetcher(f"lms{k}", calls))
        assert len(cache) == 500
        assert cache.locks_held() == 0  # a lock lives only while a fetch needs it
        clock.now += 3601.0  # every token expired; one platform sends again
        tok = await cache.get(("t", "lms7"), fetcher("lms7", calls))
        assert tok.value == "token-of-lms7"
        assert len(cache) == 1
        assert cache.locks_held() == 0

    asyncio.run(go())


def test_at_most_size_tokens_are_kept_and_one_pushed_out_is_fetched_again() -> None:
    async def go() -> None:
        cache = TokenCache(clock=Clock(), size=10)
        calls: list[str] = []
        for k in range(50):
            await cache.get(("t", f"lms{k}"), fetcher(f"lms{k}", calls))
        assert len(cache) == 10
        await cache.get(("t", "lms49"), fetcher("lms49", calls))  # still held: no fetch
        assert calls.count("lms49") == 1
        tok = await cache.get(("t", "lms0"), fetcher("lms0", calls))  # pushed out: fetched
        assert (tok.value, calls.count("lms0")) == ("token-of-lms0", 2)

    asyncio.run(go())


def test_concurrent_callers_for_one_platform_wait_for_one_fetch() -> None:
    async def go() -> None:
        cache = TokenCache(clock=Clock())
        calls: list[str] = []
        release = asyncio.Event()

        async def slow() -> tuple[str, float, frozenset[str]]:
            calls.append("lms1")
            await release.wait()
            return "token-of-lms1", 3600.0, frozenset()

        waiting = [asyncio.create_task(cache.get(("t", "lms1"), slow)) for _ in range(5)]
        await asyncio.sleep(0)
        assert cache.locks_held() == 1
        release.set()
        assert {t.value for t in await asyncio.gather(*waiting)} == {"token-of-lms1"}
        assert calls == ["lms1"]
        assert cache.locks_held() == 0

    asyncio.run(go())
