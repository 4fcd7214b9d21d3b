"""Settings from environment variables (`GRADESYNC_*`) and an optional dotenv-style file.

Precedence: environment, then the file named by `GRADESYNC_CONFIG_FILE`, then defaults. A named
file that cannot be read, or a line in it that is no setting, is refused: either would start
the service on defaults (a fresh database, a new secret key) without a word. The default
database is a SQLite file in the user's data directory, so `gradesync serve` works with no
setup at all.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from dotenv import dotenv_values
from platformdirs import user_data_dir
from pydantic import Field, ValidationError, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    return Path(user_data_dir("gradesync", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GRADESYNC_",
        env_file=os.environ.get("GRADESYNC_CONFIG_FILE") or None,
        # the environment holds other programs' variables; the file holds only ours, so an
        # unknown key in it is a mistyped setting
        extra="forbid",
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    secret_key: str | None = None
    base_url: str = "http://127.0.0.1:8000"  # how LMSs reach this service (LTI URLs)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # "json": one JSON object per line, with request id, tenant, run id and destination
    log_format: Literal["text", "json"] = "text"
    access_log: bool = True  # one line per HTTP request served (`gradesync.access`)
    # SQLite durability: FULL fsyncs every commit, so an acknowledged attempt survives a power
    # cut, not only a crash.
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"
    # Counts and durations are checked here, at start, not where they are first used: a zero
    # poll would spin, a zero lease would hand a result to two workers.
    worker_concurrency: Annotated[int, Field(ge=1)] = 32
    # The sync engine (docs/operations.md). "embedded": `gradesync serve` runs the worker
    # in-process; "distributed" (PostgreSQL): `gradesync worker` processes do, woken through
    # procrastinate, and `serve` only wakes them.
    worker_mode: Literal["embedded", "distributed"] = "embedded"
    worker_poll_seconds: Annotated[float, Field(gt=0)] = 1.0  # look for work unprompted this often
    # a claimed result is held this long at most
    worker_lease_seconds: Annotated[float, Field(gt=0)] = 120.0
    worker_claim_batch: Annotated[int, Field(ge=1)] = 100
    # a run without heartbeat for this long is requeued
    worker_stale_seconds: Annotated[float, Field(gt=0)] = 60.0
    worker_heartbeat_seconds: Annotated[float, Field(gt=0)] = 5.0
    # a `gradesync worker` without its database this long exits non-zero for its supervisor
    worker_database_patience_seconds: Annotated[float, Field(ge=0)] = 60.0
    # backoff: base * 2^(tries-1), with jitter, capped
    retry_base_seconds: Annotated[float, Field(gt=0)] = 1.0
    retry_cap_seconds: Annotated[float, Field(gt=0)] = 300.0
    retry_max_tries: Annotated[int, Field(ge=1)] = 12
    # transient failures in a row that pause a destination
    breaker_threshold: Annotated[int, Field(ge=1)] = 5
    breaker_cooldown_seconds: Annotated[float, Field(ge=0)] = 30.0
    # a run waits this long for retries to settle
    run_retry_patience_seconds: Annotated[float, Field(ge=0)] = 30.0
    # Deep Linking asks the LMS for the columns gradesync made there at most this long, while
    # the instructor waits for the answer (docs/lti13.md)
    deep_link_lookup_seconds: Annotated[float, Field(gt=0)] = 5.0
    # Networks gradesync may send requests to although they are not public (loopback,
    # private, link-local, ...), and reach over plain http: "10.1.0.0/16,127.0.0.1/32".
    # Empty: public addresses over https only (docs/security.md).
    outbound_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Tenants whose admins may rotate the tool's LTI signing keys through the API and the
    # console: "district-a,district-b". The keys sign for every tenant of the installation,
    # so by default only the operator (`gradesync keys rotate-tool-key`) rotates them.
    tool_key_tenants: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The console's session and CSRF cookies carry `Secure`: by default when base_url is https.
    secure_cookies: bool | None = None
    # When set, `/metrics` (on `serve`, and on a worker's metrics address) asks for
    # `Authorization: Bearer <token>`: its labels name tenants and destinations.
    metrics_token: str | None = None
    # Where a `gradesync worker` serves `/metrics` ("HOST:PORT"; port 0 picks a free one):
    # its delivery counters are its own, so Prometheus scrapes every worker. Empty: none.
    worker_metrics_address: str = ""

    @field_validator("log_level", "sqlite_synchronous", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

    @field_validator("worker_mode", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v

    @field_validator("outbound_allowed_networks", mode="before")
    @classmethod
    def _networks(cls, v: object) -> object:
        if isinstance(v, str):
            v = [n for n in v.replace(";", ",").split(",") if n.strip()]
        if isinstance(v, list | tuple):
            for n in v:
                try:
                    ipaddress.ip_network(str(n).strip(), strict=False)
                except ValueError:
                    raise ValueError(
                        f"outbound_allowed_networks: {n!r} is not a network (e.g. 10.1.0.0/16)"
                    ) from None
            return [str(n).strip() for n in v]
        return v

    @field_validator("tool_key_tenants", mode="before")
    @classmethod
    def _tenants(cls, v: object) -> object:
        if isinstance(v, str):
            return [t.strip() for t in v.split(",") if t.strip()]
        return v

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        # LMSs are handed URLs built on it (LTI launch, JWKS): a bare host would make them all
        # wrong, silently
        scheme, sep, rest = v.strip().partition("://")
        if not sep or scheme.lower() not in {"http", "https"} or not rest.strip("/"):
            raise ValueError(f"must be an http(s) URL, e.g. https://grades.example.edu, not {v!r}")
        return v.strip()

    @field_validator("worker_metrics_address")
    @classmethod
    def _address(cls, v: str) -> str:
        if v.strip():
            host_and_port(v)
        return v.strip()

    @property
    def cookies_secure(self) -> bool:
        if self.secure_cookies is not None:
            return self.secure_cookies
        return self.base_url.lower().startswith("https://")

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / 'gradesync.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    def resolved_secret_key(self) -> str:
        """The key that encrypts secrets at rest. Generated and stored once when absent."""
        key, unsaved = self.secret_key_or_new()
        if unsaved is not None:
            key = self.keep_secret_key(key, unsaved)
        return key

    def secret_key_or_new(self) -> tuple[str, Path | None]:
        """(the key, None) when it is set or stored; (a new key, the file to keep it in) when
        neither. The caller keeps it (`keep_secret_key`) only once it has checked that the
        database holds no secret another key encrypted: a stray key file would be taken for
        the deployment's key."""
        if self.secret_key:
            return self.secret_key, None
        path = self.data_dir / "secret.key"
        if path.exists():
            return path.read_text().strip(), None
        return secrets.token_urlsafe(32), path

    def keep_secret_key(self, key: str, path: Path) -> str:
        """Store `key` in `path` and return it; or, when another process started at the same
        time kept its own first, return that one (`key` is dropped): both must use one key."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # written whole under a name of its own, then linked in place: the link fails when
        # the file is there already, and nobody reads a key file half written
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(key)
            os.link(draft, path)
        except FileExistsError:
            return path.read_text().strip()
        finally:
            draft.unlink(missing_ok=True)
        log.warning(
            "GRADESYNC_SECRET_KEY is not set: generated one and stored it in %s. "
            "Back it up; without it stored secrets cannot be decrypted.",
            path,
        )
        return key


def host_and_port(address: str, field: str = "worker_metrics_address") -> tuple[str, int]:
    """("host", port) of "HOST:PORT" ("[::1]:9464"; ":9464" is every interface). ValueError
    naming `field` when it is not one."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{field}: {address!r} is not HOST:PORT (e.g. 0.0.0.0:9464)")
    return host.strip("[]") or "0.0.0.0", int(port)


def load_settings() -> Settings:
    named = os.environ.get("GRADESYNC_CONFIG_FILE") or None
    if named:
        _check_config_file(named)
    return Settings(_env_file=named)  # type: ignore[call-arg]  # pydantic-settings' own argument


def _check_config_file(named: str) -> None:
    """pydantic-settings skips a file that is not there and a line without the prefix
    (`DATABASE_URL=`): both refused here, as bad settings, before anything starts."""
    try:
        Path(named).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc.strerror or str(exc)
        raise _refused([("config_file", "unreadable", f"cannot read it: {why}", named)]) from None
    known = {f"GRADESYNC_{name}".upper() for name in Settings.model_fields}
    unknown = [k for k in dotenv_values(named, encoding="utf-8") if k.upper() not in known]
    if unknown:
        raise _refused([(k, "unknown_setting", _unknown(k, known), None) for k in unknown])


def _unknown(key: str, known: set[str]) -> str:
    hint = f"GRADESYNC_{key.upper()}"
    said = "not a gradesync setting, in the file GRADESYNC_CONFIG_FILE names"
    return f"{said}; did you mean {hint}?" if hint in known else said


def _refused(problems: list[tuple[str, str, str, str | None]]) -> ValidationError:
    return ValidationError.from_exception_data(
        "Settings",
        [
            InitErrorDetails(type=PydanticCustomError(rule, said), loc=(where,), input=given)
            for where, rule, said, given in problems
        ],
    )
