"""Biology 101 (`tests.support.api.ROSTER`) set up through the in-process API the way the
console's tests need it: Ada's attempt on Quiz 1 at an LMS that knows her, her grades worked
out as the worker would (no worker runs); a grade a gradebook keeps while gradesync sends
nothing for it; and a course grid's cell as a person reads it."""

from __future__ import annotations

import re
from datetime import datetime
from html import unescape
from typing import Any

from gradesync.domain.model import (
    CourseLink,
    DeliveryState,
    Destination,
    DestinationKind,
    LedgerKey,
    LedgerRow,
    PersonLink,
)
from gradesync.services.compute import compute_dirty
from tests.support.api import ROSTER, ApiEnv, Caller


def school(api: ApiEnv, token: str | None = None, roster: dict[str, Any] = ROSTER) -> Caller:
    """`roster` ingested for tenant t1; returns the caller with `token` (a new admin key of
    t1 by default)."""
    admin = Caller(api.client, token or api.tenant("t1", "admin"))
    assert admin.post("/ingest", json=roster).status_code == 202
    return admin


def ada_attempts_at_lms(admin: Caller, api: ApiEnv, body: dict[str, Any]) -> None:
    """Biology 101 at the LTI 1.3 LMS `lms`, which Ada has launched from, and her attempt
    `body` posted (worked out by `work_out`)."""
    api.destination("t1", "lms")
    api.link("t1", "lms", "c1")
    with api.db.uow() as uow:
        uow.links.save_person(PersonLink("t1", "lms", "p1", "sub-ada"))
        uow.commit()
    sent = admin.post("/attempts", json=body)
    assert sent.status_code == 202, sent.text


def work_out(api: ApiEnv) -> None:
    """Every grade marked for computing worked out, as the worker would (none sent)."""
    rt = api.runtime
    while compute_dirty(rt.uow, rt.clock, rt.capabilities).dirty:
        pass


def kept_at(api: ApiEnv, dest: str, kind: DestinationKind, at: datetime) -> LedgerKey:
    """Ada's grade on Quiz 1 was delivered (hash h1) at `at` to `dest` (a new destination
    of that kind, with c1 linked), and gradesync sends nothing for it now: its sync box is
    cleared. Returns the grade's key."""
    key = LedgerKey("t1", dest, "a1", "p1")
    with api.db.uow() as uow:
        uow.destinations.upsert(Destination("t1", dest, kind, f"Gradebook {dest}"), at)
        uow.links.save_course(CourseLink("t1", dest, "c1", f"remote-{dest}"))
        uow.ledger.save(
            LedgerRow(
                key,
                DeliveryState.SKIPPED,
                delivered_hash="h1",
                delivered_at=at,
                reason_code="sync_disabled",
                reason_text="The activity 'Quiz 1' is excluded from grade sync.",
                updated_at=at,
            ),
            "c1",
        )
        uow.commit()
    return key


def words(html: str) -> str:
    """A page's (or a part's) text as read: tags dropped, entities decoded, spaces folded."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def grid_cell(page: str, person: str, activity: str) -> str:
    """The words of one cell of a course grid."""
    found = re.search(
        rf'<td[^>]*data-person="{person}" data-activity="{activity}"[^>]*>(.*?)</td>',
        page,
        re.S,
    )
    assert found, f"no grid cell for {person} / {activity}"
    return words(found.group(1))
