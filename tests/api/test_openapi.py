"""The API reference works offline and says what everything means: Swagger UI and ReDoc load
their assets from gradesync itself; every operation, field and parameter is described; the
common calls have examples."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from gradesync.testing import ManualClock
from gradesync.web.api import diagnosis, platforms, policies, schedules, schemas, sis
from tests.support.api import ApiEnv, Caller

_ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


def test_docs_pages_load_everything_from_gradesync(api: ApiEnv) -> None:
    for page in ("/docs", "/redoc"):
        r = api.client.get(page)
        assert r.status_code == 200
        assets = _ASSET.findall(r.text)
        assert assets, r.text
        for url in assets:
            assert url.startswith("/"), f"{page} loads {url} from elsewhere"
            got = api.client.get(url)
            assert got.status_code == 200 and len(got.content) > 1000, url
        assert "fonts.googleapis" not in r.text and "cdn" not in r.text.lower()


def test_every_operation_field_and_parameter_is_described(api: ApiEnv) -> None:
    spec = api.client.get("/openapi.json").json()
    missing = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if not op.get("description"):
                missing.append(f"{method.upper()} {path}: description")
            for param in op.get("parameters", []):
                if not param.get("description"):
                    missing.append(f"{method.upper()} {path} ?{param['name']}")
    for name, schema in spec["components"]["schemas"].items():
        for field, prop in (schema.get("properties") or {}).items():
            if not prop.get("description"):
                missing.append(f"{name}.{field}")
    assert not missing, missing


def test_no_operation_description_is_indented_by_accident(api: ApiEnv) -> None:
    """A description is its route's docstring, dedented: a continuation line indented more
    than the others shows at /docs as it is in the code, a line out of place."""
    spec = api.client.get("/openapi.json").json()
    indented = [
        f"{method.upper()} {path}: {line!r}"
        for path, item in spec["paths"].items()
        for method, op in item.items()
        for line in op.get("description", "").splitlines()
        if line[:1].isspace()
    ]
    assert not indented, indented


def test_common_calls_have_examples_that_the_api_accepts(api: ApiEnv) -> None:
    spec = api.client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for name in ("AttemptIn", "AttemptBatchIn", "IngestIn", "SyncIn", "PauseIn"):
        assert schemas[name].get("examples"), name
    key = api.tenant("t1", "admin")
    headers = {"Authorization": f"Bearer {key}"}
    [ingest] = schemas["IngestIn"]["examples"]
    assert api.client.post("/api/v1/ingest", json=ingest, headers=headers).status_code == 202
    [batch] = schemas["AttemptBatchIn"]["examples"]
    ingest_people = {
        "people": [{"id": "alan", "name": "Alan Turing"}],
        "enrollments": [{"course_id": "bio-101", "person_id": "alan"}],
    }
    assert api.client.post("/api/v1/ingest", json=ingest_people, headers=headers).status_code == 202
    r = api.client.post("/api/v1/attempts/batch", json=batch, headers=headers)
    assert r.status_code in (200, 202), r.text


def _request_models() -> dict[str, type[BaseModel]]:
    """The API's request models by the name the document gives their schema."""
    found: dict[str, type[BaseModel]] = {}
    for module in (diagnosis, platforms, policies, schedules, schemas, sis):
        for name, value in vars(module).items():
            if isinstance(value, type) and issubclass(value, BaseModel):
                found[name] = value
    return found


def test_every_example_is_valid_for_its_own_model(api: ApiEnv) -> None:
    spec = api.client.get("/openapi.json").json()
    models = _request_models()
    examples = {
        n: s["examples"] for n, s in spec["components"]["schemas"].items() if "examples" in s
    }
    assert "PauseIn" in examples
    for name, given in examples.items():
        for example in given:
            models[name].model_validate_json(json.dumps(example))


def test_the_pause_example_works_as_written_whenever_it_is_read(api: ApiEnv) -> None:
    """`PauseIn`'s example, which Swagger UI's "Try it out" fills in, held a fixed date that
    had passed: as written it was refused (`until`, `future`)."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    api.destination("t1", "lms")
    for clock in (api.runtime.clock, ManualClock(datetime.now(UTC) + timedelta(days=400))):
        api.runtime.clock = clock
        spec = api.client.get("/openapi.json").json()
        [example] = spec["components"]["schemas"]["PauseIn"]["examples"]
        assert datetime.fromisoformat(example["until"]) > clock.now() + timedelta(hours=6)
        r = admin.post("/destinations/lms/pause", json=example)
        assert r.status_code == 200, r.text
        assert admin.post("/destinations/lms/resume").status_code == 200
