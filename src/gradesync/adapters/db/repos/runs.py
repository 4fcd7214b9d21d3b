"""Sync runs: their progress and stage history, one live run per scope, claims by workers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update

from gradesync.adapters.db import schema as t
from gradesync.adapters.db.mapping import from_row, to_row, utc
from gradesync.adapters.db.repos.base import SqlRepo, scope_of
from gradesync.domain.model import RunStage, SyncRun
from gradesync.domain.run_history import resumed_by
from gradesync.services import ports


def _run(r: Mapping[Any, Any]) -> SyncRun:
    return from_row(SyncRun, r, scope=scope_of(r))


class RunRepo(SqlRepo, ports.RunRepo):
    def schedules_of(self, run_ids: Sequence[str]) -> dict[str, str]:
        if not run_ids:
            return {}
        c = t.sync_runs.c
        rows = self.conn.execute(
            select(c.id, c.schedule_id).where(c.id.in_(list(run_ids)), c.schedule_id.is_not(None))
        )
        return {r[0]: r[1] for r in rows}

    def add(self, run: SyncRun, *, schedule_id: str | None = None) -> None:
        row = to_row(run, exclude=("scope",))
        row.update(
            tenant_id=run.scope.tenant_id,
            scope_key=run.scope.key,
            destination_id=run.scope.destination_id,
            course_id=run.scope.course_id,
            activity_ids=list(run.scope.activity_ids),
            schedule_id=schedule_id,
            stages=[
                {
                    "stage": run.stage.value,
                    "at": utc(run.created_at).isoformat() if run.created_at else None,
                }
            ],
        )
        self.conn.execute(insert(t.sync_runs).values(row))

    def get(self, run_id: str, tenant_id: str | None = None) -> SyncRun | None:
        q = select(t.sync_runs).where(t.sync_runs.c.id == run_id)
        if tenant_id is not None:
            q = q.where(t.sync_runs.c.tenant_id == tenant_id)
        row = self.conn.execute(q).mappings().first()
        return _run(row) if row else None

    def get_many(self, run_ids: Sequence[str], tenant_id: str) -> dict[str, SyncRun]:
        c = t.sync_runs.c
        if not run_ids:  # no round trip for nothing
            return {}
        rows = self.conn.execute(
            select(t.sync_runs).where(c.id.in_(set(run_ids)), c.tenant_id == tenant_id)
        ).mappings()
        return {r["id"]: _run(r) for r in rows}

    def stages(self, run_id: str) -> list[dict[str, Any]]:
        v = self.conn.execute(
            select(t.sync_runs.c.stages).where(t.sync_runs.c.id == run_id)
        ).scalar()
        return list(v or [])

    def stages_many(self, run_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        c = t.sync_runs.c
        if not run_ids:  # no round trip for nothing
            return {}
        rows = self.conn.execute(select(c.id, c.stages).where(c.id.in_(set(run_ids))))
        return {r.id: list(r.stages or []) for r in rows}

    def update(
        self, run: SyncRun, *, worker_id: str | None = None, heartbeat_at: datetime | None = None
    ) -> None:
        c = t.sync_runs.c
        stages = self.stages(run.id)
        if not stages or stages[-1]["stage"] != run.stage.value:
            now = heartbeat_at or run.finished_at or run.started_at
            stages.append({"stage": run.stage.value, "at": utc(now).isoformat() if now else None})
        values: dict[str, Any] = dict(
            stage=run.stage.value,
            outcome=run.outcome.value if run.outcome else None,
            counts=run.counts,
            message=run.message,
            started_at=utc(run.started_at),
            finished_at=utc(run.finished_at),
            stages=stages,
        )
        if worker_id is not None:
            values["worker_id"] = worker_id
        if heartbeat_at is not None:
            values["heartbeat_at"] = utc(heartbeat_at)
        self.conn.execute(update(t.sync_runs).where(c.id == run.id).values(**values))

    def note(self, run_id: str, note: str) -> None:
        stages = self.stages(run_id)
        if not stages:
            return
        last = dict(stages[-1])
        last["note"] = f"{last['note']}; {note}" if last.get("note") else note
        self.conn.execute(
            update(t.sync_runs)
            .where(t.sync_runs.c.id == run_id)
            .values(stages=[*stages[:-1], last])
        )

    def set_counts(self, run_id: str, counts: dict[str, Any]) -> None:
        self.conn.execute(
            update(t.sync_runs).where(t.sync_runs.c.id == run_id).values(counts=counts)
        )

    def active_for_scope(self, scope_key: str) -> list[SyncRun]:
        c = t.sync_runs.c
        rows = self.conn.execute(
            select(t.sync_runs)
            .where(c.scope_key == scope_key, c.stage != RunStage.FINISHED.value)
            .order_by(c.created_at)
        ).mappings()
        return [_run(r) for r in rows]

    def unfinished(self) -> list[tuple[SyncRun, datetime | None]]:
        c = t.sync_runs.c
        rows = self.conn.execute(
            select(t.sync_runs).where(c.stage != RunStage.FINISHED.value).order_by(c.created_at)
        ).mappings()
        return [(_run(r), utc(r["heartbeat_at"])) for r in rows]

    def latest_beat_covering(
        self, tenant_id: str, destination_id: str, course_id: str
    ) -> datetime | None:
        c = t.sync_runs.c
        return utc(
            self.conn.execute(
                select(func.max(c.heartbeat_at)).where(
                    c.tenant_id == tenant_id,
                    c.stage != RunStage.FINISHED.value,
                    or_(c.destination_id.is_(None), c.destination_id == destination_id),
                    or_(c.course_id.is_(None), c.course_id == course_id),
                )
            ).scalar()
        )

    def history(
        self,
        tenant_id: str,
        *,
        course_id: str | None = None,
        destination_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        trigger: str | None = None,
        limit: int = 50,
    ) -> list[SyncRun]:
        c = t.sync_runs.c
        conds = [c.tenant_id == tenant_id]
        if course_id:
            conds.append(c.course_id == course_id)
        if destination_id:
            conds.append(c.destination_id == destination_id)
        if since:
            conds.append(c.created_at >= utc(since))
        if until:
            conds.append(c.created_at < utc(until))
        if trigger:
            conds.append(c.trigger == trigger)
        rows = self.conn.execute(
            select(t.sync_runs).where(*conds).order_by(c.created_at.desc()).limit(limit)
        ).mappings()
        return [_run(r) for r in rows]

    def running_since(self, tenant_id: str, since: datetime, *, but: str) -> list[SyncRun]:
        c = t.sync_runs.c
        rows = self.conn.execute(
            select(t.sync_runs)
            .where(
                c.tenant_id == tenant_id,
                c.id != but,
                c.started_at.is_not(None),
                or_(c.finished_at.is_(None), c.finished_at >= utc(since)),
            )
            .order_by(c.started_at, c.id)
        ).mappings()
        return [_run(r) for r in rows]

    def covering_course(
        self, tenant_id: str, course_id: str, destination_ids: Sequence[str], *, limit: int
    ) -> list[SyncRun]:
        c = t.sync_runs.c
        every_course = and_(
            c.course_id.is_(None),
            or_(c.destination_id.is_(None), c.destination_id.in_(list(destination_ids))),
        )
        rows = self.conn.execute(
            select(t.sync_runs)
            .where(c.tenant_id == tenant_id, or_(c.course_id == course_id, every_course))
            .order_by(c.created_at.desc())
            .limit(limit)
        ).mappings()
        return [_run(r) for r in rows]

    # --- the sync engine: one run per scope, claims, dead workers ------------------------

    RUNNING = (
        RunStage.COMPUTING.value,
        RunStage.PROVISIONING.value,
        RunStage.SENDING.value,
        RunStage.VERIFYING.value,
    )

    def _advisory(self, key: str) -> None:
        if self.postgres:
            self.conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))

    def lock_scope(self, scope_key: str) -> None:
        # SQLite's write transaction already serialises run requests
        self._advisory("gradesync-run-scope:" + scope_key)

    def upgrade_queued(self, run_id: str, trigger: str) -> bool:
        c = t.sync_runs.c
        # a claim takes no scope lock: on PostgreSQL's read committed the update re-checks
        # the row as a claim committed since the read left it
        res = self.conn.execute(
            update(t.sync_runs)
            .where(c.id == run_id, c.stage == RunStage.QUEUED.value)
            .values(trigger=trigger)
        )
        return res.rowcount == 1

    def claim_next(
        self, worker_id: str, now: datetime, stale_before: datetime, *, run_id: str | None = None
    ) -> SyncRun | None:
        self._advisory("gradesync-run-claim")
        c = t.sync_runs.c
        q = select(t.sync_runs).where(c.stage == RunStage.QUEUED.value)
        if run_id is not None:
            q = q.where(c.id == run_id)
        candidates = self.conn.execute(q.order_by(c.created_at).limit(50)).mappings().all()
        if not candidates:
            return None
        busy = {
            r[0]
            for r in self.conn.execute(
                select(c.scope_key).where(
                    c.stage.in_(self.RUNNING),
                    c.heartbeat_at >= utc(stale_before),
                    c.scope_key.in_({r["scope_key"] for r in candidates}),
                )
            )
        }
        for r in candidates:
            if r["scope_key"] in busy:
                continue
            stage: dict[str, Any] = {
                "stage": RunStage.COMPUTING.value,
                "at": utc(now).isoformat(),
                "worker": worker_id,
            }
            message = r["message"]
            if r["started_at"] is not None:  # taken over from a worker that stopped
                stage["note"] = resumed_by(worker_id)
                # not "requeued: ..." any more while the run is back at work; why it was
                # requeued stays in its stage history
                message = f"resumed by {worker_id} at {utc(now):%H:%M:%S} UTC"
            res = self.conn.execute(
                update(t.sync_runs)
                .where(c.id == r["id"], c.stage == RunStage.QUEUED.value)
                .values(
                    message=message,
                    stage=RunStage.COMPUTING.value,
                    worker_id=worker_id,
                    heartbeat_at=utc(now),
                    # a resumed run keeps its first start: what was sent since counts as sent
                    started_at=r["started_at"] if r["started_at"] is not None else utc(now),
                    stages=[*(r["stages"] or []), stage],
                )
            )
            if res.rowcount == 1:
                return self.get(r["id"])
        return None

    def heartbeat(self, run_id: str, worker_id: str, now: datetime) -> bool:
        c = t.sync_runs.c
        res = self.conn.execute(
            update(t.sync_runs)
            .where(c.id == run_id, c.worker_id == worker_id, c.stage.in_(self.RUNNING))
            .values(heartbeat_at=utc(now))
        )
        return res.rowcount == 1

    def requeue_own(self, run_id: str, worker_id: str, now: datetime, note: str) -> bool:
        c = t.sync_runs.c
        stages = self.stages(run_id)
        res = self.conn.execute(
            update(t.sync_runs)
            .where(c.id == run_id, c.worker_id == worker_id, c.stage.in_(self.RUNNING))
            .values(
                stage=RunStage.QUEUED.value,
                worker_id=None,
                stages=[
                    *stages,
                    {"stage": RunStage.QUEUED.value, "at": utc(now).isoformat(), "note": note},
                ],
                message=f"requeued: {note}",
            )
        )
        return res.rowcount == 1

    def requeue_stale(
        self, stale_before: datetime, now: datetime, *, keep_worker: str | None = None
    ) -> list[str]:
        c = t.sync_runs.c
        conds: list[Any] = [
            c.stage.in_(self.RUNNING),
            c.heartbeat_at.is_(None) | (c.heartbeat_at < utc(stale_before)),
        ]
        if keep_worker is not None:
            conds.append(c.worker_id.is_(None) | (c.worker_id != keep_worker))
        rows = (
            self.conn.execute(select(c.id, c.stages, c.worker_id, c.heartbeat_at).where(*conds))
            .mappings()
            .all()
        )
        requeued: list[str] = []
        for r in rows:
            heard = r["heartbeat_at"]
            last = f" (last heard {utc(heard).strftime('%H:%M:%S')} UTC)" if heard else ""
            note = f"worker {r['worker_id'] or '?'} stopped{last}; requeued"
            if keep_worker:
                note += f" by {keep_worker}"
            # still stale, and still the worker's it was read with: a heartbeat or a claim
            # committed since the read (PostgreSQL's read committed; its update re-checks the
            # row as committed) keeps the run where it is
            res = self.conn.execute(
                update(t.sync_runs)
                .where(c.id == r["id"], c.worker_id.is_not_distinct_from(r["worker_id"]), *conds)
                .values(
                    stage=RunStage.QUEUED.value,
                    worker_id=None,
                    stages=[
                        *(r["stages"] or []),
                        {"stage": RunStage.QUEUED.value, "at": utc(now).isoformat(), "note": note},
                    ],
                    message=f"requeued: {note}",
                )
            )
            if res.rowcount == 1:
                requeued.append(r["id"])
        return requeued
