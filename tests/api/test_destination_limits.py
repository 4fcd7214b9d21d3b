"""A destination's limits (`PATCH /destinations/{id}/limits`, `gradesync destinations limits`):
set, cleared, refused when wrong, kept when the destination's registration is replaced, and
read by the engine that enforces them (the enforcement: tests/engine/test_shared_limits.py)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gradesync.cli import app
from gradesync.services import sis
from gradesync.services.delivery.background import BackgroundWrites
from gradesync.services.delivery.governor import Governor
from gradesync.services.engine_config import EngineSettings
from tests.lti.test_units import GOOD
from tests.support.api import ApiEnv, Caller


def _engine_limits(api: ApiEnv, dest_id: str, tenant: str = "uni") -> tuple[int, float | None]:
    """What a fresh engine reads for the destination: (requests at once, requests a second)."""
    governor = Governor(api.db.uow, api.runtime.clock, EngineSettings(), BackgroundWrites())
    with api.db.uow() as uow:
        d = uow.destinations.get(tenant, dest_id)
    assert d is not None
    lim = governor.limits_for(d)
    return lim.total_concurrency, lim.total_rate


@pytest.fixture
def admin(api: ApiEnv) -> Caller:
    caller = Caller(api.client, api.tenant("uni", "admin"))
    assert caller.post("/platforms", json=GOOD).status_code == 201
    return caller


def test_limits_are_set_kept_and_cleared_and_the_engine_reads_them(
    api: ApiEnv, admin: Caller
) -> None:
    assert _engine_limits(api, "canvas") == (8, None)
    r = admin.patch("/destinations/canvas/limits", json={"rate_per_second": 2.5})
    assert r.status_code == 200, r.text
    assert r.json()["config"]["rate_per_second"] == 2.5
    assert _engine_limits(api, "canvas") == (8, 2.5)
    # a limit left out keeps its value
    assert admin.patch("/destinations/canvas/limits", json={"concurrency": 3}).status_code == 200
    assert _engine_limits(api, "canvas") == (3, 2.5)
    # replacing the registration keeps them (no registration carries a rate)
    assert admin.put("/platforms/canvas", json=GOOD).status_code == 200
    assert _engine_limits(api, "canvas") == (3, 2.5)
    # null clears: the default concurrency, no rate limit
    body = {"rate_per_second": None, "concurrency": None}
    assert admin.patch("/destinations/canvas/limits", json=body).status_code == 200
    assert _engine_limits(api, "canvas") == (8, None)


def test_only_the_destinations_own_page_counts_its_ledger_the_others_leave_it_out(
    api: ApiEnv, admin: Caller, api_cli: CliRunner
) -> None:
    """`ledger` is the results counted by delivery state: `GET /destinations/{id}` counts
    them; the answers that do not (limits, pause, resume, the list) leave the field out
    rather than answer it null, as though there were none."""
    shown = admin.get("/destinations/canvas").json()
    assert shown["ledger"] == {}  # counted: nothing yet
    answers = [
        admin.patch("/destinations/canvas/limits", json={"concurrency": 3}),
        admin.post("/destinations/canvas/pause", json={"reason": "exams"}),
        admin.post("/destinations/canvas/resume"),
    ]
    for r in answers:
        assert r.status_code == 200, r.text
        assert "ledger" not in r.json() and r.json()["id"] == "canvas", r.json()
    [listed] = admin.get("/destinations").json()
    assert "ledger" not in listed
    assert {k: v for k, v in shown.items() if k != "ledger"}.keys() == listed.keys()
    r = api_cli.invoke(
        app, ["destinations", "limits", "canvas", "-t", "uni", "--concurrency", "2", "--json"]
    )
    assert r.exit_code == 0, r.output
    assert "ledger" not in json.loads(r.output)
    schemas = api.client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["DestinationShownOut"]["properties"]["ledger"]["type"] == "object"
    assert "ledger" not in schemas["DestinationOut"]["properties"]


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"rate_per_second": 0}, "rate_per_second", "range"),
        ({"rate_per_second": 1e-320}, "rate_per_second", "range"),  # would never send
        ({"rate_per_second": 0.009}, "rate_per_second", "range"),
        ({"rate_per_second": 5000}, "rate_per_second", "range"),
        ({"rate_per_second": "fast"}, "rate_per_second", "number"),
        ({"concurrency": 0}, "concurrency", "range"),
        ({"concurrency": 300}, "concurrency", "range"),
        ({"concurrency": 2.5}, "concurrency", "integer"),
        ({"burst": 4}, "burst", "unknown_field"),
    ],
)
def test_bad_limits_name_the_field_and_change_nothing(
    api: ApiEnv, admin: Caller, body: dict[str, object], field: str, rule: str
) -> None:
    assert admin.patch("/destinations/canvas/limits", json={"concurrency": 4}).status_code == 200
    r = admin.patch("/destinations/canvas/limits", json=body)
    assert r.status_code == 422, r.text
    assert [(d["field"], d["rule"]) for d in r.json()["detail"]] == [(field, rule)]
    assert _engine_limits(api, "canvas") == (4, None)


def test_the_slowest_rate_allowed_is_one_request_per_100_seconds(
    api: ApiEnv, admin: Caller
) -> None:
    r = admin.patch("/destinations/canvas/limits", json={"rate_per_second": 0.01})
    assert r.status_code == 200, r.text
    assert _engine_limits(api, "canvas") == (8, 0.01)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"concurrency": 2.5, "rate_per_second": -3},
            [("concurrency", "integer"), ("rate_per_second", "range")],
        ),
        (
            {"concurrency": -1, "rate_per_second": "x"},
            [("concurrency", "range"), ("rate_per_second", "number")],
        ),
        (
            {"concurrency": 0, "rate_per_second": 0, "burst": 1},
            [("concurrency", "range"), ("rate_per_second", "range"), ("burst", "unknown_field")],
        ),
    ],
)
def test_every_problem_of_the_limits_is_listed_at_once(
    api: ApiEnv, admin: Caller, body: dict[str, object], expected: list[tuple[str, str]]
) -> None:
    """A wrong type of one limit hid the other's value out of range until the first was
    fixed: the ranges were checked only once the types were right."""
    r = admin.patch("/destinations/canvas/limits", json=body)
    assert r.status_code == 422, r.text
    assert sorted((d["field"], d["rule"]) for d in r.json()["detail"]) == sorted(expected)
    assert all(d["loc"] == ["body", d["field"]] for d in r.json()["detail"])
    assert _engine_limits(api, "canvas") == (8, None)


def _connect_sis(api: ApiEnv) -> None:
    """The tenant's SIS, "sis" (at most 64 requests at once)."""
    sis.add_connection(
        api.db.uow,
        api.runtime.clock,
        tenant_id="uni",
        destination_id="sis",
        name="SIS",
        base_url="http://sis.example/",
        client_id="gs",
        client_secret="secret-1",
    )


def test_a_sis_takes_at_most_64_at_once_and_its_updates_keep_the_rate(api: ApiEnv) -> None:
    c = Caller(api.client, api.tenant("uni", "admin"))
    _connect_sis(api)
    r = c.patch("/destinations/sis/limits", json={"concurrency": 65})
    assert [(d["field"], d["rule"]) for d in r.json()["detail"]] == [("concurrency", "range")]
    assert c.patch("/destinations/sis/limits", json={"rate_per_second": 10}).status_code == 200
    sis.add_connection(  # rotating the secret
        api.db.uow,
        api.runtime.clock,
        tenant_id="uni",
        destination_id="sis",
        name=None,
        base_url=None,
        client_secret="secret-2",
    )
    assert _engine_limits(api, "sis") == (4, 10)


def test_limits_need_an_admin_key_and_a_destination_of_the_tenant(
    api: ApiEnv, admin: Caller
) -> None:
    ingest = Caller(api.client, api.tenant("uni", "ingest"))
    assert ingest.patch("/destinations/canvas/limits", json={"concurrency": 2}).status_code == 403
    assert admin.patch("/destinations/nope/limits", json={"concurrency": 2}).status_code == 404
    other = Caller(api.client, api.tenant("other", "admin"))
    assert other.patch("/destinations/canvas/limits", json={"concurrency": 2}).status_code == 404
    assert _engine_limits(api, "canvas") == (8, None)


def test_the_cli_sets_and_clears_limits(api: ApiEnv, admin: Caller, api_cli: CliRunner) -> None:

    def limits(*args: str) -> tuple[int, str]:
        r = api_cli.invoke(app, ["destinations", "limits", "canvas", "-t", "uni", *args])
        return r.exit_code, r.output

    code, out = limits("--rate-per-second", "4", "--concurrency", "2")
    assert code == 0, out
    assert "concurrency 2, 4.0 requests/s" in out
    assert _engine_limits(api, "canvas") == (2, 4.0)
    code, out = limits("--concurrency", "3", "--default-concurrency")
    assert code == 2 and "--concurrency" in out
    # a clash is said with what else is wrong, all at once
    code, out = limits("--rate-per-second", "-1", "--no-rate-limit")
    assert code == 2 and "not both" in out and "from 0.01 (one request per 100 s)" in out, out
    # at the destination's own bounds: a SIS takes at most 64 at once, an LMS 256
    _connect_sis(api)
    code, out = limits("--concurrency", "100", "--default-concurrency")
    assert code == 2 and "not both" in out and "range" not in out, out  # 100: within an LMS's
    r = api_cli.invoke(
        app,
        [
            "destinations",
            "limits",
            "sis",
            "-t",
            "uni",
            "--concurrency",
            "100",
            "--default-concurrency",
        ],
    )
    assert r.exit_code == 2 and "not both" in r.output and "[range]" in r.output, r.output
    assert "64" in r.output, r.output
    code, out = limits("--rate-per-second", "-1")  # named by its option, not the API's field
    assert code == 2 and out.startswith("error: --rate-per-second:"), out
    code, out = limits("--rate-per-second", "1e-320")  # accepted, it would never send
    assert code == 2 and out.startswith("error: --rate-per-second:"), out
    assert "from 0.01 (one request per 100 s)" in out
    code, out = limits("--concurrency", "0")
    assert code == 2 and "error: --concurrency" in out
    assert _engine_limits(api, "canvas") == (2, 4.0)
    code, out = limits("--no-rate-limit", "--default-concurrency")
    assert code == 0, out
    assert _engine_limits(api, "canvas") == (8, None)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"concurrency": 100, "rate_per_second": 0},
            [("concurrency", "range"), ("rate_per_second", "range")],
        ),
        (
            {"concurrency": 100, "burst": 1},
            [("burst", "unknown_field"), ("concurrency", "range")],
        ),
        (
            {"concurrency": 65.0, "rate_per_second": "x"},
            [("concurrency", "range"), ("rate_per_second", "number")],
        ),
    ],
)
def test_a_sis_concurrency_over_its_bound_is_listed_with_the_other_problems(
    api: ApiEnv, body: dict[str, object], expected: list[tuple[str, str]]
) -> None:
    """A SIS's bound (64, not 256) needs the stored destination: it was checked only once the
    rest of the body was right, so the body's other problems hid it (one fix, another 422)."""
    c = Caller(api.client, api.tenant("uni", "admin"))
    _connect_sis(api)
    r = c.patch("/destinations/sis/limits", json=body)
    assert r.status_code == 422, r.text
    assert sorted((d["field"], d["rule"]) for d in r.json()["detail"]) == expected
    assert all(d["loc"] == ["body", d["field"]] for d in r.json()["detail"])
    concurrency = next(d for d in r.json()["detail"] if d["field"] == "concurrency")
    assert "from 1 to 64" in concurrency["msg"]
    assert _engine_limits(api, "sis") == (4, None)
    # an LMS takes 100 at once: only the other problem
    assert c.post("/platforms", json=GOOD).status_code == 201
    r = c.patch("/destinations/canvas/limits", json=body)
    assert [d["field"] for d in r.json()["detail"]] == [
        f for f, _ in expected if f != "concurrency"
    ]


def test_a_sis_connection_lists_its_concurrency_with_the_other_problems(api: ApiEnv) -> None:
    """Creating or updating a SIS connection checks its 64 beside the body's other fields."""
    c = Caller(api.client, api.tenant("uni", "admin"))
    body = {"name": "", "profile": {"concurrency": 100}, "file_based": True}
    r = c.put("/sis/connections/files", json=body)
    assert r.status_code == 422, r.text
    assert sorted((d["field"], d["rule"]) for d in r.json()["detail"]) == [
        ("name", "required"),
        ("profile.concurrency", "maximum"),
    ]
    assert c.get("/destinations/files").status_code == 404
    assert c.put("/sis/connections/files", json={"file_based": True}).status_code == 200
    r = c.put("/sis/connections/files", json=body)
    assert r.status_code == 422, r.text
    assert len(r.json()["detail"]) == 2
    assert c.get("/destinations/files").json()["name"] == "files"
