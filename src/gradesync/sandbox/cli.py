"""Run the sandbox from a terminal: `gradesync sandbox` or `python -m gradesync.sandbox`."""

from __future__ import annotations

import argparse
import errno
import json
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from pydantic import ValidationError

from .app import create_app
from .config import SandboxConfig, config_from_file, load_seed_file
from .state import SeedProblems


@dataclass(frozen=True, slots=True)
class StartOptions:
    """What the sandbox is started with (its flags, `--log-level` aside): where it listens,
    the seed file, and what overrides the file's settings."""

    host: str = "127.0.0.1"
    port: int = 8765
    seed_file: str | Path | None = None
    mode: str | None = None
    base_url: str | None = None
    rng_seed: int | None = None
    faults: str | None = None  # JSON: {group: settings}


def build_config(options: StartOptions) -> SandboxConfig:
    """Config from a seed file and flags (flags win).
    The base URL is `--base-url`, else the file's, else the bound address."""
    overrides = {
        "mode": options.mode,
        "base_url": options.base_url,
        "rng_seed": options.rng_seed,
        "faults": json.loads(options.faults) if options.faults else None,
    }
    if options.seed_file is not None:
        config = config_from_file(options.seed_file, **overrides)
    else:
        config = SandboxConfig.model_validate({k: v for k, v in overrides.items() if v is not None})
    if config.base_url is None:
        # the default only fills a gap: a file's `base_url` is not overwritten by it
        config = config.model_copy(update={"base_url": f"http://{options.host}:{options.port}"})
    return config


class StartRefused(Exception):
    """Why the sandbox does not start, told the same way by `gradesync sandbox` and
    `python -m gradesync.sandbox`: one line per problem (its path in the seed file or the
    option, the rule, the sentence), or one sentence; and the exit code (2 bad input, 1 the
    port cannot be listened on, as `gradesync serve` says it)."""

    def __init__(
        self, message: str, problems: Sequence[tuple[str, str, str]] = (), exit_code: int = 2
    ) -> None:
        self.message = message
        self.problems = tuple(problems)
        self.exit_code = exit_code
        super().__init__("; ".join(self.lines()))

    def lines(self) -> list[str]:
        if not self.problems:
            return [self.message]
        return [f"{path}: {message} [{rule}]" for path, rule, message in self.problems]


def prepare(options: StartOptions) -> tuple[Any, SandboxConfig]:
    """The app and its config; a seed file or --faults it refuses raise StartRefused."""
    try:
        config = build_config(options)
        return create_app(config), config  # the seed's references are checked here
    except Exception as exc:
        seed_file = Path(options.seed_file) if options.seed_file is not None else None
        refused = refusal(exc, seed_file)
        if refused is None:
            raise
        raise refused from exc


def refusal(exc: BaseException, seed_file: Path | None) -> StartRefused | None:
    """A seed file or --faults the sandbox refuses, one problem per field named by its path
    in the file (`tools[0].scopes`) and the rule, not a traceback; None for another error."""
    where = f" (in {seed_file})" if seed_file else ""
    refused = "the sandbox's seed or faults are refused"
    if isinstance(exc, ValidationError):
        return StartRefused(
            refused,
            [
                (
                    _path(e["loc"], seed_file),
                    e["type"],
                    str(e["msg"]).removeprefix("Value error, ") + where,
                )
                for e in exc.errors()
            ],
        )
    if isinstance(exc, SeedProblems):
        return StartRefused(
            refused,
            [
                (_path(("seed", *loc), seed_file), rule, msg + where)
                for loc, rule, msg in exc.problems
            ],
        )
    if isinstance(exc, json.JSONDecodeError):
        return StartRefused(str(exc), [("--faults", "json", str(exc))])
    if isinstance(exc, OSError):
        message = f"cannot read {exc.filename or seed_file}: {exc.strerror or exc}"
        return StartRefused(message, [("--seed-file", "unreadable", message)])
    if isinstance(exc, yaml.YAMLError | ValueError):
        # an unreadable or unparsable file, or a seed naming what is not there ("field: ...")
        text = " ".join(str(exc).split())
        field, sep, message = text.partition(": ")
        if not sep or " " in field:
            field, message = "--seed-file", text
        return StartRefused(text, [(field, "invalid", message + where)])
    return None


def _path(loc: Sequence[Any], seed_file: Path | None) -> str:
    """("seed", "tools", 0, "scopes") as `tools[0].scopes`: how it reads in the file, which
    holds the seed at its top level unless it has a `seed:` key."""
    parts = list(loc)
    if parts[:1] == ["seed"] and seed_file is not None and not _has_seed_key(seed_file):
        parts = parts[1:]
    if parts[:1] == ["faults"] and seed_file is None:
        return "--faults" + "".join(f".{p}" for p in parts[1:])
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "--seed-file"


def _has_seed_key(seed_file: Path) -> bool:
    return "seed" in load_seed_file(seed_file)


def listening(host: str, port: int) -> socket.socket:
    """The socket the sandbox serves on, bound and listening (connections wait in its
    backlog until uvicorn accepts them); a port in use is one sentence saying which, as
    `gradesync serve` says it."""
    sock: socket.socket | None = None
    try:
        # the host's own family: an IPv6 address (`::1`) or a name resolving to one
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        if sock is not None:
            sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartRefused(
                f"cannot listen on {host}:{port}: in use. Choose another port with --port (or "
                "stop what uses it).",
                exit_code=1,
            ) from exc
        why = exc.strerror or str(exc)
        raise StartRefused(
            f"cannot listen on {host}:{port}: {why}. Check --host (an address of this machine).",
            exit_code=1,
        ) from exc
    return sock


def run(
    host: str = "127.0.0.1",
    port: int = 8765,
    seed_file: str | Path | None = None,
    mode: str | None = None,
    base_url: str | None = None,
    rng_seed: int | None = None,
    faults: str | None = None,
    log_level: str = "info",
) -> None:
    """Serve the sandbox until interrupted (blocking). Raises StartRefused."""
    app, config = prepare(StartOptions(host, port, seed_file, mode, base_url, rng_seed, faults))
    serve_app(app, config, host, port, log_level)


def serve_app(app: Any, config: SandboxConfig, host: str, port: int, log_level: str) -> None:
    """Serve the app `create_app(config)` made until interrupted (blocking). The banner is
    printed once the port listens; a port that cannot be listened on raises StartRefused
    before anything is printed."""
    sock = listening(host, port)
    print(
        f"gradesync sandbox ({config.mode}) on {config.base_url}, "
        f"inspect at {config.base_url}/_sandbox/",
        flush=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False)
    )
    server.run(sockets=[sock])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gradesync.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed-file", help="YAML or JSON seed file (see docs/sandbox.md)")
    parser.add_argument("--mode", choices=["canvas", "moodle", "generic"])
    parser.add_argument("--base-url", help="public URL and LTI issuer (default http://host:port)")
    parser.add_argument("--rng-seed", type=int, help="seed for random fault decisions")
    parser.add_argument("--faults", help='JSON, e.g. \'{"scores": {"error_rate": 0.1}}\'')
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    try:
        run(
            host=args.host,
            port=args.port,
            seed_file=args.seed_file,
            mode=args.mode,
            base_url=args.base_url,
            rng_seed=args.rng_seed,
            faults=args.faults,
            log_level=args.log_level,
        )
    except StartRefused as refused:
        for line in refused.lines():
            print(f"error: {line}", file=sys.stderr)
        raise SystemExit(refused.exit_code) from None
