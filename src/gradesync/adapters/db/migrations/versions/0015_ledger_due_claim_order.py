"""due retries are claimed along an index in claim order, tie-breakers included

Without them, the database sorts every due row sharing a `next_attempt_at` (a paused
destination's rows share one) before it can return the first few.

Revision ID: 0015_ledger_due_claim_order
Revises: 0014_ledger_fair_claim
"""

from __future__ import annotations

from alembic import op

revision = "0015_ledger_due_claim_order"
down_revision = "0014_ledger_fair_claim"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_ledger_due", table_name="ledger")
    op.create_index(
        "ix_ledger_due", "ledger", ["state", "next_attempt_at", "activity_id", "person_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_due", table_name="ledger")
    op.create_index("ix_ledger_due", "ledger", ["state", "next_attempt_at"])
