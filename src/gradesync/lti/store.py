"""LTI records: one-time nonces, launches and rejections (tables `nonces`, `launches`,
`lti_rejections`). Functions take the unit of work's connection so they share its
transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.mapping import utc

NONCE_PURPOSE = "lti_nonce"


def remember_nonce(conn: Connection, value: str, purpose: str, expires_at: datetime) -> None:
    conn.execute(
        insert(t.nonces).values(
            value=f"{purpose}:{value}", purpose=purpose, expires_at=utc(expires_at)
        )
    )


def consume_nonce(conn: Connection, value: str, purpose: str, now: datetime) -> bool:
    """Use a nonce once: True the first time (and only before it expires), False after."""
    c = t.nonces.c
    res = conn.execute(
        delete(t.nonces).where(
            c.value == f"{purpose}:{value}", c.purpose == purpose, c.expires_at > utc(now)
        )
    )
    return res.rowcount == 1


def purge_nonces(conn: Connection, now: datetime) -> int:
    res = conn.execute(delete(t.nonces).where(t.nonces.c.expires_at <= utc(now)))
    return int(res.rowcount or 0)


def record_once(conn: Connection, value: str, purpose: str, expires_at: datetime) -> bool:
    """Remember a value that must never be seen twice (False if it was already seen)."""
    try:
        with conn.begin_nested():
            remember_nonce(conn, value, purpose, expires_at)
    except IntegrityError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class LaunchRecord:
    tenant_id: str
    destination_id: str
    course_id: str  # "" when the LMS context is not bound to a course
    person_id: str
    resource_link_id: str | None
    roles: list[str]
    claims: dict[str, Any]
    launched_at: datetime
    id: int | None = None


def add_launch(conn: Connection, rec: LaunchRecord) -> None:
    conn.execute(
        insert(t.launches).values(
            tenant_id=rec.tenant_id,
            destination_id=rec.destination_id,
            course_id=rec.course_id,
            person_id=rec.person_id,
            resource_link_id=rec.resource_link_id,
            roles=rec.roles,
            claims=rec.claims,
            launched_at=utc(rec.launched_at),
        )
    )


def launches_for_person(
    conn: Connection,
    tenant_id: str,
    person_id: str,
    destination_id: str | None = None,
    limit: int = 50,
) -> list[LaunchRecord]:
    c = t.launches.c
    q = select(t.launches).where(c.tenant_id == tenant_id, c.person_id == person_id)
    if destination_id is not None:
        q = q.where(c.destination_id == destination_id)
    rows = conn.execute(q.order_by(c.launched_at.desc(), c.id.desc()).limit(limit)).mappings()
    return [
        LaunchRecord(
            tenant_id=r["tenant_id"],
            destination_id=r["destination_id"],
            course_id=r["course_id"],
            person_id=r["person_id"],
            resource_link_id=r["resource_link_id"],
            roles=list(r["roles"] or []),
            claims=dict(r["claims"] or {}),
            launched_at=utc(r["launched_at"]) or r["launched_at"],
            id=r["id"],
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class Rejection:
    code: str
    message: str
    at: datetime
    tenant_id: str | None = None
    destination_id: str | None = None
    issuer: str | None = None
    client_id: str | None = None
    deployment_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    id: int | None = None


def add_rejection(engine: Engine, rej: Rejection) -> None:
    """Recorded in its own transaction: the refused launch itself changes nothing."""
    with engine.begin() as conn:
        conn.execute(
            insert(t.lti_rejections).values(
                tenant_id=rej.tenant_id,
                destination_id=rej.destination_id,
                issuer=(rej.issuer or "")[:2048] or None,
                client_id=(rej.client_id or "")[:255] or None,
                deployment_id=(rej.deployment_id or "")[:255] or None,
                code=rej.code,
                message=rej.message,
                detail=rej.detail,
                at=utc(rej.at),
            )
        )


def rejections(
    conn: Connection, *, tenant_id: str | None = None, limit: int = 100
) -> list[Rejection]:
    c = t.lti_rejections.c
    q = select(t.lti_rejections)
    if tenant_id is not None:
        q = q.where(c.tenant_id == tenant_id)
    rows = conn.execute(q.order_by(c.at.desc(), c.id.desc()).limit(limit)).mappings()
    return [
        Rejection(
            code=r["code"],
            message=r["message"],
            at=utc(r["at"]) or r["at"],
            tenant_id=r["tenant_id"],
            destination_id=r["destination_id"],
            issuer=r["issuer"],
            client_id=r["client_id"],
            deployment_id=r["deployment_id"],
            detail=dict(r["detail"] or {}),
            id=r["id"],
        )
        for r in rows
    ]
