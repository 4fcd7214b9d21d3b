"""enrollments say who last set their status and when (an LMS roster read through NRPS)

Revision ID: 0009_enrollment_status_source
Revises: 0008_csv_export_in_ledger
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_enrollment_status_source"
down_revision = "0008_csv_export_in_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        batch.add_column(sa.Column("status_source", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("status_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_column("status_at")
        batch.drop_column("status_source")
