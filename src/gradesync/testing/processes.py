"""`gradesync worker` processes for tests that need real ones (killed, restarted, several at
once), pointed at the HTTP gradebook double (`gradesync.testing.http_double`) and tuned to
notice a dead worker within seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from gradesync.testing import TEST_SECRET

GRADESYNC = str(Path(sys.executable).with_name("gradesync"))

# A worker's claim (GRADESYNC_WORKER_LEASE_SECONDS) for tests whose gradebook holds sends
# longer than the 4 s claims below: a send is ended shortly before its claim is, and such
# a test wants its held sends kept, not ended and retried.
LONG_LEASE = "150"


def worker_env(url: str, **extra: str) -> dict[str, str]:
    """The environment of a worker process on database `url`; `extra` adds or overrides
    settings (GRADESYNC_...)."""
    env = dict(os.environ)
    env.update(
        GRADESYNC_DATABASE_URL=url,
        GRADESYNC_SECRET_KEY=TEST_SECRET,
        GRADESYNC_WORKER_MODE="distributed",
        GRADESYNC_TEST_DESTINATION_MODULE="gradesync.testing.http_adapter",
        GRADESYNC_WORKER_POLL_SECONDS="0.2",
        GRADESYNC_WORKER_LEASE_SECONDS="4",
        GRADESYNC_WORKER_STALE_SECONDS="3",
        GRADESYNC_WORKER_HEARTBEAT_SECONDS="0.3",
        GRADESYNC_WORKER_CLAIM_BATCH="8",
        GRADESYNC_RUN_RETRY_PATIENCE_SECONDS="10",
        GRADESYNC_LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


def start_worker(
    url: str,
    log: Path,
    *,
    concurrency: int = 4,
    cwd: Path | None = None,
    name: str | None = None,
    **extra: str,
) -> subprocess.Popen[bytes]:
    """A `gradesync worker` process (`--name name` when given), its output appended to
    `log`."""
    named = ["--name", name] if name else []
    return subprocess.Popen(
        [GRADESYNC, "worker", "--concurrency", str(concurrency), *named],
        env=worker_env(url, **extra),
        cwd=cwd,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def stop_workers(*procs: subprocess.Popen[bytes]) -> None:
    """SIGTERM each worker still running, then wait for it (killed if it will not stop)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
