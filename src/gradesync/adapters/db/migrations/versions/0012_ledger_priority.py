"""ledger rows carry a priority: live grades (0) are claimed before a run's (1)

Revision ID: 0012_ledger_priority
Revises: 0011_delivery_workers
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_ledger_priority"
down_revision = "0011_delivery_workers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger") as batch_op:
        batch_op.add_column(
            sa.Column("priority", sa.SmallInteger(), nullable=False, server_default="0")
        )
        batch_op.drop_index("ix_ledger_pending")
        batch_op.create_index("ix_ledger_pending", ["state", "priority", "updated_at"])


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch_op:
        batch_op.drop_index("ix_ledger_pending")
        batch_op.create_index("ix_ledger_pending", ["state", "updated_at"])
        batch_op.drop_column("priority")
