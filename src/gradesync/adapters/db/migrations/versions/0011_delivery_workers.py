"""the delivery workers alive, so each takes its share of a destination's limits

Revision ID: 0011_delivery_workers
Revises: 0010_due_timers
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_delivery_workers"
down_revision = "0010_due_timers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_workers",
        sa.Column("worker_id", sa.String(length=255), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_delivery_workers")),
    )


def downgrade() -> None:
    op.drop_table("delivery_workers")
