"""The requests gradesync sends to a SIS or an LMS for one admin request are counted in
`gradesync_outbound_requests_total` by tenant, destination and status, like the engine's sends
(docs/operations.md): a SIS connection's check and the class lookup of a mapping, and a
destination's check from the console in a process that runs no worker (the `serve` of the
distributed mode). They went out on a client of their own, without the counting transport,
and were never counted."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from gradesync.adapters.db.database import Database
from gradesync.domain.model import UserRole
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services.accounts import create_user
from gradesync.testing import unique
from tests.support.api import ApiEnv, Caller
from tests.support.console import form_token, sign_in
from tests.support.metrics import samples, value

from .conftest import CLIENT_ID, CLIENT_SECRET

PASSWORD = "correct horse battery"


def _sent(client: TestClient, tenant: str, **labels: str) -> float:
    text = client.get("/metrics").text
    return value(text, "gradesync_outbound_requests_total", tenant=tenant, **labels)


def test_requests_for_an_admin_are_counted_by_destination(
    db: Database, tmp_path: Path, sis: RunningSandbox
) -> None:
    env = ApiEnv(db, tmp_path)
    assert env.runtime.worker is None  # as in `serve` of the distributed mode
    tenant = unique("wire")
    with env.client:
        admin = Caller(env.client, env.tenant(tenant, "admin"))
        body = {"base_url": sis.base_url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        assert admin.put("/sis/connections/sis", json=body).status_code == 200
        assert _sent(env.client, tenant) == 0

        steps = admin.post("/sis/connections/sis/check").json()
        assert [s["passed"] for s in steps] == [True, True, True]
        # the token and the SIS's answers, under the connection, by status
        checked = _sent(env.client, tenant, destination="sis", status="200")
        assert checked >= 2
        assert _sent(env.client, tenant) == checked  # nothing without its destination

        r = admin.put(
            "/sis/connections/sis/classes/c1", json={"class_id": "cls-typo", "school_id": "sch-1"}
        )
        assert r.status_code == 422, r.text  # the SIS was asked, and said it has no such class
        assert _sent(env.client, tenant, destination="sis") > checked

        # the console's Check of the destination
        create_user(
            db.uow,
            env.runtime.clock,
            tenant_id=tenant,
            username="ada",
            password=PASSWORD,
            role=UserRole.ADMIN,
        )
        assert sign_in(env.client, "ada", PASSWORD, tenant=tenant).is_success
        token = form_token(env.client.get("/console/destinations").text)
        before = _sent(env.client, tenant, destination="sis")
        page = env.client.post("/console/destinations/sis/check", data={"csrf": token})
        assert page.status_code == 200, page.text
        assert _sent(env.client, tenant, destination="sis") > before
        text = env.client.get("/metrics").text
        for labels, _ in samples(text, "gradesync_outbound_requests_total", tenant=tenant):
            assert labels["destination"] == "sis", labels
