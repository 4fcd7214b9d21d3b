"""Seeding from a file, admin endpoints, inspection, the CLI entry, and the isolation rule."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

import gradesync.sandbox
from gradesync.sandbox.cli import StartOptions, build_config
from gradesync.sandbox.config import config_from_file
from gradesync.sandbox.testing import AdminError, RunningSandbox, running_sandbox
from gradesync.testing import wait_for
from tests.support.cli import GRADESYNC, free_port

SEED = """
users:
  - {sub: u1, name: Ada, sis_id: s1}
courses:
  - id: bio
    title: Biology
    learners: [u1, u9]
    sections: [{id: sec-a, title: Section A, sis_id: cls1, learners: [u2]}]
    line_items: [{label: Lab 1, scoreMaximum: 10}]
sis:
  profile: {max_title_length: 30}
  classes: [{sourcedId: cls1, school: sch1, students: [s1]}]
  categories: [{sourcedId: cat1, title: Labs}]
"""


def test_seed_file_and_inspection(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(SEED)
    config = config_from_file(path, mode="moodle")
    assert config.mode == "moodle" and config.seed.sis.profile.max_title_length == 30
    with running_sandbox(config) as running:
        snapshot = running.admin.inspect()
        course = snapshot["lms"]["courses"][0]
        assert course["learners"] == ["u1", "u2", "u9"]
        assert course["line_items"][0]["label"] == "Lab 1"
        assert snapshot["sis"]["classes"][0]["students"] == ["s1"]
        assert snapshot["sis"]["profile"]["max_title_length"] == 30
        number = course["line_items"][0]["id"]
        running.admin.instructor_grade("bio", number, "u1", 8, "<b>well done</b>")
        page = httpx.get(running.base_url + "/_sandbox/")
        assert page.status_code == 200 and "Lab 1" in page.text
        assert "&lt;b&gt;well done&lt;/b&gt;" in page.text  # escaped, never raw HTML
        scores = running.admin.inspect("bio")["lms"]["courses"][0]["line_items"][0]["scores"]
        assert scores["u1"]["resultScore"] == 8 and scores["u1"]["history"] == 1


def test_full_config_file_with_faults(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.json"
    path.write_text(
        '{"mode": "canvas", "rng_seed": 3, "faults": {"scores": {"error_rate": 0.2}}, "seed": {}}'
    )
    config = config_from_file(path)
    assert config.mode == "canvas" and config.faults["scores"].error_rate == 0.2


def test_bad_seed_is_refused_with_the_field(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(yaml.safe_dump({"courses": [{"id": "has space"}]}))
    with pytest.raises(ValueError, match=r"courses\.0\.id"):
        config_from_file(path)


def test_admin_endpoints_validate(sandbox: RunningSandbox) -> None:
    with pytest.raises(AdminError) as missing:
        sandbox.admin.add_line_item("nope", label="X", scoreMaximum=1)
    assert missing.value.status == 404
    with pytest.raises(AdminError) as invalid:
        sandbox.admin.add_line_item("c1", label="X", scoreMaximum=0)
    assert invalid.value.status == 422 and "scoreMaximum" in invalid.value.body["error"]
    with pytest.raises(AdminError) as tool:
        sandbox.admin.register_tool(client_id="keyless")
    assert "jwks_url or public_key" in tool.value.body["error"]
    sandbox.admin.add_user(sub="u7", name="New")
    sandbox.admin.enroll("c1", "u7")
    assert "u7" in sandbox.admin.inspect("c1")["lms"]["courses"][0]["learners"]
    sandbox.admin.unenroll("c1", "u7")
    assert "u7" not in sandbox.admin.inspect("c1")["lms"]["courses"][0]["learners"]
    assert sandbox.admin.set_mode("canvas")["mode"] == "canvas"


def test_cli_config_from_flags(tmp_path: Path) -> None:
    config = build_config(
        StartOptions(
            host="127.0.0.1", port=9999, mode="canvas", faults='{"token": {"latency_ms": 5}}'
        )
    )
    assert config.base_url == "http://127.0.0.1:9999"
    assert config.faults["token"].latency_ms == 5
    path = tmp_path / "seed.yaml"
    path.write_text(SEED)
    assert build_config(StartOptions(seed_file=path)).seed.courses[0].id == "bio"


def _issuer_served(env: dict[str, str], log_path: Path, *args: str) -> str:
    """The issuer `gradesync sandbox ARGS` says it is, once it serves."""
    port = free_port()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [GRADESYNC, "sandbox", "--port", str(port), *args], env=env, stdout=log, stderr=log
        )

        def inspect() -> dict[str, object] | None:
            assert proc.poll() is None, log_path.read_text()
            try:
                url = f"http://127.0.0.1:{port}/_sandbox/inspect"
                return httpx.get(url, timeout=1).json()  # type: ignore[no-any-return]
            except httpx.TransportError:
                return None

        try:
            snapshot = wait_for(inspect, "the sandbox to serve", explain=log_path.read_text)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    return str(snapshot["issuer"])


def test_a_seed_files_base_url_is_the_issuer_unless_the_flag_says_otherwise(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """docs/sandbox.md: a full config file may set `base_url`; `--base-url` wins over it, and
    only without either is the issuer the bound address."""
    path = tmp_path / "sandbox.yaml"
    path.write_text("base_url: https://lms.example.test/\nseed: {}\n")
    log = tmp_path / "sandbox.log"
    assert _issuer_served(cli_env, log, "--seed-file", str(path)) == "https://lms.example.test"
    flag = "https://other.example.test"
    assert _issuer_served(cli_env, log, "--seed-file", str(path), "--base-url", flag) == flag
    plain = tmp_path / "plain.yaml"
    plain.write_text("seed: {}\n")
    assert _issuer_served(cli_env, log, "--seed-file", str(plain)).startswith("http://127.0.0.1:")


def test_sandbox_imports_nothing_else_from_gradesync() -> None:
    package = Path(gradesync.sandbox.__file__).parent
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith("gradesync") or name.startswith("gradesync.sandbox"), (
                    f"{source.name} imports {name}"
                )
