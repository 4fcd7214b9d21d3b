"""tool keys: the time each key starts signing (published before it signs), and revocation

A rotated key is published at once and signs only once every cache of the key set (serve's
and the platforms') holds it. Existing keys signed from when they were made. A revoked key (a
forced rotation replaced it) is left out of the key set at once.

Revision ID: 0028_tool_key_signs_from
Revises: 0027_ledger_retrying_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028_tool_key_signs_from"
down_revision = "0027_ledger_retrying_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tool_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signs_from", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE tool_keys SET signs_from = created_at")
    with op.batch_alter_table("tool_keys", schema=None) as batch_op:
        batch_op.alter_column(
            "signs_from",
            existing_type=sa.DateTime(timezone=True),
            nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("tool_keys", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("signs_from")
