"""`gradesync serve` raises its limit on open files to what the system allows: a server
sending to many hundreds of platforms holds an idle connection per platform for a few
seconds, more than the usual default soft limit of 1,024."""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path

import httpx

from gradesync.testing import wait_for
from tests.cli.test_sync_cli import _free_port
from tests.support.cli import GRADESYNC


def _open_files_limits(pid: int) -> tuple[str, str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError("no 'Max open files' in /proc/PID/limits")


def test_serve_raises_its_open_files_limit_to_the_hard_limit(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = 256

    def start_low() -> None:  # in the child, before gradesync starts: a low default
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    port = _free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [GRADESYNC, "serve", "--port", str(port)],
            env=cli_env,
            stdout=log,
            stderr=log,
            preexec_fn=start_low,
        )
        try:

            def ready() -> bool:
                assert proc.poll() is None, log_path.read_text()
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).is_success
                except httpx.TransportError:
                    return False

            wait_for(ready, "gradesync serve to be ready", explain=log_path.read_text)
            soft_now, hard_now = _open_files_limits(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    expected = "65536" if hard == resource.RLIM_INFINITY else str(hard)
    assert (soft_now, hard_now) == (
        expected,
        "unlimited" if hard == resource.RLIM_INFINITY else str(hard),
    )
    assert int(soft_now) > low
