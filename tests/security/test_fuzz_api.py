"""Every operation, fuzzed from the server's own OpenAPI document (schemathesis), with this
tenant's key, without a key and with another tenant's key: no 5xx, every status code and every
answer as the document says, every request the document allows accepted and every request it
forbids refused.

A 422 for a schema-valid request is accepted only when every rule it names is one the document
lists for that operation as a rule beyond the schema (`x-rules`: a reference to something not
stored, a rule over several fields). A fixed, derandomized number of examples per operation and
mode, no shrinking, and the two other callers on every third example keep the run bounded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from gradesync.adapters.db.database import Database
from gradesync.services.outbound import FixedResolver
from tests.support.api import ROSTER, ApiEnv, Caller

# per operation and mode; on PostgreSQL fewer, for what differs by backend (validation is the
# API's own, before storage): the whole run stays near two minutes on a loaded 2-core machine
EXAMPLES = {"sqlite": 4, "postgresql": 2}


@pytest.fixture
def fuzzed(db: Database, tmp_path: Path) -> Iterator[tuple[ApiEnv, dict[str, str]]]:
    env = ApiEnv(db, tmp_path)
    # registration URLs are checked by the outbound guard: names resolve from an empty table,
    # so a fuzzed host name never becomes a DNS query
    env.runtime.outbound = dataclasses.replace(env.runtime.outbound, resolver=FixedResolver({}))
    # this tenant's admins rotate the tool keys (`POST /lti/tool-keys`), another's may not
    env.runtime.settings = env.runtime.settings.model_copy(
        update={"tool_key_tenants": ["school-a"]}
    )
    with env.client:
        own = env.tenant("school-a", "admin", "ingest", "sync")
        other = env.tenant("school-b", "admin", "ingest", "sync")
        assert Caller(env.client, own).post("/ingest", json=ROSTER).status_code == 202
        env.destination("school-a", "lms")
        yield env, {"own": own, "other": other}


def _rules_beyond_schema(case: Case, response: Response) -> bool:
    """A 422 naming only rules the document lists for the operation beyond its schema."""
    if response.status_code != 422:
        return False
    documented = case.operation.definition.raw["responses"]["422"].get("x-rules", [])
    try:
        named = {problem["rule"] for problem in response.json()["detail"]}
    except (ValueError, KeyError, TypeError):
        return False
    return bool(named) and named <= set(documented)


@schemathesis.check
def schema_valid_accepted(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    if _rules_beyond_schema(case, response):
        return None
    if not case.operation.path.startswith("/api/"):
        # the LTI endpoints answer an LMS's signed messages: no schema says which issuer is
        # registered or which signature verifies (their refusals are documented statuses)
        return None
    return positive_data_acceptance(ctx, response, case)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    schema_valid_accepted,
]


def test_every_answer_is_as_documented(fuzzed: tuple[ApiEnv, dict[str, str]]) -> None:
    env, keys = fuzzed
    schema = schemathesis.openapi.from_asgi("/openapi.json", env.app)
    own = {"Authorization": f"Bearer {keys['own']}"}
    others = [{}, {"Authorization": f"Bearer {keys['other']}"}]  # no key; another tenant's
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in GenerationMode:
            if mode is GenerationMode.NEGATIVE and not _has_inputs(operation.definition.raw):
                continue  # nothing to make invalid
            _fuzzer(
                operation,
                mode,
                own,
                others,
                EXAMPLES["sqlite" if env.db.is_sqlite else "postgresql"],
            )()
    assert operations > 40


def _fuzzer(
    operation: Any,
    mode: GenerationMode,
    own: dict[str, str],
    others: list[dict[str, str]],
    examples_per_mode: int,
) -> Callable[[], None]:
    examples = iter(range(10**6))

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples_per_mode,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Case) -> None:
        if _key_mutated(case):
            # the invalid part is the key itself (missing or malformed): send it so
            case.call_and_validate(checks=CHECKS)
            return
        callers = [own, *others] if next(examples) % 3 == 0 else [own]
        for headers in callers:
            case.call_and_validate(headers=headers, checks=CHECKS)

    return fuzz  # type: ignore[no-any-return]


def _key_mutated(case: Case) -> bool:
    data = case.meta.phase.data if case.meta is not None else None
    mutations = getattr(data, "mutations", None) or ()
    return any(str(m.parameter).lower() == "authorization" for m in mutations)


def _has_inputs(op: dict[str, Any]) -> bool:
    return bool(op.get("parameters") or op.get("requestBody"))
