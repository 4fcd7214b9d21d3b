"""OneRoster CSV export state

Revision ID: 0004_oneroster
Revises: 0003_lti
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_oneroster"
down_revision = "0003_lti"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oneroster_csv_rows",
        sa.Column("tenant_id", sa.String(length=255), nullable=False),
        sa.Column("destination_id", sa.String(length=255), nullable=False),
        sa.Column("file", sa.String(length=32), nullable=False),
        sa.Column("sourced_id", sa.String(length=255), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "destination_id"],
            ["destinations.tenant_id", "destinations.id"],
            name=op.f("fk_oneroster_csv_rows_tenant_id_destinations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "destination_id", "file", "sourced_id", name=op.f("pk_oneroster_csv_rows")
        ),
    )


def downgrade() -> None:
    op.drop_table("oneroster_csv_rows")
