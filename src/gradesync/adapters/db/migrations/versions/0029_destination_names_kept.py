"""destination names kept: a run keeps the name of its destination, and each deletion of a
destination records the name it had

Runs and the delivery log outlive a deleted destination, which they named by id alone. A run
asked for before this revision gets the name its destination has now; one whose destination
is already gone keeps none (its id is shown, marked deleted). Deletions before this revision
left no record.

Revision ID: 0029_destination_names_kept
Revises: 0028_tool_key_signs_from
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029_destination_names_kept"
down_revision = "0028_tool_key_signs_from"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("destination_name", sa.String(length=255), nullable=True))
    op.execute(
        "UPDATE sync_runs SET destination_name = (SELECT d.name FROM destinations d"
        " WHERE d.tenant_id = sync_runs.tenant_id AND d.id = sync_runs.destination_id)"
        " WHERE destination_id IS NOT NULL"
    )
    op.create_table(
        "deleted_destinations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=255), nullable=False),
        sa.Column("destination_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_deleted_destinations_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deleted_destinations")),
    )
    with op.batch_alter_table("deleted_destinations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deleted_destinations_id", ["tenant_id", "destination_id"], unique=False
        )


def downgrade() -> None:
    # the code before this revision names a deleted destination by its id: the names go
    with op.batch_alter_table("deleted_destinations", schema=None) as batch_op:
        batch_op.drop_index("ix_deleted_destinations_id")
    op.drop_table("deleted_destinations")
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_column("destination_name")
