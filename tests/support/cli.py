"""The `gradesync` command in a subprocess, as an admin runs it, on a temporary SQLite file.

Fixtures shared by every test directory (tests/conftest.py loads this module): `cli_env`
(the environment), `cli_db` (the same database, in-process) and `gradesync` (runs the
command)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gradesync.adapters.db.database import Database
from gradesync.testing import TEST_SECRET, wait_for

# the installed console script, next to the interpreter running the tests
GRADESYNC = str(Path(sys.executable).with_name("gradesync"))
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli_env(tmp_path: Path, _sqlite_template: Path) -> dict[str, str]:
    db_path = tmp_path / "gradesync.db"
    db_path.write_bytes(_sqlite_template.read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADESYNC_")}
    env.update(
        GRADESYNC_DATABASE_URL=f"sqlite:///{db_path}",
        GRADESYNC_SECRET_KEY=TEST_SECRET,
        GRADESYNC_DATA_DIR=str(tmp_path / "data"),
        GRADESYNC_OUTBOUND_ALLOWED_NETWORKS="127.0.0.0/8,::1/128",  # the sandbox's address
        COLUMNS="200",  # wide tables: no wrapped cells to confuse assertions
        NO_COLOR="1",
    )
    return env


@pytest.fixture
def cli_db(cli_env: dict[str, str]) -> Iterator[Database]:
    db = Database(cli_env["GRADESYNC_DATABASE_URL"], TEST_SECRET)
    yield db
    db.dispose()


@pytest.fixture
def gradesync(cli_env: dict[str, str]) -> Run:
    def run(
        *args: str, ok: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [GRADESYNC, *args],
            env=cli_env,
            capture_output=True,
            text=True,
            input=input,
            timeout=60,
        )
        if ok:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(
    env: dict[str, str], log_path: Path, **popen: Any
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`gradesync serve` in a subprocess on a free port, once its /readyz answers: the process
    and its base URL (its output in `log_path`; `popen`: more of Popen's arguments). Stopped
    on leaving."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [GRADESYNC, "serve", "--port", str(port)], env=env, stdout=log, stderr=log, **popen
        )

        def ready() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"{url}/readyz", timeout=1).is_success
            except httpx.TransportError:
                return False

        try:
            wait_for(ready, "gradesync serve to be ready", explain=log_path.read_text)
            yield proc, url
        finally:
            proc.terminate()
            proc.wait(timeout=15)
