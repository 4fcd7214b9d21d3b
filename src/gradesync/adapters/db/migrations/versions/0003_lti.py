"""LTI launch rejections

Revision ID: 0003_lti
Revises: 0002_engine
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_lti"
down_revision = "0002_engine"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lti_rejections",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=255), nullable=True),
        sa.Column("destination_id", sa.String(length=255), nullable=True),
        sa.Column("issuer", sa.String(length=2048), nullable=True),
        sa.Column("client_id", sa.String(length=255), nullable=True),
        sa.Column("deployment_id", sa.String(length=255), nullable=True),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lti_rejections")),
    )
    with op.batch_alter_table("lti_rejections", schema=None) as batch_op:
        batch_op.create_index("ix_lti_rejections_tenant", ["tenant_id", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("lti_rejections", schema=None) as batch_op:
        batch_op.drop_index("ix_lti_rejections_tenant")
    op.drop_table("lti_rejections")
