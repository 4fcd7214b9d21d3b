"""Migrations: upgrade an empty database and one at each earlier revision; schema matches."""

from __future__ import annotations

import warnings
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect, select, text
from sqlalchemy.exc import SAWarning

from gradesync.adapters.db import migrate, schema
from gradesync.adapters.db.database import Database
from gradesync.adapters.db.schema import metadata
from gradesync.domain.model import (
    Destination,
    DestinationKind,
    RunScope,
    SyncRun,
    Tenant,
    Trigger,
)
from gradesync.services.clock import SystemClock
from gradesync.services.destination_admin import delete
from gradesync.testing import TEST_SECRET


def _revisions(db: Database) -> list[str]:
    script = ScriptDirectory.from_config(migrate.alembic_config(db.engine))
    return [r.revision for r in script.walk_revisions("base", "heads")]


def _fresh(db_url: str) -> Database:
    db = Database(db_url, TEST_SECRET)
    with db.engine.begin() as conn:
        if db.engine.dialect.name == "postgresql":
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        else:
            for t in reversed(metadata.sorted_tables):
                conn.execute(text(f'DROP TABLE IF EXISTS "{t.name}"'))
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    return db


@pytest.fixture
def fresh_db(db_url: str):  # type: ignore[no-untyped-def]
    db = _fresh(db_url)
    yield db
    # leave a migrated database behind for the session's other tests
    db.upgrade()
    db.dispose()


def test_history_is_one_line(fresh_db: Database) -> None:
    assert len(migrate.head_revisions(fresh_db.engine)) == 1, "merge or re-parent the new heads"


def test_upgrade_empty_database_matches_schema(fresh_db: Database) -> None:
    fresh_db.upgrade()
    assert fresh_db.is_up_to_date()
    with fresh_db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_migrating_a_new_database_warns_of_nothing(fresh_db: Database) -> None:
    """Every start of a new database printed SQLAlchemy's `Skipped unsupported reflection of
    expression-based index ix_people_email` to the operator's terminal (SQLite's rebuild of
    `attempts` in 0024 reflects `people`); down to the base and up again says nothing too."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fresh_db.upgrade()
        migrate.downgrade(fresh_db.engine, "base")
        fresh_db.upgrade()
    assert [str(w.message) for w in seen if issubclass(w.category, SAWarning)] == []


def test_upgrade_from_each_earlier_revision(fresh_db: Database) -> None:
    revisions = _revisions(fresh_db)
    assert revisions, "no migrations found"
    for rev in revisions:
        migrate.downgrade(fresh_db.engine, "base")
        migrate.upgrade(fresh_db.engine, rev)
        assert migrate.current_revisions(fresh_db.engine) == {rev}
        fresh_db.upgrade()
        assert fresh_db.is_up_to_date()


def test_the_ledgers_pages_keep_room_on_postgresql(postgres_db: Database) -> None:
    with postgres_db.engine.connect() as conn:
        found = conn.execute(
            text("SELECT reloptions FROM pg_class WHERE relname = 'ledger'")
        ).scalar()
    assert found == ["fillfactor=70"]  # migration 0017 (SQLite has no such setting)


def test_paused_destinations_get_their_cause_from_their_text_once(fresh_db: Database) -> None:
    """0018 stores each pause's cause beside its text: pauses made before it get the cause
    their text gave until then (gradesync's own openings, case and all; anything else is a
    person's), and a destination with no pause gets none."""
    migrate.upgrade(fresh_db.engine, "0017_ledger_fillfactor")
    now = datetime.now(UTC)
    later = now + timedelta(hours=1)
    rows = {  # id: (enabled, paused_until, pause_reason), cause expected
        "slow": ((True, later, "The destination asked gradesync to slow down (429)."), "slow_down"),
        "breaker": ((True, later, "Circuit breaker open after repeated failures."), "circuit_open"),
        "misconf": ((True, later, "Misconfigured: the key was refused."), "misconfigured"),
        "by-hand": ((False, None, "LMS upgrade tonight"), "admin"),
        "no-words": ((False, None, None), "admin"),
        "timed-by-hand": ((True, later, "misconfigured: lower case is a person's"), "admin"),
        "ended": ((True, now - timedelta(hours=1), "Circuit breaker open again."), "circuit_open"),
        "active": ((True, None, None), None),
    }
    with fresh_db.engine.begin() as conn:
        conn.execute(insert(schema.tenants).values(id="t1", name="School", created_at=now))
        for dest_id, ((enabled, until, reason), _) in rows.items():
            conn.execute(
                insert(schema.destinations).values(
                    tenant_id="t1",
                    id=dest_id,
                    kind="lti13_ags",
                    name=dest_id,
                    enabled=enabled,
                    paused_until=until,
                    pause_reason=reason,
                    created_at=now,
                )
            )
    fresh_db.upgrade()
    d = schema.destinations.c
    with fresh_db.engine.connect() as conn:
        found = dict(conn.execute(select(d.id, d.pause_cause)).all())
        reasons = dict(conn.execute(select(d.id, d.pause_reason)).all())
    assert found == {dest_id: cause for dest_id, (_, cause) in rows.items()}
    assert reasons == {dest_id: reason for dest_id, ((_, _, reason), _) in rows.items()}


def test_dirty_keys_marked_before_0022_have_waited_since_their_mark(fresh_db: Database) -> None:
    migrate.upgrade(fresh_db.engine, "0021_dirty_keys_fillfactor")
    marked = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with fresh_db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO dirty_keys (tenant_id, activity_id, person_id, course_id, marked_at)"
                " VALUES ('t1', 'a1', 'p1', 'c1', :at)"
            ),
            {"at": marked},
        )
    fresh_db.upgrade()
    with fresh_db.uow() as uow:
        assert uow.dirty.waiting("t1") == (1, marked)


def test_dirty_keys_waiting_at_0026_queue_in_the_order_they_were_last_marked(
    fresh_db: Database,
) -> None:
    """Keys waiting when 0026 runs keep the order claims took before it (the last mark)."""
    migrate.upgrade(fresh_db.engine, "0025_deliveries_score_scale")
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with fresh_db.engine.begin() as conn:
        for person, minutes in (("p1", 2), ("p2", 1), ("p3", 3)):
            conn.execute(
                text(
                    "INSERT INTO dirty_keys (tenant_id, activity_id, person_id, course_id,"
                    " marked_at, waiting_since) VALUES ('t1', 'a1', :p, 'c1', :at, :first)"
                ),
                {"p": person, "at": at + timedelta(minutes=minutes), "first": at},
            )
    fresh_db.upgrade()
    with fresh_db.uow() as uow:
        assert [k[3] for k in uow.dirty.peek(10)] == ["p2", "p1", "p3"]
        assert {k[3] for k in uow.dirty.claim(2)} == {"p2", "p1"}
        uow.commit()


def test_attempts_keep_their_rows_and_lose_their_row_checks_in_0024(fresh_db: Database) -> None:
    """Ingest checks an attempt's activity and person; the table's per-row foreign keys
    (a trigger per row on PostgreSQL) are gone, its rows and other constraints kept."""
    migrate.upgrade(fresh_db.engine, "0023_due_timer_destination")
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with fresh_db.engine.begin() as conn:
        conn.execute(insert(schema.tenants).values(id="t1", name="T", created_at=at))
        conn.execute(insert(schema.courses).values(tenant_id="t1", id="c1", title="C"))
        conn.execute(
            insert(schema.activities).values(
                tenant_id="t1",
                id="a1",
                course_id="c1",
                title="A",
                points_possible=10.0,
                kind="quiz",
            )
        )
        conn.execute(insert(schema.people).values(tenant_id="t1", id="p1"))
        conn.execute(
            insert(schema.attempts).values(
                tenant_id="t1",
                source_event_id="e1",
                activity_id="a1",
                person_id="p1",
                score_given=8.0,
                score_maximum=10.0,
                completed=True,
                completed_at=at,
                late=False,
                excused=False,
                recorded_at=at,
            )
        )
    assert inspect(fresh_db.engine).get_foreign_keys("attempts")
    fresh_db.upgrade()
    found = inspect(fresh_db.engine)
    assert found.get_foreign_keys("attempts") == []
    assert {u["name"] for u in found.get_unique_constraints("attempts")} == {"uq_attempts_event"}
    assert {i["name"] for i in found.get_indexes("attempts")} >= {"ix_attempts_key"}
    with fresh_db.engine.connect() as conn:
        kept = conn.execute(
            select(schema.attempts.c.source_event_id, schema.attempts.c.score_given)
        )
        assert list(kept) == [("e1", 8.0)]


def test_delivery_lines_logged_before_0025_keep_no_scale(fresh_db: Database) -> None:
    """A send logged before the delivery log kept the points it was sent on has none
    (NULL): its held score reads on the activity's points now, as before."""
    migrate.upgrade(fresh_db.engine, "0024_attempts_checked_by_ingest")
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with fresh_db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO deliveries (tenant_id, destination_id, activity_id, person_id,"
                " sent_at, outcome) VALUES ('t1', 'sis', 'a1', 'p1', :at, 'delivered')"
            ),
            {"at": at},
        )
    fresh_db.upgrade()
    with fresh_db.uow() as uow:
        line = uow.deliveries.last_holding("t1", "sis", [("a1", "p1")])[("a1", "p1")]
    assert line["score_scale"] is None


def test_a_tool_key_made_by_code_before_0028_signs_from_when_it_was_made(
    fresh_db: Database,
) -> None:
    """A process still running the code before 0028 stores keys without `signs_from`."""
    fresh_db.upgrade()
    with fresh_db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO tool_keys (kid, generation, private_ciphertext, public_jwk,"
                " created_at) VALUES ('k1', 1, 'x', '{}', CURRENT_TIMESTAMP)"
            )
        )
        made = conn.execute(text("SELECT created_at, signs_from FROM tool_keys")).one()
    assert made[1] is not None and made[1] == made[0]


def test_a_downgrade_from_0028_leaves_the_older_code_no_key_to_sign_too_soon_or_publish_again(
    fresh_db: Database,
) -> None:
    """The code before 0028 signs with the newest key not retired and publishes keys
    retired within the overlap: a key waiting to sign would sign at once, before platforms
    hold it, and a revoked key would be published again."""
    from gradesync.services.lti.keys import ToolKeyStore

    fresh_db.upgrade()
    store = ToolKeyStore(fresh_db.uow)  # the database's clock: the downgrade reads it
    revoked = store.current()
    signing = store.rotate(immediately=True)
    waiting = store.rotate()
    assert {k.kid for k in store.list()} == {revoked.kid, signing.kid, waiting.kid}
    migrate.downgrade(fresh_db.engine, "0027_ledger_retrying_index")
    with fresh_db.engine.connect() as conn:
        kept = conn.execute(text("SELECT kid, retired_at FROM tool_keys")).all()
    assert [tuple(k) for k in kept] == [(signing.kid, None)]


def test_runs_asked_before_0029_keep_the_name_their_destination_has_then(
    fresh_db: Database,
) -> None:
    """A run of a destination still there gets its name; one of every destination, or of a
    destination already deleted (whose name was kept nowhere), gets none."""
    migrate.upgrade(fresh_db.engine, "0028_tool_key_signs_from")
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with fresh_db.engine.begin() as conn:
        conn.execute(insert(schema.tenants).values(id="t1", name="School", created_at=at))
        conn.execute(
            insert(schema.destinations).values(
                tenant_id="t1", id="lms", kind="lti13_ags", name="Canvas", created_at=at
            )
        )
        for run_id, dest in (("r-lms", "lms"), ("r-gone", "gone"), ("r-all", None)):
            conn.execute(
                insert(schema.sync_runs).values(
                    id=run_id,
                    tenant_id="t1",
                    scope_key=f"t1|{dest or '*'}|*|",
                    destination_id=dest,
                    trigger="manual",
                    actor="ada",
                    stage="finished",
                    created_at=at,
                )
            )
    fresh_db.upgrade()
    with fresh_db.uow() as uow:
        found = uow.runs.get_many(["r-lms", "r-gone", "r-all"], "t1")
        assert uow.destinations.deleted("t1", ["lms", "gone"]) == []
    assert {r.id: r.destination_name for r in found.values()} == {
        "r-lms": "Canvas",
        "r-gone": None,
        "r-all": None,
    }


def test_a_downgrade_from_0029_leaves_the_runs_and_drops_the_names_kept(
    fresh_db: Database,
) -> None:
    """The code before 0029 names a deleted destination by its id: the names kept go, the
    runs stay, and upgrading again works."""
    fresh_db.upgrade()
    now = datetime.now(UTC)
    with fresh_db.uow() as uow:
        uow.tenants.upsert(Tenant("t1", "School"), now)
        uow.destinations.upsert(Destination("t1", "lms", DestinationKind.LTI13_AGS, "Canvas"), now)
        run = SyncRun("r1", RunScope("t1", "lms"), Trigger.MANUAL, "ada", created_at=now)
        uow.runs.add(replace(run, destination_name="Canvas"))
        uow.commit()
    delete(fresh_db.uow, SystemClock(), "t1", "lms")
    with fresh_db.uow() as uow:
        [gone] = uow.destinations.deleted("t1", ["lms"])
    assert (gone.id, gone.name) == ("lms", "Canvas")
    migrate.downgrade(fresh_db.engine, "0028_tool_key_signs_from")
    found = inspect(fresh_db.engine)
    assert "deleted_destinations" not in found.get_table_names()
    assert "destination_name" not in {c["name"] for c in found.get_columns("sync_runs")}
    with fresh_db.engine.connect() as conn:
        assert conn.execute(text("SELECT id, destination_id FROM sync_runs")).all() == [
            ("r1", "lms")
        ]
    fresh_db.upgrade()
    assert fresh_db.is_up_to_date()
