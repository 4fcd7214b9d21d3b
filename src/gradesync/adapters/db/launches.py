"""Reading LTI launches and refused launches for diagnostics (`uow.launches`).

The LTI tool writes both tables (`gradesync.lti.store`); diagnostics only read them, as the
domain's `LaunchFact` and `RejectionFact`, to answer "did this learner launch from this
course?" and "are launches refused for a deployment gradesync does not know?".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, or_, select

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.mapping import utc
from gradesync.domain.diagnosis import LaunchFact, RejectionFact

_CONTEXT = "https://purl.imsglobal.org/spec/lti/claim/context"


def _fact(r: Mapping[Any, Any]) -> LaunchFact:
    claims = r["claims"] or {}
    ctx = claims.get(_CONTEXT) if isinstance(claims, dict) else None
    if not isinstance(ctx, dict):  # LTI 1.1 launches keep the form's context fields
        ctx = {
            "id": claims.get("context_id") if isinstance(claims, dict) else None,
            "title": claims.get("context_title") if isinstance(claims, dict) else None,
        }
    return LaunchFact(
        destination_id=r["destination_id"],
        course_id=r["course_id"] or "",
        launched_at=utc(r["launched_at"]) or r["launched_at"],
        roles=tuple(str(x) for x in (r["roles"] or [])),
        context_id=str(ctx["id"]) if ctx.get("id") else None,
        context_title=str(ctx["title"]) if ctx.get("title") else None,
    )


class LaunchRepo:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def for_person(
        self,
        tenant_id: str,
        person_id: str,
        destination_id: str | None = None,
        limit: int = 50,
    ) -> list[LaunchFact]:
        """A person's launches, newest first."""
        c = t.launches.c
        q = select(t.launches).where(c.tenant_id == tenant_id, c.person_id == person_id)
        if destination_id is not None:
            q = q.where(c.destination_id == destination_id)
        rows = self.conn.execute(q.order_by(c.launched_at.desc(), c.id.desc()).limit(limit))
        return [_fact(r) for r in rows.mappings()]

    def for_people(
        self, tenant_id: str, destination_id: str, person_ids: Iterable[str]
    ) -> dict[str, list[LaunchFact]]:
        """Launches of these people at one destination, newest first, by person."""
        ids = sorted(set(person_ids))
        out: dict[str, list[LaunchFact]] = {}
        c = t.launches.c
        for i in range(0, len(ids), 500):
            rows = self.conn.execute(
                select(t.launches)
                .where(
                    c.tenant_id == tenant_id,
                    c.destination_id == destination_id,
                    c.person_id.in_(ids[i : i + 500]),
                )
                .order_by(c.launched_at.desc(), c.id.desc())
            ).mappings()
            for r in rows:
                out.setdefault(r["person_id"], []).append(_fact(r))
        return out

    def summary(self, tenant_id: str, destination_id: str) -> tuple[int, datetime | None]:
        """How many launches came through a destination, and the latest one's time."""
        c = t.launches.c
        n, last = self.conn.execute(
            select(func.count(), func.max(c.launched_at)).where(
                c.tenant_id == tenant_id, c.destination_id == destination_id
            )
        ).one()
        return int(n or 0), utc(last)

    def rejections(
        self,
        tenant_id: str,
        destination_id: str | None = None,
        *,
        issuer: str | None = None,
        client_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[RejectionFact]:
        """Refused launches for a tenant (and a destination: recorded against it, or naming
        its issuer and client id when the refusal came before gradesync knew the tenant)."""
        c = t.lti_rejections.c
        q = select(t.lti_rejections)
        if destination_id is None:
            q = q.where(c.tenant_id == tenant_id)
        else:
            mine = (c.tenant_id == tenant_id) & (c.destination_id == destination_id)
            if issuer and client_id:
                q = q.where(or_(mine, (c.issuer == issuer) & (c.client_id == client_id)))
            else:
                q = q.where(mine)
        if since is not None:
            q = q.where(c.at >= utc(since))
        rows = self.conn.execute(q.order_by(c.at.desc(), c.id.desc()).limit(limit)).mappings()
        return [
            RejectionFact(
                code=r["code"],
                message=r["message"],
                at=utc(r["at"]) or r["at"],
                deployment_id=r["deployment_id"],
            )
            for r in rows
        ]
