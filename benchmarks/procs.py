"""Child processes of a benchmark (sandbox, gradesync) and what they cost: CPU seconds and
peak memory, read from /proc (Linux), so no extra dependency is needed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    """The process's high-water resident set (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def threads(pid: int) -> int:
    """The process's threads now (each with its own stack, and often its own malloc arena)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM (write 5 to clear_refs); False where the kernel does not allow it."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    base_url: str
    log: Path
    started: float = field(default_factory=time.monotonic)
    traced: bool = False  # counts statements (traced_serve.py's GRADESYNC_BENCH_STATEMENTS)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def mark(self) -> None:
        """Tell a diagnosed server (`benchmarks/traced_serve.py`, GRADESYNC_BENCH_STATEMENTS)
        that a measured window starts or ends; nothing for any other child."""
        if self.traced and self.proc.poll() is None:
            self.proc.send_signal(MARK_SIGNAL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def child_pythonpath(current: str) -> str:
    """The benchmarks' root, then `current`'s entries made absolute: a child runs in its own
    working directory, where a relative entry (`PYTHONPATH=benchmarks/gc_time`) names
    nothing."""
    entries = [str(ROOT), *(str(Path(p).resolve()) for p in current.split(os.pathsep) if p)]
    return os.pathsep.join(dict.fromkeys(entries))


def start(
    name: str,
    argv: list[str],
    port: int,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    health: str = "/",
    timeout: float = 300.0,
) -> Child:
    """Start a child process and wait (bounded) until `health` answers below 500. The bound
    is generous: on a loaded shared machine importing gradesync alone has taken over 60 s."""
    log = workdir / f"{name}.log"
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = child_pythonpath(full_env.get("PYTHONPATH", ""))
    with log.open("ab") as fh:  # a restarted child adds to its log
        proc = subprocess.Popen(
            argv, stdout=fh, stderr=subprocess.STDOUT, env=full_env, cwd=str(workdir)
        )
    child = Child(name, proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{child.tail()}")
        try:
            if httpx.get(child.base_url + health, timeout=1.0).status_code < 500:
                return child
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            child.stop()
            raise RuntimeError(f"{name} did not answer within {timeout:g} s:\n{child.tail()}")
        time.sleep(0.1)


def start_sandbox(
    workdir: Path,
    faults: str | None = None,
    rng_seed: int = 1,
    seed_file: Path | None = None,
    hosts: int = 1,
) -> Child:
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.sandbox_host", "--port", str(port)]
    argv += ["--rng-seed", str(rng_seed)]
    if hosts > 1:
        argv += ["--hosts", str(hosts)]
    if faults:
        argv += ["--faults", faults]
    if seed_file is not None:
        argv += ["--seed", str(seed_file)]
    return start("sandbox", argv, port, workdir, health="/_sandbox/health")


# the sandbox LMS and SIS listen on loopback, which gradesync refuses unless allowed
LOOPBACK = "127.0.0.0/8,::1/128"


def start_gradesync(
    workdir: Path,
    database_url: str,
    secret: str,
    extra_env: Mapping[str, str] | None = None,
    port: int | None = None,
) -> Child:
    """`gradesync serve` (API + in-process worker), as an operator would run it (with the
    diagnostics of `benchmarks/traced_serve.py` when one is asked for); `port` starts it
    again where a previous one listened (the LMS knows that URL)."""
    port = port or free_port()
    env = {
        "GRADESYNC_DATABASE_URL": database_url,
        "GRADESYNC_SECRET_KEY": secret,
        "GRADESYNC_BASE_URL": f"http://127.0.0.1:{port}",
        "GRADESYNC_DATA_DIR": str(workdir / "data"),
        "GRADESYNC_LOG_LEVEL": "WARNING",
        "GRADESYNC_OUTBOUND_ALLOWED_NETWORKS": LOOPBACK,
        **(extra_env or {}),
    }
    serve = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    asked = {**os.environ, **env}
    if any(k in DIAGNOSTICS for k in asked):
        # diagnostics (benchmarks/traced_serve.py); the same server otherwise
        argv = [sys.executable, "-m", "benchmarks.traced_serve", *serve]
    else:
        argv = [gradesync_command(), *serve]
    # generous: on a saturated machine the server can take over a minute to answer
    child = start("gradesync", argv, port, workdir, env=env, health="/readyz", timeout=240.0)
    child.traced = bool(asked.get("GRADESYNC_BENCH_STATEMENTS"))
    return child


MARK_SIGNAL = signal.SIGRTMIN + 2  # `Child.mark`; traced_serve.py's STATEMENTS_SIGNAL

# what `benchmarks/traced_serve.py` reads; set for one scenario (extra_env) or for the
# whole benchmark run (the environment)
DIAGNOSTICS = frozenset(
    {
        "GRADESYNC_BENCH_TRACEMALLOC",
        "GRADESYNC_BENCH_SQLITE_CACHE_KB",
        "GRADESYNC_BENCH_MALLOC",
        "GRADESYNC_BENCH_STATEMENTS",
    }
)


def gradesync_command() -> str:
    """The `gradesync` script installed next to this interpreter."""
    return str(Path(sys.executable).parent / "gradesync")


def gradesync_env(workdir: Path, database_url: str, secret: str) -> dict[str, str]:
    return {
        **os.environ,
        "GRADESYNC_DATABASE_URL": database_url,
        "GRADESYNC_SECRET_KEY": secret,
        "GRADESYNC_DATA_DIR": str(workdir / "data"),
        "GRADESYNC_OUTBOUND_ALLOWED_NETWORKS": LOOPBACK,
        "PYTHONPATH": child_pythonpath(os.environ.get("PYTHONPATH", "")),
    }


def upgrade_database(workdir: Path, url: str, secret: str) -> None:
    """`gradesync db upgrade`, as an operator runs it (the procrastinate schema too)."""
    subprocess.run(
        [gradesync_command(), "db", "upgrade"],
        env=gradesync_env(workdir, url, secret),
        check=True,
        capture_output=True,
        timeout=300,
    )


def start_workers(workdir: Path, url: str, secret: str, n: int) -> list[subprocess.Popen[bytes]]:
    """`n` `gradesync worker` processes in distributed mode, each logging to its own file."""
    env = {
        **gradesync_env(workdir, url, secret),
        "GRADESYNC_WORKER_MODE": "distributed",
        "GRADESYNC_LOG_LEVEL": "WARNING",
    }
    out = []
    for i in range(n):
        log = (workdir / f"worker-{i}.log").open("wb")
        out.append(
            subprocess.Popen(
                [gradesync_command(), "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(workdir),
            )
        )
    return out
