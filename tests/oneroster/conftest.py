"""A sandbox SIS on loopback and helpers to talk to it the way the engine does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft7Validator

from gradesync.adapters.destinations.registry import DestinationContext
from gradesync.domain.model import Destination, DestinationKind
from gradesync.sandbox.config import SandboxConfig
from gradesync.sandbox.testing import RunningSandbox, running_sandbox

# the official OneRoster 1.2 gradebook OpenAPI, as the sandbox ships it
SPEC = Path(__file__).parents[2] / "src/gradesync/sandbox/oneroster-v1p2-gradebook-openapi.json"

CLIENT_ID, CLIENT_SECRET = "gradesync", "s3cret-value"

SIS_SEED: dict[str, Any] = {
    "profile": {"max_title_length": 30, "due_date_in_term": True},
    "clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}],
    "schools": ["sch-1"],
    "terms": [{"sourcedId": "term-1", "start": "2025-01-06", "end": "2025-06-20"}],
    "students": [{"sourcedId": "stu-1"}, {"sourcedId": "stu-2"}, {"sourcedId": "stu-3"}],
    "classes": [
        {"sourcedId": "cls-1", "school": "sch-1", "term": "term-1", "students": ["stu-1", "stu-2"]},
        {"sourcedId": "cls-2", "school": "sch-1", "term": "term-1", "students": ["stu-3"]},
    ],
    "categories": [
        {"sourcedId": "cat-hw", "title": "Homework", "classes": ["cls-1"]},
        {"sourcedId": "cat-quiz", "title": "Quizzes", "classes": ["cls-1"]},
    ],
}


@pytest.fixture
def sis() -> Iterator[RunningSandbox]:
    config = SandboxConfig.model_validate({"seed": {"sis": SIS_SEED}})
    with running_sandbox(config) as sandbox:
        yield sandbox


@pytest.fixture
async def context() -> AsyncIterator[DestinationContext]:
    async with httpx.AsyncClient() as http:
        yield DestinationContext(http=http)


def sis_destination(base_url: str, **config: Any) -> Destination:
    return Destination(
        tenant_id="t1",
        id="sis",
        kind=DestinationKind.ONEROSTER_REST,
        name="Sandbox SIS",
        config={"base_url": base_url, "client_id": CLIENT_ID, "name_max_length": 30, **config},
        secret={"client_secret": CLIENT_SECRET},
    )


class Spec:
    """The official OneRoster 1.2 gradebook OpenAPI, for checking our own bodies."""

    def __init__(self) -> None:
        self.doc = json.loads(SPEC.read_text(encoding="utf-8"))

    def problems(self, schema: str, instance: Any) -> list[str]:
        wrapper = {"$ref": f"#/components/schemas/{schema}", "components": self.doc["components"]}
        return [e.message for e in Draft7Validator(wrapper).iter_errors(instance)]


@pytest.fixture(scope="session")
def spec() -> Spec:
    return Spec()
