"""The README's first command: `gradesync serve --demo` shows grades landing in the sandbox."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx

from gradesync.adapters.db.single_server import ServerLock


def test_serve_demo_delivers_grades_to_the_sandbox(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADESYNC_")}
    env.update(GRADESYNC_DATA_DIR=str(tmp_path), COLUMNS="200")
    gradesync = Path(sys.executable).with_name("gradesync")
    proc = subprocess.run(
        [
            str(gradesync),
            "serve",
            "--demo",
            "--port",
            "0",
            "--sandbox-port",
            "0",
            "--demo-attempts",
            "5",
            "--demo-exit",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    landed = [line for line in proc.stdout.splitlines() if "in the LMS gradebook after" in line]
    assert landed, proc.stdout
    # a learner who never opened the link gets her grade through the LMS roster (NRPS)
    assert "never did" in proc.stdout
    assert any("Margaret Hamilton" in line for line in landed), proc.stdout
    assert "grades delivered" in proc.stdout
    assert "passed back over OneRoster" in proc.stdout
    # the demo keeps its own database: a real one in the data directory is never touched
    assert (tmp_path / "demo" / "gradesync.db").exists()
    assert not (tmp_path / "gradesync.db").exists()

    # the banner's lines, as printed, are all a shell needs for the CLI: the LMS's secret
    # decrypts (the data directory holds the key) and the tool's URLs are the demo's
    exported = {
        name: value
        for line in proc.stdout.splitlines()
        if "export GRADESYNC_" in line
        for name, _, value in (
            word.partition("=") for word in shlex.split(line.split("export ", 1)[1])
        )
    }
    assert {"GRADESYNC_DATA_DIR", "GRADESYNC_DATABASE_URL", "GRADESYNC_TENANT"} <= set(exported)
    cli = {k: v for k, v in os.environ.items() if not k.startswith("GRADESYNC_")} | exported

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(gradesync), *argv], env=cli, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, (argv, done.stderr)
        return done

    assert "lms" in run("destinations", "list").stdout
    shown = json.loads(run("platforms", "show", "lms", "--json").stdout)
    assert shown["tool"]["oidc_login_url"] == exported["GRADESYNC_BASE_URL"] + "/lti/login"


def test_a_second_demo_on_one_data_directory_is_refused_and_wipes_nothing(
    tmp_path: Path,
) -> None:
    """A demo starts from a fresh database: a second one would delete the database the first
    is serving. It is refused in one line instead, naming the running one."""
    running = ServerLock(tmp_path / "demo")  # what a running demo holds
    running.acquire()
    try:
        (tmp_path / "demo").mkdir()
        served = tmp_path / "demo" / "gradesync.db"
        served.write_bytes(b"the first demo's data")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRADESYNC_")}
        env.update(GRADESYNC_DATA_DIR=str(tmp_path), COLUMNS="200")
        gradesync = Path(sys.executable).with_name("gradesync")
        proc = subprocess.run(
            [str(gradesync), "serve", "--demo", "--port", "0", "--sandbox-port", "0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert proc.stderr == (
            f"error: another gradesync serve --demo (pid {os.getpid()}) is running on "
            f"{tmp_path / 'demo'}. Stop it, or give this one its own data directory "
            "(GRADESYNC_DATA_DIR).\n"
        )
        assert served.read_bytes() == b"the first demo's data"
    finally:
        running.release()


def test_a_grade_the_lms_does_not_take_is_said_late_and_the_demo_goes_on(tmp_path: Path) -> None:
    """An LMS failing every score (or a machine too loaded to deliver within the demo's
    patience) ended the demo with a traceback. Now the late grade is one line saying
    gradesync keeps trying and how to ask why, and `--demo-exit` ends non-zero."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADESYNC_")}
    env.update(GRADESYNC_DATA_DIR=str(tmp_path), COLUMNS="200")
    gradesync = Path(sys.executable).with_name("gradesync")
    argv = ["serve", "--demo", "--port", "0", "--sandbox-port", "0", "--demo-attempts", "1"]
    proc = subprocess.Popen(
        [str(gradesync), *argv, "--demo-exit"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        before = []
        for line in proc.stdout:  # the banner comes before any grade is sent
            before.append(line)
            if found := re.search(r"sandbox LMS\s+(http://\S+)/_sandbox/", line):
                break
        assert found, "".join(before)
        failing = {"scores": {"error_rate": 1.0, "error_status": 503}}
        httpx.patch(f"{found[1]}/_sandbox/faults", json=failing).raise_for_status()
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    out = "".join(before) + out
    assert proc.returncode == 1, out + err
    assert "Traceback" not in out + err, out + err
    late = [line for line in out.splitlines() if "not in the LMS gradebook after 15 s" in line]
    assert len(late) == 1, out
    assert "gradesync keeps trying. Why: gradesync doctor -l u-margaret -a" in late[0]
    assert "1 grade(s) not in the LMS gradebook within 15 s" in out
