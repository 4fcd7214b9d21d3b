"""A PostgreSQL server of the test's own, so a test may restart or stop it without touching
the server every other test uses. Debian's binaries (`/usr/lib/postgresql/*/bin`), a cluster
in a temporary folder, a free loopback port, trust authentication."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def _bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self) -> None:
        bindir = _bin()
        if bindir is None:
            if os.environ.get("GRADESYNC_REQUIRE_POSTGRES") == "1":
                pytest.fail("GRADESYNC_REQUIRE_POSTGRES=1 but PostgreSQL's binaries are missing")
            pytest.skip("PostgreSQL's binaries are not installed")
        self.bin = bindir
        # not under pytest's temporary folders: the postgres user must be able to reach it
        self.folder = Path(tempfile.mkdtemp(prefix="gradesync-test-pg-"))
        self.data = self.folder / "pgdata"
        self.port = _free_port()
        # PostgreSQL refuses to run as root: run it as the postgres user where we are root
        self.runas: list[str] = []
        self.data.mkdir()
        if os.getuid() == 0:
            self.runas = ["runuser", "-u", "postgres", "--"]
            self.folder.chmod(0o755)
            shutil.chown(self.data, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.running = False
        self.start()
        self._databases = 0

    def new_database(self) -> str:
        """An empty database of its own for each test, on this server (started if stopped)."""
        if not self.running:
            self.start()
        self._databases += 1
        name = f"gs{self._databases}"
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self.runas, str(self.bin / tool), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {done.stderr.strip()}")

    def _ctl(self, action: str, *extra: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", action, *extra)

    def start(self) -> None:
        # authentication_timeout: a fast shutdown waits for every connection still in its
        # start-up (a dead-end child waiting for a start-up packet) until that timeout, 60 s by
        # default, which is as long as `pg_ctl -t 60` and a worker's patience wait
        options = (
            f"-p {self.port} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c authentication_timeout=5s"
        )
        self._ctl("start", "-l", str(self.data / "server.log"), "-o", options)
        self.running = True

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")
        self.running = False

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def close(self) -> None:
        if self.running:
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
