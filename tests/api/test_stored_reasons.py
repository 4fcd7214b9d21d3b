"""A ledger row's reason is stored as its code, what happened and its remedy's code and ids,
never in one reader's words: the API, the console and the command line each read the remedy
in their own words, and a diagnosis's evidence quotes what happened, never a command to a
reader who has no command line. Rows stored before, with the command line's words in them,
read the same."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from html import unescape
from typing import Any

import pytest
from typer.testing import CliRunner

from gradesync.cli import app
from gradesync.domain.ledger import stored
from gradesync.domain.model import DeliveryState, LedgerKey, LedgerRow, UserRole
from gradesync.domain.reasons import Reason
from gradesync.domain.remedies import Remedy, names_command
from gradesync.services.accounts import create_user
from tests.support.api import ROSTER, ApiEnv, Caller
from tests.support.console import sign_in
from tests.support.sis import file_based_sis

PASSWORD = "a-long-password-1"
UNTICKED = "The activity 'Quiz 1' is not selected for SIS passback."
REFUSED = "The SIS refused gradesync's client (invalid_client)."
# as the delivery code stored them before: what happened, then the command line's remedy
WORDS = {
    "a1": f"{UNTICKED} — Tick 'Sync to SIS' for it (gradesync sis select sis a1).",
    "a2": f"{REFUSED} — Check the SIS client id and secret: gradesync sis add sis --client-id ID "
    "--client-secret SECRET",
}
# as it is stored now (`domain.ledger.stored`)
CODES = {
    "a1": stored(
        Reason(
            "not_selected_for_sis", UNTICKED, Remedy("not_selected_for_sis", "sis", activity="a1")
        )
    ),
    "a2": stored(Reason("bad_credentials", REFUSED, Remedy("sis_credentials", "sis"))),
}


def _school(api: ApiEnv, texts: dict[str, str]) -> Caller:
    """Biology 101 at a file-based SIS `sis`, its class mapped; Ada's Quiz 1 left out (not
    ticked for the SIS) and her Quiz 2 refused by the SIS, their reasons stored as `texts`;
    an admin `ops` and an instructor `ines` of the course."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    assert admin.post("/ingest", json=ROSTER).status_code == 202
    rt = api.runtime
    file_based_sis(rt.db.uow, rt.clock)
    for username, role, courses in (
        ("ops", UserRole.ADMIN, None),
        ("ines", UserRole.INSTRUCTOR, ["c1"]),
    ):
        create_user(
            api.db.uow, rt.clock, tenant_id="t1", username=username, password=PASSWORD,
            role=role, course_ids=courses,
        )  # fmt: skip
    with api.db.uow() as uow:
        for activity, state, code in (
            ("a1", DeliveryState.SKIPPED, "not_selected_for_sis"),
            ("a2", DeliveryState.REJECTED, "bad_credentials"),
        ):
            row = LedgerRow(
                LedgerKey("t1", "sis", activity, "p1"),
                state,
                desired_hash="h1",
                desired={"score_given": 7.0, "score_maximum": 10.0},
                reason_code=code,
                reason_text=texts[activity],
                updated_at=datetime.now(UTC),
            )
            uow.ledger.save(row, "c1")
        uow.commit()
    return admin


def _delivery(diagnosis: dict[str, Any]) -> dict[str, Any]:
    [check] = [
        c for c in diagnosis["checks"] if c["code"] == "delivery" and c["destination_id"] == "sis"
    ]
    return check


def _page(api: ApiEnv, who: str, activity: str) -> str:
    """The console's diagnosis page of Ada's grade, as `who` reads it."""
    api.client.cookies.clear()
    assert sign_in(api.client, who, PASSWORD).status_code == 200
    page = api.client.get(
        "/console/diagnosis", params={"course": "c1", "activity": activity, "person": "p1"}
    )
    assert page.status_code == 200, page.text
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", page.text)).split())


@pytest.mark.parametrize("stored_as", ["code", "words"])
def test_each_reader_reads_a_stored_reason_in_its_words(
    api: ApiEnv, api_cli: CliRunner, stored_as: str
) -> None:
    admin = _school(api, CODES if stored_as == "code" else WORDS)
    select = (
        "Tick 'Sync to SIS' for it (`PUT /api/v1/sis/connections/sis/selection` with its id in "
        "`activity_ids`)."
    )
    # a learner's grades over the API
    cells = {
        c["activity_id"]: c
        for c in admin.get("/people/p1/grades", params={"destination_id": "sis"}).json()[
            "destinations"
        ]["sis"]
    }
    assert cells["a1"]["reason_text"] == f"{UNTICKED} — {select}"
    assert cells["a2"]["reason_text"].startswith(f"{REFUSED} — "), cells["a2"]
    assert (
        "`PUT /api/v1/sis/connections/sis` with `client_id` and `client_secret`"
        in (cells["a2"]["reason_text"])
    )
    # the diagnosis over the API: evidence says what happened, the remedy is the API's
    for activity, evidence, remedy in (
        ("a1", f"Left out on purpose (not_selected_for_sis): {UNTICKED}", select),
        (
            "a2",
            f"7/10 was refused (bad_credentials): {REFUSED}",
            "`PUT /api/v1/sis/connections/sis`",
        ),
    ):
        diagnosis = admin.get(f"/activities/{activity}/learners/p1/diagnosis").json()
        check = _delivery(diagnosis)
        assert check["evidence"].endswith(evidence), check
        assert remedy in check["remedy"], check
        row = diagnosis["details"]["ledger"]["sis"]
        for said in (check["evidence"], check["remedy"], row["reason_text"]):
            assert not names_command(said), said
        assert remedy in row["reason_text"], row
    # the console's diagnosis page: an administrator reads its pages, an instructor who acts
    for activity in ("a1", "a2"):
        ops, ines = _page(api, "ops", activity), _page(api, "ines", activity)
        for text in (ops, ines):
            assert "gradesync sis" not in text and "COURSE_ID" not in text, text
        assert "Ask a gradesync administrator to" in ines
    assert "(/console/sis/sis/courses/c1, Sync to SIS and validation)" in _page(api, "ops", "a1")
    assert "(/console/sis/sis/edit" in _page(api, "ops", "a2")
    # the command line names its commands, in the remedy only
    for activity, command in (
        ("a1", "(gradesync sis select sis a1)"),
        ("a2", "gradesync sis add sis --client-id ID --client-secret SECRET"),
    ):
        ran = api_cli.invoke(
            app, ["doctor", "-t", "t1", "--learner", "p1", "--activity", activity, "--json"]
        )
        check = _delivery(json.loads(ran.output))
        assert command in check["remedy"] and not names_command(check["evidence"]), check
