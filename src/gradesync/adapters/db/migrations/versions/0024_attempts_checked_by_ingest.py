"""attempts carry no foreign keys: ingest checks their activity and person

Each attempt inserted checked its activity and its person through two foreign keys: on
PostgreSQL a trigger per row and key, which took more than half of an ingest batch's insert
on the server (1,000 attempts: 29-38 ms with the checks, 10-18 ms without; see
docs/benchmarks-journal.md, "Attempts without per-row foreign keys"). Ingest already reads a batch's
activities and people, in the transaction that inserts the attempts, and refuses an attempt
whose activity or person is unknown (`unknown_activity`, `unknown_person`); nothing deletes
an activity or a person (tests/unit/test_no_fact_deletes.py), so what ingest checked still
holds when it commits. The checks added nothing but their cost. On SQLite the table is
rebuilt without them (once, a copy of its rows).

Revision ID: 0024_attempts_checked_by_ingest
Revises: 0023_due_timer_destination
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import op
from sqlalchemy.exc import SAWarning

revision = "0024_attempts_checked_by_ingest"
down_revision = "0023_due_timer_destination"
branch_labels = None
depends_on = None

_KEYS = {
    "fk_attempts_tenant_id_activities": ("activities", "activity_id"),
    "fk_attempts_tenant_id_people": ("people", "person_id"),
}


@contextmanager
def _quiet_people_index() -> Iterator[None]:
    """SQLite's batch rebuild reflects `people` (the keys' referent) and warns that it
    skips its expression-based index `ix_people_email`: an operator read it at each start
    of a new database. The index stays as it is (only `attempts` is rebuilt), so that one
    warning is left out, here alone."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="Skipped unsupported reflection of expression-based index ix_people_email",
            category=SAWarning,
        )
        yield


def upgrade() -> None:
    with _quiet_people_index(), op.batch_alter_table("attempts") as batch:
        for name in _KEYS:
            batch.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    with _quiet_people_index(), op.batch_alter_table("attempts") as batch:
        for name, (table, column) in _KEYS.items():
            batch.create_foreign_key(
                name,
                table,
                ["tenant_id", column],
                ["tenant_id", "id"],
                ondelete="CASCADE",
            )
