"""The workers of `gradesync serve`, in-process on a database a test also reaches (the
command's `cli_db`): started for some steps, stopped after them whatever happens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from gradesync.adapters.db.database import Database
from gradesync.config import Settings
from gradesync.runtime import Runtime
from gradesync.testing import TEST_SECRET


@asynccontextmanager
async def running_worker(db: Database, data_dir: Path, **settings: Any) -> AsyncIterator[Runtime]:
    """A runtime on `db` whose workers run while inside; `settings`: more of Settings'."""
    config = Settings(
        database_url=db.url,
        secret_key=TEST_SECRET,
        data_dir=data_dir,
        worker_poll_seconds=0.2,
        **settings,
    )
    runtime = Runtime(settings=config, db=db)
    await runtime.start_worker()
    try:
        yield runtime
    finally:
        await runtime.stop_worker()


def with_worker(
    db: Database,
    data_dir: Path,
    steps: Callable[[Runtime], Awaitable[None]],
    **settings: Any,
) -> None:
    """`steps` carried out while the workers run (from a test that is not itself async)."""

    async def work() -> None:
        async with running_worker(db, data_dir, **settings) as runtime:
            await steps(runtime)

    asyncio.run(work())
