"""ledger rows keep when their value became pending through failed sends (delivery latency
of retried grades)

Revision ID: 0013_ledger_pending_since
Revises: 0012_ledger_priority
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_ledger_pending_since"
down_revision = "0012_ledger_priority"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger") as batch_op:
        batch_op.add_column(sa.Column("pending_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch_op:
        batch_op.drop_column("pending_since")
