"""Every API operation, fuzzed from its own OpenAPI document (schemathesis), with a key, without
one and with another tenant's key: no input gets a 5xx. A fixed, derandomized number of examples
per operation keeps the run to a couple of minutes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from gradesync.adapters.db.database import Database
from tests.support.api import ROSTER, ApiEnv, Caller

EXAMPLES = 6


@pytest.fixture
def fuzzed(db: Database, tmp_path: Path) -> Iterator[tuple[ApiEnv, dict[str, str]]]:
    env = ApiEnv(db, tmp_path)
    with env.client:
        own = env.tenant("school-a", "admin", "ingest", "sync")
        other = env.tenant("school-b", "admin", "ingest", "sync")
        assert Caller(env.client, own).post("/ingest", json=ROSTER).status_code == 202
        env.destination("school-a", "lms")
        yield env, {"own": own, "other": other}


def test_no_input_gets_a_server_error(fuzzed: tuple[ApiEnv, dict[str, str]]) -> None:
    env, keys = fuzzed
    schema = schemathesis.openapi.from_asgi("/openapi.json", env.app)
    callers = (
        {"Authorization": f"Bearer {keys['own']}"},  # this tenant's key
        {},  # no key
        {"Authorization": f"Bearer {keys['other']}"},  # another tenant's key
    )
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            for headers in callers:
                case.call_and_validate(headers=headers, checks=[not_a_server_error])

        fuzz()
    assert operations > 40
