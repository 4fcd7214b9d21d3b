"""LTI storage: one-time nonces, the tool's keys, launches and refused launches, and the
link row holds of the LTI 1.1 launch (tables `nonces`, `tool_keys`, `launches`,
`lti_rejections`, and the link tables).

Diagnostics read launches and refusals as the domain's `LaunchFact` and `RejectionFact`, to
answer "did this learner launch from this course?" and "are launches refused for a deployment
gradesync does not know?".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.mapping import utc
from gradesync.adapters.db.repos.base import SqlRepo
from gradesync.adapters.secretbox import SecretBox
from gradesync.domain.diagnosis import LaunchFact, RejectionFact
from gradesync.domain.model import DestinationKind
from gradesync.services import ports
from gradesync.services.ports.lti import LaunchRecord, Rejection, StoredToolKey, ToolKeyRow

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


def _insert(conn: Connection, table: Table) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


class NonceRepo(SqlRepo, ports.NonceRepo):
    def add(self, value: str, purpose: str, expires_at: datetime, now: datetime) -> bool:
        c = t.nonces.c
        # An expired copy of the same value may linger until the sweep: replace it.
        self.conn.execute(delete(t.nonces).where(c.value == value, c.expires_at <= utc(now)))
        stmt = (
            _insert(self.conn, t.nonces)
            .values(value=value, purpose=purpose, expires_at=utc(expires_at))
            .on_conflict_do_nothing(index_elements=["value"])
            .returning(t.nonces.c.value)
        )
        return self.conn.execute(stmt).first() is not None

    def seen(self, value: str, now: datetime) -> bool:
        c = t.nonces.c
        row = self.conn.execute(
            select(c.value).where(c.value == value, c.expires_at > utc(now))
        ).first()
        return row is not None

    def purge(self, now: datetime, purpose: str | None = None) -> int:
        c = t.nonces.c
        q = delete(t.nonces).where(c.expires_at <= utc(now))
        if purpose is not None:
            q = q.where(c.purpose == purpose)
        return int(self.conn.execute(q).rowcount or 0)


class ToolKeyRepo(ports.ToolKeyRepo):
    """Private keys are stored encrypted with the database's SecretBox."""

    def __init__(self, conn: Connection, box: SecretBox) -> None:
        self.conn = conn
        self.box = box

    def _stored(self, where: Any, order: Any) -> StoredToolKey | None:
        row = self.conn.execute(select(t.tool_keys).where(where).order_by(order).limit(1))
        found = row.mappings().first()
        if found is None:
            return None
        return StoredToolKey(
            kid=found["kid"],
            private_pem=self.box.decrypt(found["private_ciphertext"]),
            public_jwk=dict(found["public_jwk"]),
            created_at=utc(found["created_at"]),
            generation=int(found["generation"]),
            retired_at=utc(found["retired_at"]),
            signs_from=utc(found["signs_from"]),
        )

    def current(self, now: datetime) -> StoredToolKey | None:
        c = t.tool_keys.c
        at = utc(now)
        live = (c.retired_at.is_(None) | (c.retired_at > at)) & c.revoked_at.is_(None)
        found = self._stored((c.signs_from <= at) & live, c.generation.desc())
        if found is None:  # none started yet (a clock set back): the one that starts first
            found = self._stored(live, c.signs_from.asc())
        return found

    def next_start(self, now: datetime) -> datetime | None:
        c = t.tool_keys.c
        at = utc(now)
        due = self.conn.execute(
            select(func.min(c.signs_from)).where(
                c.signs_from > at,
                c.retired_at.is_(None) | (c.retired_at > c.signs_from),
                c.revoked_at.is_(None),
            )
        ).scalar()
        return utc(due)

    def latest_generation(self) -> int:
        return int(self.conn.execute(select(func.max(t.tool_keys.c.generation))).scalar() or 0)

    def add(
        self,
        generation: int,
        kid: str,
        private_pem: bytes,
        public_jwk: dict[str, Any],
        created_at: datetime,
        signs_from: datetime,
    ) -> bool:
        stmt = (
            _insert(self.conn, t.tool_keys)
            .values(
                kid=kid,
                generation=generation,
                private_ciphertext=self.box.encrypt(private_pem),
                public_jwk=public_jwk,
                created_at=utc(created_at),
                retired_at=None,
                signs_from=utc(signs_from),
            )
            .on_conflict_do_nothing(index_elements=["generation"])
            .returning(t.tool_keys.c.kid)
        )
        return self.conn.execute(stmt).first() is not None

    def retire_before(self, generation: int, now: datetime, at: datetime) -> None:
        c = t.tool_keys.c
        older = (c.generation < generation) & (c.retired_at.is_(None) | (c.retired_at > utc(now)))
        # waiting keys first: retired at `now`, they are no longer `older` for the second
        self.conn.execute(
            update(t.tool_keys).where(older, c.signs_from > utc(now)).values(retired_at=utc(now))
        )
        # the key signing now signs until the new one starts (later, when it replaces a
        # waiting key that was due to take over sooner)
        self.conn.execute(update(t.tool_keys).where(older).values(retired_at=utc(at)))

    def revoke_before(self, generation: int, at: datetime) -> None:
        c = t.tool_keys.c
        self.conn.execute(
            update(t.tool_keys)
            .where(c.generation < generation, c.revoked_at.is_(None))
            .values(revoked_at=utc(at))
        )

    @staticmethod
    def _kept(retired_after: datetime, replaced_after: datetime) -> Any:
        """Not retired, or retired after the cut-off of its kind: a key that signed (retired
        after it started) `retired_after`, one replaced before it began `replaced_after`."""
        c = t.tool_keys.c
        signed = c.retired_at > c.signs_from
        return (
            c.retired_at.is_(None)
            | (signed & (c.retired_at > utc(retired_after)))
            | (~signed & (c.retired_at > utc(replaced_after)))
        )

    def published(self, retired_after: datetime, replaced_after: datetime) -> list[dict[str, Any]]:
        c = t.tool_keys.c
        rows = self.conn.execute(
            select(c.public_jwk)
            .where(self._kept(retired_after, replaced_after), c.revoked_at.is_(None))
            .order_by(c.generation.desc())
        ).all()
        return [dict(r[0]) for r in rows]

    def listing(self) -> list[ToolKeyRow]:
        c = t.tool_keys.c
        rows = self.conn.execute(
            select(c.kid, c.created_at, c.signs_from, c.retired_at, c.revoked_at).order_by(
                c.generation.desc()
            )
        ).all()
        return [
            ToolKeyRow(kid, utc(created), utc(signs), utc(retired), utc(revoked))
            for kid, created, signs, retired, revoked in rows
        ]

    def prune(self, retired_before: datetime, replaced_before: datetime) -> int:
        c = t.tool_keys.c
        kept = self._kept(retired_before, replaced_before)
        res = self.conn.execute(delete(t.tool_keys).where(c.revoked_at.is_not(None) | ~kept))
        return int(res.rowcount or 0)


class LtiLinkRepo(SqlRepo, ports.LtiLinkRepo):
    def consumers_with_key(self, consumer_key: str) -> list[tuple[str, str]]:
        c = t.destinations.c
        rows = self.conn.execute(
            select(c.tenant_id, c.id, c.config).where(
                c.kind == DestinationKind.LTI11_OUTCOMES.value
            )
        ).all()
        return [
            (r.tenant_id, r.id)
            for r in rows
            if (r.config or {}).get("consumer_key") == consumer_key
        ]

    def lock_issuer(self, issuer: str) -> None:
        # SQLite's write transaction (BEGIN IMMEDIATE) already serialises registrations
        if self.postgres:
            key = "gradesync-lti13-issuer:" + issuer
            self.conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))

    def lock_consumer_key(self, consumer_key: str) -> None:
        # SQLite's write transaction (BEGIN IMMEDIATE) already serialises registrations
        if self.postgres:
            key = "gradesync-lti11-consumer-key:" + consumer_key
            self.conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))

    def _hold(self, table: Table, key: dict[str, Any], defaults: dict[str, Any]) -> None:
        self.conn.execute(
            _insert(self.conn, table).values({**key, **defaults}).on_conflict_do_nothing()
        )
        conds = [table.c[k] == v for k, v in key.items()]
        self.conn.execute(select(*table.primary_key.columns).where(*conds).with_for_update())

    def hold_course(self, tenant_id: str, destination_id: str, course_id: str) -> None:
        self._hold(
            t.course_links,
            {"tenant_id": tenant_id, "destination_id": destination_id, "course_id": course_id},
            {"remote_id": course_id, "data": {}},
        )

    def hold_item(
        self, tenant_id: str, destination_id: str, activity_id: str, remote_id: str
    ) -> None:
        self._hold(
            t.item_links,
            {"tenant_id": tenant_id, "destination_id": destination_id, "activity_id": activity_id},
            {"remote_id": remote_id, "data": {}},
        )

    def hold_person(
        self, tenant_id: str, destination_id: str, person_id: str, course_id: str
    ) -> None:
        self._hold(
            t.person_links,
            {
                "tenant_id": tenant_id,
                "destination_id": destination_id,
                "person_id": person_id,
                "course_id": course_id,
            },
            {"remote_id": person_id, "data": {}},
        )


def _record(r: Mapping[Any, Any]) -> LaunchRecord:
    return LaunchRecord(
        tenant_id=r["tenant_id"],
        destination_id=r["destination_id"],
        course_id=r["course_id"],
        person_id=r["person_id"],
        resource_link_id=r["resource_link_id"],
        roles=list(r["roles"] or []),
        claims=dict(r["claims"] or {}),
        launched_at=utc(r["launched_at"]),
        id=r["id"],
    )


class LaunchRepo(SqlRepo, ports.LaunchRepo):
    def add(self, record: LaunchRecord) -> None:
        self.conn.execute(
            insert(t.launches).values(
                tenant_id=record.tenant_id,
                destination_id=record.destination_id,
                course_id=record.course_id,
                person_id=record.person_id,
                resource_link_id=record.resource_link_id,
                roles=record.roles,
                claims=record.claims,
                launched_at=utc(record.launched_at),
            )
        )

    def add_rejection(self, rej: Rejection) -> None:
        self.conn.execute(
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

    def records_for_person(
        self, tenant_id: str, person_id: str, destination_id: str | None = None, limit: int = 50
    ) -> list[LaunchRecord]:
        c = t.launches.c
        q = select(t.launches).where(c.tenant_id == tenant_id, c.person_id == person_id)
        if destination_id is not None:
            q = q.where(c.destination_id == destination_id)
        rows = self.conn.execute(q.order_by(c.launched_at.desc(), c.id.desc()).limit(limit))
        return [_record(r) for r in rows.mappings()]

    def refusals(self, *, tenant_id: str | None = None, limit: int = 100) -> list[Rejection]:
        c = t.lti_rejections.c
        q = select(t.lti_rejections)
        if tenant_id is not None:
            q = q.where(c.tenant_id == tenant_id)
        rows = self.conn.execute(q.order_by(c.at.desc(), c.id.desc()).limit(limit)).mappings()
        return [
            Rejection(
                code=r["code"],
                message=r["message"],
                at=utc(r["at"]),
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

    def for_person(
        self,
        tenant_id: str,
        person_id: str,
        destination_id: str | None = None,
        limit: int = 50,
    ) -> list[LaunchFact]:
        c = t.launches.c
        q = select(t.launches).where(c.tenant_id == tenant_id, c.person_id == person_id)
        if destination_id is not None:
            q = q.where(c.destination_id == destination_id)
        rows = self.conn.execute(q.order_by(c.launched_at.desc(), c.id.desc()).limit(limit))
        return [_fact(r) for r in rows.mappings()]

    def for_people(
        self, tenant_id: str, destination_id: str, person_ids: Iterable[str]
    ) -> dict[str, list[LaunchFact]]:
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

    def launched_in(self, tenant_id: str, course_id: str, person_ids: Iterable[str]) -> set[str]:
        ids = sorted(set(person_ids))
        c = t.launches.c
        out: set[str] = set()
        for i in range(0, len(ids), 500):
            out.update(
                self.conn.execute(
                    select(c.person_id)
                    .where(
                        c.tenant_id == tenant_id,
                        c.person_id.in_(ids[i : i + 500]),
                        c.course_id == course_id,
                    )
                    .distinct()
                ).scalars()
            )
        return out

    def summary(self, tenant_id: str, destination_id: str) -> tuple[int, datetime | None]:
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
