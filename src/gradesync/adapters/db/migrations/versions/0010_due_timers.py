"""due timers: keys recomputed when time alone changes their result (past-due zeros)

Revision ID: 0010_due_timers
Revises: 0009_enrollment_status_source
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_due_timers"
down_revision = "0009_enrollment_status_source"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "due_timers",
        sa.Column("tenant_id", sa.String(length=255), nullable=False),
        sa.Column("activity_id", sa.String(length=255), nullable=False),
        sa.Column("person_id", sa.String(length=255), nullable=False),
        sa.Column("course_id", sa.String(length=255), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "activity_id", "person_id", name=op.f("pk_due_timers")
        ),
    )
    op.create_index("ix_due_timers_due", "due_timers", ["due_at"])


def downgrade() -> None:
    op.drop_index("ix_due_timers_due", table_name="due_timers")
    op.drop_table("due_timers")
