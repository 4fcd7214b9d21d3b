"""the grades set aside as compute_failed, counted at every /metrics scrape, by an index of
their own

`gradesync_grades_not_computed` counts ledger rows skipped with the reason `compute_failed`.
Without an index that holds only them, each scrape read every skipped row (an activity not
ticked for a SIS skips all its grades); they are few, so a partial index holds them alone.

Revision ID: 0019_ledger_compute_failed_index
Revises: 0018_destination_pause_cause
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_ledger_compute_failed_index"
down_revision = "0018_destination_pause_cause"
branch_labels = None
depends_on = None


def upgrade() -> None:
    failed = sa.text("reason_code = 'compute_failed'")
    op.create_index(
        "ix_ledger_compute_failed",
        "ledger",
        ["tenant_id", "destination_id"],
        postgresql_where=failed,
        sqlite_where=failed,
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_compute_failed", table_name="ledger")
