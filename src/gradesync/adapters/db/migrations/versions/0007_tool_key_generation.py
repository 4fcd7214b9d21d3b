"""tool key generations

Revision ID: 0007_tool_key_generation
Revises: 0006_console
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_tool_key_generation"
down_revision = "0006_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tool_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("generation", sa.Integer(), nullable=True))
    # existing keys numbered by age, oldest first
    op.execute(
        "UPDATE tool_keys SET generation = (SELECT COUNT(*) FROM tool_keys AS older "
        "WHERE older.created_at < tool_keys.created_at OR "
        "(older.created_at = tool_keys.created_at AND older.kid <= tool_keys.kid))"
    )
    with op.batch_alter_table("tool_keys", schema=None) as batch_op:
        batch_op.alter_column("generation", existing_type=sa.Integer(), nullable=False)
        batch_op.create_index("uq_tool_keys_generation", ["generation"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("tool_keys", schema=None) as batch_op:
        batch_op.drop_index("uq_tool_keys_generation")
        batch_op.drop_column("generation")
