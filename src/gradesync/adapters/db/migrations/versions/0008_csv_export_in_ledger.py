"""the OneRoster CSV export is written from the ledger: its own row table goes

Revision ID: 0008_csv_export_in_ledger
Revises: 0007_tool_key_generation

A file-based SIS is a destination the engine delivers to; what an export holds is read from
the ledger and the links, so `oneroster_csv_rows` is no longer written or read. The next
delta of a connection exported before this revision needs `--since` (or a bulk export first).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_csv_export_in_ledger"
down_revision = "0007_tool_key_generation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("oneroster_csv_rows")


def downgrade() -> None:
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
