"""`gradesync serve` raises its limit on open files to what the system allows: a server
sending to many hundreds of platforms holds an idle connection per platform for a few
seconds, more than the usual default soft limit of 1,024."""

from __future__ import annotations

import resource
from pathlib import Path

from tests.support.cli import serving


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

    with serving(cli_env, tmp_path / "serve.log", preexec_fn=start_low) as (proc, _):
        soft_now, hard_now = _open_files_limits(proc.pid)
    expected = "65536" if hard == resource.RLIM_INFINITY else str(hard)
    assert (soft_now, hard_now) == (
        expected,
        "unlimited" if hard == resource.RLIM_INFINITY else str(hard),
    )
    assert int(soft_now) > low
