"""pending ledger rows are claimed course by course (round-robin within a priority): an
index that finds each course's pending rows, oldest first

Revision ID: 0014_ledger_fair_claim
Revises: 0013_ledger_pending_since
"""

from __future__ import annotations

from alembic import op

revision = "0014_ledger_fair_claim"
down_revision = "0013_ledger_pending_since"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ledger_fair", "ledger", ["state", "priority", "course_id", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_ledger_fair", table_name="ledger")
